"""Property-based authorisation: generated tokens x every endpoint, judged by a model written from the rules.

Why: the matrix test (``test_authorization_matrix.py``) checks hand-picked cells; the rules' corner cases
live between them. Score's original lower-cased whole scopes, so a token of study ``ABC`` could read or
change study ``abc``; a Unicode case fold would let look-alikes (U+017F long s, U+212A Kelvin sign) stand
for ASCII letters; a regex or prefix match would let ``PROGRAMDATA-A.*.READ`` or ``PROGRAMDATA-X.READ.READ``
grant more than one study. So hypothesis generates studies in pairs that differ only in letter case, and
tokens holding random subsets of scopes (system scopes in random ASCII case, study scopes of the studies and
of their case twins with random prefix/suffix case, regex metacharacters, non-ASCII look-alikes, the suffix
inside the id, junk), and every (endpoint, token) pair goes to a real ``score-server serve`` over HTTP.

The model (``expect``) is written out here from the README's rules; it does not import the server's policy.
For every decision it checks: allowed by the model <=> the status is not 401/403; a refusal is exactly the
model's 401 (no token) or 403 (token without the scope); a 403's ``message`` names the scopes that were
needed; and the audit log got the line the decision owes (every refusal, and the allowed decisions that
issue URLs), whose ``reason`` on an allowing line names a scope exactly as the token spells it and that
really grants the request (never one the token does not hold).

Two servers, each started once per module: one with the embedded registry (study ids must match
``[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`` without ``..``), and one reading a remote Song, played by a fake whose
study ids contain regex metacharacters and non-ASCII letters (ids the embedded registry refuses).

Budget: by default 8 + 7 examples, 30-50 s on two cores; every example sends about 500 requests (an anonymous
caller, two adversary tokens and one or two random tokens, each on every endpoint of the example's studies).
``SCORE_PROPERTY_EXAMPLES=N`` runs N examples per property instead (long local runs).
``pytest -s`` prints what was tried (tokens, decisions per category, study-id kinds, probes of the
dangerous cases). Shrinking is off: an example costs hundreds of requests, and a failure already lists
each disagreeing request with the token's scopes, the expected and the actual status and body.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import string
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from score.server.auth.builtin import BuiltinIssuer
from tests.conftest import ScoreServer
from tests.services.json_server import JsonServer, Seen

pytestmark = pytest.mark.e2e

_OVERRIDE = int(os.environ.get("SCORE_PROPERTY_EXAMPLES", "0") or 0)
EMBEDDED_EXAMPLES = _OVERRIDE or 8
REMOTE_EXAMPLES = _OVERRIDE or 7
PROPERTY_SETTINGS = settings(
    deadline=None,
    database=None,  # no example database: failures print the requests and scopes that disagreed
    phases=[Phase.explicit, Phase.generate],  # no shrinking, see the module docstring
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

# ---- the rules, written out independently of src/score/server/auth/policy.py ----------------------

PREFIX = "PROGRAMDATA-"
READ, WRITE = ".READ", ".WRITE"
DOWNLOAD_SYSTEM, UPLOAD_SYSTEM, REGISTRY_SYSTEM = "score.READ", "score.WRITE", "song.WRITE"
SYSTEM_SCOPES = (DOWNLOAD_SYSTEM, UPLOAD_SYSTEM, REGISTRY_SYSTEM)


def ascii_fold(text: str) -> str:
    """Lower-case A-Z only: scope names ignore ASCII case and nothing else (no Unicode folding)."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def study_of(scope: str, suffix: str) -> str | None:
    """The study a scope names for ``suffix``: prefix and suffix cut by length and compared ignoring
    ASCII case; the middle is the study id, kept byte for byte. None if it is no such study scope."""
    if len(scope) < len(PREFIX) + len(suffix):
        return None
    head, middle, tail = scope[: len(PREFIX)], scope[len(PREFIX) : len(scope) - len(suffix)], scope[-len(suffix) :]
    if ascii_fold(head) != ascii_fold(PREFIX) or ascii_fold(tail) != ascii_fold(suffix):
        return None
    return middle


def system_grants(scopes: frozenset[str], system: str) -> set[str]:
    return {s for s in scopes if ascii_fold(s) == ascii_fold(system)}


def study_grants(scopes: frozenset[str], study: str | None, suffix: str) -> set[str]:
    return {s for s in scopes if study is not None and study_of(s, suffix) == study}


@dataclass(frozen=True)
class Expected:
    """The model's verdict: ``denial`` is None when allowed, else 401/403."""

    denial: int | None
    reasons: frozenset[str] = frozenset()  # audit reasons an allowing line may give
    needed: tuple[str, ...] = ()  # scope names a 403 message must name


def expect(check: Check, scopes: frozenset[str] | None) -> Expected:
    """Whether a token holding ``scopes`` (None: no token at all) may make ``check``'s request."""
    if check.rule == "list":
        return Expected(401) if scopes is None else Expected(None, frozenset({"authenticated"}))
    held = scopes or frozenset()
    if check.rule == "download":
        reasons = {f"system scope {s}" for s in system_grants(held, DOWNLOAD_SYSTEM)}
        reasons |= {f"study scope {s}" for s in study_grants(held, check.study, READ)}
        if check.access == "open":
            reasons.add("open-access file")  # open files: anyone, even without a token
        if reasons:
            return Expected(None, frozenset(reasons))
        return Expected(401 if scopes is None else 403, needed=(f"{PREFIX}{check.study}{READ}", DOWNLOAD_SYSTEM))
    system = UPLOAD_SYSTEM if check.rule == "upload" else REGISTRY_SYSTEM  # score.WRITE grants no registry write
    if scopes is None:
        return Expected(401)
    reasons = {f"system scope {s}" for s in system_grants(held, system)}
    reasons |= {f"study scope {s}" for s in study_grants(held, check.study, WRITE)}
    if reasons:
        return Expected(None, frozenset(reasons))
    return Expected(403, needed=(f"{PREFIX}{check.study}{WRITE}", system))


# ---- endpoints -------------------------------------------------------------------------------------

SIZE = 1000  # the registered size of every file
FAKE_UPLOAD = "0" * 32  # an uploadId no upload has: allowed part/finalize calls answer 400/404
AUDIT_ACTION = {"download": "download", "upload": "upload", "registry": "registry-write", "list": "list"}


@dataclass(frozen=True)
class Check:
    """One request whose authorisation the model judges."""

    category: str  # for the counts: download, htsget, upload, registry, listing
    rule: str  # download, upload, registry, list
    method: str
    path: str
    params: dict[str, str | int] = field(default_factory=dict)
    body: Any = None
    study: str | None = None
    access: str | None = None
    object_id: str | None = None
    audited_when_allowed: bool = False  # decisions that issue URLs are audited when allowed too
    shape: str = "score"  # error body: score {"message"}, htsget {"htsget": {"message"}}, song {"message"}


def object_checks(study: str, access: str, oid: str) -> list[Check]:
    """Download, htsget and the whole upload family for one registered object."""
    sized: dict[str, str | int] = {"fileSize": SIZE}

    def download(category: str, path: str, params: dict[str, str | int] | None = None, shape: str = "score") -> Check:
        # a download decision issues URLs, so it is audited when allowed too
        return Check(category, "download", "GET", path, params or {}, None, study, access, oid, True, shape)

    def upload(method: str, path: str, params: dict[str, str | int] | None = None, audited: bool = False) -> Check:
        return Check("upload", "upload", method, path, params or {}, None, study, access, oid, audited)

    return [
        download("download", f"/download/{oid}", {"offset": 0, "length": -1}),
        download("htsget", f"/htsget/reads/{oid}", shape="htsget"),
        upload("POST", f"/upload/{oid}/uploads", sized, audited=True),
        upload("GET", f"/upload/{oid}/status", sized, audited=True),
        upload("POST", f"/upload/{oid}/recovery", sized),
        upload("GET", f"/upload/test/{oid}"),
        upload("GET", f"/upload/{oid}"),
        upload(
            "POST", f"/upload/{oid}/parts", {"partNumber": 1, "uploadId": FAKE_UPLOAD, "md5": "0" * 32, "etag": "e"}
        ),
        upload("DELETE", f"/upload/{oid}/parts", {"partNumber": 1, "uploadId": FAKE_UPLOAD}),
        upload("POST", f"/upload/{oid}", {"uploadId": FAKE_UPLOAD}),
        upload("DELETE", f"/upload/{oid}"),
    ]


def registry_checks(study: str, analysis: str) -> list[Check]:
    """Song's writes on a study of the embedded registry. Bodies keep state stable when allowed: the study
    exists (409), the payload lacks analysisType (400); ``analysis`` exists only for these state changes."""

    def write(method: str, path: str, body: Any = None) -> Check:
        return Check("registry", "registry", method, f"/song{path}", {}, body, study, shape="song")

    return [
        write(
            "POST", f"/studies/{study}/", {"studyId": study, "name": study, "organization": "test", "description": ""}
        ),
        write("POST", f"/submit/{study}", {"studyId": study}),
        write("PUT", f"/studies/{study}/analysis/publish/{analysis}"),
        write("PUT", f"/studies/{study}/analysis/unpublish/{analysis}"),
        write("PUT", f"/studies/{study}/analysis/suppress/{analysis}"),
    ]


GLOBAL_CHECKS = [Check("listing", "list", "GET", "/listing"), Check("listing", "list", "GET", "/profile")]

# ---- generated data --------------------------------------------------------------------------------

ID_START = string.ascii_letters + string.digits
ID_REST = ID_START + "_.-"
REGEX_META = ".*+?[](){}|^$\\"
LONG_S, KELVIN, DOTLESS_I, FULLWIDTH_P = "\u017f", "\u212a", "\u0131", "\uff30"  # look like s, K, i, P
UNICODE_LETTERS = f"ÄäÖöÜüßẞ{LONG_S}{KELVIN}{DOTLESS_I}İéÉΣ\u03c3ςДд"
KNOWN_IDS = ["ABC", "abc", "Study.X", "X.READ", "x.Write", "KEY", "sk-1", "A_b-C.d", "Score", "song", "K9"]
# Unicode folds the long s to "s" and upper-cases the dotless i to "I"; ASCII folding does neither.
SYSTEM_LOOKALIKES = [f"{LONG_S}core.READ", f"{LONG_S}core.WRITE", f"{LONG_S}ong.WRITE", f"score.WR{DOTLESS_I}TE"]
LOOKALIKES = [
    *SYSTEM_LOOKALIKES,
    f"{PREFIX}{KELVIN}EY{READ}",  # the Kelvin sign lower-cases to "k": not study KEY
    f"{PREFIX}{KELVIN}EY{WRITE}",
    f"{PREFIX}ABC.REA{KELVIN}",  # nor does it end ".READ"
    f"{FULLWIDTH_P}ROGRAMDATA-ABC.READ",
]
METACHAR_SCOPES = [
    f"{PREFIX}A.*{READ}",
    f"{PREFIX}A.*{WRITE}",
    f"{PREFIX}[ABC]{READ}",
    f"{PREFIX}.*{READ}",
    f"{PREFIX}.*{WRITE}",
    f"{PREFIX}(?i)abc{READ}",
    f"{PREFIX}ÄBC{READ}",
    f"{PREFIX}äbc{WRITE}",
    f"{PREFIX}*{READ}",
    f"{PREFIX}{READ}",  # an empty study id
]
JUNK_ALPHABET = string.ascii_letters + string.digits + string.punctuation + UNICODE_LETTERS + "€\u0301\u200b"


# Every example includes one of these pairs and sends its two adversary tokens (``adversaries``), so each
# run meets every named danger whatever else it draws.
EMBEDDED_ANCHORS = [["KEY", "key"], ["ABC", "abc"], ["Study.X", "study.x"], ["X", "X.READ"], ["sIk-1", "SiK-1"]]
REMOTE_ANCHORS = [["KEY", f"{KELVIN}EY"], ["ÄBC", "äbc"], ["A.*", "a.*"], ["[ABC]", "ABC"], [f"{LONG_S}tudy", "study"]]


def _registrable(study: str) -> bool:
    return ".." not in study and study != "all" and len(study) <= 128  # "all" is reserved by /studies/all


safe_ids = st.one_of(
    st.sampled_from(KNOWN_IDS),
    st.builds(str.__add__, st.sampled_from(ID_START), st.text(st.sampled_from(ID_REST), max_size=14)),
    st.builds(
        str.__add__,
        st.builds(str.__add__, st.sampled_from(ID_START), st.text(st.sampled_from(ID_REST), max_size=6)),
        st.sampled_from([".READ", ".read", ".WRITE", ".Write"]),  # a study id that ends like a suffix
    ),
).filter(_registrable)


suffix_siblings = st.tuples(safe_ids, st.sampled_from([READ, WRITE, ".read", ".Write"])).map(
    lambda pair: [pair[0], pair[0] + pair[1]]
)


def ascii_case(text: str) -> st.SearchStrategy[str]:
    """``text`` with each ASCII letter's case chosen at random (other characters kept)."""
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flips: "".join(
            c.swapcase() if flip and c in string.ascii_letters else c for c, flip in zip(text, flips, strict=True)
        )
    )


@st.composite
def case_twins(draw: st.DrawFn, ids: st.SearchStrategy[str]) -> list[str]:
    """A study id and a twin that differs from it only in the case of some ASCII letters."""
    base = draw(ids)
    letters = [i for i, c in enumerate(base) if c in string.ascii_letters]
    if not letters:
        return [base]
    flips = draw(st.sets(st.sampled_from(letters), min_size=1))
    twin = "".join(c.swapcase() if i in flips else c for i, c in enumerate(base))
    return [base, twin]


def _flatten_unique(groups: Sequence[Sequence[str]]) -> list[str]:
    return list(dict.fromkeys(s for group in groups for s in group))


def scopes_for(studies: list[str]) -> st.SearchStrategy[str]:
    """Scopes a token may hold, aimed at ``studies``: the right ones, near misses and junk."""
    targets = studies + [s.swapcase() for s in studies] + [s.upper() for s in studies] + [s.lower() for s in studies]
    suffix = st.sampled_from([READ, WRITE])
    doubled = [f"{PREFIX}{s}{a}{b}" for s in studies for a in (READ, WRITE) for b in (READ, WRITE)]
    tricks = [
        trick
        for s in studies
        for trick in (
            f"{PREFIX}{s}",
            f"{s}{READ}",
            f"{PREFIX}{s}{READ}X",
            f"PROGRAMDATA_{s}{WRITE}",
            f"{PREFIX}{s[:-1]}{READ}",
            f"{PREFIX}{re.escape(s)}{READ}",
            f"{PREFIX}{s}{READ}\u200b",  # a zero-width space (not whitespace) after the suffix
        )
    ]
    lookalikes = [f"{PREFIX}{v}{suffix}" for s in studies for v in lookalike_ids(s) for suffix in (READ, WRITE)]
    regexes = [
        f"{PREFIX}{pattern}{suffix}"
        for s in studies
        for pattern in (".*", ".+", f"{re.escape(s[0])}.*", f"(?i){re.escape(s)}", f"{re.escape(s)}|x", f"[{s}]+")
        for suffix in (READ, WRITE)
    ]
    return st.one_of(
        st.sampled_from(SYSTEM_SCOPES).flatmap(ascii_case),
        st.builds(str.__add__, st.builds(str.__add__, st.just(PREFIX), st.sampled_from(studies)), suffix),
        st.tuples(ascii_case(PREFIX), st.sampled_from(studies), suffix.flatmap(ascii_case)).map("".join),
        st.tuples(ascii_case(PREFIX), st.sampled_from(targets), suffix.flatmap(ascii_case)).map("".join),
        st.sampled_from(LOOKALIKES + lookalikes),
        st.sampled_from(METACHAR_SCOPES + regexes),  # must never be read as patterns
        st.sampled_from(doubled),  # PROGRAMDATA-X.READ.READ is the READ scope of study "X.READ", not of X
        st.sampled_from(tricks),
        st.text(st.sampled_from(JUNK_ALPHABET), min_size=1, max_size=20),
    ).filter(lambda s: bool(s) and not any(c.isspace() for c in s))  # the scope claim is space-separated


def tokens_for(studies: list[str]) -> st.SearchStrategy[list[frozenset[str]]]:
    """One or two random tokens' scope sets (a token may hold none). Half hold a system scope, so that
    e.g. score.WRITE alone meets the registry writes it must not grant."""
    system = st.lists(st.sampled_from(SYSTEM_SCOPES).flatmap(ascii_case), max_size=1)
    token = st.tuples(system, st.lists(scopes_for(studies), max_size=5)).map(lambda pair: frozenset(pair[0] + pair[1]))
    return st.lists(token, min_size=1, max_size=2)


def lookalike_ids(study: str) -> list[str]:
    """``study`` with K, s or i replaced by a character Unicode maps to it (not ASCII folding)."""
    variants = [
        study.replace("K", KELVIN).replace("k", KELVIN),
        study.replace("s", LONG_S).replace("S", LONG_S),
        study.replace("i", DOTLESS_I).replace("I", DOTLESS_I),
    ]
    return [v for v in dict.fromkeys(variants) if v != study]


def adversaries(anchor: list[str]) -> st.SearchStrategy[list[frozenset[str]]]:
    """Two tokens of near misses around the anchor pair (a, b), none of which may grant anything on a.

    The first holds b's READ (a's case twin, or, for b = "a.READ", "PROGRAMDATA-a.READ.READ"), a's WRITE
    but not its READ, ``PROGRAMDATA-.*.READ``, a Unicode look-alike of a system scope and one of a's id.
    The second holds score.WRITE (which grants no registry write) and b's WRITE (a case twin, or a suffix
    trick, for a's registry writes).
    """
    a, b = anchor
    near = [f"{PREFIX}{b}{READ}", f"{PREFIX}{a}{WRITE}", f"{PREFIX}{a}{READ}{READ}", f"{PREFIX}.*{READ}"]
    looks = [f"{PREFIX}{v}{READ}" for v in lookalike_ids(a)] or [f"{PREFIX}{b}{READ}"]
    first = st.tuples(st.sampled_from(SYSTEM_LOOKALIKES), st.sampled_from(looks)).map(lambda x: frozenset([*near, *x]))
    second = ascii_case(UPLOAD_SYSTEM).map(lambda system: frozenset([system, f"{PREFIX}{b}{WRITE}"]))
    return st.tuples(first, second).map(list)


remote_ids = st.one_of(
    st.sampled_from(
        [
            "A.*",
            "[ABC]",
            "ÄBC",
            "äbc",
            "(a|b)",
            "^ABC$",
            "a+b?",
            "\\w+",
            "x{2}",
            ".*",
            "KEY",
            f"{KELVIN}EY",
            f"{LONG_S}tudy",
            "Study",
            "X.READ",
            "a|b",
        ]
    ),
    st.text(
        st.one_of(st.sampled_from(ID_REST), st.sampled_from(REGEX_META), st.sampled_from(UNICODE_LETTERS)),
        min_size=1,
        max_size=10,
    ).filter(lambda s: any(c in REGEX_META or ord(c) > 127 for c in s)),
)


def study_kinds(study: str) -> list[str]:
    kinds = []
    if not (re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", study) and ".." not in study):
        kinds.append("outside the registry's id pattern")
    if any(c in REGEX_META for c in study):
        kinds.append("regex metacharacters")
    if any(ord(c) > 127 for c in study):
        kinds.append("non-ASCII")
    for char, kind in ((".", "dot"), ("-", "hyphen"), ("_", "underscore")):
        if char in study:
            kinds.append(f"with {kind}")
    if study[:1].isdigit():
        kinds.append("digit first")
    if ascii_fold(study).endswith((".read", ".write")):
        kinds.append("ends like a suffix")
    if any(c in string.ascii_uppercase for c in study) and any(c in string.ascii_lowercase for c in study):
        kinds.append("mixed ASCII case")
    return kinds


# ---- what was tried ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts over the whole module, printed at its end (``pytest -s``)."""

    examples: Counter[str] = field(default_factory=Counter)
    tokens: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)  # endpoint checks per example, summed
    decisions: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    probes: Counter[str] = field(default_factory=Counter)
    studies: dict[str, set[str]] = field(default_factory=dict)  # kind -> ids
    twin_pairs: set[tuple[str, str, str]] = field(default_factory=set)  # (world, id, its case twin)
    mismatches: int = 0

    def study(self, study: str, world: str) -> None:
        self.studies.setdefault(f"{world} studies", set()).add(study)
        for kind in study_kinds(study):
            self.studies.setdefault(kind, set()).add(study)

    def report(self) -> str:
        tokens, decisions, checks = sum(self.tokens.values()), sum(self.decisions.values()), sum(self.checks.values())
        examples = sum(self.examples.values())
        lines = [
            f"authorisation properties: {tokens} tokens x {checks / max(examples, 1):.0f} endpoint checks "
            f"(average per example, {examples} examples) = {decisions} decisions, {self.mismatches} mismatches",
            f"  examples: {dict(self.examples)}; tokens (incl. one anonymous per example): {dict(self.tokens)}",
            f"  decisions per category: {dict(sorted(self.decisions.items()))}",
            f"  outcomes: {dict(sorted(self.outcomes.items()))}",
            f"  probes of the dangerous cases (decisions): {dict(sorted(self.probes.items()))}",
            f"  case-twin study pairs: {dict(Counter(world for world, _, _ in self.twin_pairs))}",
            "  study ids by kind: " + ", ".join(f"{kind} {len(ids)}" for kind, ids in sorted(self.studies.items())),
        ]
        return "\n".join(lines)


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if TALLY.decisions:
        print("\n" + TALLY.report())


def probes(check: Check, scopes: frozenset[str] | None) -> list[str]:
    """Which dangerous near misses this decision exercises (for the counts, and the coverage check)."""
    if not scopes or check.study is None or expect(check, scopes).denial is None:
        return []  # only refusals count: a near miss matters where it must not flip the answer
    suffix = READ if check.rule == "download" else WRITE
    found = set()
    if check.rule == "registry" and system_grants(scopes, UPLOAD_SYSTEM) and not system_grants(scopes, REGISTRY_SYSTEM):
        found.add("score.WRITE on a registry write")
    read, write = study_grants(scopes, check.study, READ), study_grants(scopes, check.study, WRITE)
    if check.rule == "download" and check.access == "controlled" and write and not read:
        found.add("the study's WRITE scope on a controlled download")
    if check.rule == "upload" and read and not write:
        found.add("the study's READ scope on an upload")
    for scope in scopes:
        named = study_of(scope, suffix)
        if named is not None and named != check.study:
            if ascii_fold(named) == ascii_fold(check.study):
                found.add("case twin")
            elif check.study.casefold() == named.casefold() or check.study.upper() == named.upper():
                found.add("unicode look-alike study")
            elif any(c in REGEX_META for c in named):
                with warnings.catch_warnings():  # e.g. "possible nested set" for "[[..."
                    warnings.simplefilter("ignore")
                    with contextlib.suppress(re.error):
                        if re.fullmatch(named, check.study):
                            found.add("regex that matches the study")
            if named.startswith(check.study) and ascii_fold(named[len(check.study) :]) in (".read", ".write"):
                found.add("suffix inside the id")
        elif (
            named is None
            and ascii_fold(scope) not in {ascii_fold(s) for s in SYSTEM_SCOPES}
            and any(scope.casefold() == s.casefold() or scope.upper() == s.upper() for s in SYSTEM_SCOPES)
        ):
            found.add("unicode look-alike system scope")
    return sorted(found)


# ---- running and judging ----------------------------------------------------------------------------


class AuditTail:
    """The audit log's lines appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def _message(response: httpx.Response, shape: str) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if shape == "htsget":
        body = body.get("htsget", {}) if isinstance(body, dict) else {}
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else ""


def _fingerprint(token: str | None) -> str | None:
    return None if token is None else hashlib.sha256(token.encode()).hexdigest()[:16]


def judge(
    check: Check,
    scopes: frozenset[str] | None,
    token: str | None,
    response: httpx.Response,
    lines: list[dict[str, Any]],
) -> list[str]:
    """Every way this decision disagrees with the model (empty: it agrees)."""
    want = expect(check, scopes)
    status = response.status_code
    problems = []
    if want.denial is None and status in (401, 403):
        problems.append(f"allowed by the model, refused with {status}")
    elif want.denial is None and status >= 500:
        problems.append(f"allowed by the model, but the server failed with {status}")
    elif want.denial is not None and status != want.denial:
        problems.append(f"the model refuses with {want.denial}, the server answered {status}")
    message = _message(response, check.shape)
    if want.denial is not None and status == want.denial:
        if not message:
            problems.append("a refusal without a JSON message")
        if status == 403:
            problems += [f"the 403 message does not name {scope}" for scope in want.needed if scope not in message]

    owed = want.denial is not None or check.audited_when_allowed
    if len(lines) != int(owed):
        problems.append(f"{len(lines)} audit lines, {int(owed)} expected: {lines}")
    for line in lines:
        if line.get("token") != _fingerprint(token):
            problems.append(f"audit line of another token: {line}")
        if line.get("action") != AUDIT_ACTION[check.rule]:
            problems.append(f"audit action {line.get('action')!r}, expected {AUDIT_ACTION[check.rule]!r}")
        if check.object_id is not None and line.get("object") != check.object_id:
            problems.append(f"audit object {line.get('object')!r}, expected {check.object_id}")
        reason = str(line.get("reason"))
        if line.get("decision") == "allow":
            named = reason.removeprefix("system scope ").removeprefix("study scope ")
            if named != reason and named not in (scopes or frozenset()):
                problems.append(f"an allowing audit line names a scope the token does not hold: {reason!r}")
            elif reason not in want.reasons:
                problems.append(f"allowing audit reason {reason!r} is none of {sorted(want.reasons)}")
            if want.denial is not None:
                problems.append("audited as allowed, but the model refuses")
        elif line.get("decision") == "deny":
            if want.denial is None:
                problems.append(f"audited as denied ({reason!r}), but the model allows")
            elif reason != message:
                problems.append(f"the audit reason {reason!r} differs from the answer's message {message!r}")
        else:
            problems.append(f"audit line without a decision: {line}")
    return problems


@dataclass
class World:
    """One running server, the tokens it trusts, and the audit log it writes."""

    name: str
    server: ScoreServer
    http: httpx.Client
    issuer: BuiltinIssuer
    audit: AuditTail

    def run(self, checks: list[Check], token_scopes: list[frozenset[str]]) -> list[str]:
        """Send every check with every token (and with none); return the disagreements, fully described."""
        tokens: list[tuple[frozenset[str] | None, str | None]] = [(None, None)]
        tokens += [(scopes, self.issuer.issue(sorted(scopes), 3600, subject="property")) for scopes in token_scopes]
        TALLY.examples[self.name] += 1
        TALLY.tokens[self.name] += len(tokens)
        TALLY.checks[self.name] += len(checks)
        self.audit.new()  # skip lines written by the set-up
        mismatches = []
        for scopes, token in tokens:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for check in checks:
                response = self.http.request(
                    check.method, check.path, params=check.params, json=check.body, headers=headers
                )
                problems = judge(check, scopes, token, response, self.audit.new())
                TALLY.decisions[f"{self.name} {check.category}"] += 1
                allowed = response.status_code not in (401, 403)
                TALLY.outcomes[
                    f"allowed ({response.status_code})" if allowed else f"refused {response.status_code}"
                ] += 1
                for probe in probes(check, scopes):
                    TALLY.probes[f"{self.name}: {probe}"] += 1
                if problems:
                    TALLY.mismatches += 1
                    held = "no token" if scopes is None else ascii(sorted(scopes))  # look-alikes escaped
                    mismatches.append(
                        f"{check.method} {response.request.url} scopes={held}: {'; '.join(problems)}; "
                        f"answer {response.status_code} {response.text[:400]}"
                    )
        return mismatches


def _fail_on(mismatches: list[str]) -> None:
    shown = "\n".join(mismatches[:20])
    more = f"\n... and {len(mismatches) - 20} more" if len(mismatches) > 20 else ""
    assert not mismatches, f"{len(mismatches)} decisions disagree with the model:\n{shown}{more}"


# ---- the embedded registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredStudy:
    study: str
    objects: dict[str, str]  # access -> object id, in an analysis that stays UNPUBLISHED
    state_analysis: str  # the target of publish/unpublish/suppress (may end up SUPPRESSED)


@dataclass
class Embedded(World):
    studies: dict[str, RegisteredStudy] = field(default_factory=dict)
    admin: dict[str, str] = field(default_factory=dict)

    def ensure(self, study: str) -> RegisteredStudy:
        """Register ``study`` (once) with an open and a controlled file, as a Song user would."""
        if study in self.studies:
            return self.studies[study]
        created = self.http.post(
            f"/song/studies/{study}/",
            json={"studyId": study, "name": study, "organization": "test", "description": ""},
            headers=self.admin,
        )
        assert created.status_code == 200, created.text

        def submit(accesses: list[str]) -> tuple[str, dict[str, str]]:
            payload = {
                "studyId": study,
                "analysisType": {"name": "sequencingRead"},
                "files": [
                    {
                        "fileName": f"{access}.bam",
                        "fileSize": SIZE,
                        "fileMd5sum": uuid.uuid4().hex,
                        "fileType": "BAM",
                        "fileAccess": access,
                        "dataType": "test",
                    }
                    for access in accesses
                ],
            }
            response = self.http.post(f"/song/submit/{study}", json=payload, headers=self.admin)
            assert response.status_code == 200, response.text
            analysis = response.json()["analysisId"]
            files = self.http.get(f"/song/studies/{study}/analysis/{analysis}/files")
            assert files.status_code == 200, files.text
            return analysis, {f["fileAccess"]: f["objectId"] for f in files.json()}

        _, objects = submit(["open", "controlled"])
        state_analysis, _ = submit(["controlled"])
        registered = RegisteredStudy(study, objects, state_analysis)
        self.studies[study] = registered
        TALLY.study(study, self.name)
        return registered


def _start(tmp: Path, extra_env: dict[str, str] | None = None) -> tuple[ScoreServer, httpx.Client]:
    server = ScoreServer(tmp / "data", extra_env=extra_env).start()
    return server, httpx.Client(base_url=server.url, timeout=30)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    server, http = _start(tmp_path_factory.mktemp("embedded"))
    try:
        issuer = BuiltinIssuer(server.data_dir)
        audit = AuditTail(server.data_dir / "logs" / "audit.log")
        admin = {"Authorization": f"Bearer {issuer.issue([REGISTRY_SYSTEM], 3600)}"}
        world = Embedded("embedded", server, http, issuer, audit, admin=admin)
        yield world
    finally:
        http.close()
        server.stop()


@settings(PROPERTY_SETTINGS, max_examples=EMBEDDED_EXAMPLES)
@given(
    anchor=st.sampled_from(EMBEDDED_ANCHORS),
    groups=st.lists(case_twins(safe_ids), max_size=2),
    extra=st.lists(suffix_siblings, max_size=1),
    data=st.data(),
)
def test_embedded_registry_decisions_follow_the_rules(
    embedded: Embedded, anchor: list[str], groups: list[list[str]], extra: list[list[str]], data: st.DataObject
) -> None:
    """Studies in case-twin pairs (and an id with its suffix-extended sibling, X and X.READ) on the embedded
    registry; every endpoint with generated tokens."""
    studies = _flatten_unique([anchor, *groups, *extra])
    assume(all(_registrable(s) for s in studies))
    for group in [anchor, *groups]:
        if len(group) == 2 and ascii_fold(group[0]) == ascii_fold(group[1]):
            TALLY.twin_pairs.add((embedded.name, group[0], group[1]))
    checks: list[Check] = []
    for study in studies:
        registered = embedded.ensure(study)
        for access, oid in registered.objects.items():
            checks += object_checks(study, access, oid)
        checks += registry_checks(study, registered.state_analysis)
    checks += GLOBAL_CHECKS
    tokens = data.draw(adversaries(anchor), label="adversaries") + data.draw(tokens_for(studies), label="tokens")
    _fail_on(embedded.run(checks, tokens))


# ---- a remote Song with ids the registry refuses -----------------------------------------------------


@dataclass
class Remote(World):
    routes: dict[str, Callable[[Seen], tuple[int, Any]]] = field(default_factory=dict)

    def register(self, study: str) -> list[Check]:
        """Make the fake Song know an open and a controlled file of ``study``; their checks."""
        analysis = str(uuid.uuid4())
        checks = []
        for access in ("open", "controlled"):
            oid = str(uuid.uuid4())
            entity = {
                "id": oid,
                "gnosId": analysis,
                "fileName": f"{access}.bam",
                "projectCode": study,
                "access": access,
            }
            self.routes[f"/entities/{oid}"] = lambda _seen, entity=entity: (200, entity)
            checks += object_checks(study, access, oid)
        # Asked only for ids safe in a URL path; Score's server skips the call (and answers 404) for others.
        self.routes[f"/studies/{quote(study)}/analysis/{analysis}"] = lambda _seen: (
            200,
            {"analysisId": analysis, "studyId": study, "analysisState": "UNPUBLISHED"},
        )
        TALLY.study(study, self.name)
        return checks


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    # A documented stand-in: Song cannot run here, so a JsonServer answers the two calls Score's server
    # makes (GET /entities/{id} and GET /studies/{s}/analysis/{a}, see score/server/metadata/song.py) in
    # Song's answer shape. Its study ids (projectCode) are ones Song's own registry would hold but ours
    # refuses: regex metacharacters and non-ASCII letters.
    routes: dict[str, Callable[[Seen], tuple[int, Any]]] = {}
    with JsonServer(routes) as song:
        env = {"SCORE_METADATA_URL": song.url, "SCORE_METADATA_CACHE_TTL": "0"}
        server, http = _start(tmp_path_factory.mktemp("remote"), env)
        try:
            issuer = BuiltinIssuer(server.data_dir)
            audit = AuditTail(server.data_dir / "logs" / "audit.log")
            world = Remote("remote Song", server, http, issuer, audit, routes=routes)
            yield world
        finally:
            http.close()
            server.stop()


@settings(PROPERTY_SETTINGS, max_examples=REMOTE_EXAMPLES)
@given(
    anchor=st.sampled_from(REMOTE_ANCHORS),
    groups=st.lists(case_twins(remote_ids), max_size=2),
    data=st.data(),
)
def test_remote_song_study_ids_compare_exactly(
    remote: Remote, anchor: list[str], groups: list[list[str]], data: st.DataObject
) -> None:
    """Study ids with regex metacharacters and non-ASCII letters (and their ASCII-case and Unicode-case
    twins) from a remote Song: download and upload decisions with generated tokens."""
    studies = _flatten_unique([anchor, *([*g, g[0].swapcase()] for g in groups)])
    TALLY.twin_pairs |= {
        (remote.name, a, b) for a in studies for b in studies if a < b and ascii_fold(a) == ascii_fold(b)
    }
    assume(all(s and not any(c.isspace() for c in s) for s in studies))
    checks: list[Check] = []
    for study in studies:
        checks += remote.register(study)
    tokens = data.draw(adversaries(anchor), label="adversaries") + data.draw(tokens_for(studies), label="tokens")
    _fail_on(remote.run(checks, tokens))


def test_the_generated_cases_reached_the_dangerous_corners() -> None:
    """The properties are only as good as what they tried: case twins, look-alikes, regexes, suffix tricks
    must each have been decided at least once (skipped when the property tests did not run)."""
    if not TALLY.decisions:
        pytest.skip("the property tests above did not run in this session")
    seen = {probe.split(": ", 1)[1] for probe in TALLY.probes}
    wanted = {
        "case twin",
        "suffix inside the id",
        "regex that matches the study",
        "unicode look-alike study",
        "unicode look-alike system scope",
        "score.WRITE on a registry write",
        "the study's WRITE scope on a controlled download",
        "the study's READ scope on an upload",
    }
    assert wanted <= seen, TALLY.probes
    assert TALLY.twin_pairs, "no case-twin study pair was registered"
    assert TALLY.studies.get("regex metacharacters") and TALLY.studies.get("non-ASCII"), TALLY.studies
