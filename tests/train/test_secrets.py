"""No secret of a tracking URI reaches a param, tag, artifact, checkpoint, trial config or message
(fusionlab/credentials.py); the store is still reached with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from train_configs import config_tree

from fusionlab.cli import main
from fusionlab.credentials import redact_text, redact_uri, reveal_uri
from fusionlab.errors import FusionlabError
from fusionlab.tracking.runs import artifact_location
from fusionlab.train.driver import run_local
from fusionlab.train.prepare import parse_config

SECRET = "hunter2-Xq9"


def secret_store(tmp_path: Path) -> str:
    """An SQLite store whose URI carries a secret (SQLAlchemy ignores the query argument), so a whole run can be
    made against it here; PostgreSQL's password is the same case (tests/cluster/test_production_topology.py)."""
    return f"sqlite:///{tmp_path / 'store.db'}?password={SECRET}"


@pytest.mark.parametrize(("uri", "redacted"), [
    ("postgresql://mlflow:" + SECRET + "@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
    ("https://alice:" + SECRET + "@mlflow.example/", "https://alice:***@mlflow.example/"),
    ("http://127.0.0.1:5000?token=" + SECRET + "&x=1", "http://127.0.0.1:5000?token=***&x=1"),
    ("postgresql://mlflow@db/mlflow", "postgresql://mlflow@db/mlflow"),
    ("sqlite:////abs/path/mlflow.db", "sqlite:////abs/path/mlflow.db"),
])
def test_redact(uri, redacted):
    assert redact_uri(uri) == redacted
    if SECRET in uri:  # a driver's message may quote the URI, or the password alone
        assert SECRET not in redact_text(f"could not connect to {uri}: password {SECRET} refused", uri)


def test_the_config_keeps_the_redacted_uri_and_the_environment_the_secret(small_synthetic):
    uri = f"postgresql://mlflow:{SECRET}@db:5432/mlflow"
    config = parse_config(config_tree(small_synthetic, tracking={"experiment": "secrets", "uri": uri}))
    assert config.tracking.uri == "postgresql://mlflow:***@db:5432/mlflow"
    assert SECRET not in str(config.model_dump()) and SECRET not in str(config.flat())
    assert os.environ["MLFLOW_TRACKING_URI"] == uri and reveal_uri(config.tracking.uri) == uri


def test_a_redacted_uri_whose_secret_is_not_in_the_environment_names_the_way_out():
    with pytest.raises(FusionlabError, match=r"needs its secret.*MLFLOW_TRACKING_URI.*every node"):
        reveal_uri("postgresql://mlflow:***@db:5432/mlflow")


def test_a_run_tracked_in_a_store_whose_uri_has_a_secret_records_none_of_it(small_synthetic, tmp_path):
    uri = secret_store(tmp_path)
    config = parse_config(config_tree(small_synthetic, train={"epochs": 1}, tracking={"experiment": "s", "uri": uri}))
    run_local(config, tmp_path / "work")

    client = MlflowClient(uri)
    run, = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    assert run.data.params["tracking.uri"] == redact_uri(uri)
    recorded = [*run.data.params.items(), *run.data.tags.items()]
    assert not [item for item in recorded if SECRET in str(item)]
    artifacts = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "artifacts")))
    files = [path for path in artifacts.rglob("*") if path.is_file()]
    assert files and not [path for path in files if SECRET.encode() in path.read_bytes()]
    checkpoints = [path for path in (tmp_path / "work").rglob("*") if path.is_file()]
    assert any(path.name == "checkpoint.pt" for path in checkpoints)
    assert not [path for path in checkpoints if SECRET.encode() in path.read_bytes()]


def test_the_cli_tracks_in_the_store_mlflow_tracking_uri_names(small_synthetic, tmp_path, monkeypatch, capsys):
    import yaml

    elsewhere = tmp_path / "elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere}")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_tree(small_synthetic, train={"epochs": 1}, tracking={"experiment": "e"})))
    assert main(["--workdir", str(tmp_path / "work"), "train", str(config), "--local"]) == 0
    assert elsewhere.is_file() and not (tmp_path / "work" / "mlflow.db").exists()
    client = MlflowClient(f"sqlite:///{elsewhere}")
    assert client.search_runs([client.get_experiment_by_name("e").experiment_id])


def test_artifacts_go_where_the_store_keeps_them(tmp_path, monkeypatch):
    local = tmp_path / "mlartifacts"
    assert artifact_location("http://127.0.0.1:5000", local) is None  # the server's own: mlflow-artifacts:
    assert artifact_location("https://mlflow.example", local) is None
    assert artifact_location(f"sqlite:///{tmp_path}/mlflow.db", local) == local.resolve().as_uri()
    monkeypatch.setenv("FUSIONLAB_ARTIFACT_ROOT", "s3://bucket/fusionlab/mlartifacts/")
    assert artifact_location("postgresql://mlflow@db/mlflow", local) == "s3://bucket/fusionlab/mlartifacts"
