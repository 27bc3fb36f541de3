"""Score's access policy (reference §4.3-4.4) as one pure function: no I/O, a reason for every denial.

Token verification and metadata lookup happen before ``decide``; it only compares scopes.

How scopes compare (decided in issue 11, documented in the README's "Access rules"):

* **Scope names ignore ASCII case**, as Score's ``equalsIgnoreCase`` does: ``score.read`` grants what
  ``score.READ`` grants, and a study scope's prefix and suffix (``PROGRAMDATA-``, ``.READ``) match in any
  case. Only A-Z/a-z fold: a Unicode fold would let look-alikes such as U+017F (long s) or U+212A (Kelvin
  sign) stand for ASCII letters.
* **Study ids compare exactly**, as Song stores and compares them: ``ABC`` and ``abc`` are two studies,
  so ``PROGRAMDATA-ABC.READ`` grants nothing on study ``abc``. (Score lower-cased the whole scope,
  study id included, which let one study's token read or change another's whose id differs in case.)
* **Registry writes follow Song**: its system scope (``song.WRITE``) or the study's WRITE scope.
  Score's upload system scope (``score.WRITE``) is not a Song scope and grants no registry write.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from score.server.auth.principal import Principal

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class Action(StrEnum):
    UPLOAD = "upload"
    DOWNLOAD = "download"
    LIST = "list"  # listing, profile: any authenticated caller
    REGISTRY_WRITE = "registry-write"


def fold(text: str) -> str:
    """ASCII-only lower case: the one case-insensitivity scope names get."""
    return text.translate(_ASCII_LOWER)


def granted_name(scopes: Iterable[str], wanted: str) -> str | None:
    """The token's own spelling of scope ``wanted`` (ASCII case ignored), or None if it lacks it."""
    target = fold(wanted)
    return next((s for s in sorted(scopes) if fold(s) == target), None)


def granted_study(scopes: Iterable[str], prefix: str, study_id: str, suffix: str) -> str | None:
    """The token's scope ``<prefix><study_id><suffix>``: prefix and suffix in any ASCII case, the study
    id exactly as the metadata holds it. None if the token has no such scope."""
    size = len(prefix) + len(study_id) + len(suffix)
    for scope in sorted(scopes):
        if (
            len(scope) == size
            and fold(scope[: len(prefix)]) == fold(prefix)
            and fold(scope[len(scope) - len(suffix) :]) == fold(suffix)
            and scope[len(prefix) : len(scope) - len(suffix)] == study_id
        ):
            return scope
    return None


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


def _system(principal: Principal, scope: str) -> Decision | None:
    held = granted_name(principal.scopes, scope)
    return Decision.allow(f"system scope {held}") if held else None


def _study_write(principal: Principal, settings: ScopeSettings, study_id: str | None) -> Decision | None:
    if study_id is None:
        return None
    held = granted_study(principal.scopes, settings.upload_study_prefix, study_id, settings.upload_study_suffix)
    return Decision.allow(f"study scope {held}") if held else None


def decide(
    action: Action,
    principal: Principal,
    settings: ScopeSettings,
    study_id: str | None = None,
    access: str | None = None,
    doing: str | None = None,
) -> Decision:
    """Whether ``principal`` may perform ``action`` on an object of ``study_id`` with ``access``.

    Allowing reasons name the scope as the token holds it, so an audit line never names a scope the
    token does not have. ``doing`` names the request in a refusal for want of a token, where one action
    covers several endpoints (LIST: the listing, the upload profile), so each names its own.
    """
    if action is Action.LIST:
        if principal.anonymous:
            return _needs_token(doing or "listing objects")
        return Decision.allow("authenticated")

    if action is Action.UPLOAD:
        if principal.anonymous:
            return _needs_token("uploading")
        allowed = _system(principal, settings.upload_system) or _study_write(principal, settings, study_id)
        if allowed:
            return allowed
        wanted = settings.upload_study(study_id) if study_id else "a study WRITE scope"
        return Decision(
            False,
            f"the token lacks the scope to upload to study {study_id}: needs {wanted} or {settings.upload_system}",
            403,
        )

    if action is Action.REGISTRY_WRITE:
        if principal.anonymous:
            return _needs_token("changing the metadata registry")
        allowed = _system(principal, settings.registry_system) or _study_write(principal, settings, study_id)
        if allowed:
            return allowed
        return Decision(
            False,
            f"the token lacks the scope to change study {study_id}: needs "
            f"{settings.registry_system} or {settings.upload_study(study_id or '<study>')}",
            403,
        )

    # Action.DOWNLOAD
    allowed = _system(principal, settings.download_system)
    if allowed:
        return allowed
    level = fold((access or "").strip())
    if level in ("", "null"):
        level = "controlled"  # Score treats a missing access level as controlled
    if level == "open":
        return Decision.allow("open-access file")
    if level != "controlled":
        return Decision(False, f"the file's access level {access!r} is neither 'open' nor 'controlled'", 400)
    if study_id is not None:
        held = granted_study(principal.scopes, settings.download_study_prefix, study_id, settings.download_study_suffix)
        if held:
            return Decision.allow(f"study scope {held}")
    if principal.anonymous:
        return _needs_token("downloading a controlled-access file")
    return Decision(
        False,
        f"the token lacks the scope to download controlled-access files of study {study_id}: "
        f"needs {settings.download_study(study_id or '<study>')} or {settings.download_system}",
        403,
    )
