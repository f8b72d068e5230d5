"""``resources.storage_path``: where Ray Train keeps a run and its checkpoints (``RunConfig.storage_path``). A bucket
end to end (checkpoints in S3, a run resumed from them) is tests/cluster/test_production_topology.py."""

import pytest

from fusionlab.config import ConfigError, validate_config

SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCY"


def resources(**values) -> dict:
    return {"data": {"path": "/data/nyudv2"}, "model": {"name": "cen"}, "resources": values}


@pytest.mark.parametrize(("given", "kept"), [
    (None, None),
    ("s3://bucket/fusionlab/ray_results/", "s3://bucket/fusionlab/ray_results"),
    ("gs://bucket/ray", "gs://bucket/ray"),
    ("s3://bucket/ray?endpoint_override=127.0.0.1:9000&scheme=http", "s3://bucket/ray?endpoint_override="
                                                                     "127.0.0.1:9000&scheme=http"),
    ("/mnt/fusionlab/ray_results", "/mnt/fusionlab/ray_results"),
])
def test_storage_path_is_a_uri_or_an_absolute_path(given, kept):
    assert validate_config(resources(storage_path=given)).resources.storage_path == kept


def test_a_relative_storage_path_is_refused():
    with pytest.raises(ConfigError, match=r"resources\.storage_path: expected an absolute path or a URI"):
        validate_config(resources(storage_path="ray_results"))


@pytest.mark.parametrize("uri", [
    f"s3://AKIAIOSFODNN7EXAMPLE:{SECRET}@bucket/ray",
    f"s3://bucket/ray?access_key=AKIAIOSFODNN7EXAMPLE&secret_key={SECRET}",
    f"s3://bucket/ray?session_token={SECRET}",
])
def test_credentials_in_the_storage_path_are_refused_without_being_shown(uri):
    with pytest.raises(ConfigError, match=r"resources\.storage_path: holds credentials") as error:
        validate_config(resources(storage_path=uri))
    assert SECRET not in str(error.value)


def test_run_ray_keeps_the_run_in_the_storage_path(tmp_path, monkeypatch, stand_in_trainer):
    """The trainer's ``RunConfig.storage_path``: ``<workdir>/ray_results`` by default, else the config's (no Ray is
    started: the trainer is a stand-in)."""
    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.train import driver
    from fusionlab.train.prepare import parse_config

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    data = tmp_path / "synthetic"
    write_synthetic(data, train=8, val=2, test=2, size=(48, 64), seed=0)
    built = stand_in_trainer
    tree = {"data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
            "model": {"name": "cen", "backbone": "resnet_mini"}, "resources": {"use_gpu": False}}
    driver.run_ray(parse_config(tree, origin="test"), tmp_path / "runs")
    assert built["run_config"].storage_path == str((tmp_path / "runs" / "ray_results").resolve())
    tree["resources"]["storage_path"] = "s3://bucket/fusionlab/ray_results"
    driver.run_ray(parse_config(tree, origin="test"), tmp_path / "runs")
    assert built["run_config"].storage_path == "s3://bucket/fusionlab/ray_results"
