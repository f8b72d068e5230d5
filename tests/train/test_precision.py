"""Training precision per recipe: the reference recipe's forward is fp32 everywhere (no autocast, even on CUDA),
fusionlab's is bf16 autocast on CUDA and fp32 on CPU. Checked without a GPU: the helper only reads the device type."""

import contextlib
import warnings
from pathlib import Path

import pytest
import torch
from train_configs import config_tree

from fusionlab.train.prepare import parse_config
from fusionlab.train.steps import autocast, autocast_dtype
from fusionlab.tune.grid import load_grid

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
PAPER_GRIDS = ["nyudv2_refinenet.yaml", "sunrgbd_cen.yaml", "cityscapes_asymfusion.yaml", "taskonomy_translation.yaml"]


def config(data, recipe, **train):
    return parse_config({**config_tree(data, train=train), "recipe": recipe})


def test_the_reference_recipe_trains_in_fp32_even_on_cuda(small_synthetic):
    reference = config(small_synthetic, "reference")
    assert reference.train.amp == "off"
    assert autocast_dtype(reference, CUDA) is None and autocast_dtype(reference, CPU) is None
    assert isinstance(autocast(reference, CUDA), contextlib.nullcontext)


def test_the_fusionlab_recipe_autocasts_to_bf16_on_cuda_only(small_synthetic):
    ours = config(small_synthetic, "fusionlab")
    assert ours.train.amp == "auto"
    assert autocast_dtype(ours, CUDA) == torch.bfloat16 and autocast_dtype(ours, CPU) is None
    assert isinstance(autocast(ours, CPU), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": this machine's torch disables it, keeps the dtype
        context = autocast(ours, CUDA)
    assert isinstance(context, torch.autocast) and context.device == "cuda" and context.fast_dtype == torch.bfloat16
    # an explicit switch wins over the recipe
    assert autocast_dtype(config(small_synthetic, "reference", amp="bf16"), CPU) == torch.bfloat16
    assert autocast_dtype(config(small_synthetic, "fusionlab", amp="off"), CUDA) is None


@pytest.mark.parametrize("grid", PAPER_GRIDS)
def test_the_paper_grids_train_in_fp32(grid):
    runs = load_grid(EXPERIMENTS / grid).cells_expanded()
    assert runs
    for run in runs:
        assert run.config.recipe == "reference" and run.config.train.amp == "off", run.label
        assert autocast_dtype(run.config, CUDA) is None, run.label
