"""bench/step_throughput.py in-process at a tiny size: both rows, the ratio, the loop/batched agreement, and the
reference adapter's error when FUSIONLAB_REFERENCE_CEN names no reference checkout."""

import importlib.util
import io
import sys
from pathlib import Path

import pytest
from rich.console import Console

BENCH = Path(__file__).resolve().parents[2] / "bench" / "step_throughput.py"


@pytest.fixture(scope="module")
def step_throughput():
    spec = importlib.util.spec_from_file_location("step_throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["step_throughput"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_prints_both_rows_and_the_ratio(step_throughput, monkeypatch):
    monkeypatch.delenv(step_throughput.REFERENCE_ENV, raising=False)
    out = io.StringIO()
    result = step_throughput.run(["--backbone", "resnet_mini", "--batch", "2", "--size", "32x48", "--num-classes",
                                  "5", "--rounds", "1", "--steps", "1", "--warmup", "0", "--device", "cpu"],
                                 console=Console(file=out, width=200))
    text = out.getvalue()
    assert [row["execution"] for row in result["rows"]] == ["batched", "per-modality loop"]
    assert "batched" in text and "per-modality loop" in text and "batched / per-modality loop =" in text
    assert result["ratio"] == pytest.approx(result["rows"][0]["speedup_vs_loop"]) and result["ratio"] > 0
    assert result["rows"][1]["speedup_vs_loop"] == pytest.approx(1.0)
    assert result["max_diff"] <= 1e-4  # the benchmark's own check (it raises before timing if they disagree)
    assert result["flops_per_step"] > 0


def test_reference_adapter_names_the_missing_file(step_throughput, tmp_path):
    with pytest.raises(step_throughput.ReferenceUnavailable,
                       match=r"does not hold the reference CEN model: no file at .*semantic_segmentation/models/"
                             r"model\.py.*github\.com/yikaiw/CEN"):
        step_throughput.reference_module(tmp_path)


def test_reference_adapter_imports_refinenet_from_a_checkout(step_throughput, tmp_path):
    models = tmp_path / "semantic_segmentation" / "models"
    models.mkdir(parents=True)
    (models / "__init__.py").write_text("")
    (models / "model.py").write_text("def refinenet(num_layers, num_classes, num_parallel, bn_threshold):\n"
                                     "    return ('stub', num_layers)\n")
    module = step_throughput.reference_module(tmp_path)
    assert module.refinenet(101, 40, 2, 2e-2) == ("stub", 101)


def test_peak_table_knows_the_lent_gpus(step_throughput):
    assert step_throughput.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert step_throughput.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert step_throughput.peak_tflops("NVIDIA H200") == 989.4
    assert step_throughput.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert step_throughput.peak_tflops("Some GPU") is None


FAKE_REFERENCE = '''
import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, num_parallel):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn2_list = nn.ModuleList(nn.BatchNorm2d(8) for _ in range(num_parallel))


class Net(nn.Module):
    def __init__(self, num_classes, num_parallel):
        super().__init__()
        self.block = Bottleneck(num_parallel)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, xs):
        outs = [self.head(nn.functional.avg_pool2d(torch.relu(bn(self.block.conv(x))), 4))
                for bn, x in zip(self.block.bn2_list, xs)]
        return outs + [sum(o.detach() for o in outs) / len(outs)], None


def refinenet(num_layers, num_classes, num_parallel, bn_threshold):
    return Net(num_classes, num_parallel)
'''


def test_reference_variant_steps_a_list_of_modalities_model(step_throughput, tmp_path):
    import torch

    models = tmp_path / "semantic_segmentation" / "models"
    models.mkdir(parents=True)
    (models / "__init__.py").write_text("")
    (models / "model.py").write_text(FAKE_REFERENCE)
    args = step_throughput.parse_args(["--backbone", "resnet101", "--batch", "2", "--size", "16x16",
                                       "--num-classes", "5", "--device", "cpu"])
    x, target = torch.randn(2, 2, 3, 16, 16), torch.randint(0, 5, (2, 4, 4))
    variant = step_throughput.reference_variant(args, torch.device("cpu"), x, target, str(tmp_path))
    assert variant.label == "reference yikaiw/CEN (as-published)" and variant.flops > 0
    variant.reset()
    variant.step()
    mini = step_throughput.parse_args(["--backbone", "resnet_mini"])
    with pytest.raises(step_throughput.ReferenceUnavailable, match="ResNet-50/101/152 only"):
        step_throughput.reference_variant(mini, torch.device("cpu"), x, target, str(tmp_path))
