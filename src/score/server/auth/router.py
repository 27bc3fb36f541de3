"""Picks the verifier for a bearer token: JWTs by their issuer, everything else by introspection.

Routing on the (unverified) ``iss`` claim, instead of trying every verifier in turn, gives callers an
exact reason for a refusal ("issued by X, which this server does not trust") and never sends a JWT to
an introspection endpoint or another provider's key set. The signature is then checked by the verifier
that owns the issuer, so a forged ``iss`` gains nothing.
"""

from __future__ import annotations

import hashlib
import time
from typing import Protocol

import jwt

from score.server.auth.builtin import BuiltinIssuer
from score.server.auth.principal import InvalidToken, Principal, ProviderUnavailable, TokenVerifier
from score.server.observability.metrics import TOKEN_CHECKS
from score.server.ttl_cache import TtlCache


class IssuerVerifier(Protocol):
    issuer: str

    def verify(self, token: str) -> Principal: ...


def unverified_claims(token: str) -> dict[str, object] | None:
    """The claims of a JWT-shaped token, unverified (None when the token is not a JWT at all)."""
    if token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    return claims if isinstance(claims, dict) else None


VERIFIED_TTL = 60.0  # seconds a verified JWT's principal is reused (never past the token's own expiry)


class TokenRouter(TokenVerifier):
    def __init__(self, jwt_verifiers: list[IssuerVerifier], introspection: TokenVerifier | None = None) -> None:
        self._by_issuer = {verifier.issuer: verifier for verifier in jwt_verifiers}
        self._introspection = introspection
        # A client sends the same token with every call: its signature is checked once, not per request (an
        # ECDSA verify costs about a quarter of a millisecond). Keyed by the token's digest, never the token.
        self._verified = TtlCache(VERIFIED_TTL, max_entries=10_000, name="verified_tokens")

    def verify(self, token: str) -> Principal:
        claims = unverified_claims(token)
        if claims is None:
            if self._introspection is None:
                TOKEN_CHECKS.labels("none", "invalid").inc()
                raise InvalidToken("the access token is not a JWT, and this server has no API-key introspection set up")
            return _counted(self._introspection, "introspection", token)
        issuer = claims.get("iss")
        issuer = issuer if isinstance(issuer, str) else ""
        verifier = self._by_issuer.get(issuer)
        if verifier is None:
            TOKEN_CHECKS.labels("none", "invalid").inc()
            shown = repr(issuer[:100]) if issuer else "no issuer"
            raise InvalidToken(f"the access token was issued by {shown}, which this server does not trust")
        provider = "builtin" if isinstance(verifier, BuiltinIssuer) else "jwt"
        digest = hashlib.sha256(token.encode()).digest()
        expires = claims.get("exp")
        remaining = expires - time.time() if isinstance(expires, int | float) else 0.0
        known = self._verified.get(digest) if remaining > 0 else None
        if known is not None:
            TOKEN_CHECKS.labels(provider, "ok").inc()
            return known
        principal = _counted(verifier, provider, token)
        self._verified.put(digest, principal, ttl=remaining)  # a token without exp is checked every time
        return principal


def _counted(verifier: IssuerVerifier | TokenVerifier, provider: str, token: str) -> Principal:
    """``verifier.verify(token)``, counted by provider and outcome (ok, invalid, unavailable)."""
    try:
        principal = verifier.verify(token)
    except InvalidToken:
        TOKEN_CHECKS.labels(provider, "invalid").inc()
        raise
    except ProviderUnavailable:
        TOKEN_CHECKS.labels(provider, "unavailable").inc()
        raise
    TOKEN_CHECKS.labels(provider, "ok").inc()
    return principal
