"""Connections to signed URLs: straight to the store, or through the proxy the environment names.

The data path uses ``http.client`` (a reused receive buffer per worker, ``sendfile`` for uploads), which
knows nothing of proxies; users on clusters whose compute nodes reach the outside only through a proxy
set ``HTTP_PROXY``/``HTTPS_PROXY`` (and ``NO_PROXY`` for what is reached directly), as curl, the AWS CLI
and httpx read them. This module reads them the same way (the standard library's own parser, lower-case
names first): an ``http://`` URL is sent to the proxy in absolute form, an ``https://`` one goes through a
``CONNECT`` tunnel, and credentials in the proxy URL become ``Proxy-Authorization``.
"""

from __future__ import annotations

import base64
import http.client
import urllib.request
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from score.client.tls import store_context


def proxy_for(url: SplitResult) -> SplitResult | None:
    """The proxy to reach ``url`` through, or None for a direct connection."""
    proxies = urllib.request.getproxies_environment()
    if not proxies or url.hostname is None:
        return None
    if urllib.request.proxy_bypass_environment(url.hostname, proxies):
        return None
    proxy = proxies.get(url.scheme)
    if not proxy:
        return None
    parsed = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parsed.scheme not in ("http", "https") or parsed.hostname is None:
        raise ValueError(f"the {url.scheme} proxy setting {parsed.scheme}://{parsed.hostname} is not an http(s) URL")
    return parsed


def _proxy_headers(proxy: SplitResult) -> dict[str, str]:
    if proxy.username is None:
        return {}
    credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}


@dataclass(eq=False)  # one per connection: kept in sets by identity
class Route:
    """A connection to a host (or to the proxy in front of it) and how requests go on it."""

    connection: http.client.HTTPConnection
    absolute: bool  # requests name the whole URL (a plain-HTTP proxy forwards them)
    headers: dict[str, str]  # what every request on it carries (the proxy's credentials)

    def target(self, url: str) -> str:
        """The request target of ``url`` on this route."""
        if self.absolute:
            return url
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def close(self) -> None:
        self.connection.close()


def open_route(url: str, timeout: float) -> Route:
    """A route for ``url``'s host: direct, through an HTTP proxy, or tunnelled through one (HTTPS).

    The connection is not opened yet (``http.client`` connects on the first request)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} from the server")
    proxy = proxy_for(parts)
    if proxy is None:
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=store_context())
            return Route(connection, False, {})
        return Route(http.client.HTTPConnection(parts.netloc, timeout=timeout), False, {})
    proxy_address = proxy.hostname or ""
    proxy_port = proxy.port or (443 if proxy.scheme == "https" else 80)
    if parts.scheme == "http":  # absolute form: the proxy forwards it
        proxy_class = http.client.HTTPSConnection if proxy.scheme == "https" else http.client.HTTPConnection
        return Route(proxy_class(proxy_address, proxy_port, timeout=timeout), True, _proxy_headers(proxy))
    tunnel = http.client.HTTPSConnection(proxy_address, proxy_port, timeout=timeout, context=store_context())
    tunnel.set_tunnel(parts.hostname or "", parts.port or 443, headers=_proxy_headers(proxy))
    return Route(tunnel, False, {})
