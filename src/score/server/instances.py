"""Which ``score-server serve`` processes this user runs, and on which data dir: a small per-user record.

``score-server token`` signs with the key in a data dir. Run from another directory than the server (the
README's tour does: "in another shell"), it used to look in ``./score-data`` there, make a new key and print a
token the running server refused ("Signature verification failed"). ``serve`` therefore records where it runs
in ``$XDG_STATE_HOME/score/server.json`` (``~/.local/state/score/server.json``), removing its entry when it
stops; ``token`` and ``cleanup`` read it to act on the running server's data dir wherever they are run from.

The record is a convenience, never a requirement: a server that cannot write it still serves (it says so), and
entries of processes that died without removing theirs are ignored (the process is gone or is not a
``score-server serve``) and pruned at the next write. Several servers may share the file: every change is made
under a lock and replaces the file atomically.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def state_file() -> Path:
    """The per-user record: ``$XDG_STATE_HOME/score/server.json``, by default under ``~/.local/state``.

    Raises OSError when there is neither (no home directory): then there is no record, as if unwritable."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if base and Path(base).is_absolute():  # XDG: a relative value is ignored
        return Path(base) / "score" / "server.json"
    try:
        home = Path.home()
    except RuntimeError as exc:
        raise OSError(f"no home directory to keep the record in ({exc}); set XDG_STATE_HOME") from exc
    return home / ".local" / "state" / "score" / "server.json"


def describe() -> str:
    """Where the record is, for messages (which must not fail for want of a home directory)."""
    try:
        return str(state_file())
    except OSError:
        return "$XDG_STATE_HOME/score/server.json (no home directory, and XDG_STATE_HOME is not set)"


@dataclass(frozen=True)
class Instance:
    """One running ``score-server serve``: its process, the URL clients use and its absolute data dir."""

    pid: int
    url: str
    data_dir: Path
    started: str

    def running(self) -> bool:
        """The process exists and is a ``score-server serve`` (a pid reused by another program is not)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # another user's process: not the server this user's record speaks of
        try:
            command = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no /proc (not Linux): the live pid is the best evidence there is
        return b"serve" in command and any(b"score" in part for part in command)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "data_dir": str(self.data_dir)}


def _parse(text: str) -> list[Instance]:
    """The entries of the file; anything unreadable counts as no entry (the file is only a hint)."""
    try:
        servers = json.loads(text).get("servers", [])
        return [Instance(int(s["pid"]), str(s["url"]), Path(s["data_dir"]), str(s.get("started", ""))) for s in servers]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []


def recorded() -> list[Instance]:
    """Every entry of the record, running or not, oldest first."""
    try:
        return _parse(state_file().read_text())
    except OSError:
        return []


def running() -> list[Instance]:
    """The recorded servers that are still running, oldest first."""
    return [instance for instance in recorded() if instance.running()]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _update(change: Callable[[list[Instance]], list[Instance]]) -> Path:
    """Apply ``change`` to the live entries under the lock, and write the result atomically."""
    path = state_file()
    with _locked(path):
        try:
            entries = _parse(path.read_text())
        except FileNotFoundError:
            entries = []
        entries = change([entry for entry in entries if entry.running()])
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"servers": [entry.to_json() for entry in entries]}, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    return path


def record(url: str, data_dir: Path) -> Path:
    """Record this process as a server at ``url`` on ``data_dir``; returns the file written."""
    me = Instance(os.getpid(), url, data_dir.resolve(), datetime.now(UTC).isoformat(timespec="seconds"))
    return _update(lambda entries: [*(e for e in entries if e.pid != me.pid), me])


def forget() -> None:
    """Remove this process's entry (when the server stops)."""
    pid = os.getpid()
    _update(lambda entries: [e for e in entries if e.pid != pid])
