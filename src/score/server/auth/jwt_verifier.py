"""JWT bearer tokens from an external OAuth2/OIDC provider (Keycloak, Ego, any OIDC provider).

Only asymmetric algorithms are ever accepted, and the allowed list is fixed per provider before the
token is looked at: ``alg=none`` and the HMAC-with-the-public-key confusion attack cannot get through
because the algorithm named in a token's header is checked against that list, never trusted.
"""

from __future__ import annotations

from typing import Any, Protocol

import jwt

from score.server.auth.keys import KeySource
from score.server.auth.principal import InvalidToken, Principal, TokenVerifier, token_fingerprint

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_SCOPE_CLAIMS = ("scope", "scp", "context.scope")  # OAuth2 standard, Azure/Okta style, Ego


class PermissionSource(Protocol):
    """Scopes that come from a call to the provider rather than from the token (Keycloak's UMA)."""

    def scopes(self, token: str, claims: dict[str, Any]) -> frozenset[str]: ...


def claim_at(claims: dict[str, Any], path: str) -> Any:
    """The value at a dotted claim path such as Ego's ``context.scope``; None when absent."""
    value: Any = claims
    for name in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def scopes_from_claims(claims: dict[str, Any], paths: tuple[str, ...] = DEFAULT_SCOPE_CLAIMS) -> frozenset[str]:
    """Every scope in the given claims: space-separated strings (RFC 8693/9068) or arrays (Ego, ``scp``)."""
    found: set[str] = set()
    for path in paths:
        value = claim_at(claims, path)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(str(item) for item in value if isinstance(item, str) and item)
    return frozenset(found)


class JwtVerifier(TokenVerifier):
    def __init__(
        self,
        issuer: str,
        keys: KeySource,
        audiences: list[str] | None = None,
        algorithms: list[str] | None = None,
        scope_claims: tuple[str, ...] = DEFAULT_SCOPE_CLAIMS,
        permissions: PermissionSource | None = None,
        leeway: float = 10.0,
    ) -> None:
        chosen = set(algorithms or ["RS256", "ES256"])
        unsafe = chosen - ASYMMETRIC_ALGORITHMS
        if unsafe:
            raise ValueError(f"token algorithms {sorted(unsafe)} are not allowed: use asymmetric ones such as RS256")
        self.issuer = issuer
        self._keys = keys
        self._audiences = audiences or None
        self._algorithms = sorted(chosen)
        self._scope_claims = scope_claims
        self._permissions = permissions
        self._leeway = leeway

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the access token is not a well-formed JWT ({exc})") from exc
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise InvalidToken(
                f"the access token is signed with {str(algorithm)[:20]!r}; tokens of {self.issuer} must use "
                f"{', '.join(self._algorithms)}"
            )
        kid = header.get("kid")
        key = self._keys.key_for(kid if isinstance(kid, str) else None, algorithm)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audiences,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss"], "verify_aud": self._audiences is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the access token has expired; get a new one") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("the access token is not valid yet (nbf/iat in the future); check clocks") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken(
                f"the access token is not meant for this server (audience must be one of {self._audiences})"
            ) from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken(f"the access token's signature does not verify with {self.issuer}'s key") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the access token is not valid ({exc})") from exc
        if self._permissions is not None:
            scopes = self._permissions.scopes(token, claims)
        else:
            scopes = scopes_from_claims(claims, self._scope_claims)
        subject = claims.get("sub") or claims.get("client_id") or claim_at(claims, "context.user.name") or "unknown"
        return Principal(subject=str(subject), scopes=scopes, token_id=token_fingerprint(token))
