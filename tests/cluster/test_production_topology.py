"""The cluster job's topology on one machine (tests/production.py): an MLflow server with its store in PostgreSQL and
its artifacts in S3, and Ray Train keeping its checkpoints in the same bucket (``resources.storage_path``).

What a cluster user relies on: the servers start and stop cleanly, on loopback only; a training run on Ray tracks to
the server, its model and plots land in the bucket through it, its checkpoints land in the bucket through pyarrow, a
run started again resumes from the bucket's checkpoint, and no password is recorded anywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import production
from fusionlab.train.checkpoint import CHECKPOINT_FILE, load_checkpoint
from production import (
    ARTIFACTS_PREFIX,
    assert_stopped,
    group_pids,
    listen_addresses,
    mlflow_on,
    postgres_cluster,
    require_postgres,
    s3_server,
)

EXPERIMENT = "production"
RAY_PREFIX = "ray_results"


def test_missing_postgres_skips_or_fails_where_ci_requires_it(monkeypatch):
    monkeypatch.setattr(production, "POSTGRES_GLOB", "/nonexistent/postgresql/*/bin/initdb")
    monkeypatch.delenv(production.REQUIRE_POSTGRES_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not installed"):
        require_postgres()
    monkeypatch.setenv(production.REQUIRE_POSTGRES_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="FUSIONLAB_REQUIRE_POSTGRES=1 demands it"):
        require_postgres()


@pytest.mark.slow
def test_servers_start_on_loopback_and_stop_cleanly(tmp_path, monkeypatch):
    """PostgreSQL refuses a wrong password; S3 keeps what is put; the MLflow server proxies a run's artifact to the
    bucket. After each block: its processes gone, its port closed."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    bin_dir = require_postgres()
    with postgres_cluster(bin_dir) as postgres, s3_server(tmp_path) as s3, mlflow_on(postgres, s3, tmp_path) as server:
        servers = {"postgres": ([postgres.pid], postgres.port), "moto_server": ([s3.pid], s3.port),
                   "mlflow server": ([server.pid, *group_pids(server.pid)], server.port)}
        for name, (_, port) in servers.items():
            assert listen_addresses(port) == {"127.0.0.1"}, name

        with postgres.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone() == (postgres.user,)
        import psycopg2

        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            postgres.connect(password="not-" + postgres.password)

        s3.client().put_object(Bucket=s3.bucket, Key="probe/hello.txt", Body=b"hello")
        assert s3.keys("probe/") == ["probe/hello.txt"]

        client = MlflowClient(server.url)
        experiment_id = client.create_experiment("topology")
        assert client.get_experiment(experiment_id).artifact_location == f"mlflow-artifacts:/{experiment_id}"
        run_id = client.create_run(experiment_id).info.run_id
        client.log_text(run_id, "hello", "notes/hello.txt")
        expected = f"{ARTIFACTS_PREFIX}/{experiment_id}/{run_id}/artifacts/notes/hello.txt"
        assert s3.keys(f"{ARTIFACTS_PREFIX}/") == [expected]
        for log in (server.log, postgres.log, tmp_path / "moto-server.log"):
            text = log.read_text(errors="replace")
            assert not any(secret in text for secret in (*postgres.secrets, s3.secret_key)), f"a password in {log}"
    # The context managers assert it too as they leave; checked here in so many words.
    for name, (pids, port) in servers.items():
        assert_stopped(name, pids, port, timeout=0)


@pytest.fixture
def ray_with_s3_env(production_s3_env, no_ray_in_process, _local_ray_starter):
    """This process's local Ray, started after the bucket's credentials and endpoint are in the environment: its
    processes (the Train controller, the workers) inherit them, as a cluster's nodes have theirs. Shut down after the
    test, so no later test's Ray carries them."""
    ray = _local_ray_starter()
    yield ray
    ray.shutdown()


def epoch_recorder(path: Path):
    """A Ray Train callback appending each reported epoch to ``path`` (it runs in the Train controller, a Ray actor:
    defined in a function, so that Ray pickles the class itself rather than a reference to this test module)."""
    from ray.train import UserCallback

    class EpochRecorder(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            with open(path, "a") as out:
                out.write(f"{int(metrics[0]['epoch'])}\n")

    return EpochRecorder()


def checkpoint_dirs(s3, run_name: str) -> set[str]:
    """The run's checkpoint directories in the bucket: those of its keys that hold a checkpoint file."""
    pattern = re.compile(rf"{RAY_PREFIX}/{re.escape(run_name)}/([^/]+)/{re.escape(CHECKPOINT_FILE)}")
    return {match.group(1) for key in s3.keys(f"{RAY_PREFIX}/{run_name}/") if (match := pattern.fullmatch(key))}


@pytest.mark.slow
@pytest.mark.ray_experiment
def test_ray_run_tracks_to_the_server_and_checkpoints_to_s3(production_mlflow, production_postgres, production_s3,
                                                            ray_with_s3_env, tmp_path):
    """One epoch on Ray (1 worker, 48x64 images), then the same run with 2 epochs: it resumes from its checkpoint in
    the bucket (the second launch trains the second epoch only) and continues its MLflow run, whose model and plots
    are in the bucket under mlartifacts/."""
    from mlflow.tracking import MlflowClient

    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.tracking import load_model
    from fusionlab.train.driver import run_ray
    from fusionlab.train.prepare import parse_config

    s3, server = production_s3, production_mlflow
    data, workdir = tmp_path / "data", tmp_path / "runs"
    write_synthetic(data, train=8, val=4, test=4, size=(48, 64), seed=0)
    tree = {"data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
            "model": {"name": "cen", "backbone": "resnet_mini"},
            "train": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
            "resources": {"num_workers": 1, "use_gpu": False, "storage_path": f"s3://{s3.bucket}/{RAY_PREFIX}"},
            "tracking": {"uri": server.url, "experiment": EXPERIMENT}}
    epochs = tmp_path / "epochs.txt"
    config = parse_config(tree, origin="test")
    run_name = config.run_name()

    run_ray(config, workdir, callbacks=[epoch_recorder(epochs)])
    assert epochs.read_text().split() == ["0"]
    first = checkpoint_dirs(s3, run_name)
    assert len(first) == 1, s3.keys(RAY_PREFIX)
    assert not (workdir / "ray_results").exists(), "Ray Train wrote the run on the local disk"

    tree["train"]["epochs"] = 2
    epochs.unlink()
    run_ray(parse_config(tree, origin="test"), workdir, callbacks=[epoch_recorder(epochs)])
    assert epochs.read_text().split() == ["1"], "the second launch should resume after the bucket's checkpoint"
    latest = sorted(checkpoint_dirs(s3, run_name) - first)
    assert len(latest) == 1, s3.keys(RAY_PREFIX)
    local = tmp_path / "latest"
    local.mkdir()
    s3.client().download_file(s3.bucket, f"{RAY_PREFIX}/{run_name}/{latest[0]}/{CHECKPOINT_FILE}",
                              str(local / CHECKPOINT_FILE))
    assert load_checkpoint(local)["epoch"] == 1

    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment_id}"
    (run,) = client.search_runs([experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "FINISHED" and run.data.tags["fusionlab.starts"] == "2"
    assert sorted(m.step for m in client.get_metric_history(run_id, "train/loss")) == [0, 1]
    assert run.data.params["resources.storage_path"] == f"s3://{s3.bucket}/{RAY_PREFIX}"

    artifacts = s3.keys(f"{ARTIFACTS_PREFIX}/{experiment_id}/")
    assert f"{ARTIFACTS_PREFIX}/{experiment_id}/{run_id}/artifacts/plots/predictions.png" in artifacts, artifacts
    models = client.search_logged_models(experiment_ids=[experiment_id])  # each launch that finished logged one
    assert len(models) == 2 and {model.source_run_id for model in models} == {run_id}
    for model in models:
        files = f"{ARTIFACTS_PREFIX}/{experiment_id}/models/{model.model_id}/artifacts/"
        assert f"{files}MLmodel" in artifacts, artifacts
    # Read back from the bucket through the server, by the model's id: MLflow 3.18's proxy answers a missing S3 key
    # with HTTP 500, not 404 (mlflow/mlflow#24535), so `runs:/<run>/model`, whose first try is the run's own
    # artifacts, is retried with backoff for about 4 minutes before MLflow looks for the logged model.
    assert load_model(f"models:/{models[0].model_id}", server.url) is not None

    secrets = (*production_postgres.secrets, s3.secret_key)
    recorded = [*run.data.params.items(), *run.data.tags.items(), *experiment.tags.items(),
                *(item for model in models for item in [*model.params.items(), *model.tags.items()])]
    for key, value in recorded:
        assert not any(secret in value for secret in secrets), f"{key} holds a password"
    log = server.log.read_text(errors="replace")
    assert not any(secret in log for secret in secrets), "the MLflow server's log holds a password"
