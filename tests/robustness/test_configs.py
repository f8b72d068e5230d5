"""Malformed configs through the CLI: each is refused (non-zero, no traceback) with a message naming the file, key
or value. Issue 14, items 9/10: strict and finite values, a batch that fits the train split, searchable values
within the field limits, and a damaged checkpoint under a resumed run. (Not test_config.py: tests/train has that
basename, and pytest's default import mode needs unique ones.)"""

from pathlib import Path

import pytest
import yaml


def write_config(directory: Path, data: Path, **sections) -> Path:
    tree = {
        "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [32, 40]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
        "tracking": {"experiment": "robustness", "run_name": "robust"},
    }
    for section, values in sections.items():
        tree[section] = {**tree.get(section, {}), **values}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


# argv (the config path goes after the command) and the fragments the message must hold; CONFIG: the file's path
CONFIG = "{config}"
SET_CASES = {
    "unknown-key": (["train", "--local", "--set", "train.epochz=3"], [CONFIG, "train.epochz", "unknown key"]),
    "lr-nan": (["train", "--local", "--set", "train.lr_encoder=.nan"],
               [CONFIG, "train.lr_encoder", "finite number", "nan"]),
    "lr-inf-in-schedule": (["train", "--local", "--set", "train.lr_decoder=[1e-3, .inf]"],
                           [CONFIG, "train.lr_decoder.1", "finite number", "inf"]),
    "lr-0": (["train", "--local", "--set", "train.lr_encoder=0"], [CONFIG, "train.lr_encoder", "learning rate > 0"]),
    "lambda-nan": (["train", "--local", "--set", "model.params.lambda=.nan"],
                   [CONFIG, "model.params.lambda", "finite number"]),
    "epochs-true": (["train", "--local", "--set", "train.epochs=true"],
                    [CONFIG, "train.epochs", "valid integer", "True"]),
    "batch-float": (["train", "--local", "--set", "train.batch_size=4.0"],
                    [CONFIG, "train.batch_size", "valid integer"]),
    "hflip-1": (["train", "--local", "--set", "data.hflip=1"], [CONFIG, "data.hflip", "valid boolean", "(got 1)"]),
    # checked at training start against the dataset's manifest (8 train rows)
    "batch-above-split-local": (["train", "--local", "--set", "train.batch_size=9"],
                                ["train.batch_size 9", "data.train_split 'train'", "8 rows"]),
    "batch-above-share-ray": (["train", "--set", "train.batch_size=5", "--set", "resources.num_workers=2"],
                              ["train.batch_size 5", "data.train_split 'train'", "4 per worker for 2 workers"]),
}


@pytest.mark.parametrize("argv,fragments", list(SET_CASES.values()), ids=list(SET_CASES))
def test_bad_values_are_refused(cli, tiny_synthetic, tmp_path, argv, fragments):
    config = write_config(tmp_path, tiny_synthetic)
    command, *rest = argv
    cli(command, config, *rest).refused(*(fragment.format(config=config) for fragment in fragments))


def test_bad_yaml_names_the_file(cli, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data: [unclosed\n")
    cli("train", path, "--local").refused(str(path), "invalid YAML")


SEARCH_CASES = {
    "choice-below-limit": ({"model.params.threshold": {"type": "choice", "values": [0.01, -1]}},
                           ["search.space.model.params.threshold", "value -1", "greater than or equal to 0"]),
    "range-low-lr-0": ({"train.lr_encoder": {"type": "uniform", "low": 0, "high": 0.01}},
                       ["search.space.train.lr_encoder", "low 0.0", "learning rate > 0"]),
    "float-range-on-epochs": ({"train.epochs": {"type": "uniform", "low": 1, "high": 3}},
                              ["search.space.train.epochs", "low 1.0", "valid integer"]),
    "choice-not-an-optimizer": ({"train.optimizer": {"type": "choice", "values": ["adam", "lion"]}},
                                ["search.space.train.optimizer", "'lion'", "'sgd', 'adam' or 'adamw'"]),
}
# Checked when the sweep starts, against the dataset's 8 train rows (the message names the key, not the file).
SEARCH_BATCH = ({"train.batch_size": {"type": "int", "low": 2, "high": 16}},
                ["search.space.train.batch_size 16", "data.train_split 'train'", "8 rows"])


@pytest.mark.parametrize("space,fragments", list(SEARCH_CASES.values()), ids=list(SEARCH_CASES))
def test_search_values_outside_field_limits_are_refused_before_any_trial(cli, tiny_synthetic, tmp_path, space,
                                                                        fragments):
    config = write_config(tmp_path, tiny_synthetic, search={"space": space, "num_samples": 2})
    cli("tune", config).refused(str(config), *fragments)


def test_a_searched_batch_above_the_train_split_is_refused_before_any_trial(cli, tiny_synthetic, tmp_path):
    space, fragments = SEARCH_BATCH
    config = write_config(tmp_path, tiny_synthetic, search={"space": space, "num_samples": 2})
    cli("tune", config).refused(*fragments)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_checkpoint_under_a_resumed_local_run_is_named(cli, tiny_synthetic, tmp_path, damage):
    config = write_config(tmp_path, tiny_synthetic)
    workdir = tmp_path / "runs"
    checkpoint = workdir / "checkpoints" / "robust" / "epoch_0000" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"PK\x03\x04" + b"\x00" * 20 if damage == "truncated" else b"not a checkpoint\n" * 30)
    cli("train", config, "--local", workdir=workdir).refused(str(checkpoint), "not a readable checkpoint")
