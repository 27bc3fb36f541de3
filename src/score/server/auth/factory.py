"""Builds the server's token verifier from settings: the built-in issuer plus any configured providers."""

from __future__ import annotations

from pathlib import Path

from score.server.auth.builtin import BuiltinIssuer
from score.server.auth.introspection import IntrospectionVerifier
from score.server.auth.jwt_verifier import JwtVerifier
from score.server.auth.keycloak import KeycloakPermissions
from score.server.auth.keys import JwksKeySource, KeySource, PemKeySource
from score.server.auth.principal import TokenVerifier
from score.server.auth.router import IssuerVerifier, TokenRouter
from score.server.settings import AuthConfig, JwtProviderConfig


def _key_source(provider: JwtProviderConfig, timeout: float) -> KeySource:
    if provider.jwks_url:
        return JwksKeySource(provider.jwks_url, cache_ttl=provider.jwks_cache_ttl, timeout=timeout)
    if provider.public_key_file:
        try:
            return PemKeySource(pem=provider.public_key_file.read_text())
        except OSError as exc:
            raise ValueError(f"cannot read the public key of {provider.issuer}: {exc}") from exc
    return PemKeySource(pem=provider.public_key, url=provider.public_key_url, timeout=timeout)


def _jwt_verifier(provider: JwtProviderConfig, timeout: float) -> JwtVerifier:
    permissions = None
    if provider.keycloak is not None:
        permissions = KeycloakPermissions(
            provider.keycloak.token_url, provider.keycloak.client_id, provider.keycloak.cache_ttl, timeout
        )
    return JwtVerifier(
        issuer=provider.issuer,
        keys=_key_source(provider, timeout),
        audiences=provider.audience,
        algorithms=provider.algorithms,
        scope_claims=tuple(provider.scope_claims),
        permissions=permissions,
        leeway=provider.leeway,
    )


def build_verifier(auth: AuthConfig, data_dir: Path) -> TokenVerifier:
    verifiers: list[IssuerVerifier] = [BuiltinIssuer(data_dir)] if auth.builtin else []
    verifiers.extend(_jwt_verifier(provider, auth.timeout) for provider in auth.jwt)
    introspection = None
    if auth.introspection is not None:
        config = auth.introspection
        introspection = IntrospectionVerifier(
            config.url,
            config.client_id,
            config.client_secret.get_secret_value(),
            token_field=config.token_field,
            cache_ttl=config.cache_ttl,
            timeout=auth.timeout,
            body=config.body,
        )
    return TokenRouter(verifiers, introspection)
