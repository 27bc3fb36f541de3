"""TLS contexts, made once per process and shared by every connection that needs one.

Building a context loads a CA bundle: 20-40 ms each. A download command used to build four before its first
byte moved (the Score API, Song, the store probe, the data client), and every worker thread built another for
each https store host it reached. The contexts are only read after they are made, which ``ssl.SSLContext``
allows from any thread.

The API's context is started on a thread of its own as the client starts (``prepare_api_context``): OpenSSL
reads the bundle without holding the GIL, so it is ready by the time the client has loaded, instead of adding
its time to every command's start. A caller that asks before it is ready waits for that one.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future

_lock = threading.Lock()
_contexts: dict[str, Future[ssl.SSLContext]] = {}


def _made_once(name: str, make: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """The context ``name``: made by the first caller; later ones (other threads included) get that one."""
    with _lock:
        future = _contexts.get(name)
        first = future is None
        if future is None:
            future = _contexts[name] = Future()
    if first:
        try:
            future.set_result(make())
        except BaseException as exc:
            future.set_exception(exc)
    return future.result()


def httpx_default_context() -> ssl.SSLContext:
    """What ``httpx.create_ssl_context()`` makes (certifi's CAs, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), without
    importing httpx, so that it can be made while httpx itself is being imported."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def api_context() -> ssl.SSLContext:
    """httpx's default verification, for httpx clients."""
    return _made_once("api", httpx_default_context)


def store_context() -> ssl.SSLContext:
    """The system's default verification, for the data path's ``http.client`` connections to a store."""
    return _made_once("store", ssl.create_default_context)


def prepare_api_context() -> None:
    """Start making the API's context now, on a thread of its own (see the module's docstring).

    Not a daemon: a command that ends first (``-h``) waits for it (at most the bundle's 20-40 ms) before the
    process exits. As a daemon it could still be inside OpenSSL when the exit ran OpenSSL's own clean-up, and
    the process died of a segmentation fault (seen once in CI on ``completion -h``)."""
    threading.Thread(target=api_context, name="tls").start()
