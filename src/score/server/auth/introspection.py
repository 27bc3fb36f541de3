"""Opaque API keys checked by RFC 7662 token introspection (and the legacy Ego/Score answer shape).

The original sent UUID-shaped tokens to ``auth.server.url``; here any bearer value that is not a JWT
goes there. The original posts the key as ``multipart/form-data``; RFC 7662 servers want
``application/x-www-form-urlencoded`` (the default here), so ``body`` picks either, for Ego-style
endpoints that only read multipart.

Any 4xx from the endpoint, 401/403 included, refuses the key with a 401 as the original does: a 503
would make the Java client retry ten times for a key that stays refused. Only a real outage (the
endpoint unreachable, a 5xx, an answer that is not JSON) is a 503.

Answers are cached per key for a short TTL (never past the key's own expiry), so revoking a key takes
effect within ``cache_ttl`` seconds. Keys are never logged: only their fingerprint.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import httpx

from score.server.auth.principal import InvalidToken, Principal, ProviderUnavailable, TokenVerifier, token_fingerprint
from score.server.ttl_cache import TtlCache

REFUSED = "the API key is not active (unknown, expired or revoked); create a new one"
IntrospectionBody = Literal["form", "multipart"]


class IntrospectionVerifier(TokenVerifier):
    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        token_field: str = "token",  # noqa: S107 - a form field name, not a secret
        cache_ttl: float = 10.0,
        timeout: float = 5.0,
        body: IntrospectionBody = "form",
    ) -> None:
        self._url = url
        self._body = body
        self._auth = (client_id, client_secret)
        self._token_field = token_field
        self._timeout = timeout
        self._cache = TtlCache(cache_ttl, max_entries=10_000, name="introspection")

    def verify(self, token: str) -> Principal:
        key = token_fingerprint(token)
        cached = self._cache.get(key)
        if isinstance(cached, InvalidToken):
            raise cached
        if cached is not None:
            return cached
        answer = self._ask(token)
        try:
            principal = self._principal(answer, key)
        except InvalidToken as refusal:
            self._cache.put(key, refusal)
            raise
        expires = answer.get("exp")
        self._cache.put(key, principal, float(expires) - time.time() if isinstance(expires, int | float) else None)
        return principal

    def _ask(self, token: str) -> dict[str, Any]:
        if self._body == "multipart":
            # httpx only sends multipart when ``files`` is given: a file-less part named like the field
            # is a plain form field on the wire (``Content-Disposition: form-data; name="apiToken"``).
            payload: dict[str, Any] = {"files": {self._token_field: (None, token)}}
        else:
            payload = {"data": {self._token_field: token}}
        try:
            response = httpx.post(self._url, auth=self._auth, timeout=self._timeout, **payload)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                f"cannot reach the token introspection endpoint {self._url} ({exc.__class__.__name__})"
            ) from exc
        if response.status_code in (401, 403):
            # Ego answers 401 for an unknown key, so this cannot tell a refused key from refused client
            # credentials: say both (the server log has the status), and refuse like the original.
            raise InvalidToken(
                f"the API key was refused by the introspection endpoint ({response.status_code}): it is unknown, "
                "expired or revoked, or Score's introspection client credentials are wrong"
            )
        if 400 <= response.status_code < 500:
            raise InvalidToken(REFUSED)
        if response.status_code not in (200, 207):
            raise ProviderUnavailable(f"the introspection endpoint answered {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderUnavailable("the introspection endpoint did not answer JSON") from exc
        if not isinstance(body, dict):
            raise ProviderUnavailable("the introspection endpoint's answer is not a JSON object")
        return body

    @staticmethod
    def _principal(answer: dict[str, Any], fingerprint: str) -> Principal:
        # RFC 7662: ``active`` decides. Legacy Ego/Score answers have no ``active`` but error/valid/revoked/exp.
        if answer.get("active") is False or "error" in answer or answer.get("valid") is False:
            raise InvalidToken(REFUSED)
        if answer.get("revoked") is True or answer.get("exp") == 0:
            raise InvalidToken(REFUSED)
        if "active" not in answer and "scope" not in answer:
            raise InvalidToken(REFUSED)
        expires = answer.get("exp")
        if isinstance(expires, int | float) and expires <= time.time():
            raise InvalidToken("the API key has expired; create a new one")
        scope = answer.get("scope", "")
        scopes = scope.split() if isinstance(scope, str) else [str(s) for s in scope or [] if isinstance(s, str)]
        subject = answer.get("sub") or answer.get("user_id") or answer.get("username") or answer.get("client_id")
        return Principal(subject=str(subject or "api-key"), scopes=frozenset(scopes), token_id=fingerprint)
