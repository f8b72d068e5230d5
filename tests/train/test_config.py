"""One config schema: validated at load, unknown keys and bad values named, --set overrides."""

import pytest
import yaml
from train_configs import config_tree

from fusionlab.config import ConfigError
from fusionlab.train.prepare import load_config, parse_config


def write(tmp_path, tree):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_valid_config_loads_with_defaults_and_overrides(small_synthetic, tmp_path):
    path = write(tmp_path, config_tree(small_synthetic))
    config = load_config(path, ["train.epochs=7", "model.params.lambda=1e-3", "resources.num_workers=2"])
    assert config.train.epochs == 7 and config.model.params["lambda"] == 1e-3 and config.resources.num_workers == 2
    flat = config.flat()
    assert flat["model.params.lambda"] == 1e-3 and flat["model.params.threshold"] == 0.02
    assert flat["model.name"] == "cen"
    # the fusionlab recipe adds the penalty once: the effective weight is lambda itself
    assert config.model.build_kwargs(2) == {"width": 1.0, "rcu_residual": "pre_activation", "threshold": 0.02,
                                            "portion": None, "l1_lambda": 1e-3, "sparsity": "loss"}


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
    ({"model": {"params": {"threshold": -0.1}}},
     r"model\.params\.threshold: Input should be greater than or equal to 0"),
    ({"model": {"params": {"portion": 0.8}}},
     r"model\.params\.portion must be in \(0, 1/M\] = \(0, 0\.5\] for 2 modalities.*got 0\.8"),
    ({"model": {"name": "cne"}},
     r"model\.name: unknown model 'cne'; expected one of \['asymfusion', 'asymfusion_shift_only', "),
    ({"model": {"backbone": "resnet18"}}, r"model\.backbone: unknown backbone 'resnet18'"),
    ({"data": {"modalities": ["rgb", "hha"]}}, r"data\.modalities: \['hha'\] not in dataset 'synthetic-rgbd'"),
    ({"data": {"modalities": ["rgb"]}}, r"model cen needs at least 2 modalities"),
    ({"resources": {"num_workers": 0}}, r"resources\.num_workers: Input should be greater than or equal to 1"),
    ({"train": {"optimizer": "lion"}}, r"train\.optimizer: Input should be 'sgd', 'adam' or 'adamw'"),
    ({"model": {"eval_scales": [0.5, -1.0]}}, r"model\.eval_scales: .*scale -1 is out of bounds \(each in \(0, 4\].*"
                                              r"got \[0\.5, -1\.0\]"),
    ({"model": {"eval_scales": [1.0, 1e9]}}, r"model\.eval_scales: .*scale 1e\+09 is out of bounds"),
    ({"model": {"eval_scales": []}}, r"model\.eval_scales: List should have at least 1 item"),
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


def test_yaml_and_set_values_of_every_type_still_parse(small_synthetic, tmp_path):
    tree = config_tree(small_synthetic, resources={"use_gpu": "auto", "cpus_per_worker": 1})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree).replace("lr_encoder: 0.001", "lr_encoder: 1e-3"))
    assert yaml.safe_load(path.read_text())["train"]["lr_encoder"] == "1e-3"  # PyYAML reads it as a string
    config = load_config(path, ["data.hflip=false", "train.lr_decoder=[1e-3, 5e-4]",
                                "resources.use_gpu=false", "train.keep_checkpoints=3", "model.params.lambda=0"])
    assert config.train.lr_encoder == 1e-3 and config.train.lr_decoder == [1e-3, 5e-4]
    assert config.data.hflip is False and config.resources.use_gpu is False and config.train.keep_checkpoints == 3
    assert config.model.params["lambda"] == 0 and config.resources.cpus_per_worker == 1.0


@pytest.mark.parametrize("change,message", [
    ({"train": {"epochs": True}}, r"train\.epochs: Input should be a valid integer \(got True\)"),
    ({"train": {"batch_size": 4.0}}, r"train\.batch_size: Input should be a valid integer \(got 4\.0\)"),
    ({"train": {"epochs": "3"}}, r"train\.epochs: Input should be a valid integer \(got '3'\)"),
    ({"data": {"hflip": 1}}, r"data\.hflip: Input should be a valid boolean \(got 1\)"),
    ({"resources": {"use_gpu": "yes"}}, r"resources\.use_gpu: Input should be a valid boolean or .*\(got 'yes'\)"),
    ({"train": {"lr_encoder": float("nan")}}, r"train\.lr_encoder: Input should be a finite number.*\(got nan\)"),
    ({"train": {"lr_decoder": [1e-3, float("inf")]}}, r"train\.lr_decoder\.1: Input should be a finite number"),
    ({"train": {"lr_encoder": 0}}, r"train\.lr_encoder: expected a finite learning rate > 0.*\(got 0\)"),
    ({"train": {"lr_decoder": [0.0, 0.0]}}, r"train\.lr_decoder: expected a finite learning rate > 0.*at least one"),
    ({"train": {"lr_decoder": [1e-3, -1e-3]}}, r"train\.lr_decoder: expected a finite learning rate > 0"),
    ({"train": {"lr_encoder": True}}, r"train\.lr_encoder: expected a number, not a boolean"),
    ({"train": {"gan": {"lr_discriminator": float("nan")}}}, r"train\.gan\.lr_discriminator: .*finite number"),
    ({"model": {"params": {"lambda": float("nan")}}}, r"model\.params\.lambda: Input should be a finite number"),
    ({"model": {"params": {"lambda": float("inf")}}}, r"model\.params\.lambda: Input should be a finite number"),
    ({"model": {"params": {"lambda": -1e-4}}}, r"model\.params\.lambda: Input should be greater than or equal to 0"),
    ({"train": {"keep_checkpoints": 0}}, r"train\.keep_checkpoints: Input should be greater than or equal to 1"),
], ids=["epochs-true", "batch-float", "epochs-string", "hflip-1", "use_gpu-yes", "lr-nan", "lr-list-inf", "lr-0",
        "lr-list-all-0", "lr-list-negative", "lr-true", "lr_discriminator-nan", "lambda-nan", "lambda-inf",
        "lambda-negative",
        "keep_checkpoints-0"])
def test_lax_and_non_finite_values_are_refused(small_synthetic, change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config_tree(small_synthetic, **change))


def search(**space):
    return {"space": space, "num_samples": 2}


@pytest.mark.parametrize("space,message", [
    ({"model.params.threshold": {"type": "choice", "values": [0.01, -0.5]}},
     r"search\.space\.model\.params\.threshold: value -0\.5: model\.params\.threshold: Input should be greater "
     r"than or equal to 0"),
    ({"train.lr_encoder": {"type": "uniform", "low": 0, "high": 1e-2}},
     r"search\.space\.train\.lr_encoder: low 0\.0: train\.lr_encoder: expected a finite learning rate > 0"),
    ({"train.momentum": {"type": "uniform", "low": 0.5, "high": 1.5}},
     r"search\.space\.train\.momentum: high 1\.5: train\.momentum: Input should be less than 1"),
    ({"train.epochs": {"type": "uniform", "low": 1, "high": 4}},
     r"search\.space\.train\.epochs: low 1\.0: train\.epochs: Input should be a valid integer"),
    ({"train.optimizer": {"type": "choice", "values": ["adam", "lion"]}},
     r"search\.space\.train\.optimizer: value 'lion': train\.optimizer: Input should be 'sgd', 'adam' or 'adamw'"),
], ids=["choice-below-limit", "range-low-lr-0", "range-high-above-limit", "float-range-on-int-field",
        "choice-not-a-literal"])
def test_search_values_outside_field_limits_are_refused_at_load(small_synthetic, space, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config_tree(small_synthetic, search=search(**space)))


def test_search_values_inside_field_limits_load(small_synthetic):
    config = parse_config(config_tree(small_synthetic, search=search(**{
        "train.lr_encoder": {"type": "loguniform", "low": 1e-5, "high": 1e-2},
        "train.batch_size": {"type": "int", "low": 2, "high": 4},
        "model.params.sparsity": {"type": "choice", "values": ["loss", "proximal"]}})))
    assert set(config.search.space) == {"train.lr_encoder", "train.batch_size", "model.params.sparsity"}


def test_a_batch_larger_than_the_train_split_is_refused(small_synthetic):
    from fusionlab.train.prepare import check_batch_fits

    check_batch_fits(parse_config(config_tree(small_synthetic, train={"batch_size": 32})), workers=1)  # 32 rows
    with pytest.raises(ConfigError, match=r"train\.batch_size 33 is larger than data\.train_split 'train' "
                                          r"\(32 rows\)"):
        check_batch_fits(parse_config(config_tree(small_synthetic, train={"batch_size": 33})), workers=1)
    with pytest.raises(ConfigError, match=r"train\.batch_size 17 .* \(32 rows, 16 per worker for 2 workers\)"):
        check_batch_fits(parse_config(config_tree(small_synthetic, train={"batch_size": 17})), workers=2)
    union = config_tree(small_synthetic, data={"train_split": ["train", "test"]}, train={"batch_size": 40})
    check_batch_fits(parse_config(union), workers=1)  # 32 + 8 rows
    space = {"train.batch_size": {"type": "int", "low": 4, "high": 64}}
    searched = config_tree(small_synthetic, search=search(**space))
    with pytest.raises(ConfigError, match=r"search\.space\.train\.batch_size 64 is larger .* \(32 rows\)"):
        check_batch_fits(parse_config(searched), workers=1)
