"""One config schema: validated at load, unknown keys and bad values named, --set overrides."""

import pytest
import yaml
from train_configs import config_tree

from fusionlab.config import ConfigError, load_config, parse_config


def write(tmp_path, tree):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_valid_config_loads_with_defaults_and_overrides(small_synthetic, tmp_path):
    path = write(tmp_path, config_tree(small_synthetic))
    config = load_config(path, ["train.epochs=7", "model.cen.lambda=1e-3", "resources.num_workers=2"])
    assert config.train.epochs == 7 and config.model.cen.lambda_ == 1e-3 and config.resources.num_workers == 2
    flat = config.flat()
    assert flat["model.cen.lambda"] == 1e-3 and flat["model.cen.threshold"] == 0.02 and flat["model.name"] == "cen"
    # the fusionlab recipe adds the penalty once: the effective weight is lambda itself
    assert config.model.build_kwargs(2) == {"rcu_residual": "pre_activation", "threshold": 0.02, "portion": None,
                                            "l1_lambda": 1e-3, "sparsity": "loss"}


def test_default_modalities_come_from_the_dataset_and_are_recorded(small_synthetic):
    tree = config_tree(small_synthetic)
    del tree["data"]["modalities"]
    assert parse_config(tree).data.modalities == ["rgb", "depth"]


def test_relative_data_path_becomes_absolute(small_synthetic, tmp_path, monkeypatch):
    monkeypatch.chdir(small_synthetic.parent)
    tree = config_tree(small_synthetic.name)
    config = load_config(write(tmp_path, tree))
    assert config.data.path == str(small_synthetic.resolve())


def test_synthesize_creates_missing_data(tmp_path):
    tree = config_tree(tmp_path / "made")
    tree["data"]["synthesize"] = {"train": 4, "val": 2, "test": 2, "size": [32, 32]}
    config = load_config(write(tmp_path, tree))
    assert (tmp_path / "made" / "manifest.json").is_file() and config.data.path.endswith("made")


@pytest.mark.parametrize("change,message", [
    ({"train": {"epochz": 3}}, r"train\.epochz: unknown key"),
    ({"train": {"epochs": "three"}}, r"train\.epochs: Input should be a valid integer.*'three'"),
    ({"model": {"cen": {"threshold": -0.1}}}, r"model\.cen\.threshold: Input should be greater than or equal to 0"),
    ({"model": {"cen": {"portion": 0.8}}}, r"model\.cen\.portion must be <= 1/M = 0\.5 for 2 modalities, got 0\.8"),
    ({"model": {"name": "cne"}},
     r"model\.name: unknown model 'cne'; expected one of \['asymfusion', 'attention', 'average', 'cen'"),
    ({"model": {"backbone": "resnet18"}}, r"model\.backbone: unknown backbone 'resnet18'"),
    ({"data": {"modalities": ["rgb", "hha"]}}, r"data\.modalities: \['hha'\] not in dataset 'synthetic-rgbd'"),
    ({"data": {"modalities": ["rgb"]}}, r"model cen needs at least 2 modalities"),
    ({"resources": {"num_workers": 0}}, r"resources\.num_workers: Input should be greater than or equal to 1"),
    ({"train": {"optimizer": "lion"}}, r"train\.optimizer: Input should be 'sgd' or 'adam'"),
])
def test_bad_values_are_named(small_synthetic, change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config_tree(small_synthetic, **change))


def test_missing_dataset_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.path: .*nothing: no manifest.json.*fusionlab data synth"):
        parse_config(config_tree(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="data: required key is missing"):
        parse_config({"model": {"name": "cen"}})


def test_set_syntax_errors(small_synthetic, tmp_path):
    path = write(tmp_path, config_tree(small_synthetic))
    with pytest.raises(ConfigError, match="--set expects key=value"):
        load_config(path, ["train.epochs"])
    with pytest.raises(ConfigError, match=r"train\.epohcs: unknown key"):
        load_config(path, ["train.epohcs=2"])
