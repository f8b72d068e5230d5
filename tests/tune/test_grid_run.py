"""`fusionlab grid` as a Ray Tune experiment of its cells: a failing cell fails alone, a killed grid resumes where it
stopped (finished cells untouched, interrupted cells from their checkpoints in their own MLflow runs), and the
dry-run table says where each run stands."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from fusionlab.data.synthetic import write_synthetic
from fusionlab.tracking import default_tracking_uri
from process_group import kill_group
from ray_head import ray_cli, ray_head, refuses_a_wrong_token, wait_for_jobs_api
from tiny_grids import DIVERGES, UNIMODAL_RGB, fusionlab, grid_runs, logged_epochs, write_grid


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic(out, train=8, val=4, test=4, size=(48, 64), seed=0)
    return out


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("COLUMNS", "200")


def snapshot(client: MlflowClient, run) -> dict:
    """What must not change about a finished run when its grid is launched again."""
    history = {key: [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run.info.run_id, key)]
               for key in run.data.metrics}
    return {"id": run.info.run_id, "status": run.info.status, "end": run.info.end_time, "tags": run.data.tags,
            "history": history}


def test_in_process_grid_a_failing_cell_fails_alone_and_a_rerun_keeps_the_done_cells(data, tmp_path, env, capsys):
    grid = write_grid(tmp_path / "grid.yaml", "local-fail", data,
                      [("RGB", UNIMODAL_RGB), ("Diverges", DIVERGES)], base={"train": {
                          "epochs": 1, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3}})
    workdir = tmp_path / "runs"
    rc, out = fusionlab(capsys, "--workdir", workdir, "grid", grid, "--resume")
    assert rc == 1 and "nothing to resume" in out and "without --resume" in out, out

    rc, out = fusionlab(capsys, "--workdir", workdir, "grid", grid, "--local")
    assert rc == 1, out
    assert "grid local-fail: 1 of 2 cells done; 1 failed: diverges-seed0 failed (TrainingDiverged" in out, out
    client, parent, children = grid_runs(workdir, "local-fail")
    assert parent.info.status == "FAILED"
    assert children["rgb-seed0"].info.status == "FINISHED" and children["diverges-seed0"].info.status == "FAILED"
    done_before = snapshot(client, children["rgb-seed0"])

    rc, out = fusionlab(capsys, "--workdir", workdir, "grid", grid, "--dry-run")
    assert rc == 0 and "total: 2 runs 1 done, 1 failed" in out, out
    rc, out = fusionlab(capsys, "--workdir", workdir, "report", "--experiment", "local-fail")
    assert rc == 0 and "Not in the table, 1 run(s) that did not finish: diverges-seed0 (Diverges): FAILED: " \
        "TrainingDiverged: training loss was not finite" in out, out

    rc, out = fusionlab(capsys, "--workdir", workdir, "grid", grid, "--local", "--resume")
    assert rc == 1 and "1 of 2 runs to train (1 done: rgb-seed0)" in out and "(1 already before this launch)" in out
    client, parent, children = grid_runs(workdir, "local-fail")
    assert snapshot(client, children["rgb-seed0"]) == done_before, "a done cell is neither trained nor logged again"
    assert children["diverges-seed0"].data.tags["fusionlab.starts"] == "2", "the failed cell was retried"

    # A finished cell the grid no longer describes is refused before anything runs, naming the run and the key.
    rc, out = fusionlab(capsys, "--workdir", workdir, "grid", grid, "--local", "--set", "train.batch_size=2")
    assert rc == 1 and "run 'rgb-seed0' already exists" in out and "train.batch_size: 4 -> 2" in out, out
    assert snapshot(client, grid_runs(workdir, "local-fail")[2]["rgb-seed0"]) == done_before


REPO = Path(__file__).resolve().parents[2]


def environment(marker: Path) -> dict:
    return {**os.environ, "RAY_TMPDIR": str(marker), "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0",
            "MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "200"}


def cli_command(workdir: Path, *argv) -> list[str]:
    return [sys.executable, "-m", "fusionlab.cli", "--workdir", str(workdir), *map(str, argv)]


def finished_cells(workdir: Path, experiment: str) -> dict[str, tuple[int, bool]]:
    """Run name -> (epochs logged, final model logged) for each run that has logged an epoch (read while the grid
    writes the store)."""
    try:
        client = MlflowClient(default_tracking_uri(workdir))
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        return {run.info.run_name: (len(client.get_metric_history(run.info.run_id, "train/loss")),
                                    run.data.tags.get("fusionlab.final") == "logged")
                for run in runs if "train/loss" in run.data.metrics}
    except Exception:  # the SQLite store busy with the cells' writes: ask again
        return {}


# Epochs of the cell the kill interrupts: enough that it still trains when A is done and B has failed, however
# slowly their Train runs start on a loaded machine (6 was too few once decoding moved off Ray Data)
LONG = 20


def store_has_runs(workdir: Path) -> bool:
    """Whether the grid has created its MLflow store and a run in it, read through a read-only connection: an
    MlflowClient opened on a store still being created runs its migrations beside the grid's, and the two collide
    (``_alembic_tmp_experiments already exists``)."""
    import contextlib
    import sqlite3

    db = workdir / "mlflow.db"
    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as connection:
            return connection.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError:  # no table yet
        return False


def cell_states(workdir: Path, experiment: str) -> dict[str, str]:
    """Run name -> MLflow status of each cell's run (read while the grid writes the store)."""
    try:
        client = MlflowClient(default_tracking_uri(workdir))
        found = client.get_experiment_by_name(experiment)
        return {run.info.run_name: run.info.status for run in client.search_runs([found.experiment_id])} \
            if found else {}
    except Exception:  # the SQLite store busy with the cells' writes: ask again
        return {}


@pytest.mark.slow
@pytest.mark.ray_experiment
def test_killed_grid_on_ray_resumes_where_it_stopped_and_a_failing_cell_fails_alone(data, tmp_path, capsys, env):
    """One grid on Ray, its three cells at once, launched, killed and resubmitted: A finishes and is left alone, B
    diverges (failed alone, never retried within a launch), C is interrupted and continues from its checkpoint in
    its own MLflow run; the resumed launch's last line says where B's logs are. (In process, the same failing cell:
    the first test of this module.)

    The first launch is `fusionlab grid` on the Ray it starts, killed with its process group; the second is the grid
    submitted again as a Ray job (`ray job submit` of experiments/submit.py, as docs/clusters.md does) to a
    fresh `ray start --head` with token auth: a grid continues on whichever cluster it is next submitted to, its
    record being the workdir's MLflow store and checkpoints."""
    cells = [("A", UNIMODAL_RGB), ("B", DIVERGES), ("C", {"model.name": "cen", "train.epochs": LONG})]
    grid = write_grid(tmp_path / "grid.yaml", "resume", data, cells, grid={"max_concurrent": 3},
                      base={"train": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3,
                                      "lr_decoder": 1e-3}})
    workdir, marker = tmp_path / "runs", Path(f"/tmp/flg-{os.getpid()}-k")
    try:
        with open(tmp_path / "first.log", "w") as log:
            first = subprocess.Popen(cli_command(workdir, "grid", grid), stdout=log, stderr=subprocess.STDOUT,
                                     env=environment(marker), start_new_session=True)
            deadline = time.time() + 600

            # A done, B failed; C logged two epochs, not all. Two: the checkpoint of an epoch is written before the
            # epoch is logged, but Ray Train records it in its run's state a moment later (its controller polls the
            # workers), so a kill right after the first epoch may find none to restore.
            def ready() -> bool:
                if not store_has_runs(workdir):
                    return False
                seen = finished_cells(workdir, "resume")
                return (seen.get("a-seed0", (0, False))[1] and cell_states(workdir, "resume").get("b-seed0") == "FAILED"
                        and 2 <= seen.get("c-seed0", (0, False))[0] < LONG)

            while not ready():
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
                assert time.time() < deadline, (tmp_path / "first.log").read_text()[-4000:]
                time.sleep(0.5)
            kill_group(first)
        shutil.rmtree(marker, ignore_errors=True)

        client, parent, children = grid_runs(workdir, "resume")
        assert parent.info.status == "RUNNING", "a killed driver ends nothing"
        assert children["a-seed0"].info.status == "FINISHED" and "test/miou" in children["a-seed0"].data.metrics
        failed = children["b-seed0"]
        assert failed.info.status == "FAILED" and failed.data.tags["fusionlab.error"].startswith("TrainingDiverged")
        assert failed.data.tags["fusionlab.starts"] == "1", "a divergence is not retried"
        done_before = snapshot(client, children["a-seed0"])
        interrupted = children["c-seed0"].info.run_id
        rc, out = fusionlab(capsys, "--workdir", workdir, "grid", grid, "--dry-run")
        assert rc == 0 and "total: 3 runs 1 done, 1 failed, 1 running" in out, out

        job_dir = tmp_path / "job"
        job_dir.mkdir()
        shutil.copy(REPO / "experiments" / "submit.py", job_dir)  # as `ray submit` copies the script to the head
        with ray_head() as head:
            wait_for_jobs_api(head)
            assert refuses_a_wrong_token(head), "the head accepted a wrong token: token auth is off"
            second = ray_cli(head, "job", "submit", "--address", head["address"], "--working-dir", str(job_dir),
                             "--", sys.executable, "submit.py", str(grid), "--workdir", str(workdir), timeout=600)
    finally:
        shutil.rmtree(marker, ignore_errors=True)
    output = second.stdout + second.stderr
    assert second.returncode == 1 and "failed" in output, output[-4000:]  # the job fails as its grid does
    table = " ".join(re.sub("[\u2500-\u257f]", " ", output).split())
    assert re.search("total: 3 runs .*1 running.* grid resume: ", table), "the dry-run table of the runs' states first"
    summaries = [line for line in second.stdout.splitlines() if line.startswith("grid resume: ")]
    assert summaries, output[-4000:]
    last = summaries[-1]
    assert last.startswith("grid resume: 2 of 3 cells done (1 already before this launch); 1 failed: b-seed0 failed "
                           "(TrainingDiverged"), output[-4000:]
    logs = Path(last.rsplit("logs: ", 1)[1])
    assert logs.is_file() and logs.is_relative_to(workdir / "grids" / "resume" / "launch-002"), last
    assert "TrainingDiverged" in logs.read_text()

    client, parent, children = grid_runs(workdir, "resume")
    assert parent.info.status == "FAILED" and len(children) == 3
    assert snapshot(client, children["a-seed0"]) == done_before, "A was trained or logged again"
    assert children["b-seed0"].info.status == "FAILED"
    assert children["b-seed0"].data.tags["fusionlab.starts"] == "2", "retried once per launch, never within one"
    run = children["c-seed0"]
    assert run.info.run_id == interrupted and run.info.status == "FINISHED", "continued in its own MLflow run"
    assert logged_epochs(client, interrupted) == list(range(LONG)), "each epoch logged once"
    assert run.data.tags["fusionlab.starts"] == "2" and "test/miou" in run.data.metrics
    # The second launch trained only C, from its checkpoint (and B, which diverged before reporting): its trial's
    # first report comes after epoch 0.
    reports = {}
    for result_file in (workdir / "grids" / "resume" / "launch-002").glob("*/result.json"):
        lines = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        if lines:
            reports[lines[0]["config"]["cell"]] = [line["epoch"] for line in lines]
    assert list(reports) == ["c-seed0"], reports
    epochs = reports["c-seed0"]
    assert epochs[0] >= 1 and epochs[-1] == LONG - 1 and epochs == sorted(set(epochs)), epochs
