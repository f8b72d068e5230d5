"""The `fusionlab` command, run as a user runs it."""

import re
import subprocess
import sys
from pathlib import Path

from fusionlab.cli import main
from fusionlab.models import list_models, runs_on
from xception_layout import tensorflow_layout_parameters


def model_rows(text: str) -> dict[str, int]:
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\W*(\w+)\W+[\w,+]+\W+([\d,]+)\W", line)
        if match:
            rows[match.group(1)] = int(match.group(2).replace(",", ""))
    return rows


def test_models_prints_reference_parameter_counts(capsys):
    assert main(["models", "--backbone", "resnet101", "--num-classes", "40", "--modalities", "rgb,depth"]) == 0
    rows = model_rows(capsys.readouterr().out)
    assert rows["cen"] == 118_201_578
    assert rows["asymfusion"] == 118_201_578
    assert rows["unimodal"] == 118_096_233
    assert set(rows) == {name for name in list_models() if runs_on(name, "resnet101")}  # the ablations included
    assert rows["cen_no_exchange"] == rows["cen_random_exchange"] == rows["cen"], "the same network, other rules"


def test_models_prints_the_xception65_deeplab_counts(capsys):
    assert main(["models", "--backbone", "xception65", "--num-classes", "19", "--modalities", "rgb,disparity"]) == 0
    out = capsys.readouterr().out
    rows = model_rows(out)
    assert rows["unimodal"] == tensorflow_layout_parameters(19) + 1  # + the one-branch alpha
    assert rows["cen"] == rows["asymfusion"] > rows["unimodal"]
    assert "encoder.middle.15" in out and "encoder.exit.1.bn2" in out  # AsymFusion's and CEN's last fusion points


def test_models_console_script_resnet152():
    executable = Path(sys.executable).with_name("fusionlab")  # installed beside the interpreter running the tests
    assert executable.exists(), f"the fusionlab command is not installed at {executable}"
    result = subprocess.run([executable, "models", "--backbone", "resnet152", "--modalities", "rgb,depth"],
                            capture_output=True, text=True, check=True)
    assert model_rows(result.stdout)["cen"] == 133_891_306
    assert "encoder.layer4.2.bn2" in result.stdout  # CEN's last fusion point


def test_unknown_backbone_is_an_error(capsys):
    assert main(["models", "--backbone", "resnet18"]) == 2
    assert "unknown backbone 'resnet18'" in capsys.readouterr().out


def test_single_modality_lists_what_cannot_be_built(capsys):
    assert main(["models", "--backbone", "resnet_mini", "--modalities", "rgb"]) == 0
    out = capsys.readouterr().out
    assert "cen needs at least 2 modalities" in out
    assert "unimodal" in model_rows(out)


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "fusionlab.cli", "models", "--backbone", "resnet_mini"],
                            capture_output=True, text=True, check=True)
    assert "cen" in result.stdout
