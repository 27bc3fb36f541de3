"""Keep-alive HTTP/1.1 connections to one S3 endpoint, on the standard library's ``http.client``.

The document calls (``s3_documents``) are a HEAD, a GET or a PUT of a few hundred bytes, three of them for
every small file uploaded. On the boto3 client's urllib3 pool one cost ~0.42 ms of the server's CPU, signing
included; on ``http.client`` alone, 0.26 ms (SeaweedFS, HEAD, 1,500 calls in a row), which is a tenth of
the server's CPU for a small file uploaded to S3. What urllib3 adds (retries, redirects, response wrappers,
header containers of its own) these calls do not use: they retry in ``s3_documents``, never follow a
redirect and read each body whole.

A connection goes straight to the endpoint, or through the proxy the environment names for it, as boto3
decides (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``): plain HTTP in absolute form, HTTPS through a
CONNECT tunnel, with the proxy's credentials if its URL has them. TLS is verified against the CA bundle
boto3 uses (its own, or ``AWS_CA_BUNDLE``'s, or none when verification is off). Where a setting needs
more (an ``https://`` proxy, a client certificate), ``for_client`` answers None and the calls stay on boto3.
"""

from __future__ import annotations

import http.client
import os
import ssl
from typing import Any
from urllib.parse import urlsplit

# A connection the store closed while it sat idle fails on its next request in one of these ways, before
# any answer: the request is sent again once, on a fresh connection (document calls are idempotent).
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class S3Connections:
    """Idle connections kept for reuse (at most ``keep``); a call takes one or opens one. Threads share the
    list without a lock: ``list.pop`` and ``list.append`` are atomic."""

    def __init__(
        self,
        endpoint: str,
        proxy: str | None,
        proxy_headers: dict[str, str],
        context: ssl.SSLContext | None,
        timeouts: tuple[float, float],
        keep: int,
    ) -> None:
        parts = urlsplit(endpoint)
        self._host = parts.hostname or ""
        self._port = parts.port or _DEFAULT_PORTS[parts.scheme]
        default = parts.port is None or parts.port == _DEFAULT_PORTS[parts.scheme]
        named = f"[{self._host}]" if ":" in self._host else self._host
        self.host_header = named if default else f"{named}:{self._port}"  # as signed, and as sent
        self._proxy = urlsplit(proxy) if proxy else None
        self._proxy_headers = proxy_headers
        self._context = context
        self._connect_timeout, self._read_timeout = timeouts
        self._keep = keep
        self._idle: list[http.client.HTTPConnection] = []
        # Plain HTTP through a proxy names the whole URL in each request; otherwise the path alone (below the
        # endpoint's own path, if it has one).
        absolute = self._proxy is not None and context is None
        self._target_base = (f"{parts.scheme}://{self.host_header}" if absolute else "") + parts.path.rstrip("/")
        self._headers_for_proxy = proxy_headers if absolute else {}

    @classmethod
    def for_client(cls, client: Any) -> S3Connections | None:
        """Connections to the boto3 client's endpoint with its proxy, TLS and timeout settings, or None where
        they need what these connections do not do."""
        config = client.meta.config
        endpoint = str(client.meta.endpoint_url).rstrip("/")
        http = getattr(getattr(client, "_endpoint", None), "http_session", None)
        proxies = getattr(http, "_proxy_config", None)
        used = ((proxies, "proxy_url_for"), (proxies, "proxy_headers_for"), (http, "_verify"))  # botocore's insides
        if not all(hasattr(owner, name) for owner, name in used):
            return None
        if getattr(config, "client_cert", None) or urlsplit(endpoint).scheme not in _DEFAULT_PORTS:
            return None
        proxy = proxies.proxy_url_for(endpoint + "/")
        if proxy and urlsplit(proxy).scheme != "http":
            return None
        context = _tls_context(http._verify) if endpoint.startswith("https:") else None
        headers = dict(proxies.proxy_headers_for(proxy)) if proxy else {}
        timeouts = (float(config.connect_timeout), float(config.read_timeout))
        return cls(endpoint, proxy, headers, context, timeouts, int(config.max_pool_connections))

    def exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        """Status, headers (case-insensitive) and the whole body of one request for ``path`` (quoted, from
        ``/``, below the endpoint's). Failures are ``OSError`` or ``http.client.HTTPException``."""
        target = self._target_base + path
        if self._headers_for_proxy:
            headers = {**headers, **self._headers_for_proxy}
        for fresh in (False, True):
            connection = None if fresh else self._take()
            reused = connection is not None
            if connection is None:
                connection = self._open()
            try:
                connection.request(method, target, body=body or None, headers=headers)
                response = connection.getresponse()
                content = response.read()
            except _STALE:
                connection.close()
                if reused:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            if response.will_close:
                connection.close()
            else:
                self._give_back(connection)
            return response.status, response.headers, content
        raise AssertionError("unreachable")  # pragma: no cover

    def _take(self) -> http.client.HTTPConnection | None:
        try:
            return self._idle.pop()
        except IndexError:
            return None

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        if len(self._idle) < self._keep:
            self._idle.append(connection)
        else:
            connection.close()

    def _open(self) -> http.client.HTTPConnection:
        """A connected connection: to the endpoint, to the proxy (plain HTTP) or tunnelled through it (HTTPS);
        connected within the connect timeout, then each read within the read timeout (boto3's two)."""
        via = self._proxy
        host, port = (via.hostname or "", via.port or 80) if via else (self._host, self._port)
        connection: http.client.HTTPConnection
        if self._context is None:
            connection = http.client.HTTPConnection(host, port, timeout=self._connect_timeout)
        else:
            connection = http.client.HTTPSConnection(host, port, timeout=self._connect_timeout, context=self._context)
            if via is not None:
                connection.set_tunnel(self._host, self._port, headers=self._proxy_headers)
        try:
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(self._read_timeout)
        except BaseException:
            connection.close()
            raise
        return connection


def _tls_context(verify: Any) -> ssl.SSLContext:
    """Verification as boto3's: off (a false ``verify``), or against its CA bundle (botocore's own unless
    ``AWS_CA_BUNDLE`` or ``verify`` names a file or a folder of certificates)."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    from botocore.httpsession import get_cert_path

    bundle = get_cert_path(verify)
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)
