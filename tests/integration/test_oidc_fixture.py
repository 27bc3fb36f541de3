"""The OpenID provider fixture against the real node-oidc-provider: JWT access tokens that verify with the
provider's JWKS, opaque tokens that introspect (and stop doing so once revoked or expired), exact scopes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import pytest

from tests.services.oidc import JWT_ES256_RESOURCE, JWT_RESOURCE, OPAQUE_RESOURCE, OidcProvider, client_secret

READER = "song-reader"
WRITER = "score-uploader"
SHORT = "score-uploader-short"
CLIENTS = {
    READER: "score.READ PROGRAMDATA-STUDYA.READ PROGRAMDATA-STUDYB.READ",
    WRITER: "score.WRITE PROGRAMDATA-STUDYA.WRITE",
    SHORT: "score.WRITE",
}


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    log_path = tmp_path_factory.mktemp("oidc") / "oidc-provider.log"
    with OidcProvider(CLIENTS, es256=True, log_path=log_path) as provider:
        yield provider


def decode(oidc: OidcProvider, token: str, audience: str = JWT_RESOURCE, algorithm: str = "RS256") -> dict:
    key = jwt.PyJWKClient(oidc.jwks_url).get_signing_key_from_jwt(token)
    return jwt.decode(token, key, algorithms=[algorithm], audience=audience, issuer=oidc.issuer)


def test_discovery_names_the_fixture_endpoints(oidc: OidcProvider) -> None:
    metadata = httpx.get(f"{oidc.issuer}/.well-known/openid-configuration").json()
    assert metadata["issuer"] == oidc.issuer
    assert metadata["jwks_uri"] == oidc.jwks_url
    assert metadata["token_endpoint"] == oidc.token_url
    assert metadata["introspection_endpoint"] == oidc.introspection_url
    assert metadata["revocation_endpoint"] == oidc.revocation_url
    assert "client_credentials" in metadata["grant_types_supported"]


def test_jwt_token_verifies_with_the_jwks_and_carries_the_exact_scopes(oidc: OidcProvider) -> None:
    claims = decode(oidc, oidc.token(READER))
    assert claims["scope"].split() == CLIENTS[READER].split()
    assert claims["aud"] == JWT_RESOURCE
    assert claims["iss"] == oidc.issuer
    assert claims["sub"] == READER
    assert claims["client_id"] == READER
    assert 3500 < claims["exp"] - time.time() <= 3600
    assert jwt.get_unverified_header(oidc.token(READER))["typ"] == "at+jwt"

    assert decode(oidc, oidc.token(WRITER))["scope"].split() == ["score.WRITE", "PROGRAMDATA-STUDYA.WRITE"]
    assert decode(oidc, oidc.token(WRITER, scopes="PROGRAMDATA-STUDYA.WRITE"))["scope"] == "PROGRAMDATA-STUDYA.WRITE"


def test_jwt_token_is_refused_for_another_audience_or_a_wrong_key(oidc: OidcProvider) -> None:
    token = oidc.token(READER)
    with pytest.raises(jwt.InvalidAudienceError):
        decode(oidc, token, audience=OPAQUE_RESOURCE)
    forged = token[: token.rindex(".") + 1] + "A" * 342
    with pytest.raises(jwt.InvalidSignatureError):
        decode(oidc, forged)


def test_es256_resource_signs_with_the_ec_key(oidc: OidcProvider) -> None:
    token = oidc.token(READER, scopes="score.READ", resource=JWT_ES256_RESOURCE)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert decode(oidc, token, audience=JWT_ES256_RESOURCE, algorithm="ES256")["scope"] == "score.READ"


def test_scopes_the_client_does_not_hold_are_refused(oidc: OidcProvider) -> None:
    response = oidc.token_response(READER, scopes="score.WRITE")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    response = httpx.post(
        oidc.token_url,
        data={"grant_type": "client_credentials", "client_id": READER, "client_secret": "wrong", "scope": "score.READ"},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_opaque_token_introspects_with_its_scopes(oidc: OidcProvider) -> None:
    token = oidc.token(WRITER, opaque=True)
    assert token.count(".") == 0
    with pytest.raises(jwt.DecodeError):
        jwt.get_unverified_header(token)
    info = oidc.introspect(token)
    assert info["active"] is True
    assert info["scope"].split() == CLIENTS[WRITER].split()
    assert info["client_id"] == WRITER
    assert info["sub"] == WRITER
    assert info["aud"] == OPAQUE_RESOURCE
    assert info["iss"] == oidc.issuer
    assert 3500 < info["exp"] - time.time() <= 3600

    assert oidc.introspect(oidc.token(READER, opaque=True, scopes="PROGRAMDATA-STUDYB.READ"))["scope"] == (
        "PROGRAMDATA-STUDYB.READ"
    )
    assert oidc.introspect("not-a-token") == {"active": False}


def test_only_the_owner_and_score_server_may_introspect(oidc: OidcProvider) -> None:
    token = oidc.token(WRITER, opaque=True)
    as_other = httpx.post(
        oidc.introspection_url, data={"token": token, "client_id": READER, "client_secret": client_secret(READER)}
    )
    assert as_other.json() == {"active": False}
    as_owner = httpx.post(
        oidc.introspection_url, data={"token": token, "client_id": WRITER, "client_secret": client_secret(WRITER)}
    )
    assert as_owner.json()["active"] is True


def test_revoked_opaque_token_is_inactive(oidc: OidcProvider) -> None:
    token = oidc.token(READER, opaque=True)
    other = oidc.token(READER, opaque=True)
    assert oidc.introspect(token)["active"] is True
    oidc.revoke(token, READER)
    assert oidc.introspect(token) == {"active": False}
    assert oidc.introspect(other)["active"] is True


def test_short_client_tokens_expire(oidc: OidcProvider) -> None:
    jwt_token = oidc.token(SHORT)
    opaque_token = oidc.token(SHORT, opaque=True)
    claims = decode(oidc, jwt_token)
    assert claims["exp"] - claims["iat"] == 2
    assert claims["scope"] == "score.WRITE"
    assert oidc.introspect(opaque_token)["active"] is True
    time.sleep(3)
    with pytest.raises(jwt.ExpiredSignatureError):
        decode(oidc, jwt_token)
    assert oidc.introspect(opaque_token) == {"active": False}
