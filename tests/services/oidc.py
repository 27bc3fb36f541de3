"""A real OpenID provider (npm ``oidc-provider``, run by ``oidc_provider.mjs``) on a free port of 127.0.0.1.

It issues OAuth 2.0 client credentials access tokens for two resource servers (RFC 8707 resource indicators):
``JWT_RESOURCE`` gets RS256 JWT access tokens (RFC 9068, checked against ``jwks_url``) and ``OPAQUE_RESOURCE``
gets opaque tokens that only introspection (RFC 7662) can read. Every client ``<id>`` has the secret
``<id>-secret`` and may ask for the scopes it was given; clients whose id ends with ``-short`` get 2 second
tokens, others one hour tokens. ``introspection_client`` (``score-server``) may introspect every token.

oidc-provider is pinned and installed on first use under ``<repo>/.cache/npm-oidc`` (see ``tests.services.npm``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import TracebackType

import httpx

from tests.services.npm import CACHE, npm_binary_or_module
from tests.services.process import ServiceProcess, free_port

OIDC_PROVIDER_VERSION = "9.13.3"
NPM_PREFIX = CACHE / "npm-oidc"
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
JWT_RESOURCE = "https://score.test/jwt"
OPAQUE_RESOURCE = "https://score.test/opaque"
JWT_ES256_RESOURCE = "https://score.test/jwt-es256"  # only with OidcProvider(..., es256=True)
INTROSPECTION_CLIENT = ("score-server", "score-server-secret")


def client_secret(client_id: str) -> str:
    return f"{client_id}-secret"


class OidcProvider:
    """oidc-provider with the given clients (``{client_id: "space separated scopes"}``), in-memory state."""

    def __init__(self, clients: dict[str, str], es256: bool = False, log_path: Path | None = None) -> None:
        if INTROSPECTION_CLIENT[0] in clients:
            raise ValueError(f"{INTROSPECTION_CLIENT[0]} is the introspection client, not a token client")
        self.clients = dict(clients)
        self.es256 = es256
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        # oidc-provider's default routes; ``start`` reads them back from the discovery document.
        self.jwks_url = f"{self.issuer}/jwks"
        self.token_url = f"{self.issuer}/token"
        self.introspection_url = f"{self.issuer}/token/introspection"
        self.revocation_url = f"{self.issuer}/token/revocation"
        self.introspection_client = INTROSPECTION_CLIENT
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"oidc-provider-{self.port}.log"
        self.service: ServiceProcess | None = None

    def start(self) -> OidcProvider:
        module = npm_binary_or_module("oidc-provider", OIDC_PROVIDER_VERSION, NPM_PREFIX)
        config = {
            "port": self.port,
            "clients": self.clients,
            "es256": self.es256,
            "introspectionClient": list(self.introspection_client),
            "resources": {"jwt": JWT_RESOURCE, "opaque": OPAQUE_RESOURCE, "jwtEs256": JWT_ES256_RESOURCE},
        }
        self.service = ServiceProcess(
            "oidc-provider",
            ["node", str(SCRIPT)],
            self.log_path,
            env={"NODE_PATH": str(module.parent), "OIDC_PROVIDER_CONFIG": json.dumps(config)},
        )
        self.service.start(lambda: self._discover(), timeout=30)
        return self

    def _discover(self) -> bool:
        response = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1)
        if response.status_code != 200:
            return False
        metadata = response.json()
        if metadata["issuer"] != self.issuer:
            raise RuntimeError(f"oidc-provider announces issuer {metadata['issuer']}, expected {self.issuer}")
        self.jwks_url = metadata["jwks_uri"]
        self.token_url = metadata["token_endpoint"]
        self.introspection_url = metadata["introspection_endpoint"]
        self.revocation_url = metadata["revocation_endpoint"]
        return True

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def token_response(
        self, client_id: str, opaque: bool = False, scopes: str | None = None, resource: str | None = None
    ) -> httpx.Response:
        """The raw client credentials token response (errors included); ``resource`` overrides ``opaque``."""
        return httpx.post(
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret(client_id),
                "resource": resource or (OPAQUE_RESOURCE if opaque else JWT_RESOURCE),
                "scope": self.clients.get(client_id, "") if scopes is None else scopes,
            },
            timeout=10,
        )

    def token(
        self, client_id: str, opaque: bool = False, scopes: str | None = None, resource: str | None = None
    ) -> str:
        """A client credentials access token: a JWT for ``JWT_RESOURCE``, opaque for ``OPAQUE_RESOURCE``.

        ``scopes`` defaults to all of the client's scopes (the provider grants none unless asked); ``resource``
        picks another resource server (``JWT_ES256_RESOURCE``) instead of the one ``opaque`` chooses.
        """
        response = self.token_response(client_id, opaque, scopes, resource)
        if response.status_code != 200:
            raise RuntimeError(f"token request for {client_id} failed: {response.status_code} {response.text}")
        return response.json()["access_token"]

    def revoke(self, token: str, client_id: str) -> None:
        """Revoke ``token`` as the client it was issued to (RFC 7009; opaque tokens only, JWTs are refused)."""
        response = httpx.post(
            self.revocation_url,
            data={
                "token": token,
                "token_type_hint": "access_token",
                "client_id": client_id,
                "client_secret": client_secret(client_id),
            },
            timeout=10,
        )
        if response.status_code != 200:
            raise RuntimeError(f"revocation by {client_id} failed: {response.status_code} {response.text}")

    def introspect(self, token: str) -> dict:
        """RFC 7662 introspection of ``token`` as ``score-server``."""
        client_id, secret = self.introspection_client
        response = httpx.post(
            self.introspection_url,
            data={"token": token, "client_id": client_id, "client_secret": secret},
            timeout=10,
        )
        if response.status_code != 200:
            raise RuntimeError(f"introspection failed: {response.status_code} {response.text}")
        return response.json()
