"""Token verification against providers reached over real HTTP: JWKS rotation, PEM (Ego), Keycloak, API keys.

The JWKS and the Keycloak/Ego stand-ins are served by ``JsonServer`` on 127.0.0.1 (Keycloak and Ego
cannot run here; their answers follow their documentation). The full OIDC provider is exercised in
``tests/e2e/test_authorization_matrix.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from score.server.auth.factory import build_verifier
from score.server.auth.introspection import IntrospectionVerifier
from score.server.auth.jwt_verifier import JwtVerifier
from score.server.auth.keycloak import KeycloakPermissions
from score.server.auth.keys import JwksKeySource, PemKeySource
from score.server.auth.principal import InvalidToken, ProviderUnavailable
from score.server.auth.router import TokenRouter
from score.server.settings import AuthConfig
from tests.services.json_server import JsonServer, Seen

ISSUER = "https://idp.test/realms/score"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: Any) -> str:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode()


def _jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def _token(key: Any, kid: str | None = "k1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "score", "iat": now, "exp": now + 300, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def key() -> rsa.RSAPrivateKey:
    return _rsa()


def _pem_verifier(key: Any, **kwargs: Any) -> TokenRouter:
    verifier = JwtVerifier(ISSUER, PemKeySource(pem=_public_pem(key)), audiences=["score"], **kwargs)
    return TokenRouter([verifier])


def test_scopes_come_from_scope_string_scp_array_and_ego_context(key: rsa.RSAPrivateKey) -> None:
    verify = _pem_verifier(key).verify
    assert verify(_token(key, scope="score.READ PROGRAMDATA-A.WRITE")).scopes == {"score.READ", "PROGRAMDATA-A.WRITE"}
    assert verify(_token(key, scp=["score.WRITE"])).scopes == {"score.WRITE"}
    ego = verify(_token(key, context={"scope": ["PROGRAMDATA-B.READ", "song.WRITE"], "user": {"name": "bob"}}))
    assert ego.scopes == {"PROGRAMDATA-B.READ", "song.WRITE"}
    assert ego.subject == "alice" and ego.token_id and ego.token_id not in ("", None)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        # times are offsets from when the test runs, not from collection (a long suite outlived +600 s)
        ({"exp": -120}, "has expired"),
        ({"nbf": 600}, "not valid yet"),
        ({"aud": "someone-else"}, "not meant for this server"),
        ({"exp": None}, "not valid"),
    ],
)
def test_expiry_not_before_audience_and_missing_claims_are_enforced(
    key: rsa.RSAPrivateKey, claims: dict[str, Any], message: str
) -> None:
    now = int(time.time())
    timed = {k: now + v if k in ("exp", "nbf") and v is not None else v for k, v in claims.items()}
    with pytest.raises(InvalidToken, match=message):
        _pem_verifier(key).verify(_token(key, **timed))


def test_unknown_issuer_unknown_key_and_tampered_tokens_are_refused(key: rsa.RSAPrivateKey) -> None:
    verify = _pem_verifier(key).verify
    with pytest.raises(InvalidToken, match="does not trust"):
        verify(_token(key, iss="https://evil.test"))
    with pytest.raises(InvalidToken, match="signature does not verify"):
        verify(_token(_rsa()))  # right issuer, someone else's key
    header, payload, signature = _token(key, scope="PROGRAMDATA-A.READ").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "score.WRITE"  # escalate without re-signing
    with pytest.raises(InvalidToken, match="signature does not verify"):
        verify(f"{header}.{_b64(claims)}.{signature}")


def test_alg_none_and_hmac_with_the_public_key_are_refused(key: rsa.RSAPrivateKey) -> None:
    verify = _pem_verifier(key).verify
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "mallory", "aud": "score", "exp": now + 300, "scope": "score.WRITE"}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(InvalidToken, match="'none'"):
        verify(unsigned)
    # HS256 keyed with the public key's PEM: the classic confusion attack, built by hand as PyJWT refuses to.
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    mac = hmac.new(_public_pem(key).encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match="'HS256'"):
        verify(forged)
    with pytest.raises(ValueError, match="not allowed"):
        JwtVerifier(ISSUER, PemKeySource(pem=_public_pem(key)), algorithms=["HS256"])


def test_jwks_rotation_refetches_on_unknown_kid_but_not_for_every_forged_kid(key: rsa.RSAPrivateKey) -> None:
    second = ec.generate_private_key(ec.SECP256R1())
    served = {"keys": [_jwk(key, "k1", "RS256")]}
    with JsonServer({"/certs": lambda _: (200, served)}) as idp:
        keys = JwksKeySource(f"{idp.url}/certs", min_refresh_interval=0.5)
        router = TokenRouter([JwtVerifier(ISSUER, keys, audiences=["score"])])
        assert router.verify(_token(key, scope="score.READ")).scopes == {"score.READ"}
        assert router.verify(_token(key)).subject == "alice"
        assert idp.count("/certs") == 1  # cached

        served["keys"] = [_jwk(key, "k1", "RS256"), _jwk(second, "k2", "ES256")]  # the provider rotates
        time.sleep(0.6)
        assert router.verify(_token(second, kid="k2", alg="ES256", scope="score.WRITE")).scopes == {"score.WRITE"}
        assert idp.count("/certs") == 2

        for _ in range(5):  # made-up kids: refused, and at most one refetch per interval
            with pytest.raises(InvalidToken, match="not one its issuer publishes"):
                router.verify(_token(_rsa(), kid="made-up"))
        assert idp.count("/certs") <= 3

        with pytest.raises(InvalidToken, match="is for ES256"):  # a key published for ES256 used as RS256
            router.verify(_token(key, kid="k2"))


def test_unreachable_jwks_is_a_provider_outage_not_a_bad_token(key: rsa.RSAPrivateKey) -> None:
    router = TokenRouter([JwtVerifier(ISSUER, JwksKeySource("http://127.0.0.1:9/certs", timeout=1))])
    with pytest.raises(ProviderUnavailable, match="cannot fetch"):
        router.verify(_token(key))


def test_ego_public_key_fetched_from_its_url(key: rsa.RSAPrivateKey) -> None:
    pem = _public_pem(key).encode()
    with JsonServer({"/oauth/token/public_key": lambda _: (200, pem)}) as ego:
        verifier = JwtVerifier(ISSUER, PemKeySource(url=f"{ego.url}/oauth/token/public_key"))
        token = _token(key, context={"scope": ["score.READ"]})
        assert verifier.verify(token).scopes == {"score.READ"}
        assert verifier.verify(token).scopes == {"score.READ"}
        assert ego.count("/oauth/token/public_key") == 1


def _keycloak(permissions: dict[str, list[dict[str, Any]]]) -> JsonServer:
    """Keycloak's token endpoint in UMA ``response_mode=permissions`` (documented answer shape)."""

    def token_endpoint(seen: Seen) -> tuple[int, Any]:
        if seen.form.get("grant_type") != "urn:ietf:params:oauth:grant-type:uma-ticket":
            return 400, {"error": "unsupported_grant_type"}
        if seen.form.get("audience") != "score" or seen.form.get("response_mode") != "permissions":
            return 400, {"error": "invalid_request"}
        token = seen.headers.get("authorization", "").removeprefix("Bearer ")
        subject = jwt.decode(token, options={"verify_signature": False})["sub"]
        granted = permissions.get(subject, [])
        if not granted:
            return 403, {"error": "access_denied", "error_description": "not_authorized"}
        return 200, granted

    return JsonServer({"/realms/score/protocol/openid-connect/token": token_endpoint})


def test_keycloak_permissions_become_scopes_and_are_cached_per_token(key: rsa.RSAPrivateKey) -> None:
    grants = {
        "alice": [
            {"rsid": "1", "rsname": "score", "scopes": ["READ"]},
            {"rsid": "2", "rsname": "PROGRAMDATA-A", "scopes": ["READ", "WRITE"]},
        ]
    }
    path = "/realms/score/protocol/openid-connect/token"
    with _keycloak(grants) as keycloak:
        permissions = KeycloakPermissions(f"{keycloak.url}{path}", "score", cache_ttl=30)
        verifier = JwtVerifier(ISSUER, PemKeySource(pem=_public_pem(key)), permissions=permissions)
        token = _token(key, scope="score.WRITE")  # claims are ignored in Keycloak mode, as in the original
        expected = {"score.READ", "PROGRAMDATA-A.READ", "PROGRAMDATA-A.WRITE"}
        for _ in range(5):
            assert verifier.verify(token).scopes == expected
        assert keycloak.count(path) == 1
        assert keycloak.requests[0].headers["authorization"] == f"Bearer {token}"
        assert verifier.verify(_token(key, sub="bob")).scopes == frozenset()  # 403 from Keycloak: no scopes
        assert keycloak.count(path) == 2


def _ego_keys(keys: dict[str, dict[str, Any]]) -> JsonServer:
    """An API-key check endpoint answering RFC 7662 or Ego's legacy shape, from a fixed table."""

    def check(seen: Seen) -> tuple[int, Any]:
        if seen.headers.get("authorization") != "Basic " + base64.b64encode(b"score:secret").decode():
            return 401, {"error": "unauthorized"}
        return 200, keys.get(seen.form.get("apiKey", ""), {"active": False})

    return JsonServer({"/introspect": check})


def test_api_keys_by_introspection_rfc7662_and_legacy_shapes() -> None:
    now = int(time.time())
    keys = {
        "7d0c0a0e-0d69-4b6f-8b8b-3a4e5cf5f0aa": {"active": True, "scope": "score.READ song.WRITE", "sub": "carol"},
        "legacy-key": {"exp": now + 600, "user_id": "dave", "scope": ["PROGRAMDATA-A.READ"]},
        "revoked-key": {"exp": now + 600, "user_id": "erin", "scope": ["score.READ"], "revoked": True},
        "expired-key": {"active": True, "exp": now - 5, "scope": "score.READ"},
        "error-key": {"error": "invalid_token"},
    }
    with _ego_keys(keys) as ego:
        introspection = IntrospectionVerifier(f"{ego.url}/introspect", "score", "secret", token_field="apiKey")
        router = TokenRouter([], introspection)
        carol = router.verify("7d0c0a0e-0d69-4b6f-8b8b-3a4e5cf5f0aa")
        assert (carol.subject, carol.scopes) == ("carol", {"score.READ", "song.WRITE"})
        assert router.verify("legacy-key").scopes == {"PROGRAMDATA-A.READ"}
        for refused in ("revoked-key", "error-key", "unknown-key"):
            with pytest.raises(InvalidToken, match="not active"):
                router.verify(refused)
        with pytest.raises(InvalidToken, match="has expired"):
            router.verify("expired-key")
        calls = ego.count("/introspect")
        router.verify("legacy-key")
        with pytest.raises(InvalidToken):
            router.verify("revoked-key")
        assert ego.count("/introspect") == calls  # answers, refusals too, are cached briefly

        wrong_secret = TokenRouter([], IntrospectionVerifier(f"{ego.url}/introspect", "score", "nope"))
        # Ego answers 401 for unknown keys too, so a 401 refuses the key (a 401, as the original), not a 503.
        with pytest.raises(InvalidToken, match=r"refused by the introspection endpoint \(401\)"):
            wrong_secret.verify("legacy-key")


def test_settings_build_a_router_with_builtin_pem_and_jwks_providers(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    auth = AuthConfig.model_validate(
        {"jwt": [{"issuer": ISSUER, "public_key": _public_pem(key), "audience": ["score"]}]}
    )
    router = build_verifier(auth, tmp_path)
    assert router.verify(_token(key, scope="score.READ")).scopes == {"score.READ"}
    with pytest.raises(InvalidToken, match="not a JWT"):
        router.verify("a1b2c3d4-0000-0000-0000-000000000000")
    with pytest.raises(ValueError, match="exactly one of"):
        AuthConfig.model_validate({"jwt": [{"issuer": ISSUER}]})
