"""The access policy as a pure function (reference §4.4): every branch, with its status and reason."""

from __future__ import annotations

import pytest

from score.server.auth.policy import Action, ScopeSettings, decide
from score.server.auth.principal import ANONYMOUS, Principal

S = ScopeSettings()


def who(*scopes: str) -> Principal:
    return Principal(subject="u", scopes=frozenset(scopes), token_id="t")


@pytest.mark.parametrize(
    ("principal", "study", "allowed", "status"),
    [
        (who("score.WRITE"), "A", True, 200),
        (who("SCORE.write"), "A", True, 200),  # scope names ignore ASCII case, as in Score
        (who("programdata-A.write"), "A", True, 200),
        (who("PROGRAMDATA-a.WRITE"), "A", False, 403),  # study ids compare exactly, as in Song
        (who("\u017fcore.WRITE"), "A", False, 403),  # a long s is not an ASCII s
        (who("PROGRAMDATA-A.WRITE"), "A", True, 200),
        (who("PROGRAMDATA-B.WRITE"), "A", False, 403),
        (who("PROGRAMDATA-A.READ"), "A", False, 403),  # no READ=>WRITE and no WRITE=>READ
        (who("score.READ"), "A", False, 403),
        (ANONYMOUS, "A", False, 401),
    ],
)
def test_upload(principal: Principal, study: str, allowed: bool, status: int) -> None:
    decision = decide(Action.UPLOAD, principal, S, study, "controlled")
    assert decision.allowed is allowed
    assert decision.status == status
    if not allowed and status == 403:
        assert "PROGRAMDATA-A.WRITE" in decision.reason and "score.WRITE" in decision.reason


@pytest.mark.parametrize(
    ("principal", "access", "allowed", "status"),
    [
        (ANONYMOUS, "open", True, 200),
        (ANONYMOUS, "OPEN", True, 200),
        (ANONYMOUS, "controlled", False, 401),
        (ANONYMOUS, None, False, 401),  # missing access level counts as controlled
        (who("PROGRAMDATA-A.READ"), "controlled", True, 200),
        (who("PROGRAMDATA-B.READ"), "controlled", False, 403),
        (who("PROGRAMDATA-A.WRITE"), "controlled", False, 403),
        (who("score.READ"), "controlled", True, 200),
        (who("score.READ"), "weird", True, 200),  # the system scope needs no lookup
        (who("PROGRAMDATA-A.READ"), "weird", False, 400),
        (who(), "null", False, 403),
    ],
)
def test_download(principal: Principal, access: str | None, allowed: bool, status: int) -> None:
    decision = decide(Action.DOWNLOAD, principal, S, "A", access)
    assert (decision.allowed, decision.status) == (allowed, status), decision.reason


def test_list_and_registry_write() -> None:
    assert decide(Action.LIST, ANONYMOUS, S).status == 401
    assert decide(Action.LIST, who(), S).allowed
    assert decide(Action.REGISTRY_WRITE, who("song.WRITE"), S, "A").allowed
    assert decide(Action.REGISTRY_WRITE, who("PROGRAMDATA-A.WRITE"), S, "A").allowed
    denied = decide(Action.REGISTRY_WRITE, who("PROGRAMDATA-B.WRITE"), S, "A")
    assert (denied.allowed, denied.status) == (False, 403) and "song.WRITE" in denied.reason
    # Song's rules: Score's upload system scope is not a registry scope
    assert decide(Action.REGISTRY_WRITE, who("score.WRITE"), S, "A").status == 403


@pytest.mark.parametrize(
    ("action", "scope", "study"),
    [
        (Action.DOWNLOAD, "PROGRAMDATA-ABC.READ", "abc"),
        (Action.DOWNLOAD, "PROGRAMDATA-abc.READ", "ABC"),
        (Action.UPLOAD, "PROGRAMDATA-ABC.WRITE", "abc"),
        (Action.REGISTRY_WRITE, "PROGRAMDATA-abc.WRITE", "ABC"),
    ],
)
def test_study_ids_that_differ_in_case_are_different_studies(action: Action, scope: str, study: str) -> None:
    decision = decide(action, who(scope), S, study, "controlled")
    assert (decision.allowed, decision.status) == (False, 403), decision.reason


def test_reasons_name_the_scope_as_the_token_holds_it() -> None:
    assert decide(Action.DOWNLOAD, who("programdata-ABC.read"), S, "ABC", "controlled").reason == (
        "study scope programdata-ABC.read"
    )
    assert decide(Action.UPLOAD, who("Score.Write"), S, "ABC").reason == "system scope Score.Write"


def test_study_ids_with_the_suffix_or_prefix_inside_them() -> None:
    # the study id is cut by the configured lengths, so ids containing ".READ" or "-" are unambiguous
    assert decide(Action.DOWNLOAD, who("PROGRAMDATA-X.READ.READ"), S, "X.READ", "controlled").allowed
    assert not decide(Action.DOWNLOAD, who("PROGRAMDATA-X.READ.READ"), S, "X", "controlled").allowed
    assert not decide(Action.DOWNLOAD, who("PROGRAMDATA-PROGRAMDATA-X.READ"), S, "X", "controlled").allowed
