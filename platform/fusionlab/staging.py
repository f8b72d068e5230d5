"""Staging directories: where a writer builds its output before renaming it into place.

A writer builds ``DIR`` in a hidden sibling ``.DIR.partial-HOST-PID-TOKEN`` and renames it to ``DIR`` when it is
complete; an existing ``DIR`` is first renamed aside to ``.DIR.old-HOST-PID-TOKEN`` and removed after the swap. The
owner's host and PID in the name tell the next writer into the same parent debris from work in progress: a staging
directory whose owner is gone (this host, no such process) is removed with a message; one whose owner is alive, or
on another host (a shared filesystem), is left alone. A retired ``.old-`` directory whose swap never finished
(``DIR`` missing) is renamed back to ``DIR``, never removed.

While a staging directory exists, SIGTERM raises ``Terminated`` (exit status 143) so the writer's own cleanup runs;
SIGKILL cannot be caught, and the sweep reclaims what it leaves.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from fusionlab.errors import FusionlabError

PARTIAL, OLD = "partial", "old"
_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<kind>partial|old)-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}$")


class Terminated(SystemExit):
    """SIGTERM while a staging directory exists: unwinds like ``sys.exit(143)``, running every cleanup on the way."""

    def __init__(self):
        super().__init__(128 + signal.SIGTERM)


def _host() -> str:
    return socket.gethostname().replace("/", "_") or "localhost"


def staging_path(target: Path, kind: str = PARTIAL) -> Path:
    """The hidden sibling of ``target`` this process stages it in (``kind`` "partial") or retires it to ("old")."""
    return target.parent / f".{target.name}.{kind}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _say(message: str) -> None:
    print(f"fusionlab: {message}", file=sys.stderr)


def sweep(parent: Path, say: Callable[[str], None] = _say) -> list[Path]:
    """Reclaim the staging directories in ``parent`` whose owner process on this host is gone; returns what was
    removed. A live owner's, another host's, and anything not named by this convention are left alone."""
    if not parent.is_dir():
        return []
    removed = []
    for path in sorted(parent.iterdir()):
        match = _NAME.match(path.name)
        if (match is None or match["host"] != _host() or _owner_alive(int(match["pid"]))
                or not path.is_dir() or path.is_symlink()):
            continue
        target = parent / match["target"]
        if match["kind"] == OLD and not target.exists():  # killed mid-swap: this is the only copy
            try:
                os.rename(path, target)
            except OSError:  # another writer swept it, or wrote the target, a moment ago
                continue
            say(f"restored {target} from {path.name}, left by process {match['pid']} (no longer running) "
                f"in the middle of replacing it")
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
        what = "an unfinished write" if match["kind"] == PARTIAL else "the replaced previous version"
        say(f"removed {path}: {what} of {target.name} left by process {match['pid']} (no longer running)")
    return removed


def existing_entries(target: Path, error: type[Exception] = FusionlabError) -> list[str] | None:
    """What ``target`` holds (None when it does not exist); a file or a link there is refused: a writer never
    replaces one with a directory."""
    if target.is_symlink():
        raise error(f"{target} is a symbolic link; choose another --out (a link is never replaced)")
    if not target.exists():
        blocked = _file_above(target)
        if blocked is not None:  # out=FILE/report: FILE would have to become a directory
            raise error(f"{target} cannot be created: {blocked} exists and is not a directory; choose another --out "
                        f"(a file is never replaced)")
        return None
    if not target.is_dir():
        raise error(f"{target} exists and is not a directory; choose another --out (a file is never replaced)")
    return sorted(p.name for p in target.iterdir())


def _file_above(target: Path) -> Path | None:
    """The nearest existing ancestor of ``target`` where it is not a directory (a file, a dangling link), else
    None."""
    for parent in target.absolute().parents:
        if parent.is_dir():
            return None
        if parent.exists() or parent.is_symlink():
            return parent
    return None


def replace_dir(staged: Path, target: Path) -> None:
    """Rename ``staged`` to ``target``, retiring an existing ``target`` aside first and removing it after. SIGTERM
    waits until the swap is done (it is delivered after it), so it never stops half-way."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        retired = None
        if target.exists():
            retired = staging_path(target, OLD)
            os.rename(target, retired)
        os.rename(staged, target)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


class _TerminateRaises:
    """SIGTERM raises ``Terminated`` while installed; only in the main thread, and only over the default action (a
    process that ignores or handles SIGTERM itself keeps its own choice)."""

    def __init__(self):
        self.previous = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
            self.previous = None

    @staticmethod
    def _raise(signum, frame) -> None:
        raise Terminated()


class Staging:
    """``with Staging(target) as tmp: ...write into tmp...; staging.commit()``: sweeps ``target``'s parent, creates
    the hidden staging directory, and on leaving removes it unless ``commit`` renamed it to ``target``."""

    def __init__(self, target: str | os.PathLike, say: Callable[[str], None] = _say):
        self.target = Path(target)
        self.path = staging_path(self.target)
        self.say = say
        self._signals = _TerminateRaises()

    def __enter__(self) -> Path:
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # a writer checks first (existing_entries); this is the backstop
            raise FusionlabError(f"{self.target} cannot be created: {_file_above(self.target) or self.target.parent} "
                                 f"exists and is not a directory") from None
        except OSError as error:  # read-only, no permission
            raise FusionlabError(f"{self.target} cannot be created: {error.strerror or error}") from None
        sweep(self.target.parent, self.say)
        self._signals.install()
        try:
            self.path.mkdir()
        except OSError as error:
            self._signals.restore()
            raise FusionlabError(f"{self.target} cannot be written: {self.path} cannot be created "
                                 f"({error.strerror or error})") from None
        except BaseException:
            self._signals.restore()
            raise
        return self.path

    def commit(self) -> None:
        replace_dir(self.path, self.target)

    def abort(self) -> None:
        try:
            shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._signals.restore()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()
