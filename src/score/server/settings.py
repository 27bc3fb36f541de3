"""One typed settings object for the server: CLI flags > environment (``SCORE_*``) > config file > defaults."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from score.server.auth.policy import ScopeSettings

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


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCORE_", env_nested_delimiter="__", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8087, ge=0, le=65535)
    data_dir: Path = Path("score-data")
    public_url: str | None = Field(
        None, description="Base URL clients use to reach this server (for the local store's signed URLs)"
    )
    storage: Literal["local"] = "local"
    part_size: int = Field(20 * MiB, gt=0, description="Requested upload part size in bytes")
    min_part_size: int = Field(1 * MiB, gt=0, description="Smallest part size the calculator may choose")
    upload_url_ttl: int = Field(6 * DAY, gt=0, description="Seconds an upload part URL stays valid")
    download_url_ttl: int = Field(1 * DAY, gt=0, description="Seconds a download URL stays valid")
    sentinel: str = "heliograph"
    scopes: ScopeConfig = ScopeConfig()
    log_level: str = "info"

    @field_validator("public_url")
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
