"""``score-client``'s entry point: what makes the client start faster, before the command line is parsed.

(It once also started hashing an upload's file while the client loaded; measured on the 1 GiB race, that
head start changed nothing — 120 against 121 MB/s, same CPU — so it went, with its class-level registry.)
"""

from __future__ import annotations

import gc
import sys


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
    from score.client.tls import prepare_api_context

    prepare_api_context()  # ready by the time the client has loaded (~30 ms less per command): score.client.tls
    from score.client.cli import run as run_cli

    gc.freeze()
    gc.enable()
    run_cli()
