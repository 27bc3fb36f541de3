"""Picks the verifier for a bearer token: JWTs by their issuer, everything else by introspection.

Routing on the (unverified) ``iss`` claim, instead of trying every verifier in turn, gives callers an
exact reason for a refusal ("issued by X, which this server does not trust") and never sends a JWT to
an introspection endpoint or another provider's key set. The signature is then checked by the verifier
that owns the issuer, so a forged ``iss`` gains nothing.
"""

from __future__ import annotations

from typing import Protocol

import jwt

from score.server.auth.builtin import BuiltinIssuer
from score.server.auth.principal import InvalidToken, Principal, ProviderUnavailable, TokenVerifier
from score.server.observability.metrics import TOKEN_CHECKS


class IssuerVerifier(Protocol):
    issuer: str

    def verify(self, token: str) -> Principal: ...


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` of a JWT-shaped token (None when the token is not a JWT at all)."""
    if token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else ""


class TokenRouter(TokenVerifier):
    def __init__(self, jwt_verifiers: list[IssuerVerifier], introspection: TokenVerifier | None = None) -> None:
        self._by_issuer = {verifier.issuer: verifier for verifier in jwt_verifiers}
        self._introspection = introspection

    def verify(self, token: str) -> Principal:
        issuer = unverified_issuer(token)
        if issuer is None:
            if self._introspection is None:
                TOKEN_CHECKS.labels("none", "invalid").inc()
                raise InvalidToken("the access token is not a JWT, and this server has no API-key introspection set up")
            return _counted(self._introspection, "introspection", token)
        verifier = self._by_issuer.get(issuer)
        if verifier is None:
            TOKEN_CHECKS.labels("none", "invalid").inc()
            shown = repr(issuer[:100]) if issuer else "no issuer"
            raise InvalidToken(f"the access token was issued by {shown}, which this server does not trust")
        return _counted(verifier, "builtin" if isinstance(verifier, BuiltinIssuer) else "jwt", token)


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
