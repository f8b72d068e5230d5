"""Issue 34, part C: every error the CLI can meet is a message naming the file, field or value, never a traceback.

A weights file that is a pickle payload (it never runs), text, garbage or the wrong state dict; a config that is a
directory, a list, a string, empty or not UTF-8 (with and without ``--set``); input scales out of bounds; an
``--out`` under a regular file; ``--model DIR`` that is no model directory (read in place, never copied); a train
split without a labelled pixel. No message repeats torch's advice to load a file with ``weights_only=False``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fusionlab.data import DatasetReader, DatasetWriter, Manifest
from fusionlab.inference.servable import servable
from fusionlab.models import build
from fusionlab.models.model_files import SPEC_FILE, WEIGHTS_FILE, save_model_dir

CONFIG = "experiments/synthetic_cen.yaml"
TRAIN = ["--local", "--set", "model.backbone=resnet_mini", "--set", "train.epochs=1", "--set", "data.crop=[32,40]",
         "--set", "tracking.experiment=robust", "--set", "tracking.run_name=the-run"]
HINT = "weights_only=False"


class Payload:
    """Unpickling this writes ``sentinel`` (as an ``os.system`` payload would run a command)."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return exec, (f"open({self.sentinel!r}, 'w').write('ran')",)


def torch_files(directory: Path) -> dict[str, Path]:
    """Every kind of file a weights path may hold that is not weights; the payload's sentinel is ``ran``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: directory / name for name in ("payload.pth", "text.pth", "empty.pth", "garbage.pth.tar",
                                                 "text.pth.tar", "truncated.pth")}
    torch.save(Payload(directory / "ran"), files["payload.pth"])
    files["text.pth"].write_text("these are not weights\n")
    files["empty.pth"].write_bytes(b"")
    files["garbage.pth.tar"].write_bytes(bytes(np.random.default_rng(0).integers(1, 127, 200, dtype=np.uint8)))
    files["text.pth.tar"].write_text("model-best.pth.tar\n")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, files["truncated.pth"])
    files["truncated.pth"].write_bytes(files["truncated.pth"].read_bytes()[:300])
    return files


# the file, and what the message must say about it (besides its path)
WEIGHTS_CASES = {
    "payload.pth": ["weights-only unpickler", "GLOBAL exec", "nothing in it was run"],
    "text.pth": ["not a PyTorch file (no zip archive or pickle header"],
    "empty.pth": ["empty file (0 bytes)"],
    "garbage.pth.tar": ["not a PyTorch file (no zip archive or pickle header"],
    "text.pth.tar": ["not a PyTorch file (no zip archive or pickle header"],
    "truncated.pth": ["zip archive"],
}


@pytest.mark.parametrize("name", WEIGHTS_CASES)
def test_pretrained_weights_that_are_not_weights_are_named_and_never_run(cli, tiny_synthetic, tmp_path, name):
    path = torch_files(tmp_path / "files")[name]
    result = cli("train", CONFIG, *TRAIN, "--set", f"data.path={tiny_synthetic}", "--set", f"model.pretrained={path}")
    result.refused("cannot read pretrained weights", str(path), *WEIGHTS_CASES[name])
    assert HINT not in result.output
    assert not (tmp_path / "files" / "ran").exists(), "the planted pickle ran"


def test_pretrained_weights_with_other_keys_are_named(cli, tiny_synthetic, tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3), "classifier.bias": torch.zeros(2)}, path)
    result = cli("train", CONFIG, *TRAIN, "--set", f"data.path={tiny_synthetic}", "--set", f"model.pretrained={path}")
    # the keys are shown: the message's brackets are not taken for markup
    result.refused(str(path), "does not match the encoder", "missing encoder keys [bn1.bias", "conv1.weight",
                   "unexpected keys [classifier.bias, features.0.weight]")


def test_a_pretrained_payload_checked_against_a_release_never_runs(cli, tiny_synthetic, tmp_path):
    """With a release named, the driver identifies the file by its hash first: the payload is never loaded."""
    path = torch_files(tmp_path / "files")["payload.pth"]
    result = cli("train", CONFIG, *TRAIN, "--set", f"data.path={tiny_synthetic}", "--set", f"model.pretrained={path}",
                 "--set", "model.pretrained_version=imagenet1k_v1")
    result.refused(str(path), "imagenet1k_v1")
    assert not (tmp_path / "files" / "ran").exists()


def test_a_pretrained_directory_is_named(cli, tiny_synthetic, tmp_path):
    cli("train", CONFIG, *TRAIN, "--set", f"data.path={tiny_synthetic}", "--set", f"model.pretrained={tmp_path}"
        ).refused("model.pretrained", str(tmp_path))


def model_dir(directory: Path, data: Path) -> Path:
    manifest = Manifest.load(data)
    model = build("cen", backbone="resnet_mini", num_classes=manifest.label.num_classes,
                  modalities=list(manifest.modalities))
    return save_model_dir(servable(model.eval(), manifest), directory)


@pytest.mark.parametrize("name", WEIGHTS_CASES)
def test_model_weights_that_are_not_weights_are_named_and_never_run(cli, tiny_synthetic, tmp_path, name):
    directory = model_dir(tmp_path / "model", tiny_synthetic)
    (directory / WEIGHTS_FILE).write_bytes(torch_files(tmp_path / "files")[name].read_bytes())
    result = cli("evaluate", "--model", directory, "--data", tiny_synthetic)
    result.refused(str(directory), WEIGHTS_FILE, "is not a state dict of tensors", *WEIGHTS_CASES[name])
    assert HINT not in result.output
    assert not (tmp_path / "files" / "ran").exists()


@pytest.mark.parametrize("name", WEIGHTS_CASES)
def test_reference_checkpoints_that_are_not_checkpoints_are_named_and_never_run(cli, tmp_path, name):
    path = torch_files(tmp_path / "files")[name]
    result = cli("import-checkpoint", "cen", path, "--layers", "1,1,1,1", "--num-classes", "40")
    result.refused(f"cannot read {path} as a reference checkpoint", *WEIGHTS_CASES[name])
    assert HINT not in result.output
    assert not (tmp_path / "files" / "ran").exists()


@pytest.mark.parametrize("damage", ["payload", "garbage"])
def test_a_resumed_checkpoint_message_never_advises_weights_only_false(cli, tiny_synthetic, tmp_path, damage):
    workdir = tmp_path / "runs"
    checkpoint = workdir / "checkpoints" / "robust" / "epoch_0000" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(torch_files(tmp_path / "files")["payload.pth" if damage == "payload"
                                                           else "garbage.pth.tar"].read_bytes())
    result = cli("train", CONFIG, *TRAIN, "--set", f"data.path={tiny_synthetic}", "--set", "tracking.run_name=robust",
                 workdir=workdir)
    result.refused(str(checkpoint), "not a readable checkpoint")
    assert HINT not in result.output
    assert not (tmp_path / "files" / "ran").exists()


CONFIG_FILES = {
    "directory": (None, ["is a directory", "config file"]),
    "list": ("- a\n- b\n", ["expected a mapping with sections", "top level is a list"]),
    "string": ("hello\n", ["expected a mapping with sections", "top level is a string ('hello')"]),
    "number": ("3\n", ["top level is a number (3)"]),
    "empty": ("", ["the file is empty", "expected a mapping with sections"]),
    "not-utf8": (b"\xff\xfe\x00model: cen\n", ["not UTF-8 text"]),
}


@pytest.mark.parametrize("with_set", [False, True], ids=["alone", "with-set"])
@pytest.mark.parametrize("case", CONFIG_FILES)
def test_a_config_that_is_not_a_mapping_is_named(cli, tmp_path, case, with_set):
    content, fragments = CONFIG_FILES[case]
    path = tmp_path / "config.yaml"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    overrides = ["--set", "train.epochs=1"] if with_set else []
    cli("train", path, "--local", *overrides).refused(str(path), *fragments)


@pytest.mark.parametrize("value", ["[1", "a: b: c"])
def test_a_set_value_that_is_not_yaml_is_named(cli, tiny_synthetic, value):
    cli("train", CONFIG, *TRAIN, "--set", f"data.path={tiny_synthetic}", "--set", f"train.epochs={value}").refused(
        f"--set train.epochs={value}", "is not YAML")


GRID = "experiments/synthetic_grid.yaml"


@pytest.mark.parametrize("case", ["directory", "not-utf8", "list"])
def test_a_grid_file_that_is_not_a_grid_is_named(cli, tmp_path, case):
    path = tmp_path / "grid.yaml"
    if case == "directory":
        path.mkdir()
    elif case == "not-utf8":
        path.write_bytes(b"\xff\xfe\x00grid: {name: g}\n")
    else:
        path.write_text("- grid\n")
    fragments = {"directory": ["is a directory", "grid file"], "not-utf8": ["not UTF-8 text"],
                 "list": ["not a grid file"]}[case]
    cli("grid", path, "--dry-run").refused(str(path), *fragments)


@pytest.mark.parametrize("value", ["[1", "a: b: c"])
def test_a_grid_set_value_that_is_not_yaml_is_named(cli, value):
    cli("grid", GRID, "--dry-run", "--set", f"train.epochs={value}").refused(f"--set train.epochs={value}",
                                                                             "is not YAML")


def test_a_set_without_a_value_is_shown_as_typed_not_as_an_emoji(cli):
    """rich turns ``:b:`` into an emoji unless told not to; the message must show what the user typed."""
    cli("grid", GRID, "--dry-run", "--set", "a:b:c").refused("got 'a:b:c'")


@pytest.mark.parametrize("scales", ["1e9", "0.5,1,5", "inf", "nan", "-1"])
@pytest.mark.parametrize("command", ["evaluate", "grid"])
def test_scales_out_of_bounds_are_refused(cli, tiny_synthetic, tmp_path, command, scales):
    argv = (("evaluate", "--model", tmp_path, "--data", tiny_synthetic) if command == "evaluate"
            else ("grid", "experiments/synthetic_grid.yaml", "--dry-run"))
    cli(*argv, "--scales", scales).refused("--scales", "out of bounds", "(0, 4]", scales)


@pytest.mark.parametrize("scales", ["[1.0, 1e9]", "[0.5, 4.5]", "[0]"])
def test_eval_scales_out_of_bounds_are_refused(cli, tiny_synthetic, scales):
    cli("train", CONFIG, *TRAIN, "--set", f"data.path={tiny_synthetic}", "--set", f"model.eval_scales={scales}"
        ).refused("model.eval_scales", "out of bounds", "(0, 4]")


def test_evaluate_at_the_largest_scale_runs(cli, tiny_synthetic, tmp_path):
    directory = model_dir(tmp_path / "model", tiny_synthetic)
    result = cli("evaluate", "--model", directory, "--data", tiny_synthetic, "--split", "val", "--scales", "0.5,4")
    assert result.rc == 0, result.output


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_predict_out_under_a_regular_file_is_named_and_the_file_kept(cli, tiny_synthetic, tmp_path, overwrite):
    user_file = tmp_path / "notes.txt"
    user_file.write_text("mine")
    out = user_file / "report.md"
    directory = model_dir(tmp_path / "model", tiny_synthetic)
    result = cli("predict", "--model", directory, "--input", tiny_synthetic, "--out", out,
                 *(["--overwrite"] if overwrite else []))
    result.refused(str(out), str(user_file), "is not a directory")
    assert user_file.read_text() == "mine"


def test_data_out_under_a_regular_file_is_named_and_the_file_kept(cli, tmp_path):
    user_file = tmp_path / "notes.txt"
    user_file.write_text("mine")
    cli("data", "synth", "--out", user_file / "data").refused(str(user_file), "is not a directory")
    assert user_file.read_text() == "mine"


def test_a_directory_that_is_no_model_is_refused_before_anything_is_copied(cli, tiny_synthetic, tmp_path, monkeypatch):
    """``--model /etc``: named by what it lacks; its dangling link and its size never matter (nothing is copied)."""
    import mlflow

    def no_download(*args, **kwargs):
        raise AssertionError("a local model directory was downloaded (copied)")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", no_download)
    directory = tmp_path / "etc"
    directory.mkdir()
    (directory / "passwd").write_text("root:x:0:0\n")
    os.symlink(tmp_path / "nowhere", directory / "dangling")
    for uri in (str(directory), directory.as_uri()):
        cli("evaluate", "--model", uri, "--data", tiny_synthetic).refused(
            uri, str(directory), "is not a fusionlab model directory", SPEC_FILE, WEIGHTS_FILE)
    cli("evaluate", "--model", tmp_path / "absent", "--data", tiny_synthetic).refused(
        str(tmp_path / "absent"), "no such directory")
    (directory / SPEC_FILE).write_text(json.dumps({"format": "fusionlab.model"}))
    cli("evaluate", "--model", directory, "--data", tiny_synthetic).refused(str(directory), f"no {WEIGHTS_FILE}")

    model = model_dir(tmp_path / "model", tiny_synthetic)
    os.symlink(tmp_path / "nowhere", model / "dangling")  # beside the two files: never read
    result = cli("evaluate", "--model", model, "--data", tiny_synthetic, "--split", "val")
    assert result.rc == 0, result.output


def relabelled(source: Path, out: Path, unlabel) -> Path:
    """A copy of ``source`` whose samples ``unlabel(sample)`` picks have every label pixel the ignore index."""
    reader = DatasetReader(source)
    manifest = reader.manifest
    ignore = manifest.label.ignore_index
    with DatasetWriter(out, Manifest(name=manifest.name, task=manifest.task, modalities=manifest.modalities,
                                     label=manifest.label, source={"relabelled": str(source)})) as writer:
        for split in manifest.splits:
            for sample in reader.iter_samples(split):
                if unlabel(sample):
                    sample = dataclasses.replace(sample, label=np.full_like(sample.label, ignore))
                writer.write(sample)
    return out


def test_a_train_split_without_a_labelled_pixel_is_named_not_blamed_on_the_lr(cli, tiny_synthetic, tmp_path):
    data = relabelled(tiny_synthetic, tmp_path / "unlabelled", lambda sample: sample.split == "train")
    result = cli("train", CONFIG, *TRAIN, "--set", f"data.path={data}", "--set", "train.batch_size=2")
    result.refused(f"split 'train' of {data} has no labelled pixel", "ignore index 255", "'train-00000'",
                   "4 of 4 training steps at epoch 0")
    assert "lr_encoder" not in result.output


def test_samples_without_a_labelled_pixel_are_named(cli, tiny_synthetic, tmp_path):
    even = ("0", "2", "4", "6")
    data = relabelled(tiny_synthetic, tmp_path / "half", lambda s: s.split == "train" and s.sample_id.endswith(even))
    result = cli("train", CONFIG, *TRAIN, "--set", f"data.path={data}", "--set", "train.batch_size=1")
    result.refused("had a batch with no labelled pixel", "4 of 8 samples", "'train-00000', 'train-00002', "
                   "'train-00004', 'train-00006'", "ignore index 255")
    assert "lr_encoder" not in result.output
    # batches that mix them with labelled samples train (the loss averages over the labelled pixels)
    result = cli("train", CONFIG, *TRAIN, "--set", f"data.path={data}", "--set", "train.batch_size=8",
                 "--set", "tracking.run_name=mixed")
    assert result.rc == 0, result.output
