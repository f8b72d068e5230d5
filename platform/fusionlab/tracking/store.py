"""Opening an MLflow store: the one place a recorded (redacted) tracking URI becomes the one that connects."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import mlflow
from mlflow.tracking import MlflowClient

from fusionlab.credentials import TRACKING_URI_ENV, reveal_uri

REGISTRY_URI_ENV = "MLFLOW_REGISTRY_URI"


def client(uri: str) -> MlflowClient:
    """A client of the store at ``uri`` (its secret, if redacted, read from the environment)."""
    return MlflowClient(reveal_uri(uri))


def registry_client(uri: str) -> MlflowClient:
    """A client whose registry is the tracking store itself (the embedded sqlite store or the same server)."""
    full = reveal_uri(uri)
    return MlflowClient(tracking_uri=full, registry_uri=None if full.startswith("databricks") else full)


@contextlib.contextmanager
def global_store(uri: str) -> Iterator[None]:
    """MLflow's global tracking and registry URI set to ``uri`` for the block (``Model.log``, ``models:/`` lookups and
    the SQL registry read it), then put back as they were: ``mlflow.set_tracking_uri`` also exports
    ``MLFLOW_TRACKING_URI`` (and the registry its own variable), which would otherwise name this store, secret
    included, to every later command of this process and to every process it starts."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    full = reveal_uri(uri)
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri,
             {name: os.environ.get(name) for name in (TRACKING_URI_ENV, REGISTRY_URI_ENV)})
    mlflow.set_tracking_uri(full)
    mlflow.set_registry_uri(full)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri, env = saved
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
