"""Schema-driven fuzzing of the whole API with schemathesis, against a real server seeded with real data.

Every operation of the OpenAPI document is driven by schemathesis (examples, coverage and fuzzing
phases, every check: server errors, status codes, content types, headers and bodies against their
documented schemas, negative data rejected, positive data accepted, undeclared methods) three times:
without a token, with an administrator's token and with a token for one study only. Known ids (a
published BAM with its index, an unpublished file, the study and analyses) are offered to the generator
beside the values it makes up, so it gets past "not found" into the handlers.

In the test suite (``tests/campaign/test_api_fuzz.py``) each run has a bounded time budget; for a long
local campaign::

    .venv/bin/python -m tests.campaign.api_fuzz --minutes 30

Prints per mode the operations, the test cases generated and the failures found; exits non-zero on any.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import BIN, Client, Registry, ScoreServer, make_file
from tests.genomics_data import HTSLIB_TEST

STUDY = "FUZZ"
MODES = ("anonymous", "admin", "study")  # who is asking; each gets a share of the budget
_SCOPES = {"admin": "score.WRITE score.READ song.WRITE", "study": f"PROGRAMDATA-{STUDY}.READ"}
# Statuses a schema-valid request may rightly get for rules a schema cannot express (cross-field rules,
# state): the positive-data check allows them, every other check still applies.
# Bodies the schema calls invalid that are refused with a status schemathesis does not list among refusals:
# DRS answers a bulk request of more than 100 items with 413, as the DRS spec's bulk operations document.
_OVER_THE_LIMIT = {
    "POST /ga4gh/drs/v1/objects": [413],
    "POST /ga4gh/drs/v1/objects/access": [413],
}
_SCHEMATHESIS_REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]
_CROSS_FIELD = {
    # class=header takes no other parameter; start/end need a referenceName; start <= end
    "GET /htsget/reads/{object_id}": [400],
    "GET /htsget/variants/{object_id}": [400],
    "POST /htsget/reads/{object_id}": [400],
    "POST /htsget/variants/{object_id}": [400],
    # a range past the object's end; offset beyond the size
    "GET /download/{object_id}": [400],
    # the analysis state gates uploads (UNPUBLISHED only), the registered size and MD5 must match
    "POST /upload/{object_id}/uploads": [400],
    "GET /upload/{object_id}/status": [400],
    "POST /upload/{object_id}/recovery": [400],
    "POST /upload/{object_id}": [400],
    "POST /upload/{object_id}/parts": [400],
    # at most 100 accesses in all, however they are spread over the objects (the DRS spec's 413; JSON Schema
    # bounds each list, not their sum)
    "POST /ga4gh/drs/v1/objects/access": [413],
    # each object named once per batch (JSON Schema cannot say "unique by objectId")
    "POST /batch/upload/initiate": [400],
    "POST /batch/upload/finalize": [400],
    # Song's rules: payload study = path study, state transitions, 'all' is reserved, file names unique
    "POST /song/submit/{studyId}": [400],
    "POST /song/studies/{studyId}/": [400],
    "POST /song/studies/{studyId}": [400],
    "PUT /song/studies/{studyId}/analysis/publish/{analysisId}": [400],
    "PUT /song/studies/{studyId}/analysis/unpublish/{analysisId}": [400],
    "PUT /song/studies/{studyId}/analysis/suppress/{analysisId}": [400],
    "GET /song/studies/{studyId}/analysis/{analysisId}": [400],
    "GET /song/studies/{studyId}/analysis/{analysisId}/files": [400],
    "GET /song/studies/{studyId}/files/{objectId}": [400],
    # Song's analysis types: 'registration' is reserved; once a type is registered, payloads and updates
    # follow its schema (registered at run time, so no document can hold it)
    "POST /song/schemas": [400],
    "PUT /song/studies/{studyId}/analysis/{analysisId}": [400],
    "PATCH /song/studies/{studyId}/analysis/{analysisId}": [400],
    # a file's size and MD5 change only while its analysis is UNPUBLISHED; each id of a list <= 128 characters
    "PUT /song/studies/{studyId}/files/{objectId}": [400],
    "DELETE /song/studies/{studyId}/files/{objectId}": [400],
    "GET /song/export/analysis/{analysisIds}": [400],
}


@dataclass(frozen=True)
class Seeded:
    """What the server holds for the fuzzer to find."""

    published: dict[str, str]  # file name -> object id, in a PUBLISHED analysis
    unpublished: str  # an object id in an UNPUBLISHED analysis
    analyses: list[str]


@dataclass(frozen=True)
class Outcome:
    mode: str
    operations: int
    cases: int
    failures: int
    exit_code: int
    report: str


def seed(server: ScoreServer, workdir: Path) -> Seeded:
    """A published analysis (a BAM, its index, a text file; open access) and an unpublished one."""
    token = server.token(_SCOPES["admin"])
    registry = Registry(server, token)
    folder = workdir / "seed"
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        Path(shutil.copy(HTSLIB_TEST / "range.bam", folder / "range.bam")),
        Path(shutil.copy(HTSLIB_TEST / "range.bam.bai", folder / "range.bam.bai")),
        make_file(folder / "notes.txt", 5000, seed=1),
    ]
    analysis, ids = registry.submit(STUDY, files, access="open")
    client = Client(server, token, workdir)
    for path in files:
        result = client.run("upload", "--file", str(path), "--object-id", ids[path.name])
        assert result.returncode == 0, result.stderr
    assert registry.publish(STUDY, analysis).status_code == 200
    pending = make_file(workdir / "later" / "pending.bin", 3000, seed=2)
    other, pending_ids = registry.submit(STUDY, [pending], access="controlled")
    return Seeded(published=ids, unpublished=pending_ids["pending.bin"], analyses=[analysis, other])


def _config(server: ScoreServer, seeded: Seeded, mode: str, workdir: Path) -> Path:
    """schemathesis.toml for one mode: auth header, the seeded ids, the cross-field statuses."""
    object_ids = [*seeded.published.values(), seeded.unpublished, "0b5e5d3a-0000-4000-8000-000000000000"]
    lines = ["[dictionaries.object_ids]", f"values = {json.dumps(object_ids)}"]
    lines += ["[dictionaries.studies]", f'values = ["{STUDY}", "OTHER"]']
    lines += ["[dictionaries.analyses]", f"values = {json.dumps(seeded.analyses)}"]
    if mode != "anonymous":
        token = server.token(_SCOPES[mode])
        lines += ["[headers]", f'Authorization = "Bearer {token}"']
    lines += [
        "[parameters]",
        '"path.object_id" = { dictionary = "object_ids", probability = 0.6 }',
        '"path.studyId" = { dictionary = "studies", probability = 0.6 }',
        '"path.analysisId" = { dictionary = "analyses", probability = 0.6 }',
    ]
    for operation in {**_CROSS_FIELD, **_OVER_THE_LIMIT}:  # one block per operation: both checks' statuses
        lines += ["[[operations]]", f'include-name = "{operation}"']
        if operation in _CROSS_FIELD:
            expected = json.dumps(["2xx", "401", "403", "404", "409", *map(str, _CROSS_FIELD[operation])])
            lines += [f"checks.positive_data_acceptance.expected-statuses = {expected}"]
        if operation in _OVER_THE_LIMIT:
            refused = json.dumps([*_SCHEMATHESIS_REFUSALS, *map(str, _OVER_THE_LIMIT[operation])])
            lines += [f"checks.negative_data_rejection.expected-statuses = {refused}"]
    path = workdir / f"schemathesis-{mode}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_mode(server: ScoreServer, seeded: Seeded, mode: str, seconds: int, workdir: Path) -> Outcome:
    """One schemathesis run within ``seconds``; the report is its own summary."""
    config = _config(server, seeded, mode, workdir)
    command = [
        str(BIN / "st"),
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-time",
        str(seconds),
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--no-color",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 300, cwd=workdir)
    report = done.stdout + done.stderr
    operations = _number(r"Tested:\s+(\d+)", report)
    cases = _number(r"(\d+) generated", report)
    failures = _number(r"found (\d+) unique failures?", report)
    return Outcome(mode, operations, cases, failures, done.returncode, report)


def _number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


def campaign(seconds_per_mode: int, workdir: Path) -> list[Outcome]:
    """Start a server, seed it, fuzz it in every mode; the server's own log must show no traceback."""
    server = ScoreServer(workdir / "server-data").start()
    try:
        seeded = seed(server, workdir)
        outcomes = [run_mode(server, seeded, mode, seconds_per_mode, workdir) for mode in MODES]
        assert httpx.get(f"{server.url}/actuator/health").status_code == 200, "the server is not healthy after"
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    tracebacks = log.count("Traceback (most recent call last)")
    if tracebacks:
        outcomes.append(Outcome("server log", 0, 0, tracebacks, 1, log[-6000:]))
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    rows = [
        f"{o.mode:>10}: {o.operations} operations, {o.cases} test cases, {o.failures} failures (exit {o.exit_code})"
        for o in outcomes
    ]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="Total budget, shared by the three modes")
    arguments = parser.parse_args()
    seconds = max(int(arguments.minutes * 60 / len(MODES)), 10)
    with tempfile.TemporaryDirectory(prefix="score-fuzz-") as folder:
        outcomes = campaign(seconds, Path(folder))
    for outcome in outcomes:
        if outcome.exit_code != 0:
            print(outcome.report)
    print(summary(outcomes))
    return 0 if all(o.exit_code == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
