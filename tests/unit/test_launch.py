"""The entry point's head start: garbage collection paused while loading, httpx's CLI left unloaded."""

from __future__ import annotations

import subprocess
import sys


def _fresh_python(code: str) -> list[str]:
    """What ``code`` prints after ``RESULT``, run in a fresh interpreter (nothing imported yet)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split("RESULT")[-1].split()


def test_the_launcher_keeps_httpx_from_loading_its_command_line_tool() -> None:
    """~50 ms of every start: checked in a fresh interpreter, where nothing has imported httpx yet."""
    printed = _fresh_python(
        "import sys; from score.client.launch import skip_httpx_command_line; skip_httpx_command_line(); "
        "import httpx; import score.client.cli; "
        "print('RESULT', sys.modules.get('httpx._main'), 'pygments' in sys.modules, callable(httpx.main))"
    )
    assert printed == ["None", "False", "True"]


def test_the_launcher_collects_garbage_again_once_loaded_with_the_loaded_objects_frozen() -> None:
    """Collection is off only while the client loads; a client left without it would grow without bound."""
    printed = _fresh_python(
        "import gc, sys; sys.argv = ['score-client', '--help']; from score.client import launch\n"
        "try:\n    launch.run()\nexcept SystemExit:\n    pass\n"
        "print('RESULT', gc.isenabled(), gc.get_freeze_count() > 10_000)"
    )
    assert printed == ["True", "True"]
