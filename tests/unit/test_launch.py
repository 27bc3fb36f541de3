"""The entry point's head start: garbage collection paused while loading, httpx's CLI left unloaded."""

from __future__ import annotations

import subprocess
import sys

import pytest


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


def test_the_api_tls_context_is_made_once_as_httpx_makes_it_while_the_client_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The launcher starts the API's TLS context on a thread (OpenSSL loads the CAs without the GIL): it must be
    the context httpx would make (certifi's CAs, or SSL_CERT_FILE), and one per process whoever asks first."""
    import ssl
    import threading

    import certifi
    import httpx

    from score.client import tls

    def same(ours: ssl.SSLContext, theirs: ssl.SSLContext) -> None:
        assert (ours.verify_mode, ours.check_hostname) == (theirs.verify_mode, theirs.check_hostname)
        assert ours.verify_mode == ssl.CERT_REQUIRED and ours.check_hostname
        assert ours.cert_store_stats() == theirs.cert_store_stats()
        assert ours.cert_store_stats()["x509_ca"] > 50

    same(tls.httpx_default_context(), httpx.create_ssl_context())
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    same(tls.httpx_default_context(), httpx.create_ssl_context())

    monkeypatch.setattr(tls, "_contexts", {})
    made: list[ssl.SSLContext] = []
    threads = [threading.Thread(target=lambda: made.append(tls.api_context())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 8 and all(context is made[0] for context in made)
    assert tls.store_context() is tls.store_context() is not made[0]

    printed = _fresh_python(
        "import sys, threading; sys.argv = ['score-client', '--help']; from score.client import launch, tls\n"
        "try:\n    launch.run()\nexcept SystemExit:\n    pass\n"
        "print('RESULT', 'api' in tls._contexts)"
    )
    assert printed == ["True"]
