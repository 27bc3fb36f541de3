"""TLS contexts, made once per process and shared by every connection that needs one.

Building a context loads a CA bundle: about 20 ms of CPU each. A download command used to build four before
its first byte moved (the Score API, Song, the store probe, the data client), and every worker thread built
another for each https store host it reached. The contexts are only read after they are made, which
``ssl.SSLContext`` allows from any thread.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def api_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's CAs, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), for httpx clients."""
    return httpx.create_ssl_context()


@functools.cache
def store_context() -> ssl.SSLContext:
    """The system's default verification, for the data path's ``http.client`` connections to a store."""
    return ssl.create_default_context()
