"""Where a JWT provider's public keys come from: a JWKS URL (rotating) or one PEM key (Ego).

Keys are fetched lazily, so a server starts even while its identity provider is briefly down. A JWKS
is cached; a token naming an unknown ``kid`` triggers one refetch (the provider has rotated keys), but
at most once per ``min_refresh_interval`` so that tokens with made-up ``kid``s cannot turn the server
into a traffic generator against the provider.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from score.server.auth.principal import InvalidToken, ProviderUnavailable

ASYMMETRIC_KEY_TYPES = ("RSA", "EC", "OKP")


class KeySource:
    """Interface: the verification key for a token header (``kid``, ``alg``)."""

    def key_for(self, kid: str | None, algorithm: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


def _fetch(url: str, what: str, timeout: float) -> httpx.Response:
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"cannot fetch {what} from {url} ({exc.__class__.__name__})") from exc
    if response.status_code != 200:
        raise ProviderUnavailable(f"{url} answered {response.status_code} when fetching {what}")
    return response


class PemKeySource(KeySource):
    """One public key in PEM: inline, from a file, or from a URL such as Ego's ``/oauth/token/public_key``."""

    def __init__(self, pem: str | None = None, url: str | None = None, timeout: float = 5.0) -> None:
        if not pem and not url:
            raise ValueError("a PEM key source needs the key itself or the URL that serves it")
        self._url = url
        self._timeout = timeout
        self._key: Any = self._load(pem) if pem else None
        self._lock = threading.Lock()

    @staticmethod
    def _load(pem: str) -> Any:
        try:
            return serialization.load_pem_public_key(pem.strip().encode("ascii"))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"the configured public key is not a PEM public key ({exc})") from exc

    def key_for(self, kid: str | None, algorithm: str) -> Any:
        with self._lock:
            if self._key is None:
                assert self._url is not None
                self._key = self._load(_fetch(self._url, "the token signing public key", self._timeout).text)
            return self._key


class JwksKeySource(KeySource):
    """A JWKS endpoint, cached for ``cache_ttl`` seconds and refetched when a token names an unknown key."""

    def __init__(
        self, url: str, cache_ttl: float = 3600.0, min_refresh_interval: float = 10.0, timeout: float = 5.0
    ) -> None:
        self._url = url
        self._cache_ttl = cache_ttl
        self._min_refresh_interval = min_refresh_interval
        self._timeout = timeout
        self._lock = threading.Lock()
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")

    def _refresh(self) -> None:
        body = _fetch(self._url, "the JSON Web Key Set", self._timeout)
        keys: dict[str | None, tuple[Any, str | None]] = {}
        try:
            entries = body.json()["keys"]
            for entry in entries:
                if entry.get("kty") not in ASYMMETRIC_KEY_TYPES or entry.get("use", "sig") != "sig":
                    continue  # symmetric keys are never accepted: that is the HMAC-confusion attack
                keys[entry.get("kid")] = (jwt.PyJWK(entry).key, entry.get("alg"))
        except (ValueError, KeyError, TypeError, jwt.PyJWKError) as exc:
            raise ProviderUnavailable(f"{self._url} did not return a usable JSON Web Key Set ({exc})") from exc
        self._keys = keys
        self._fetched_at = time.monotonic()

    def key_for(self, kid: str | None, algorithm: str) -> Any:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > self._cache_ttl or (kid not in self._keys and age > self._min_refresh_interval):
                self._refresh()
            entry = self._keys.get(kid)
            if entry is None and kid is None and len(self._keys) == 1:
                entry = next(iter(self._keys.values()))  # a token without kid, a provider with one key
        if entry is None:
            raise InvalidToken(f"the access token's key ({kid or 'no kid'}) is not one its issuer publishes")
        key, key_algorithm = entry
        if key_algorithm is not None and key_algorithm != algorithm:
            raise InvalidToken(f"the access token says {algorithm} but its key {kid} is for {key_algorithm}")
        return key
