"""``score-client``'s entry point: an upload of one file starts hashing it while the rest of the client loads.

Why: importing the client (httpx, pydantic, click, rich) keeps one core busy for ~0.3 s while the other
idles, and an upload's whole-file MD5 (~1.5 CPU-s/GiB, which nothing can share) may as well start then.
Only the standard library and ``upload_hashing`` are imported before the hash starts; the command line is
parsed properly afterwards by click, and ``Uploader`` uses the running hash only if it is for the same
file, size and modification time (otherwise the guess is dropped).
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path


def upload_file_named(argv: list[str]) -> Path | None:
    """The ``--file`` of an ``upload`` command line, if it names a regular file; a guess, never an error."""
    if "upload" not in argv:
        return None
    for index, arg in enumerate(argv):
        if arg == "--file" and index + 1 < len(argv):
            candidate = Path(argv[index + 1])
        elif arg.startswith("--file="):
            candidate = Path(arg.removeprefix("--file="))
        else:
            continue
        try:
            return candidate if candidate.is_file() else None
        except OSError:
            return None
    return None


def skip_httpx_command_line() -> None:
    """Keep httpx from importing its own command-line tool, which it does whenever click and rich are installed
    (they are: ours). That import (rich's console, pygments) is ~50 ms of every start; with this entry httpx
    takes the path it has for a missing CLI extra and defines a stub ``httpx.main`` instead."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def run() -> None:
    # No garbage collection while the client loads: imports allocate much and free little, and the
    # collector's passes over them are ~8% of loading time. What is loaded then stays out of later passes.
    gc.disable()
    skip_httpx_command_line()
    path = upload_file_named(sys.argv[1:])
    if path is not None:
        from score.client.transfer.upload_hashing import WholeFileMd5

        WholeFileMd5.start_early(path)
    from score.client.cli import run as run_cli

    gc.freeze()
    gc.enable()
    run_cli()
