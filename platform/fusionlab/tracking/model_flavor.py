"""fusionlab's MLflow flavor: a model directory of ``fusionlab.models.model_files`` (weights plus spec) logged as a
run's logged model, so ``runs:/<id>/model``, ``models:/<name>@<alias>`` and the MLflow UI work as for any model.

fusionlab never calls an MLflow model loader: loading downloads the artifacts and rebuilds the model from the spec;
a directory without the spec (a pickled model, say) is refused and nothing in it is unpickled.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import urllib.parse
from importlib.metadata import version
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from fusionlab.credentials import redact_text, redact_uri
from fusionlab.errors import FusionlabError
from fusionlab.models.model_files import (
    FORMAT,
    SPEC_FILE,
    VERSION,
    WEIGHTS_FILE,
    Predictor,
    load_model_dir,
    save_model_dir,
)

from . import store
from .filters import attribute_equals

FLAVOR_NAME = "fusionlab"


def save_model(path: str, mlflow_model: Model, *, predictor: Predictor) -> None:
    """The flavor's writer (``mlflow.models.Model.log`` calls it): the model files plus an MLmodel naming them."""
    save_model_dir(predictor, path)
    mlflow_model.add_flavor(FLAVOR_NAME, format=FORMAT, format_version=VERSION, spec=SPEC_FILE, weights=WEIGHTS_FILE,
                            fusionlab_version=version("fusionlab"))
    mlflow_model.save(os.path.join(path, "MLmodel"))


def log_model(tracking_uri: str, run_id: str, name: str, predictor: Predictor) -> None:
    """Log ``predictor`` as the logged model ``name`` of ``run_id`` (the run is not started or ended here)."""
    # Created here, in the run's experiment: Model.log without an active run would put it in the default experiment
    # (artifacts under ./mlruns). Model.log writes the artifacts through the global tracking URI and marks it READY.
    client = store.client(tracking_uri)
    run = client.get_run(run_id)
    logged = client.create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id,
                                        params=dict(run.data.params))
    with store.global_store(tracking_uri):
        Model.log(None, sys.modules[__name__], name=name, run_id=run_id, model_id=logged.model_id,
                  predictor=predictor)


def load_model(model_uri: str, tracking_uri: str | None = None) -> Predictor:
    """The predictor at ``model_uri`` (``runs:/``, ``models:/``, or any artifact URI), rebuilt from its spec. A local
    directory (a path or ``file://``) is read in place, its two files only: nothing is copied, so a directory that is
    not a model (``/etc``, a dataset) is refused by what it lacks, before anything in it is read."""
    local_dir = _local_path(model_uri)
    if local_dir is not None:
        return _load_local_model_dir(model_uri, local_dir)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per download is noise here
    # models:/ URIs resolve in the same store, whatever the environment says
    in_store = store.global_store(tracking_uri) if tracking_uri else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="fusionlab-model-") as tmp, in_store:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=logged_model_uri(model_uri), dst_path=tmp)
        except (MlflowException, OSError) as error:  # a bad URI, run, alias or store: the user's to fix
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise FusionlabError(f"cannot load model {model_uri!r} from {redact_uri(mlflow.get_tracking_uri())}: "
                                 f"{redact_text(first, mlflow.get_tracking_uri())}") from None
        if not Path(local).is_dir():
            raise FusionlabError(f"model {model_uri!r} is a file, not a model directory ({SPEC_FILE} and "
                                 f"{WEIGHTS_FILE})")
        return load_model_dir(local, where=f"model {model_uri!r}")


def _local_path(model_uri: str) -> Path | None:
    """The local path ``model_uri`` names (a plain path or a ``file://`` URI), or None for a store's URI."""
    if model_uri.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(model_uri).path))
    if "://" in model_uri or model_uri.startswith(("runs:/", "models:/")):
        return None
    return Path(model_uri).expanduser()


def _load_local_model_dir(model_uri: str, directory: Path) -> Predictor:
    where = f"model {model_uri!r}"
    if not directory.exists():
        raise FusionlabError(f"{where}: no such directory; expected runs:/<run id>/model, models:/<name>@<alias> or a "
                             f"model directory holding {SPEC_FILE} and {WEIGHTS_FILE}")
    if not directory.is_dir():
        raise FusionlabError(f"{where} is a file, not a model directory ({SPEC_FILE} and {WEIGHTS_FILE})")
    missing = [name for name in (SPEC_FILE, WEIGHTS_FILE) if not (directory / name).is_file()]
    if missing:  # named without listing (or copying) the directory: it may be anything, and large
        raise FusionlabError(f"{where}: {directory} is not a fusionlab model directory: it has no "
                             f"{' and no '.join(missing)} (a model directory holds {SPEC_FILE} and {WEIGHTS_FILE}, "
                             f"as `fusionlab train` logs it); nothing in it was read")
    return load_model_dir(directory, where=where)


def logged_model_uri(model_uri: str) -> str:
    """``runs:/<run id>/<name>`` as its logged model's own URI (``models:/<model id>``), where the run logged one
    under that name: MLflow resolves a ``runs:/`` URI by first asking the run's artifact store for the path, and a
    tracking server proxying S3 answers that missing key with HTTP 500 instead of 404 (MLflow 3.18), which the client
    retries for minutes before it looks at the logged models. Any other URI is returned as it is."""
    if not model_uri.startswith("runs:/"):
        return model_uri
    run_id, _, name = model_uri[len("runs:/"):].partition("/")
    if not run_id or not name or "/" in name.strip("/") or any("'" in v and '"' in v for v in (run_id, name)):
        return model_uri
    client = MlflowClient(mlflow.get_tracking_uri())
    try:
        experiment_id = client.get_run(run_id).info.experiment_id
        found = client.search_logged_models([experiment_id], max_results=1,
                                            filter_string=f"{attribute_equals('source_run_id', run_id)} AND "
                                                          f"{attribute_equals('name', name.strip('/'))}")
    except MlflowException:  # no such run: download_artifacts says so in the user's terms
        return model_uri
    return f"models:/{found[0].model_id}" if found else model_uri

