"""Names are identifiers, not paths: the characters a name that becomes a folder may hold, and paths that stay under
their root.

Two kinds of user-given names, each treated one way:

* **Folder names** -- ``grid.name`` (``WORKDIR/grids/<name>/launch-NNN``; also the grid's MLflow experiment) and
  ``search.name`` (``WORKDIR/sweeps/<name>``: Tune's experiment, the Optuna study, the trials' run names). They are
  checked at load against ``NAME_RULE`` (``name_problem``): 1 to 128 ASCII letters, digits, spaces and ``. _ + = @ -``,
  beginning with a letter, digit or ``_`` and not ending with a space or ``.``. So no ``/`` or ``\\``, no ``.`` or
  ``..``, no hidden (``.x``) or option-like (``-x``) name, no control character, no quote.
* **MLflow display names** -- ``tracking.experiment`` and ``tracking.run_name`` (and ``fusionlab report
  --experiment``). MLflow takes any text there (an apostrophe, a space, a Databricks path's ``/``), and so does
  fusionlab, except control characters and a name holding both kinds of quote (``display_name_problem``: no MLflow
  search filter can name it). Where one becomes a folder (``WORKDIR/checkpoints/<run>``, Ray Train's run under
  ``ray_results``, ``WORKDIR/reports/<experiment>``) ``folder_name`` maps it: a name that follows ``NAME_RULE`` is its
  own folder name (so a run keeps the folder it always had), any other has each character outside the set replaced
  by ``_`` and 8 hex digits of the name's sha256 appended, so two names never share a folder.

Every path built from a name also goes through ``confined(root, *parts)``, which refuses one that resolves (symlinks
followed) anywhere but strictly inside ``root``: the last line should a name reach a path unchecked.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from fusionlab.errors import FusionlabError

NAME_MAX = 128
NAME_RULE = (f"1 to {NAME_MAX} ASCII letters, digits, spaces and . _ + = @ - characters, beginning with a letter, "
             f"digit or _ and not ending with a space or .")
_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9 ._+=@-]*[A-Za-z0-9_+=@-])?")
_OUTSIDE = re.compile(r"[^A-Za-z0-9 ._+=@-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a folder name (``NAME_RULE``), or None where it can."""
    if not isinstance(name, str):
        return f"a name is text, got {type(name).__name__}"
    if len(name) > NAME_MAX:
        return f"{len(name)} characters is too long for a name: it must be {NAME_RULE}"
    if _NAME.fullmatch(name):
        return None
    bad = sorted(set(_OUTSIDE.findall(name)))
    if name in (".", "..") or bad or not name:
        what = ("is not a name" if name in ("", ".", "..")
                else f"holds {', '.join(repr(char) for char in bad)}")
        return f"{what}: a name is used as a folder name, so it must be {NAME_RULE}"
    where = f"begin with {name[0]!r}" if not _NAME.fullmatch(name[0]) else f"end with {name[-1]!r}"
    return f"cannot {where}: it must be {NAME_RULE}"


def check_name(name: object, field: str) -> str:
    """``name`` where it follows ``NAME_RULE``, else a ``FusionlabError`` naming ``field`` and the value."""
    problem = name_problem(name)
    if problem:
        raise FusionlabError(f"{field}: {problem} (got {name!r})")
    return name  # type: ignore[return-value]


def display_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be an MLflow experiment or run name here, or None: not blank, no control character, not
    both ``'`` and ``"`` (an MLflow filter string quotes a value with one kind and has no escape for it)."""
    if not isinstance(name, str):
        return f"a name is text, got {type(name).__name__}"
    if not name.strip():
        return "a name cannot be blank"
    if _CONTROL.search(name):
        return "a name cannot hold control characters (a newline, a tab, NUL, ...)"
    if "'" in name and '"' in name:
        return "a name can hold ' or \" but not both (MLflow's search filters cannot quote it)"
    return None


def folder_name(name: str) -> str:
    """The folder a display name (an MLflow run or experiment name) is kept in: itself where it follows
    ``NAME_RULE``; else the characters outside the set as ``_``, cut to fit, with 8 hex digits of its sha256."""
    if name_problem(name) is None:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    safe = _OUTSIDE.sub("_", name)[:NAME_MAX - 9].rstrip(" .")
    safe = safe if safe and _NAME.fullmatch(safe[0]) else f"_{safe}"[:NAME_MAX - 9].rstrip(" .")
    return f"{safe}-{digest}"


def confined(root: str | os.PathLike, *parts: str) -> Path:
    """``root`` joined with ``parts``, refused (``FusionlabError``) unless it resolves, symlinks followed, strictly
    inside ``root`` (itself resolved): a part that is absolute, ``..``, holds ``/../`` or names a symlink out is
    refused. Returns the joined path as built (not resolved)."""
    root = Path(root)
    path = root.joinpath(*parts)
    if any("\x00" in str(part) for part in parts):
        raise FusionlabError(f"{path!r}: a path cannot hold NUL; it must stay inside {root}")
    base = root.resolve()
    if base not in path.resolve().parents:
        raise FusionlabError(f"{path}: built from the name {'/'.join(map(str, parts))!r}, it would lie outside "
                             f"{root} (resolved: {path.resolve()}); a name is not a path: it must be {NAME_RULE}")
    return path
