"""Model files through the CLI: ``evaluate``, ``predict`` and ``report`` load a run's model only as fusionlab's weights
plus spec. A pickle planted as the model (the layout ``mlflow.pytorch`` wrote, or in place of the weights) is refused
and never runs; a spec that does not rebuild its weights, and a URI with no model behind it, are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from fusionlab.data import Manifest
from fusionlab.inference.servable import servable
from fusionlab.models import build
from fusionlab.models.model_files import SPEC_FILE, WEIGHTS_FILE, save_model_dir
from fusionlab.tracking import default_tracking_uri, ensure_experiment
from fusionlab.tracking.registry import RegistryError, _model_source
from fusionlab.tracking.runs import KIND_TAG, RunTracker


class Payload:
    """Unpickling this writes ``sentinel``, as an ``os.system`` payload in a planted model.pth would run a command."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return exec, (f"open({self.sentinel!r}, 'w').write('ran')",)


class Store:
    """A tracking store for the module (creating one costs seconds); each case gets a run of its own."""

    def __init__(self, workdir: Path, manifest: Manifest):
        self.workdir = workdir
        self.uri = default_tracking_uri(workdir)
        self.client = MlflowClient(self.uri)
        self.manifest = manifest

    def new_run(self, experiment: str) -> Run:
        return Run(self, experiment)


class Run:
    """A finished CEN training run (as ``report`` lists them) whose model a case plants."""

    def __init__(self, store: Store, experiment: str):
        self.client = store.client
        experiment_id = ensure_experiment(store.uri, experiment, store.workdir / "mlartifacts")
        tags = {KIND_TAG: "train", "fusionlab.model": "cen", "fusionlab.task": "segmentation",
                "fusionlab.dataset": store.manifest.name, "fusionlab.manifest_sha256": store.manifest.digest}
        self.run_id = self.client.create_run(experiment_id, run_name="cen-0", tags=tags).info.run_id
        self.client.log_param(self.run_id, "model.name", "cen")
        for metric in ("test/miou", "test/pixel_acc", "test/mean_acc", "val/miou"):
            self.client.log_metric(self.run_id, metric, 0.5, step=0)
        self.client.set_terminated(self.run_id)
        self.experiment = experiment
        self.model_uri = f"runs:/{self.run_id}/model"

    def log_model_dir(self, directory: Path) -> None:
        """``directory`` as the run's logged model ``model``, whatever it holds (as anyone who can write the
        artifact store could)."""
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        logged = self.client.create_logged_model(experiment_id, name="model", source_run_id=self.run_id)
        self.client.log_model_artifacts(logged.model_id, str(directory))
        self.client.finalize_logged_model(logged.model_id, "READY")


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_synthetic) -> Store:
    return Store(tmp_path_factory.mktemp("models") / "runs", Manifest.load(tiny_synthetic))


@pytest.fixture
def run(store, request) -> Run:
    """A run in an experiment of the case's own (``report`` reads a whole experiment)."""
    return store.new_run(f"models-{request.node.name}")


def fusionlab_model_dir(directory: Path, data: Path) -> Path:
    manifest = Manifest.load(data)
    model = build("cen", backbone="resnet_mini", num_classes=manifest.label.num_classes,
                  modalities=list(manifest.modalities))
    return save_model_dir(servable(model.eval(), manifest), directory)


def pickled_mlflow_model(directory: Path, sentinel: Path) -> Path:
    """What ``mlflow.pytorch.log_model(..., serialization_format="pickle")`` wrote, its model.pth replaced."""
    (directory / "data").mkdir(parents=True)
    torch.save(Payload(sentinel), directory / "data" / "model.pth")
    (directory / "data" / "pickle_module_info.txt").write_text("mlflow.pytorch.pickle_module")
    (directory / "MLmodel").write_text("flavors:\n  pytorch:\n    model_data: data\n    pytorch_version: 2.13.0\n")
    return directory


def edit_spec(directory: Path, edit) -> None:
    spec = json.loads((directory / SPEC_FILE).read_text())
    edit(spec)
    (directory / SPEC_FILE).write_text(json.dumps(spec))


def commands(run: Run, data: Path, tmp_path: Path) -> dict[str, tuple[str, ...]]:
    return {"evaluate": ("evaluate", "--model", run.model_uri, "--data", data),
            "predict": ("predict", "--model", run.model_uri, "--input", data, "--out", tmp_path / "predicted"),
            "report": ("report", "--experiment", run.experiment, "--out", tmp_path / "report")}


@pytest.mark.parametrize("command", ["evaluate", "predict", "report"])
def test_a_pickled_model_is_refused_and_never_runs(cli, store, run, tiny_synthetic, tmp_path, command):
    sentinel = tmp_path / "payload-ran"
    run.log_model_dir(pickled_mlflow_model(tmp_path / "planted", sentinel))
    result = cli(*commands(run, tiny_synthetic, tmp_path)[command], workdir=store.workdir)
    result.refused(run.model_uri, "is not a fusionlab model", SPEC_FILE, "never unpickled")
    assert not sentinel.exists(), "the planted pickle ran"


def test_a_pickled_model_is_not_promoted(cli, store, run, tmp_path):
    run.log_model_dir(pickled_mlflow_model(tmp_path / "planted", tmp_path / "payload-ran"))
    cli("promote", "--experiment", run.experiment, workdir=store.workdir).refused(run.run_id)
    with pytest.raises(RegistryError, match=r"is not a fusionlab model .*fusionlab-model\.json.*not registered"):
        _model_source(store.client, run.run_id)
    assert not (tmp_path / "payload-ran").exists()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_pickle_in_place_of_the_weights_is_refused_and_never_runs(cli, store, run, tiny_synthetic, tmp_path, command):
    sentinel = tmp_path / "payload-ran"
    directory = fusionlab_model_dir(tmp_path / "planted", tiny_synthetic)
    torch.save(Payload(sentinel), directory / WEIGHTS_FILE)
    run.log_model_dir(directory)
    result = cli(*commands(run, tiny_synthetic, tmp_path)[command], workdir=store.workdir)
    result.refused(run.model_uri, WEIGHTS_FILE, "weights_only=True")
    assert not sentinel.exists(), "the planted pickle ran"


MODEL_DIR_CASES = {
    "unknown-model-name": (lambda d: edit_spec(d, lambda s: s["model"].update(name="nope")),
                           [SPEC_FILE, "unknown model 'nope'"]),
    "missing-weights-file": (lambda d: (d / WEIGHTS_FILE).unlink(), [f"no {WEIGHTS_FILE}"]),
    "weights-not-matching-the-spec": (lambda d: edit_spec(d, lambda s: s["model"].update(num_classes=9)),
                                      [WEIGHTS_FILE, "does not fit", "size mismatch"]),
    "truncated-weights": (lambda d: (d / WEIGHTS_FILE).write_bytes((d / WEIGHTS_FILE).read_bytes()[:100]),
                          [WEIGHTS_FILE, "not a state dict of tensors"]),
    "spec-not-json": (lambda d: (d / SPEC_FILE).write_text("{"), [SPEC_FILE, "is not JSON"]),
    "foreign-spec-format": (lambda d: edit_spec(d, lambda s: s.update(format="mlflow.pytorch")),
                            ["field 'format'", "'mlflow.pytorch'"]),
}


@pytest.mark.parametrize("case", MODEL_DIR_CASES)
def test_a_damaged_model_directory_is_refused(cli, store, run, tiny_synthetic, tmp_path, case):
    damage, fragments = MODEL_DIR_CASES[case]
    directory = fusionlab_model_dir(tmp_path / "planted", tiny_synthetic)
    damage(directory)
    run.log_model_dir(directory)
    result = cli("evaluate", "--model", run.model_uri, "--data", tiny_synthetic, workdir=store.workdir)
    result.refused(run.model_uri, *fragments)


@pytest.mark.parametrize("uri", ["runs:/0123456789abcdef0123456789abcdef/model", "models:/nothing@champion",
                                 "runs:/{run}/elsewhere", "not-a-uri"],
                         ids=["unknown-run", "unknown-registered-model", "no-model-at-the-path", "not-a-uri"])
def test_a_uri_with_no_model_is_refused(cli, store, run, tiny_synthetic, uri):
    uri = uri.format(run=run.run_id)
    cli("evaluate", "--model", uri, "--data", tiny_synthetic, workdir=store.workdir).refused(uri)


def test_a_model_logged_by_fusionlab_evaluates_and_predicts(cli, store, run, tiny_synthetic, tmp_path):
    """The control: the same store and commands accept what fusionlab logs itself."""
    manifest = Manifest.load(tiny_synthetic)
    model = build("cen", backbone="resnet_mini", num_classes=manifest.label.num_classes,
                  modalities=list(manifest.modalities))
    RunTracker(store.client, run.run_id, set()).log_model(servable(model, manifest))
    for command in ("evaluate", "predict"):
        result = cli(*commands(run, tiny_synthetic, tmp_path)[command], workdir=store.workdir)
        assert result.rc == 0, result.output
