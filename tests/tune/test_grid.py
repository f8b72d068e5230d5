"""Declarative benchmark grids: every experiment YAML validates, cells expand to runs, errors name file/cell/key,
estimates are counted and behave, and the dry-run table shows the cells and the papers' figures."""

import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from fusionlab.config import validate_config
from fusionlab.models.params import TokenFusionParams
from fusionlab.tune.grid import GridError, estimate, is_grid_file, load_grid, prepare_run, print_dry_run, slugify

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
NYUDV2 = EXPERIMENTS / "nyudv2_refinenet.yaml"
SYNTHETIC = EXPERIMENTS / "synthetic_grid.yaml"
ALL_MODELS = {"unimodal", "early_concat", "late_fusion", "shared_bn", "cen", "asymfusion"}
ABLATIONS = {"cen_no_exchange", "cen_random_exchange", "cen_penalised_exchange", "asymfusion_shuffle_only",
             "asymfusion_shift_only"}


def experiment_files():
    return sorted(EXPERIMENTS.glob("*.yaml"))


def write_grid(tmp_path, tree, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def small_grid(**changes):
    tree = {
        "grid": {"name": "tiny", "seeds": [0, 1], "train_samples": 10, "num_classes": 5},
        "base": {"data": {"path": "nowhere/tiny", "modalities": ["rgb", "depth"], "crop": [64, 64]},
                 "model": {"backbone": "resnet_mini"}, "train": {"epochs": 4}},
        "cells": [
            {"label": "CEN (mini)", "set": {"model.name": "cen"}, "paper": {"miou": 50.0, "source": "made up"}},
            {"label": "RGB only", "set": {"model.name": "unimodal", "model.params.modality": "rgb",
                                          "data.modalities": ["rgb"]}},
        ],
    }
    tree.update(changes)
    return tree


def dry_run_text(grid) -> str:
    console = Console(record=True, width=220)
    print_dry_run(grid, console)
    return " ".join(console.export_text().split())  # the caption wraps: compare with single spaces


# --- the experiment files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", experiment_files(), ids=lambda p: p.name)
def test_every_experiment_file_validates(path):
    tree = yaml.safe_load(path.read_text())
    if not is_grid_file(tree):
        config = validate_config(tree, origin=str(path))
        assert config.data.path
        return
    grid = load_grid(path)
    assert grid.name == tree["grid"]["name"]
    if grid.planned:
        with pytest.raises(GridError, match="planned"):
            grid.cells_expanded()
        return
    runs = grid.cells_expanded()
    assert len(runs) == len(tree["cells"]) * len(tree["grid"].get("seeds", [0]))
    assert len({run.config.run_name() for run in runs}) == len(runs)
    assert all(run.config.tracking.experiment == grid.name for run in runs)


def test_the_issue_files_exist():
    names = {path.name for path in experiment_files()}
    assert {"synthetic_grid.yaml", "nyudv2_refinenet.yaml", "sunrgbd_cen.yaml", "cityscapes_asymfusion.yaml",
            "taskonomy_translation.yaml", "nyudv2_cen_search.yaml", "synthetic_cen.yaml",
            "nyudv2_tokenfusion.yaml"} <= names


def test_nyudv2_tokenfusion_trains_the_reference_recipe_on_mit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the weights are in neither place: the paths are the current directory's
    runs = load_grid(EXPERIMENTS / "nyudv2_tokenfusion.yaml").cells_expanded()
    assert [(run.config.model.name, run.config.model.backbone) for run in runs] == [
        ("tokenfusion", "mit_b1"), ("tokenfusion", "mit_b2"), ("tokenfusion", "mit_b3"), ("unimodal", "mit_b2")]
    for run in runs:
        train = run.config.train
        assert run.config.recipe == "reference"
        assert (train.optimizer, train.lr_schedule.type, train.weight_decay, train.norm_weight_decay) == (
            "adamw", "poly_warmup", 0.01, 0.0)
        assert train.lr_decoder == pytest.approx([10 * lr for lr in train.lr_encoder])
        assert run.config.model.pretrained == str(tmp_path.resolve() / "weights" / f"{run.config.model.backbone}.pth")
    default = TokenFusionParams().lambda_
    # the README's MiT-B3 command trains with --lamda 1e-6; the others keep TokenFusion's default (config.py's LAMDA)
    assert [run.config.model.params["lambda"] for run in runs[:3]] == [default, default, 1e-6]
    assert {run.config.model.params["ensemble"] for run in runs[:3]} == {"fixed"}  # alpha never trained


def test_nyudv2_refinenet_is_the_papers_table_and_its_ablations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = load_grid(NYUDV2).cells_expanded()
    assert len(runs) == 14 + len(ABLATIONS)
    cells = {(run.config.model.name, run.config.model.params.get("modality"), run.config.model.backbone): run
             for run in runs}
    assert len(cells) == len(runs)
    assert {name for name, _, _ in cells} == ALL_MODELS | ABLATIONS
    assert {name for name, _, backbone in cells if name in ABLATIONS and backbone == "resnet101"} == ABLATIONS
    published = {("cen", "resnet101"): (76.2, 62.8, 51.1), ("cen", "resnet152"): (77.0, 64.4, 51.6),
                 ("asymfusion", "resnet101"): (76.6, 63.5, 50.8), ("asymfusion", "resnet152"): (77.0, 64.0, 51.2)}
    for (name, backbone), figures in published.items():
        paper = cells[(name, None, backbone)].paper
        assert (paper["pixel_acc"], paper["mean_acc"], paper["miou"]) == figures
        assert paper["source"]
    for run in runs:
        config = run.config
        depth = config.model.backbone.removeprefix("resnet")
        assert config.train.epochs == {"101": 300, "152": 450}[depth]
        assert config.model.pretrained == str(tmp_path.resolve() / "weights" / f"resnet{depth}-imagenet.pth")
        assert config.data.path == str(tmp_path.resolve() / "data" / "nyudv2")
        assert config.train.freeze_bn and config.train.optimizer == "sgd" and config.train.batch_size == 6
        assert config.train.lr_encoder == [5e-4, 2.5e-4, 1e-4] and config.train.lr_decoder == [3e-3, 1.5e-3, 7e-4]
        assert config.data.crop == (500, 500)
        if config.model.name == "unimodal":
            assert config.data.modalities == [config.model.params["modality"]]
        else:
            assert config.data.modalities == ["rgb", "depth"]
        assert run.paper is None or set(run.paper) >= {"miou", "source"}
        assert config.tracking.run_name == f"{slugify(run.label)}-seed0"


def test_synthetic_grid_covers_every_model_on_the_cpu_backbones():
    runs = load_grid(SYNTHETIC).cells_expanded()
    by_backbone = {}
    for run in runs:
        by_backbone.setdefault(run.config.model.backbone, set()).add(
            (run.config.model.name, run.config.model.params.get("modality")))
    assert {name for name, _ in by_backbone["resnet_mini"]} == ALL_MODELS
    assert {modality for name, modality in by_backbone["resnet_mini"] if name == "unimodal"} == {"rgb", "depth"}
    assert by_backbone["mit_mini"] == {("tokenfusion", None), ("unimodal", "rgb")}  # the transformer pair
    assert set(by_backbone) == {"resnet_mini", "mit_mini"}
    for run in runs:
        assert run.config.train.optimizer == "adam"
        assert run.config.resources.num_workers == 1 and run.config.data.synthesize is not None
        assert run.paper is None


def test_translation_grids_expand_into_translation_runs():
    grid = load_grid(EXPERIMENTS / "taskonomy_translation.yaml")
    assert not grid.planned
    runs = grid.cells_expanded()
    assert {run.config.model.backbone for run in runs} == {"pix2pix_unet"}
    assert all(run.config.train.fid.features == "inception" for run in runs), "published FIDs need Inception"
    fids = {cell.label: cell.paper.fid for cell in grid.spec.cells}
    assert sorted(fids.values()) == [62.6, 75.1, 77.8, 79.4, 82.5]
    text = dry_run_text(grid)
    assert "paper FID" in text and "82.5" in text and "1.65" in text and "paper mIoU" not in text
    assert "not estimated" in text and "grid.train_samples" in text  # no Taskonomy here, and no sample count typed in

    synthetic = load_grid(EXPERIMENTS / "synthetic_translation.yaml")
    estimates = print_dry_run(synthetic, Console(file=io.StringIO(), width=200))
    assert len(estimates) == len(synthetic.cells_expanded()) == 7
    unimodal = [e.flops_per_sample for e, run in zip(estimates, synthetic.cells_expanded(), strict=True)
                if run.config.model.name == "unimodal"]
    fused = [e.flops_per_sample for e, run in zip(estimates, synthetic.cells_expanded(), strict=True)
             if run.config.model.name == "cen"]
    assert fused[0] == pytest.approx(2 * unimodal[0], rel=0.05), "two branches through the shared generator"


def test_search_config_validates_with_its_search_section():
    tree = yaml.safe_load((EXPERIMENTS / "nyudv2_cen_search.yaml").read_text())
    config = validate_config(tree, origin="nyudv2_cen_search.yaml")
    assert config.model.name == "cen" and config.search is not None
    assert {"model.params.lambda", "model.params.threshold", "model.params.portion"} <= set(config.search.space)


# --- expansion ------------------------------------------------------------------------------------------------------


def test_cells_times_seeds_with_grid_owned_names(tmp_path):
    grid = load_grid(write_grid(tmp_path, small_grid()))
    runs = grid.cells_expanded()
    assert [(run.label, run.seed) for run in runs] == [("CEN (mini)", 0), ("CEN (mini)", 1), ("RGB only", 0),
                                                      ("RGB only", 1)]
    assert [run.config.tracking.run_name for run in runs] == ["cen-mini-seed0", "cen-mini-seed1", "rgb-only-seed0",
                                                              "rgb-only-seed1"]
    assert all(run.config.tracking.experiment == "tiny" for run in runs)
    assert [run.config.train.seed for run in runs] == [0, 1, 0, 1]
    assert runs[0].paper == {"miou": 50.0, "source": "made up"} and runs[2].paper is None
    assert Path(runs[0].config.data.path).is_absolute()


def test_overrides_apply_to_every_cell(tmp_path):
    overrides = ["train.epochs=1", "model.params.rcu_residual=post_activation"]  # a parameter both models have
    grid = load_grid(write_grid(tmp_path, small_grid()), overrides)
    assert {run.config.train.epochs for run in grid.cells_expanded()} == {1}
    assert {run.config.model.params["rcu_residual"] for run in grid.cells_expanded()} == {"post_activation"}
    # a parameter only CEN has is refused for the unimodal cell, naming it
    with pytest.raises(GridError, match=r"cell 'RGB only': model\.params\.threshold: unknown key"):
        load_grid(write_grid(tmp_path, small_grid()), ["model.params.threshold=0.1"])


def test_every_path_a_cell_names_is_absolute_overrides_included(tmp_path, monkeypatch):
    grids = tmp_path / "grids"
    (grids / "weights").mkdir(parents=True)
    (grids / "weights" / "mini.pth").write_bytes(b"")  # beside the grid file, not in the current directory
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    tree = small_grid()
    tree["cells"][0]["set"]["model.pretrained"] = "weights/mini.pth"
    path = write_grid(grids, tree)
    runs = load_grid(path).cells_expanded()
    assert runs[0].config.model.pretrained == str(grids.resolve() / "weights" / "mini.pth")
    assert runs[0].config.data.path == str(tmp_path.resolve() / "cwd" / "nowhere" / "tiny")
    overridden = load_grid(path, ["model.pretrained=other.pth", "train.fid.weights=~/fid.pth"]).cells_expanded()
    assert {run.config.model.pretrained for run in overridden} == {str(tmp_path.resolve() / "cwd" / "other.pth")}
    assert {run.config.train.fid.weights for run in overridden} == {str(Path("~/fid.pth").expanduser())}


def test_set_merges_mappings_and_yaml_merge_keys_work(tmp_path):
    text = """
anchors:
  big: &big {model.backbone: resnet50, train.epochs: 9}
grid: {name: merge, train_samples: 4, num_classes: 3}
base:
  data: {path: nowhere, modalities: [rgb, depth], crop: [32, 32]}
  model: {params: {lambda: 1.0e-3, threshold: 0.05}}
cells:
  - label: a
    set: {<<: *big, model.params: {threshold: 0.01}}
"""
    path = tmp_path / "merge.yaml"
    path.write_text(text)
    config = load_grid(path).cells_expanded()[0].config
    assert config.model.backbone == "resnet50" and config.train.epochs == 9
    assert config.model.params["threshold"] == 0.01 and config.model.params["lambda"] == 1e-3


def test_prepare_run_generates_synthetic_data_and_validates_against_it(tmp_path):
    overrides = [f"data.path={tmp_path / 'syn'}", "data.synthesize={train: 3, val: 1, test: 1, size: [32, 48]}",
                 "data.crop=[32, 48]"]
    run = load_grid(SYNTHETIC, overrides).cells_expanded()[0]
    config = prepare_run(run)
    assert (tmp_path / "syn" / "manifest.json").is_file() and config.data.modalities == ["rgb"]


# --- errors name the file, the cell and the key -------------------------------------------------------------------


def assert_error(path, *fragments):
    with pytest.raises(GridError) as caught:
        load_grid(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_unknown_top_level_and_grid_keys(tmp_path):
    assert_error(write_grid(tmp_path, small_grid(extra={"x": 1})), "extra", "unknown key")
    tree = small_grid()
    tree["grid"]["experiment"] = "x"
    assert_error(write_grid(tmp_path, tree), "grid.experiment", "unknown key")
    tree = small_grid()
    tree["grid"]["estimate"] = {"peak_tflops": 100, "mfu": 0.3, "flops": 1}
    assert_error(write_grid(tmp_path, tree), "grid.estimate.flops", "unknown key")


def test_unknown_key_in_a_cells_paper(tmp_path):
    tree = small_grid()
    tree["cells"][0]["paper"]["mIoU"] = 51.0
    assert_error(write_grid(tmp_path, tree), "cell 'CEN (mini)'", "paper.mIoU", "unknown key")
    tree = small_grid()
    tree["cells"][0]["paper"] = {"miou": 151.0, "source": "x"}
    assert_error(write_grid(tmp_path, tree), "cell 'CEN (mini)'", "paper.miou")
    tree = small_grid()
    tree["cells"][0]["paper"] = {"miou": 51.0}
    assert_error(write_grid(tmp_path, tree), "cell 'CEN (mini)'", "paper.source", "required")


def test_a_cell_overriding_an_unknown_config_key(tmp_path):
    tree = small_grid()
    tree["cells"][1]["set"]["model.params.lamda"] = 1e-3
    assert_error(write_grid(tmp_path, tree), "cell 'RGB only'", "model.params.lamda", "unknown key")


def test_a_cell_with_a_bad_value(tmp_path):
    tree = small_grid()
    tree["cells"][0]["set"]["model.params.threshold"] = -1
    assert_error(write_grid(tmp_path, tree), "cell 'CEN (mini)'", "model.params.threshold")
    tree = small_grid()
    tree["cells"][0]["set"]["model.backbone"] = "resnet17"
    assert_error(write_grid(tmp_path, tree), "cell 'CEN (mini)'", "model.backbone", "resnet17")
    tree = small_grid()
    tree["cells"][0]["set"]["data.modalities"] = ["rgb"]  # CEN needs two modalities
    assert_error(write_grid(tmp_path, tree), "cell 'CEN (mini)'", "data.modalities")


def test_a_bad_base_is_named_once_as_base(tmp_path):
    tree = small_grid()
    tree["base"]["train"]["epoch"] = 3
    with pytest.raises(GridError) as caught:
        load_grid(write_grid(tmp_path, tree))
    message = str(caught.value)
    assert "base: train.epoch: unknown key" in message and "cell 'CEN (mini)'" not in message


def test_a_bad_override_is_named_as_such(tmp_path):
    with pytest.raises(GridError, match=r"--set: train.epochs: .*greater than or equal to 1"):
        load_grid(write_grid(tmp_path, small_grid()), ["train.epochs=0"])


def test_duplicate_labels_and_grid_owned_keys(tmp_path):
    tree = small_grid()
    tree["cells"][1]["label"] = "CEN (mini)"
    assert_error(write_grid(tmp_path, tree), "cell 'CEN (mini)'", "unique")
    tree = small_grid()
    tree["cells"][1]["label"] = "cen mini"  # the same run names
    assert_error(write_grid(tmp_path, tree), "cell 'cen mini'", "cen-mini")
    tree = small_grid()
    tree["cells"][0]["set"]["train.seed"] = 3
    assert_error(write_grid(tmp_path, tree), "cell 'CEN (mini)'", "train.seed", "grid.seeds")
    tree = small_grid()
    tree["base"]["tracking"] = {"experiment": "other"}
    assert_error(write_grid(tmp_path, tree), "base", "tracking.experiment")


def test_not_a_grid_and_planned_structure_still_checked(tmp_path):
    assert_error(write_grid(tmp_path, {"data": {"path": "x"}}), "not a grid file")
    tree = small_grid(status="planned")
    tree["cells"][0]["sett"] = {}
    assert_error(write_grid(tmp_path, tree), "cell 'CEN (mini)'", "sett", "unknown key")
    tree = small_grid(status="planned")
    tree["cells"][0]["set"]["model.whatever"] = 1  # cells of a planned grid are not validated as configs
    assert load_grid(write_grid(tmp_path, tree)).planned


# --- the estimate ---------------------------------------------------------------------------------------------------


def test_estimates_are_counted_positive_and_grow_with_depth_and_epochs():
    runs = {run.label: run for run in load_grid(NYUDV2, ["train.epochs=10"]).cells_expanded()}
    r101, r152 = estimate(runs["CEN, ResNet-101"]), estimate(runs["CEN, ResNet-152"])
    assert 0 < r101.flops_per_sample < r152.flops_per_sample
    assert 0 < r101.gpu_hours < r152.gpu_hours and r101.trial_epochs == r152.trial_epochs == 10
    declared = load_grid(NYUDV2).spec.grid.train_samples  # the YAML's figure: no dataset here
    assert r101.train_samples == declared and r101.samples_from == "grid.train_samples"
    assert r101.train_flops == pytest.approx(10 * declared * r101.flops_per_sample)
    # two modalities through one shared network cost about twice one modality
    unimodal = estimate(runs["RGB only, ResNet-101"])
    assert 1.8 < r101.flops_per_sample / unimodal.flops_per_sample < 2.2
    longer = estimate(load_grid(NYUDV2, ["train.epochs=20"]).cells_expanded()[5])
    assert longer.gpu_hours == pytest.approx(2 * r101.gpu_hours)
    default = {run.label: estimate(run) for run in load_grid(NYUDV2).cells_expanded()}
    assert default["CEN, ResNet-152"].gpu_hours > default["CEN, ResNet-101"].gpu_hours


def test_estimate_reads_the_dataset_when_it_is_there(tmp_path):
    from fusionlab.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "syn", train=3, val=1, test=1, size=(32, 48), seed=0)
    tree = small_grid()
    tree["base"]["data"]["path"] = str(tmp_path / "syn")
    result = estimate(load_grid(write_grid(tmp_path, tree)).cells_expanded()[0])
    assert result.samples_from == "manifest" and result.train_samples == 3 and result.gpu_hours > 0


def test_estimate_without_data_needs_the_grids_numbers(tmp_path):
    tree = small_grid()
    del tree["grid"]["train_samples"]
    run = load_grid(write_grid(tmp_path, tree)).cells_expanded()[0]
    with pytest.raises(GridError, match="grid.train_samples"):
        estimate(run)


# --- the dry run ----------------------------------------------------------------------------------------------------


def test_dry_run_lists_every_cell_with_the_papers_figures_and_totals():
    grid = load_grid(NYUDV2)
    text = dry_run_text(grid)
    for run in grid.cells_expanded():
        assert run.label in text
    for figure in ("51.1", "51.6", "50.8", "51.2", "76.2", "64.4"):
        assert figure in text
    assert "total: 19 runs" in text and "6750" in text  # 12 x 300 + 7 x 450 trial-epochs
    assert "ESTIMATE" in text and f"{grid.spec.grid.train_samples} training samples" in text and "MFU 0.3" in text
    assert "github.com/yikaiw/CEN" in text


def test_dry_run_of_the_synthetic_grid_has_no_paper_figures():
    text = dry_run_text(load_grid(SYNTHETIC))
    assert f"total: {len(load_grid(SYNTHETIC).cells_expanded())} runs" in text
    assert "CPU-h" in text and "AsymFusion" in text and "TokenFusion" in text


def test_wall_hours_schedules_the_runs_onto_the_devices(tmp_path):
    from dataclasses import replace

    from fusionlab.tune.grid import Estimate, wall_hours

    runs = load_grid(write_grid(tmp_path, small_grid())).cells_expanded() * 3  # 12 runs, one device each
    hours = [1.0 + (index * 7) % 5 for index in range(len(runs))]
    estimates = [Estimate(1, 1.0, value, 1.0, 1, "manifest") for value in hours]
    assert wall_hours(runs, estimates, 1) == pytest.approx(sum(hours))  # one device: one after another
    assert wall_hours(runs, estimates, len(runs)) == pytest.approx(max(hours))  # a device each: the longest
    for devices in (2, 3, 5):
        wall = wall_hours(runs, estimates, devices)
        assert max(max(hours), sum(hours) / devices) <= wall + 1e-9  # no schedule beats either bound
        assert wall <= sum(hours) / devices + max(hours)  # list scheduling's guarantee
    wide = [replace(run, config=run.config.model_copy(update={"resources": run.config.resources.model_copy(
        update={"num_workers": 2})})) for run in runs[:2]]
    assert wall_hours(wide, estimates[:2], 2) == pytest.approx(sum(hours[:2]) / 2)  # both devices, in turn
    with pytest.raises(GridError, match="needs 2 devices"):
        wall_hours(wide, estimates[:2], 1)


def test_dry_run_estimates_the_wall_time_on_n_devices(capsys):
    from fusionlab.cli import main

    assert main(["grid", str(EXPERIMENTS / "synthetic_grid.yaml"), "--dry-run", "--devices", "2"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "On 2 devices at once, as `fusionlab grid` schedules the runs: about" in text
