"""``drs://host/id`` targets of ``download`` and ``url``.

A URI of the configured server is just its object id (the normal, parallel, resumable download). A URI of
another DRS server is resolved as DRS 1.4 says: the DrsObject from ``https://host/ga4gh/drs/v1/objects/id``
(with the client's token), then its ``https`` access method (an inline URL, or one exchanged for its
``access_id``); the bytes are streamed to a temporary file and kept only if their MD5 is the object's.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from score.client.errors import ClientError
from score.client.tls import api_context

SCHEME = "drs://"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class DrsUri:
    host: str  # host[:port]
    object_id: str

    @property
    def base_url(self) -> str:
        """DRS resolves hostname URIs over https; a loopback host (a server on this machine) over http."""
        name = self.host.rsplit(":", 1)[0].strip("[]")
        try:
            loopback = name == "localhost" or ipaddress.ip_address(name).is_loopback
        except ValueError:
            loopback = False
        return f"{'http' if loopback else 'https'}://{self.host}/ga4gh/drs/v1"


def parse(value: str) -> DrsUri | None:
    """The URI's host and id, None when ``value`` is not a ``drs://`` URI."""
    if not value.lower().startswith(SCHEME):
        return None
    host, _, object_id = value[len(SCHEME) :].partition("/")
    if not host or not object_id or "/" in object_id:
        raise ClientError(f"{value!r} is not a DRS URI of the form drs://<host>/<id>")
    return DrsUri(host, object_id)


def split_targets(values: tuple[str, ...], storage_url: str) -> tuple[tuple[str, ...], list[DrsUri]]:
    """Object ids (this server's DRS URIs become their ids) and the URIs of other DRS servers."""
    ours = urlsplit(storage_url).netloc.lower()
    ids: list[str] = []
    remote: list[DrsUri] = []
    for value in values:
        uri = parse(value.strip())
        if uri is None:
            ids.append(value)
        elif uri.host.lower() == ours:
            ids.append(uri.object_id)
        else:
            remote.append(uri)
    return tuple(ids), remote


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        try:
            message = response.json().get("msg") or response.text
        except ValueError:
            message = response.text
        raise ClientError(f"{what}: {response.status_code} {str(message)[:300]}")
    body = response.json()
    if not isinstance(body, dict):
        raise ClientError(f"{what}: the server answered {type(body).__name__}, not a JSON object")
    return body


def resolve(uri: DrsUri, token: str, timeout: float = 60) -> tuple[dict[str, Any], str, list[str]]:
    """The DrsObject, a URL of its bytes and the headers that URL needs."""
    base = f"{uri.base_url}/objects/{quote(uri.object_id, safe='')}"
    with httpx.Client(headers=_headers(token), timeout=timeout, verify=api_context()) as http:
        drs_object = _json(http.get(base), f"DRS object {SCHEME}{uri.host}/{uri.object_id}")
        if drs_object.get("contents"):
            raise ClientError(f"{SCHEME}{uri.host}/{uri.object_id} is a bundle: download its contents' URIs")
        methods = [m for m in drs_object.get("access_methods") or [] if m.get("type") == "https"]
        if not methods:
            raise ClientError(f"{SCHEME}{uri.host}/{uri.object_id} has no https access method")
        method = methods[0]
        access = method.get("access_url")
        if not access:
            access_id = quote(str(method.get("access_id")), safe="")
            access = _json(http.get(f"{base}/access/{access_id}"), f"access to {SCHEME}{uri.host}/{uri.object_id}")
    return drs_object, access["url"], list(access.get("headers") or [])


def _expected_md5(drs_object: dict[str, Any]) -> str | None:
    return next((c["checksum"] for c in drs_object.get("checksums") or [] if c.get("type") == "md5"), None) or None


def download(uri: DrsUri, token: str, output_dir: Path, force: bool = False) -> Path:
    """Fetch one object of another DRS server into ``output_dir`` under its name; the MD5 is verified."""
    drs_object, url, header_lines = resolve(uri, token)
    name = PurePosixPath(str(drs_object.get("name") or uri.object_id)).name or uri.object_id
    target = output_dir / name
    if target.exists() and not force:
        raise ClientError(f"{target} already exists; use --force to replace it")
    headers = dict(line.split(":", 1) for line in header_lines if ":" in line)
    partial = target.with_name(f".{name}.drs-partial")
    digest = hashlib.md5()  # noqa: S324 - the checksum DRS gives
    with httpx.stream("GET", url, headers={k.strip(): v.strip() for k, v in headers.items()}, timeout=60) as response:
        if response.status_code != 200:
            raise ClientError(f"reading {SCHEME}{uri.host}/{uri.object_id}: {response.status_code} from its URL")
        with open(partial, "wb") as out:
            for chunk in response.iter_bytes(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    expected = _expected_md5(drs_object)
    if expected and digest.hexdigest() != expected.lower():
        partial.unlink(missing_ok=True)
        raise ClientError(
            f"{SCHEME}{uri.host}/{uri.object_id}: MD5 {digest.hexdigest()} is not the object's {expected}"
        )
    partial.replace(target)
    return target
