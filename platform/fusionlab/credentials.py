"""Secrets in store URIs: what fusionlab records holds none; what connects reads them from the environment.

A tracking URI may carry a password (``postgresql://mlflow:PASSWORD@db:5432/mlflow``) or a token in its query. The
config keeps its redacted form (``postgresql://mlflow:***@db:5432/mlflow``), so every MLflow param, checkpoint, Tune
trial config, sweep file and message made from the config holds no secret. The full URI lives in this process's
environment, as ``MLFLOW_TRACKING_URI`` (MLflow's own convention, and what the cluster YAMLs export on every node);
``reveal_uri`` finds it there when a store is opened. A Ray that fusionlab starts itself inherits the variable, so
its workers find it too; on a cluster every node must export it (or use a password file: PostgreSQL's ``PGPASSFILE``
/ ``~/.pgpass``, with no password in the URI at all).
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fusionlab.errors import FusionlabError

REDACTED = "***"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "token", "access_token", "secret", "api_key", "apikey",
                               "sig", "signature", "x-amz-signature", "x-amz-security-token", "sslpassword"})


def redact_uri(uri: str) -> str:
    """``uri`` with its password and secret query values replaced by ``***`` (anything else unchanged)."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode([(key, REDACTED if key.lower() in SECRET_QUERY_KEYS else value) for key, value in pairs],
                              safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return uri  # urlunsplit would not give back every URI it split (sqlite:////abs/path loses a slash)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def remember_uri(uri: str) -> str:
    """The redacted form of ``uri``, to record; a URI with a secret is put in this process's environment (inherited
    by a Ray started from it) so that ``reveal_uri`` finds it."""
    redacted = redact_uri(uri)
    if redacted != uri:
        os.environ[TRACKING_URI_ENV] = uri
    return redacted


def reveal_uri(uri: str) -> str:
    """The URI to connect with: ``uri`` itself unless it is redacted, else the full URI from the environment whose
    redacted form it is."""
    if REDACTED not in uri:
        return uri
    candidate = os.environ.get(TRACKING_URI_ENV)
    if candidate and redact_uri(candidate) == uri:
        return candidate
    raise FusionlabError(f"the tracking URI {uri} needs its secret, which is not recorded anywhere: export the full "
                         f"URI as {TRACKING_URI_ENV} in the environment of every process that logs (on a Ray cluster: "
                         f"every node, as cluster/*.yaml do), or keep the password in a password file (PostgreSQL: "
                         f"~/.pgpass or PGPASSFILE) and leave it out of the URI")


def redact_text(text: str, uri: str) -> str:
    """``text`` (an error message from a store client, say) without ``uri``'s secrets: the URI written out in full
    becomes its redacted form, and each secret value found elsewhere in the text becomes ``***``."""
    text = text.replace(uri, redact_uri(uri))
    for secret in _secrets(uri):
        text = text.replace(secret, REDACTED)
    return text


def _secrets(uri: str) -> list[str]:
    if "://" not in uri:
        return []
    parts = urlsplit(uri)
    found = [parts.password] if parts.password else []
    found += [value for key, value in parse_qsl(parts.query) if key.lower() in SECRET_QUERY_KEYS and value]
    return [secret for secret in found if secret != REDACTED]
