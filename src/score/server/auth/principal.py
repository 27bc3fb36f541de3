"""The verified caller, as every router and the policy see it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def token_fingerprint(token: str) -> str:
    """A non-reversible id for a token, safe for logs and audit lines (the token itself never is)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    token_id: str = ""  # token_fingerprint(), empty for anonymous callers
    anonymous: bool = False


ANONYMOUS = Principal(subject="anonymous", anonymous=True)


class InvalidToken(Exception):
    """The bearer token could not be verified; the message says why, never what the token was."""


class ProviderUnavailable(Exception):
    """The identity provider (JWKS, introspection, Keycloak) could not be asked: a 503, never a 401."""


class TokenVerifier:
    """Interface: turn a bearer token into a Principal or raise InvalidToken.

    Kept abstract so that external identity providers (JWKS, introspection, Keycloak) slot in beside
    the built-in issuer.
    """

    def verify(self, token: str) -> Principal:  # pragma: no cover - interface
        raise NotImplementedError
