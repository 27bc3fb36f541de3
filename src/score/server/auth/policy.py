"""Score's access policy (reference §4.3-4.4) as one pure function: no I/O, a reason for every denial.

Token verification and metadata lookup happen before ``decide``; it only compares scopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from score.server.auth.principal import Principal


class Action(StrEnum):
    UPLOAD = "upload"
    DOWNLOAD = "download"
    LIST = "list"  # listing, profile: any authenticated caller
    REGISTRY_WRITE = "registry-write"


@dataclass(frozen=True)
class ScopeSettings:
    download_system: str = "score.READ"
    download_study_prefix: str = "PROGRAMDATA-"
    download_study_suffix: str = ".READ"
    upload_system: str = "score.WRITE"
    upload_study_prefix: str = "PROGRAMDATA-"
    upload_study_suffix: str = ".WRITE"
    registry_system: str = "song.WRITE"

    def download_study(self, study_id: str) -> str:
        return f"{self.download_study_prefix}{study_id}{self.download_study_suffix}"

    def upload_study(self, study_id: str) -> str:
        return f"{self.upload_study_prefix}{study_id}{self.upload_study_suffix}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    status: int = 200  # 401 when a token is needed and absent, 403 when it lacks the scope, 400 bad data

    @staticmethod
    def allow(reason: str) -> Decision:
        return Decision(True, reason)


def _needs_token(what: str) -> Decision:
    return Decision(False, f"{what} needs an access token: pass one with 'Authorization: Bearer <token>'", 401)


def decide(
    action: Action,
    principal: Principal,
    settings: ScopeSettings,
    study_id: str | None = None,
    access: str | None = None,
) -> Decision:
    """Whether ``principal`` may perform ``action`` on an object of ``study_id`` with ``access``."""
    if action is Action.LIST:
        if principal.anonymous:
            return _needs_token("listing objects")
        return Decision.allow("authenticated")

    if action is Action.UPLOAD:
        if principal.anonymous:
            return _needs_token("uploading")
        if principal.has_scope(settings.upload_system):
            return Decision.allow(f"system scope {settings.upload_system}")
        if study_id is not None and principal.has_scope(settings.upload_study(study_id)):
            return Decision.allow(f"study scope {settings.upload_study(study_id)}")
        wanted = settings.upload_study(study_id) if study_id else "a study WRITE scope"
        return Decision(
            False,
            f"the token lacks the scope to upload to study {study_id}: needs {wanted} or {settings.upload_system}",
            403,
        )

    if action is Action.REGISTRY_WRITE:
        if principal.anonymous:
            return _needs_token("changing the metadata registry")
        for scope in (settings.registry_system, settings.upload_system):
            if principal.has_scope(scope):
                return Decision.allow(f"system scope {scope}")
        if study_id is not None and principal.has_scope(settings.upload_study(study_id)):
            return Decision.allow(f"study scope {settings.upload_study(study_id)}")
        return Decision(
            False,
            f"the token lacks the scope to change study {study_id}: needs "
            f"{settings.registry_system} or {settings.upload_study(study_id or '<study>')}",
            403,
        )

    # Action.DOWNLOAD
    if principal.has_scope(settings.download_system):
        return Decision.allow(f"system scope {settings.download_system}")
    level = (access or "").strip().lower()
    if level in ("", "null"):
        level = "controlled"  # Score treats a missing access level as controlled
    if level == "open":
        return Decision.allow("open-access file")
    if level != "controlled":
        return Decision(False, f"the file's access level {access!r} is neither 'open' nor 'controlled'", 400)
    if study_id is not None and principal.has_scope(settings.download_study(study_id)):
        return Decision.allow(f"study scope {settings.download_study(study_id)}")
    if principal.anonymous:
        return _needs_token("downloading a controlled-access file")
    return Decision(
        False,
        f"the token lacks the scope to download controlled-access files of study {study_id}: "
        f"needs {settings.download_study(study_id or '<study>')} or {settings.download_system}",
        403,
    )
