"""Keycloak authorisation services: a token's scopes are the permissions Keycloak grants it (reference §4.2).

The original asked Keycloak's UMA endpoint on every request; here the answer is cached per token for a
short TTL (never past the token's own expiry), so a burst of part-URL requests costs one round trip.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from score.server.auth.principal import InvalidToken, ProviderUnavailable, token_fingerprint
from score.server.ttl_cache import TtlCache

UMA_GRANT = "urn:ietf:params:oauth:grant-type:uma-ticket"


class KeycloakPermissions:
    def __init__(self, token_url: str, client_id: str, cache_ttl: float = 60.0, timeout: float = 5.0) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._timeout = timeout
        self._cache = TtlCache(cache_ttl, max_entries=10_000, name="keycloak_permissions")

    def scopes(self, token: str, claims: dict[str, Any]) -> frozenset[str]:
        key = token_fingerprint(token)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        scopes = self._ask(token)
        expires = claims.get("exp")
        lifetime = float(expires) - time.time() if isinstance(expires, int | float) else None
        self._cache.put(key, scopes, lifetime)
        return scopes

    def _ask(self, token: str) -> frozenset[str]:
        try:
            response = httpx.post(
                self._token_url,
                headers={"Authorization": f"Bearer {token}"},
                data={"grant_type": UMA_GRANT, "audience": self._client_id, "response_mode": "permissions"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"cannot reach Keycloak at {self._token_url} ({exc.__class__.__name__})") from exc
        if response.status_code == 403:
            return frozenset()  # Keycloak's "access_denied / not_authorized": a valid user with no permission
        if response.status_code in (400, 401):
            raise InvalidToken(f"Keycloak refused the access token ({_error_of(response)})")
        if response.status_code != 200:
            raise ProviderUnavailable(f"Keycloak answered {response.status_code} to the permission request")
        try:
            permissions = response.json()
            return frozenset(
                f"{permission['rsname']}.{scope}"
                for permission in permissions
                for scope in permission.get("scopes") or []
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderUnavailable(f"Keycloak's permission answer is not the documented list ({exc})") from exc


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("error_description") or body.get("error") or response.status_code)
    except (ValueError, AttributeError):
        return str(response.status_code)
