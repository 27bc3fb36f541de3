"""The full authorisation matrix through a real OpenID provider, the real server and the real client.

{no token, expired token, revoked API key, study A, study B, system READ, system WRITE}
x {open, controlled} x {study A, study B} x {upload, download, url, listing}: every cell asserts the
status code, that no URL is issued on refusal, what the client says, and that the decision wrote
exactly one audit line. Tokens come from node-oidc-provider (JWT via JWKS, opaque via introspection).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import Client, Registry, ScoreServer, make_file, md5_of
from tests.services.json_server import JsonServer, Seen
from tests.services.oidc import JWT_ES256_RESOURCE, JWT_RESOURCE, OidcProvider

pytestmark = pytest.mark.e2e

STUDIES = {"A": "STUDYA", "B": "STUDYB"}
CLIENTS = {
    "study-a": "PROGRAMDATA-STUDYA.READ PROGRAMDATA-STUDYA.WRITE",
    "study-b": "PROGRAMDATA-STUDYB.READ PROGRAMDATA-STUDYB.WRITE",
    "system-read": "score.READ",
    "system-write": "score.WRITE",
    "expiring-short": "score.READ score.WRITE PROGRAMDATA-STUDYA.READ",
    "keycloak-user": "openid",
}
TOKENS = ["no token", "expired token", "revoked API key", "study A", "study B", "system READ", "system WRITE"]
ACCESS = ["open", "controlled"]
OPERATIONS = ["upload", "download", "url", "listing"]
SIZE = 3000
KEYCLOAK_PATH = "/realms/score/protocol/openid-connect/token"


def expected_status(token: str, access: str, study: str, operation: str) -> int:
    """Score's rules (reference §4.3-4.4), written out independently of the server's policy code."""
    if token in ("expired token", "revoked API key"):
        return 401  # a bad token is refused whatever it asks for, even an open file
    if operation == "listing":
        return 401 if token == "no token" else 200
    if operation == "upload":
        if token == "no token":
            return 401
        return 200 if token in ("system WRITE", f"study {study}") else 403
    if token == "system READ" or access == "open" or token == f"study {study}":
        return 200
    return 401 if token == "no token" else 403


@dataclass
class World:
    provider: OidcProvider
    server: ScoreServer
    registry: Registry
    tokens: dict[str, str | None]
    published: dict[tuple[str, str], tuple[str, Path]]  # (access, study) -> (object id, source)
    uploads: dict[tuple[str, str, str], tuple[str, Path]]  # (token, access, study) -> (object id, source)
    workdir: Path
    issued_urls: list[str]

    def audit_lines(self) -> list[dict[str, Any]]:
        path = self.server.data_dir / "logs" / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def client(self, token: str) -> Client:
        return Client(self.server, self.tokens[token], self.workdir)


def _config(tmp: Path, provider: OidcProvider, keycloak_url: str | None = None) -> Path:
    """The server's auth settings as a deployment would write them (TOML, ``SCORE_CONFIG``)."""
    lines = [
        "[auth]",
        "[[auth.jwt]]",
        f'issuer = "{provider.issuer}"',
        f'jwks_url = "{provider.jwks_url}"',
        f'audience = ["{JWT_RESOURCE}"]',
        "leeway = 0",
    ]
    if keycloak_url:
        lines += ["[auth.jwt.keycloak]", f'token_url = "{keycloak_url}"', 'client_id = "score"']
    client_id, secret = provider.introspection_client
    lines += [
        "[auth.introspection]",
        f'url = "{provider.introspection_url}"',
        f'client_id = "{client_id}"',
        f'client_secret = "{secret}"',
    ]
    path = tmp / ("keycloak.toml" if keycloak_url else "score.toml")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("matrix")
    with OidcProvider(CLIENTS, es256=True) as provider:
        server = ScoreServer(tmp / "data", extra_env={"SCORE_CONFIG": str(_config(tmp, provider))}).start()
        try:
            registry = Registry(server, server.token("score.WRITE score.READ song.WRITE"))
            admin = Client(server, server.token("score.WRITE score.READ"), tmp)
            published: dict[tuple[str, str], tuple[str, Path]] = {}
            uploads: dict[tuple[str, str, str], tuple[str, Path]] = {}
            for study, study_id in STUDIES.items():
                for access in ACCESS:
                    source = make_file(tmp / f"pub-{study}-{access}" / "reads.bin", SIZE, seed=len(published))
                    analysis, ids = registry.submit(study_id, [source], access=access)
                    assert admin.run("upload", "--file", str(source), "--object-id", ids["reads.bin"]).returncode == 0
                    assert registry.publish(study_id, analysis).status_code == 200
                    published[(access, study)] = (ids["reads.bin"], source)

                    folder = tmp / f"up-{study}-{access}"
                    sources = [make_file(folder / f"t{n}.bin", SIZE, seed=100 + n) for n in range(len(TOKENS))]
                    _, ids = registry.submit(study_id, sources, access=access)
                    for token, source in zip(TOKENS, sources, strict=True):
                        uploads[(token, access, study)] = (ids[source.name], source)

            revoked = provider.token("study-a", opaque=True)
            provider.revoke(revoked, "study-a")
            expired = provider.token("expiring-short")
            tokens: dict[str, str | None] = {
                "no token": None,
                "expired token": expired,
                "revoked API key": revoked,
                "study A": provider.token("study-a"),
                "study B": provider.token("study-b"),
                "system READ": provider.token("system-read"),
                "system WRITE": provider.token("system-write"),
            }
            time.sleep(max(0.0, _exp(expired) - time.time() + 1.1))  # the short token is now expired
            workdir = tmp / "work"
            workdir.mkdir()
            yield World(provider, server, registry, tokens, published, uploads, workdir, [])
        finally:
            server.stop()


def _exp(token: str) -> float:
    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


def _request(world: World, token: str, operation: str, object_id: str) -> httpx.Response:
    value = world.tokens[token]
    headers = {"Authorization": f"Bearer {value}"} if value else {}
    url = world.server.url
    if operation == "upload":
        return httpx.post(f"{url}/upload/{object_id}/uploads", params={"fileSize": SIZE}, headers=headers)
    if operation == "listing":
        return httpx.get(f"{url}/listing", headers=headers)
    params = {"offset": 0, "length": -1, "external": str(operation == "url").lower()}
    return httpx.get(f"{url}/download/{object_id}", params=params, headers=headers)


def _urls_in(body: Any) -> list[str]:
    if isinstance(body, dict):
        return [u for v in body.values() for u in _urls_in(v)]
    if isinstance(body, list):
        return [u for v in body for u in _urls_in(v)]
    return [body] if isinstance(body, str) and body.startswith("http") else []


def _refusal_words(token: str, status: int, study_id: str) -> list[str]:
    """What the client must say: missing, expired, rejected token, or which scope for which study."""
    if status == 403:
        return ["permission denied", study_id]
    return {
        "no token": ["no access token was sent"],
        "expired token": ["expired"],
        "revoked API key": ["not active"],
    }[token]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("study", list(STUDIES))
@pytest.mark.parametrize("access", ACCESS)
@pytest.mark.parametrize("token", TOKENS)
def test_cell(world: World, token: str, access: str, study: str, operation: str, tmp_path: Path) -> None:
    want = expected_status(token, access, study, operation)
    if operation == "upload":
        object_id, source = world.uploads[(token, access, study)]
    else:
        object_id, source = world.published[(access, study)]

    before = len(world.audit_lines())
    response = _request(world, token, operation, object_id)
    assert response.status_code == want, response.text
    lines = world.audit_lines()[before:]
    urls = _urls_in(response.json())
    world.issued_urls.extend(urls)
    if want != 200:
        assert urls == [], "a refusal must not issue any URL"
        assert response.json()["message"], response.text
        assert len(lines) == 1 and lines[0]["decision"] == "deny", lines
        assert lines[0]["reason"] == response.json()["message"]
    elif operation == "listing":
        assert lines == []  # issues no URL: not an audited decision
        assert {item["id"] for item in response.json()} >= {oid for oid, _ in world.published.values()}
    else:
        assert urls, "an allowed request must issue URLs"
        assert len(lines) == 1 and lines[0]["decision"] == "allow", lines
    if lines:
        line = lines[0]
        assert line["object"] == (object_id if operation != "listing" else "/listing")
        assert line["action"] == {"upload": "upload", "listing": "list"}.get(operation, "download")
        value = world.tokens[token]
        assert line["token"] == (None if value is None else hashlib.sha256(value.encode()).hexdigest()[:16])
        if operation != "listing" and want in (200, 403):
            assert line["study"] == STUDIES[study]

    if operation == "listing":
        return  # score-client has no listing command; the API answer above is the whole cell
    client = world.client(token)
    if operation == "upload":
        # --force: the raw initiate above left an upload this client has no journal for
        result = client.run("upload", "--force", "--file", str(source), "--object-id", object_id)
    elif operation == "download":
        result = client.run("download", "--object-id", object_id, "--output-dir", str(tmp_path / "out"))
    else:
        result = client.run("url", "--object-id", object_id)
    if want == 200:
        assert result.returncode == 0, result.stderr
        if operation == "download":
            assert md5_of(tmp_path / "out" / source.name) == md5_of(source)
        if operation == "url":
            assert httpx.get(result.stdout.strip()).content == source.read_bytes()
        if operation == "upload":
            assert (
                httpx.get(
                    f"{world.server.url}/upload/{object_id}",
                    headers={"Authorization": f"Bearer {world.tokens['system WRITE']}"},
                ).text.strip()
                == "true"
            )
    else:
        assert result.returncode != 0
        assert "http" not in result.stdout
        for word in _refusal_words(token, want, STUDIES[study]):
            assert word in result.stderr, result.stderr
        assert not (tmp_path / "out" / source.name).exists()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forgeries(world: World) -> dict[str, str]:
    genuine = world.tokens["system READ"]
    assert genuine is not None
    header, payload, signature = genuine.split(".")
    claims = jwt.decode(genuine, options={"verify_signature": False})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(genuine)["kid"]
    return {
        "unknown key": jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": kid}),
        "unknown kid": jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "not-published"}),
        "wrong issuer": jwt.encode({**claims, "iss": "https://evil.test"}, stranger, algorithm="RS256"),
        "wrong audience": world.provider.token("system-read", resource=JWT_ES256_RESOURCE),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "tampered": f"{header}.{_b64({**claims, 'scope': 'score.READ score.WRITE'})}.{signature}",
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize(
    "forgery", ["unknown key", "unknown kid", "wrong issuer", "wrong audience", "alg none", "tampered", "garbage"]
)
def test_forged_and_foreign_tokens_are_refused(world: World, forgery: str) -> None:
    token = _forgeries(world)[forgery]
    object_id, _ = world.published[("controlled", "A")]
    before = len(world.audit_lines())
    response = httpx.get(
        f"{world.server.url}/download/{object_id}",
        params={"offset": 0, "length": -1},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401, response.text
    assert _urls_in(response.json()) == []
    lines = world.audit_lines()[before:]
    assert len(lines) == 1 and lines[0]["decision"] == "deny" and lines[0]["subject"] == "unverified"
    world.tokens[f"forged: {forgery}"] = token  # the log check below covers these too


def test_an_active_api_key_works_like_the_jwt_of_the_same_client(world: World, tmp_path: Path) -> None:
    key = world.provider.token("study-b", opaque=True)
    world.tokens["study B API key"] = key
    object_id, source = world.published[("controlled", "B")]
    client = Client(world.server, key, world.workdir)
    result = client.run("download", "--object-id", object_id, "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert md5_of(tmp_path / source.name) == md5_of(source)
    denied = client.run("url", "--object-id", world.published[("controlled", "A")][0])
    assert denied.returncode != 0 and "PROGRAMDATA-STUDYA.READ" in denied.stderr


def test_keycloak_mode_takes_scopes_from_the_permission_endpoint_and_caches_them(world: World) -> None:
    """Keycloak cannot run here: its UMA permission endpoint is played from its documented answer shape."""
    grants = {"keycloak-user": [{"rsid": "r1", "rsname": "PROGRAMDATA-STUDYA", "scopes": ["READ"]}]}

    def permissions(seen: Seen) -> tuple[int, Any]:
        bearer = seen.headers.get("authorization", "").removeprefix("Bearer ")
        granted = grants.get(jwt.decode(bearer, options={"verify_signature": False})["sub"])
        return (200, granted) if granted else (403, {"error": "access_denied", "error_description": "not_authorized"})

    with JsonServer({KEYCLOAK_PATH: permissions}) as keycloak:
        config = _config(world.workdir.parent, world.provider, keycloak_url=f"{keycloak.url}{KEYCLOAK_PATH}")
        # A replica on the same data directory: same objects and registry, Keycloak-mode authorisation.
        replica = ScoreServer(world.server.data_dir, extra_env={"SCORE_CONFIG": str(config)}).start()
        try:
            token = world.provider.token("keycloak-user")
            headers = {"Authorization": f"Bearer {token}"}
            controlled_a, _ = world.published[("controlled", "A")]
            controlled_b, _ = world.published[("controlled", "B")]

            def status(object_id: str, bearer: dict[str, str]) -> int:
                url = f"{replica.url}/download/{object_id}"
                return httpx.get(url, params={"offset": 0, "length": -1}, headers=bearer).status_code

            assert [status(controlled_a, headers) for _ in range(3)] == [200, 200, 200]
            assert status(controlled_b, headers) == 403
            assert keycloak.count(KEYCLOAK_PATH) == 1  # one round trip for four decisions
            assert keycloak.requests[0].form == {
                "grant_type": "urn:ietf:params:oauth:grant-type:uma-ticket",
                "audience": "score",
                "response_mode": "permissions",
            }
            # The token's own scope claim (score.READ) is ignored: Keycloak granted this client nothing.
            system_read = world.provider.token("system-read")
            assert status(controlled_a, {"Authorization": f"Bearer {system_read}"}) == 403
        finally:
            replica.stop()
    world.tokens["keycloak user"] = token


def test_no_token_or_url_signature_ever_reaches_a_log(world: World) -> None:
    logs = [world.server.log_path.read_text(errors="replace"), world.provider.log_path.read_text(errors="replace")]
    audit = (world.server.data_dir / "logs" / "audit.log").read_text()
    tokens = [t for t in world.tokens.values() if t and len(t) > 16]
    assert len(tokens) >= 10
    signatures = [
        value
        for url in world.issued_urls
        for name, value in parse_qsl(urlsplit(url).query)
        if "signature" in name.lower() or name.lower() in ("sig", "x-amz-signature")
    ]
    assert signatures, "the matrix issued signed URLs; their signatures are what must stay out of logs"
    for secret in tokens + signatures:
        assert secret not in audit
        assert secret not in logs[0]
