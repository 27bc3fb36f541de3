"""One typed settings object for the server: CLI flags > environment (``SCORE_*``) > config file > defaults."""

from __future__ import annotations

import os
import re
import tomllib
from ipaddress import ip_network
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from score.server.auth.policy import ScopeSettings
from score.server.metadata.dialect import PoolLimits
from score.server.storage.backends import (  # noqa: F401  (re-exported: the backends' settings models)
    BACKENDS,
    AzureConfig,
    GcsConfig,
    PosixConfig,
    S3Config,
    backend_settings,
)

MiB = 1024 * 1024
DAY = 86400


class ScopeConfig(BaseModel):
    download_system: str = "score.READ"
    download_study_prefix: str = "PROGRAMDATA-"
    download_study_suffix: str = ".READ"
    upload_system: str = "score.WRITE"
    upload_study_prefix: str = "PROGRAMDATA-"
    upload_study_suffix: str = ".WRITE"
    registry_system: str = "song.WRITE"

    def to_policy(self) -> ScopeSettings:
        return ScopeSettings(**self.model_dump())


class KeycloakConfig(BaseModel):
    """Keycloak mode: scopes are the permissions Keycloak's UMA endpoint grants (reference §4.2)."""

    token_url: str  # {host}/realms/{realm}/protocol/openid-connect/token
    client_id: str  # auth.server.clientID: the resource server whose permissions are asked for
    cache_ttl: float = Field(60.0, ge=0, description="Seconds one token's permissions are reused")


class JwtProviderConfig(BaseModel):
    """One trusted issuer of JWT access tokens: keys from a JWKS URL or one PEM public key (Ego)."""

    issuer: str
    jwks_url: str | None = None  # Keycloak: {host}/realms/{realm}/protocol/openid-connect/certs
    public_key: str | None = None  # PEM text
    public_key_file: Path | None = None
    public_key_url: str | None = None  # Ego: https://ego/oauth/token/public_key
    audience: list[str] = Field(default_factory=list, description="Accepted 'aud' values; empty = not checked")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    scope_claims: list[str] = Field(default_factory=lambda: ["scope", "scp", "context.scope"])
    keycloak: KeycloakConfig | None = None
    jwks_cache_ttl: float = Field(3600.0, gt=0)
    leeway: float = Field(10.0, ge=0, description="Seconds of clock skew tolerated on exp/nbf")

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtProviderConfig:
        sources = [self.jwks_url, self.public_key, self.public_key_file, self.public_key_url]
        if sum(source is not None for source in sources) != 1:
            raise ValueError(
                f"JWT provider {self.issuer}: set exactly one of jwks_url, public_key, public_key_file, public_key_url"
            )
        return self


class IntrospectionConfig(BaseModel):
    """RFC 7662 introspection for opaque API keys (Score's auth.server.url/clientID/clientSecret/tokenName)."""

    url: str
    client_id: str
    client_secret: SecretStr
    token_field: str = "token"  # noqa: S105 - field name. The original's tokenName: apiToken (Score), apiKey (Keycloak plugin)
    cache_ttl: float = Field(10.0, ge=0, description="Seconds an answer is reused; revocation shows within this")
    body: Literal["form", "multipart"] = Field(
        "form",
        description=(
            "How the key is posted: 'form' (application/x-www-form-urlencoded, RFC 7662) or 'multipart' "
            "(multipart/form-data, what the original Score server sent; for endpoints such as Ego's that "
            "only read multipart)"
        ),
    )


class AuthConfig(BaseModel):
    builtin: bool = Field(True, description="Accept tokens of the built-in issuer (score-server token)")
    jwt: list[JwtProviderConfig] = Field(default_factory=list)
    introspection: IntrospectionConfig | None = None
    timeout: float = Field(5.0, gt=0, description="Seconds to wait for an identity provider")


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the file named by ``SCORE_CONFIG`` (TOML), if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("SCORE_CONFIG")
        if not path:
            return {}
        try:
            with open(path, "rb") as handle:
                return tomllib.load(handle)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read config file {path}: {exc}") from exc


class ServerSettings(backend_settings()):  # type: ignore[misc]  (one settings table per backend)
    model_config = SettingsConfigDict(env_prefix="SCORE_", env_nested_delimiter="__", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8087, ge=0, le=65535)
    data_dir: Path = Path("score-data")
    public_url: str | None = Field(
        None, description="Base URL clients use to reach this server (for the local store's signed URLs)"
    )
    metadata_url: str | None = Field(
        None, description="Root URL of a remote Song server (Score's metadata.url); unset = the embedded registry"
    )
    registry_url: SecretStr | None = Field(
        None,
        description=(
            "The embedded registry's database: postgresql://user:pass@host:port/db (one database shared by "
            "every replica); unset = the SQLite file registry.sqlite in data_dir. Secret: it holds a password"
        ),
    )
    registry_pool_size: int = Field(
        PoolLimits.size,
        ge=1,
        le=1000,
        description=(
            "PostgreSQL registry: connections each server process (each --workers child) keeps at most; "
            "replicas x workers x this must stay under the database's max_connections"
        ),
    )
    registry_pool_timeout: float = Field(
        PoolLimits.timeout,
        gt=0,
        le=600,
        description=(
            "PostgreSQL registry: seconds an API call waits for a free connection (every one busy, or the "
            "database unreachable) before it answers 503; the readiness probe waits at most 1 s"
        ),
    )
    metadata_cache_ttl: float = Field(
        30.0,
        ge=0,
        description=(
            "Seconds an object's study and analysis ids from a remote Song are reused (0 = ask every time); "
            "analysis state and file access are asked afresh for every request"
        ),
    )
    storage: Literal[tuple(BACKENDS)] = "local"  # type: ignore[valid-type]  (storage/backends.py)
    part_size: int = Field(20 * MiB, gt=0, description="Requested upload part size in bytes")
    min_part_size: int = Field(1 * MiB, gt=0, description="Smallest part size the calculator may choose")
    upload_url_ttl: int = Field(6 * DAY, gt=0, description="Seconds an upload part URL stays valid")
    download_url_ttl: int = Field(1 * DAY, gt=0, description="Seconds a download URL stays valid")
    sentinel: str = "heliograph"
    cleanup_interval: int = Field(
        86400, ge=0, description="Seconds between sweeps of stale uploads (older than upload_url_ttl); 0 = never"
    )
    fixity_scrub_interval: int = Field(
        0,
        ge=0,
        description="Seconds between the starts of background fixity scrubs, which re-read every stored object and "
        "compare its size and MD5 with those recorded at upload (damage is logged, audited and shown in health "
        "under 'fixity'); 0 = never. `score-server verify` checks on demand",
    )
    fixity_scrub_rate: int = Field(
        50 * MiB,
        gt=0,
        description="Bytes per second a fixity scrub reads at most, so that it does not starve transfers",
    )
    min_free_space: int = Field(
        64 * MiB,
        ge=0,
        description="Local store: bytes of disk kept free for the server's own writes (state, registry, audit "
        "log); an upload that would leave less is refused with 507, and health reports DOWN below it",
    )
    max_json_body: int = Field(
        8 * MiB,
        gt=0,
        description="Largest JSON body the registry accepts (a Song payload of ~20,000 files), bounded as it streams",
    )
    header_timeout: float = Field(
        20.0,
        gt=0,
        description="Seconds a request's headers may take, from connection start or a next request's first byte "
        "(408, then close). Real clients send headers in well under a second; 20 s tolerates bad links while "
        "a client that never finishes them (slowloris) holds a connection no longer than this",
    )
    body_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds without a single request-body byte before the connection is closed (an idle timer, "
        "reset by every chunk, so slow but steady uploads of any size pass; paused while the server itself is "
        "slow to read). 60 s, like nginx's client_body_timeout, outlasts network hiccups",
    )
    keep_alive_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds an idle keep-alive connection waits for its next request (uvicorn's "
        "timeout_keep_alive and default): enough for a client's next call, short enough not to hoard connections",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Open connections per server process; beyond it the oldest connection not running a request "
        "is closed (else the new one). Far more than a transfer service's concurrent clients (each moves bytes "
        "straight to storage), and lowered automatically to 64 below the file-descriptor limit if that is smaller",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the proxies in front of the server: only from these is "
        "X-Forwarded-For believed for the audit log's client address; empty = the peer's address always",
    )
    scopes: ScopeConfig = ScopeConfig()
    auth: AuthConfig = AuthConfig()
    log_level: str = "info"
    log_format: Literal["plain", "json"] = Field(
        "plain", description="Server log lines as plain text, or one JSON object per line (for a log pipeline)"
    )
    metrics: bool = Field(
        True,
        description="Serve Prometheus metrics at /metrics (open, like the health endpoints: counts and latencies by "
        "route, never ids or tokens); false to leave it out",
    )
    shutdown_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds SIGTERM waits for requests in flight to finish (new connections are refused at once) "
        "before the remaining ones are cut",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ip_network(entry, strict=False)
            except ValueError:
                problem = f"trusted_proxies: {entry!r} is not an IP address or network (e.g. 10.0.0.0/8)"
                raise ValueError(problem) from None
        return value

    @field_validator("registry_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        """Checked without echoing it: the URL carries the database password."""
        if value is not None and not re.match(r"postgres(ql)?://", value.get_secret_value()):
            raise ValueError("registry_url must be a postgresql://user:password@host:port/database URL")
        return value

    @field_validator("public_url", "metadata_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))

    @property
    def base_url(self) -> str:
        """Where clients reach this server; used inside signed URLs of the local store."""
        if self.public_url:
            return self.public_url
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"
