"""The MLflow UI as a person uses it: a grid tracked by `fusionlab grid`, a real `mlflow server` over the store,
its REST API and artifact endpoint, and headless Chromium rendering the experiment's runs."""

import os
import shutil
import urllib.parse
from pathlib import Path

import pytest
from mlflow_server import api, fetch, mlflow_server

from fusionlab.cli import main
from fusionlab.data.synthetic import write_synthetic

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

pytestmark = pytest.mark.slow

GRID_NAME = "ui-grid"
CHILD_RUNS = {"rgb-only-seed0": "unimodal", "cen-seed0": "cen"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRID_YAML = """\
grid:
  name: {name}
  seeds: [0]
base:
  data: {{path: {data}, modalities: [rgb, depth], crop: [48, 64]}}
  model: {{backbone: resnet_mini}}
  train: {{epochs: 1, batch_size: 4, optimizer: adam, lr_encoder: 1.0e-3, lr_decoder: 1.0e-3}}
  resources: {{num_workers: 1}}
cells:
  - label: RGB only
    set: {{model.name: unimodal, model.params.modality: rgb, data.modalities: [rgb]}}
  - label: CEN
    set: {{model.name: cen}}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The demo's store in small: a 2-cell grid run with `fusionlab grid --local` on a tiny synthetic dataset."""
    root = tmp_path_factory.mktemp("mlflow-ui")
    write_synthetic(root / "data", train=8, val=4, test=4, size=(48, 64), seed=0)
    grid = root / "grid.yaml"
    grid.write_text(GRID_YAML.format(name=GRID_NAME, data=root / "data"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # MLflow's Default experiment points at ./mlruns: keep it out of the repo
        assert main(["--workdir", str(root / "runs"), "grid", str(grid), "--local", "--set", "train.epochs=1"]) == 0
    return root / "runs"


@pytest.fixture(scope="module")
def server(workdir):
    with mlflow_server(f"sqlite:///{workdir / 'mlflow.db'}", workdir / "mlartifacts",
                       workdir / "mlflow-server.log") as base_url:
        yield base_url


def experiment_id(base_url: str) -> str:
    return api(base_url, f"experiments/get-by-name?experiment_name={GRID_NAME}")["experiment"]["experiment_id"]


def test_rest_api_serves_the_grid_runs_and_their_artifacts(server):
    eid = experiment_id(server)
    experiment = api(server, f"experiments/get?experiment_id={eid}")["experiment"]
    kind = {t["key"]: t["value"] for t in experiment.get("tags", [])}.get("mlflow.experimentKind")
    assert kind == "custom_model_development", "MLflow would type the experiment as GenAI development"
    runs = api(server, "runs/search", {"experiment_ids": [eid], "max_results": 100})["runs"]
    tags = {run["info"]["run_id"]: {t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs}
    parents = [run for run in runs if tags[run["info"]["run_id"]].get("fusionlab.kind") == "grid"]
    assert len(parents) == 1, [run["info"]["run_name"] for run in runs]
    parent_id = parents[0]["info"]["run_id"]
    children = {run["info"]["run_name"]: run for run in runs if run["info"]["run_id"] != parent_id}
    assert set(children) == set(CHILD_RUNS)

    models = api(server, "logged-models/search", {"experiment_ids": [eid]})["models"]
    model_runs = {m["info"]["source_run_id"] for m in models if m["info"]["status"] == "LOGGED_MODEL_READY"}
    for name, run in children.items():
        run_id = run["info"]["run_id"]
        assert run["info"]["status"] == "FINISHED", name
        assert tags[run_id]["mlflow.parentRunId"] == parent_id, name
        assert {p["key"]: p["value"] for p in run["data"]["params"]}["model.name"] == CHILD_RUNS[name]
        miou = {m["key"]: m["value"] for m in run["data"]["metrics"]}["val/miou"]
        assert 0.0 <= miou <= 1.0, (name, miou)
        history = api(server, f"metrics/get-history?run_id={run_id}&metric_key={urllib.parse.quote('val/miou')}")
        assert history["metrics"] and history["metrics"][-1]["value"] == pytest.approx(miou), name
        assert run_id in model_runs, f"{name}: no logged model"

    run_id = children["rgb-only-seed0"]["info"]["run_id"]
    listed = api(server, f"artifacts/list?run_id={run_id}&path=plots")["files"]
    assert "plots/predictions.png" in {f["path"] for f in listed}, listed
    status, content_type, body = fetch(f"{server}/get-artifact?path=plots/predictions.png&run_uuid={run_id}")
    assert (status, content_type) == (200, "image/png")
    assert body.startswith(PNG_MAGIC) and len(body) > 1000


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; a skip where it is missing, a failure where FUSIONLAB_REQUIRE_BROWSER=1 (CI).

    Module-scoped and requested before ``server``, so a missing browser is reported before the store is built.
    """
    chromium = Path(os.environ.get("FUSIONLAB_CHROMIUM", "/usr/bin/chromium"))
    if not chromium.exists():
        reason = f"no Chromium at {chromium} (apt-get install chromium, or set FUSIONLAB_CHROMIUM)"
        if os.environ.get("FUSIONLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; FUSIONLAB_REQUIRE_BROWSER=1 demands it")
        pytest.skip(reason)
    return chromium


def _keep(shots: list[Path]) -> None:
    """Copy screenshots to FUSIONLAB_SCREENSHOT_DIR when it is set (CI artifacts, a reviewer's eyes)."""
    if target := os.environ.get("FUSIONLAB_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy2(shot, Path(target) / shot.name)


def test_browser_shows_the_grid_runs(chromium, server, tmp_path):
    from playwright.sync_api import sync_playwright  # drives the system Chromium: nothing is downloaded

    eid = experiment_id(server)
    shots = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=["--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(30_000)
        try:
            # MLflow 3 opens an experiment in its GenAI mode, whose first-visit popovers block clicks at random
            # moments; its own "Model training" switch navigates to this URL, which lands on the runs table.
            page.goto(f"{server}/#/experiments/{eid}?workflowType=machine_learning")
            close_assistant = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
            if close_assistant.count():
                close_assistant.first.click()
            parent = page.locator('[role="row"]', has_text=f"grid-{GRID_NAME}").first
            parent.wait_for()
            # Child runs are nested under the grid's parent run: expand it as a person would.
            parent.locator('button[data-component-id*="runnamecellrenderer"]').first.click()
            for name in CHILD_RUNS:
                page.get_by_role("link", name=name, exact=True).wait_for()
                assert page.get_by_role("link", name=name, exact=True).is_visible(), name
            shots.append(tmp_path / "mlflow-ui-experiment.png")
            page.screenshot(path=shots[-1])

            page.get_by_role("link", name="rgb-only-seed0", exact=True).click()
            page.get_by_text("val/miou", exact=True).first.wait_for()
            page.get_by_role("link", name=f"grid-{GRID_NAME}", exact=True).wait_for()  # the parent run, linked
            shots.append(tmp_path / "mlflow-ui-run.png")
            page.screenshot(path=shots[-1], full_page=True)
        except Exception:
            shots.append(tmp_path / "mlflow-ui-failure.png")
            page.screenshot(path=shots[-1], full_page=True)
            raise
        finally:
            browser.close()
            _keep(shots)
    assert all(shot.read_bytes().startswith(PNG_MAGIC) for shot in shots)
