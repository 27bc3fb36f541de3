"""kill -9 at every named crash point: the re-run (or the sweep) ends in a consistent store, nothing written twice.

``score.crashpoints`` names every step a crash must survive; a process started with ``SCORE_CRASH_AT=<name>``
SIGKILLs itself exactly there, so each case is deterministic rather than a kill after a guessed delay.

* Server matrix: the server dies at the point during a real ``score-client upload``; a new server on the same
  data directory then either serves the user's re-run of the same command, or only runs the sweep
  (``score-server cleanup``). Either way the object ends complete with the right MD5 (or, for a crash before
  the finalize committed and no re-run, the upload is aborted), and nothing is left behind in the store.
* Client matrix: the client dies at the point; its re-run finishes without sending any part again.

What was written comes from the store's own access log (one ``part_put`` line per part written, over the logs
of every server process that served the object; a part the store already held is ``part_put_identical`` and
is not written), keyed by upload id, so a re-run that silently starts over is caught too. A server killed
between writing a part and logging it loses that line, so the parts its store held when it died (read from
the local store's ``multipart/<uploadId>/parts/`` records before the restart) count as written by it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from score.crashpoints import CLIENT_POINTS, ENV, SERVER_POINTS
from tests.conftest import BIN, SMALL_PART, Client, Registry, ScoreServer, make_file, md5_of, recorded_specs

pytestmark = pytest.mark.e2e

STUDY = "KILLS"
PARTS = 6
SIZE = (PARTS - 1) * SMALL_PART + 321  # five whole parts and a short last one
ALL_PARTS = set(range(1, PARTS + 1))
SCOPES = "score.WRITE score.READ song.WRITE"


@dataclass(frozen=True)
class ServerCase:
    """What a server crash point needs and what it leaves, written down here rather than derived from the
    order of ``SERVER_POINTS``, so a step moved across the commit record is noticed."""

    committed: bool  # the finalize's commit record is written: re-run and sweep both roll it forward
    overwrite: bool = False  # only reached when an existing object is replaced


SERVER_CASES: dict[str, ServerCase] = {
    "initiate.store_started": ServerCase(committed=False),
    "finalize_part.unmarked": ServerCase(committed=False),
    "finalize.committed": ServerCase(committed=True),
    "finalize.old_meta_hidden": ServerCase(committed=True, overwrite=True),
    "finalize.completed": ServerCase(committed=True),
    "finalize.meta_written": ServerCase(committed=True),
    "finalize.state_half_removed": ServerCase(committed=True),
}
CLIENT_CASES: tuple[str, ...] = (
    "upload.initiated",
    "upload.part_sent",
    "upload.part_recorded",
    "upload.parts_done",
    "upload.finalized",
)


# -- servers, files, uploads -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """One signing key pair for every data directory of this module, so one token serves them all (minting a
    token is a process start: once per server would add ~10 s to the matrix)."""

    keys: Path
    token: str


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    template = tmp_path_factory.mktemp("keys-template")
    token = subprocess.run(
        [str(BIN / "score-server"), "token", "--scopes", SCOPES, "--ttl", "1h", "--data-dir", str(template)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return Credentials(template / "keys", token)


def _server(data_dir: Path, credentials: Credentials, **env: str) -> ScoreServer:
    """A server on ``data_dir`` (given the module's keys on first use); ``env`` arms its crash points."""
    if not (data_dir / "keys").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(credentials.keys, data_dir / "keys")
    return ScoreServer(data_dir, extra_env=env).start()


def _discard(server: ScoreServer) -> None:
    """End a server whose test is over: SIGKILL (this matrix shows it loses nothing) instead of the graceful stop,
    which waits ~0.4 s for nothing, 19 times."""
    if server.process is not None and server.process.poll() is None:
        server.kill()


@pytest.fixture
def plain_server(tmp_path: Path, credentials: Credentials) -> Iterator[ScoreServer]:
    server = _server(tmp_path / "data", credentials)
    yield server
    _discard(server)


@dataclass
class Upload:
    """One registered file and the command line that uploads it."""

    analysis_id: str
    object_id: str
    source: Path
    args: tuple[str, ...]


def _register(server: ScoreServer, token: str, tmp_path: Path, seed: int) -> Upload:
    source = make_file(tmp_path / "in" / "reads.bin", SIZE, seed=seed)
    analysis_id, ids = Registry(server, token).submit(STUDY, [source])
    object_id = ids[source.name]
    return Upload(analysis_id, object_id, source, ("upload", "--file", str(source), "--object-id", object_id))


def _client(server: ScoreServer, token: str, tmp_path: Path) -> Client:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Client(server, token, work)


# -- what the store holds and what was written -----------------------------------------------------------


def _store(data_dir: Path) -> Path:
    return data_dir / "store"


def _final_upload_id(data_dir: Path, object_id: str) -> str:
    """The upload the visible object came from (its permanent ``.meta``)."""
    meta = json.loads((_store(data_dir) / "objects" / "data" / f"{object_id}.meta").read_text())
    return str(meta["uploadId"])


_PART_RECORD = re.compile(r"^(\d{8})\.json$")  # the local store's multipart/<uploadId>/parts/NNNNNNNN.json


def _held_parts(data_dir: Path) -> set[tuple[str, int]]:
    """{(upload id, part number)} of the parts the local store holds in uploads not yet completed (its disk
    layout, see storage/local/store.py). Read right after a kill: the parts the dead server wrote, including any whose
    access-log line the kill cut off."""
    held = set()
    for parts in (_store(data_dir) / "multipart").glob("*/parts"):
        for record in parts.iterdir():
            if match := _PART_RECORD.match(record.name):
                held.add((parts.parent.name, int(match.group(1))))
    return held


def _writes(object_id: str, *servers: ScoreServer) -> Counter[tuple[str, int]]:
    """{(upload id, part number): parts written}, over the access logs of ``servers``."""
    return Counter(
        (str(e["uploadId"]), int(str(e["partNumber"])))
        for server in servers
        for e in server.access_events("part_put")
        if e.get("status") == 200 and e.get("key") == f"data/{object_id}"
    )


def _identical(object_id: str, *servers: ScoreServer) -> Counter[int]:
    """Parts sent again although the store already held them (acknowledged, not written)."""
    return Counter(
        int(str(e["partNumber"]))
        for server in servers
        for e in server.access_events("part_put_identical")
        if e.get("key") == f"data/{object_id}"
    )


def _assert_written_once(
    object_id: str, uploads: set[str], killed: ScoreServer, held_at_kill: set[tuple[str, int]], *later: ScoreServer
) -> None:
    """Every part of each upload in ``uploads`` was written exactly once, and no other upload of the object
    was written to: by the killed server (its log, or its store's records for the lines the kill cut off) or
    by the servers after it, never by both."""
    before, after = _writes(object_id, killed), _writes(object_id, *later)
    twice = {key: n for key, n in (before + after).items() if n > 1}
    assert twice == {}, f"parts written more than once {{(upload, part): writes}}: {twice}"
    again = sorted(set(after) & held_at_kill)
    assert again == [], f"the store held these parts at the kill, yet they were written again: {again}"
    written = set(before) | set(after) | held_at_kill
    for upload_id in uploads:
        missing = ALL_PARTS - {n for (u, n) in written if u == upload_id}
        assert missing == set(), f"parts of upload {upload_id} never seen written: {sorted(missing)}"
    wasted = {u for (u, _) in written} - uploads
    assert wasted == set(), (
        f"upload(s) {sorted(wasted)} were written to for nothing: the re-run started over instead of resuming "
        f"{sorted(uploads)}; writes {dict(before + after)}, held at the kill {sorted(held_at_kill)}"
    )


# -- what the user sees ----------------------------------------------------------------------------------


def _settle(server: ScoreServer, quiet_for: float = 0.25, timeout: float = 15.0) -> None:
    """Wait until the server's log stops growing: a part PUT in flight when the client died is still being
    fsynced and recorded (or given up) for a moment, and a re-run started earlier would race it."""
    deadline = time.monotonic() + timeout
    size = -1
    while time.monotonic() < deadline:
        current = server.log_path.stat().st_size
        if current == size:
            return
        size = current
        time.sleep(quiet_for)


def _exists(server: ScoreServer, token: str, object_id: str) -> bool:
    response = httpx.get(f"{server.url}/upload/{object_id}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return bool(response.json())


def _assert_complete(server: ScoreServer, token: str, upload: Upload) -> None:
    """Visible, with the file's size and MD5 as the server's download specification states them."""
    assert _exists(server, token, upload.object_id), "the object is not visible (no .meta)"
    response = httpx.get(
        f"{server.url}/download/{upload.object_id}",
        params={"offset": 0, "length": -1, "exclude-urls": "true"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    spec = response.json()
    assert (spec["objectSize"], spec["objectMd5"]) == (upload.source.stat().st_size, md5_of(upload.source))
    meta = (_store(server.data_dir) / "objects" / "data" / f"{upload.object_id}.meta").read_text()
    assert recorded_specs(server.data_dir).get(upload.object_id) == meta, "the registry's record of .meta is not it"


def _assert_downloads_intact(server: ScoreServer, token: str, upload: Upload, tmp_path: Path) -> None:
    """Publish (the registry checks the stored size and MD5) and download with the client: the same bytes."""
    published = Registry(server, token).publish(STUDY, upload.analysis_id)
    assert published.status_code == 200, published.text
    out = tmp_path / "out"
    fetched = _client(server, token, tmp_path).run(
        "download", "--object-id", upload.object_id, "--output-dir", str(out), "--output-layout", "id"
    )
    assert fetched.returncode == 0, fetched.stderr
    assert (out / upload.object_id).read_bytes() == upload.source.read_bytes()


def _sweep(data_dir: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(BIN / "score-server"), "cleanup", "--older-than", "0s", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != ENV},
    )
    assert result.returncode == 0, result.stderr
    return result


def _assert_no_orphans(data_dir: Path, object_ids: set[str], sweep: subprocess.CompletedProcess[str]) -> None:
    """After the sweep the store holds the finished objects and nothing else: no store upload, no upload state,
    no temporary file."""
    store = _store(data_dir)
    said = f"\ncleanup said: {sweep.stdout}{sweep.stderr}"
    multipart = sorted(str(p.relative_to(store)) for p in (store / "multipart").rglob("*"))
    assert multipart == [], f"store uploads left: {multipart}{said}"
    state = store / "objects" / "upload"
    left = sorted(str(p.relative_to(store)) for p in state.rglob("*")) if state.exists() else []
    assert left == [], f"upload state left: {left}{said}"
    data = sorted(p.name for p in (store / "objects" / "data").iterdir())
    assert data == sorted({"heliograph"} | object_ids | {f"{oid}.meta" for oid in object_ids}), said
    temporary = sorted(str(p.relative_to(store)) for p in store.rglob(".score-tmp-*"))
    assert temporary == [], f"temporary files left: {temporary}{said}"


# -- 1. server killed ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crashed:
    """What the killed server left: its data directory and log, the upload it died in, and what it held."""

    data_dir: Path
    server: ScoreServer
    upload: Upload
    original_upload_id: str | None  # the replaced object's upload, in the overwrite case
    held_at_kill: set[tuple[str, int]]


def _crash_server(point: str, root: Path, credentials: Credentials, seed: int) -> Crashed:
    """Run the user's upload against a server armed to die at ``point``; prove it died there."""
    data_dir = root / "data"
    server = _server(data_dir, credentials, **{ENV: point})
    try:
        upload = _register(server, credentials.token, root, seed)
        client = _client(server, credentials.token, root)
        original = None
        if SERVER_CASES[point].overwrite:
            first = client.run(*upload.args)  # creates the object, replaces nothing: the point is not reached
            assert first.returncode == 0, first.stderr
            original = _final_upload_id(data_dir, upload.object_id)
            upload.args = (*upload.args, "--force")
        crashing = client.run(*upload.args, STORAGE_RETRYNUMBER="0")  # retrying a dead server only waits
        assert server.process is not None
        try:
            code = server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not die at {point}; client exit {crashing.returncode}: {crashing.stderr}")
        assert code == -signal.SIGKILL, f"server exit {code}"
        assert crashing.returncode > 0, f"client exit {crashing.returncode}: {crashing.stderr}"
    finally:
        _discard(server)  # already dead unless the point was missed
    return Crashed(data_dir, server, upload, original, _held_parts(data_dir))


class CrashLab:
    """Each server point's crash, made once and handed to each test as a fresh copy of everything it left
    (data directory, the source file with its mtime, the client's journal beside it): the re-run test and the
    sweep test start from the very same state, and the matrix pays for 7 crashes, not 14."""

    def __init__(self, root: Path, credentials: Credentials) -> None:
        self.root = root
        self.credentials = credentials
        self.made: dict[str, Crashed] = {}

    def copy(self, point: str, tmp_path: Path) -> Crashed:
        if point not in self.made:
            self.made[point] = _crash_server(
                point, self.root / point, self.credentials, seed=SERVER_POINTS.index(point)
            )
        pristine = self.made[point]
        origin, here = pristine.data_dir.parent, tmp_path / "crashed"
        shutil.copytree(origin, here, symlinks=True)  # copy2: the source keeps the mtime its journal names
        upload = pristine.upload
        source = here / upload.source.relative_to(origin)
        args = tuple(str(source) if a == str(upload.source) else a for a in upload.args)
        moved = replace(upload, source=source, args=args)
        return replace(pristine, data_dir=here / "data", upload=moved)


@pytest.fixture(scope="module")
def crashes(tmp_path_factory: pytest.TempPathFactory, credentials: Credentials) -> CrashLab:
    return CrashLab(tmp_path_factory.mktemp("crashes"), credentials)


@pytest.mark.parametrize("point", list(SERVER_CASES))
def test_server_killed_then_rerun_finishes_writing_nothing_twice(
    point: str, tmp_path: Path, credentials: Credentials, crashes: CrashLab
) -> None:
    """The user's answer to a failed upload is to run the same command again: against the restarted server
    (same data, new port) it must finish the object by resuming the interrupted upload, not by starting over,
    and leave the sweep nothing to remove."""
    token = credentials.token
    crashed = crashes.copy(point, tmp_path)
    upload = crashed.upload
    restarted = _server(crashed.data_dir, credentials)
    try:
        rerun = _client(restarted, token, tmp_path).run(*upload.args)
        assert rerun.returncode == 0, rerun.stderr
        assert "already exists" not in rerun.stderr
        _assert_complete(restarted, token, upload)
        final = _final_upload_id(crashed.data_dir, upload.object_id)
        assert final != crashed.original_upload_id, "the replacement never took the old object's place"
        _assert_downloads_intact(restarted, token, upload, tmp_path)
        _assert_no_orphans(crashed.data_dir, {upload.object_id}, _sweep(crashed.data_dir))

        # An overwrite (finalize.old_meta_hidden) is re-run with its --force: it too must resume, not start over.
        uploads = {final} | ({crashed.original_upload_id} if crashed.original_upload_id else set())
        _assert_written_once(upload.object_id, uploads, crashed.server, crashed.held_at_kill, restarted)
    finally:
        _discard(restarted)


@pytest.mark.parametrize("point", list(SERVER_CASES))
def test_server_killed_then_swept_is_consistent(
    point: str, tmp_path: Path, credentials: Credentials, crashes: CrashLab
) -> None:
    """Nobody re-runs the client: the sweep alone must settle the crash. A finalize that committed is rolled
    forward (the object appears, exactly as the finalize would have made it); anything earlier is aborted,
    and the client's later re-run starts afresh. Either way the sweep leaves no orphan."""
    token = credentials.token
    crashed = crashes.copy(point, tmp_path)
    upload = crashed.upload
    restarted = _server(crashed.data_dir, credentials)
    try:
        sweep = _sweep(crashed.data_dir)
        if SERVER_CASES[point].committed:
            _assert_complete(restarted, token, upload)
            final = _final_upload_id(crashed.data_dir, upload.object_id)
            assert final != crashed.original_upload_id, "the replacement never took the old object's place"
            _assert_no_orphans(crashed.data_dir, {upload.object_id}, sweep)
            published = Registry(restarted, token).publish(STUDY, upload.analysis_id)  # checks size and MD5
            assert published.status_code == 200, published.text
            stored = _store(crashed.data_dir) / "objects" / "data" / upload.object_id
            assert stored.read_bytes() == upload.source.read_bytes()  # (the client's download: the re-run test)
            uploads = {final} | ({crashed.original_upload_id} if crashed.original_upload_id else set())
            _assert_written_once(upload.object_id, uploads, crashed.server, crashed.held_at_kill, restarted)
        else:
            assert not _exists(restarted, token, upload.object_id)
            assert upload.object_id not in recorded_specs(crashed.data_dir)
            status = httpx.get(
                f"{restarted.url}/upload/{upload.object_id}/status",
                params={"fileSize": SIZE},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert status.status_code == 404, f"the upload is still in progress: {status.text}"
            _assert_no_orphans(crashed.data_dir, set(), sweep)
            # the client's journal names the upload the sweep aborted: its re-run starts a new one
            rerun = _client(restarted, token, tmp_path).run(*upload.args)
            assert rerun.returncode == 0, rerun.stderr
            _assert_downloads_intact(restarted, token, upload, tmp_path)
            final = _final_upload_id(crashed.data_dir, upload.object_id)
            assert _writes(upload.object_id, restarted) == Counter({(final, n): 1 for n in ALL_PARTS})
    finally:
        _discard(restarted)


# -- 2. client killed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("point", CLIENT_CASES)
def test_client_killed_then_rerun_sends_nothing_again(
    point: str, plain_server: ScoreServer, credentials: Credentials, tmp_path: Path
) -> None:
    """The client dies at the point; its re-run finishes from its journal and the server's status: recorded
    parts are skipped, a part the store holds but nobody recorded is recorded (its MD5 matches) without being
    sent, and a finalize the server completed is confirmed rather than refused as "already exists"."""
    server, token = plain_server, credentials.token
    upload = _register(server, token, tmp_path, seed=200 + CLIENT_POINTS.index(point))
    client = _client(server, token, tmp_path)
    killed = client.run(*upload.args, **{ENV: point})
    assert killed.returncode == -signal.SIGKILL, f"the client did not die at {point}: {killed.stderr}"
    _settle(server)

    rerun = client.run(*upload.args)
    assert rerun.returncode == 0, rerun.stderr
    assert "already exists" not in rerun.stderr
    assert f"uploaded {upload.source}" in rerun.stderr
    if point != "upload.initiated":  # a part at least was stored: the re-run reports it done, not sent
        assert " already done" in rerun.stderr, rerun.stderr
    if point == "upload.finalized":
        assert "0 parts sent" in rerun.stderr, rerun.stderr
    assert not (upload.source.parent / f".{upload.object_id}").exists(), "the journal was left behind"
    _assert_complete(server, token, upload)
    _assert_downloads_intact(server, token, upload, tmp_path)
    _assert_no_orphans(server.data_dir, {upload.object_id}, _sweep(server.data_dir))

    final = _final_upload_id(server.data_dir, upload.object_id)
    writes = _writes(upload.object_id, server)
    assert writes == Counter({(final, n): 1 for n in ALL_PARTS}), f"{{(upload, part): writes}}: {writes}"
    assert _identical(upload.object_id, server) == Counter(), "parts the store already held were sent again"


# -- 3. coverage -----------------------------------------------------------------------------------------


def test_the_matrix_covers_every_crash_point() -> None:
    """A crash point added without a case here (or a case whose name is misspelt) fails, instead of a step
    going untested or a test that never crashes."""
    assert set(SERVER_CASES) == set(SERVER_POINTS)
    assert set(CLIENT_CASES) == set(CLIENT_POINTS)
    assert set(SERVER_CASES) | set(CLIENT_CASES) == set(SERVER_POINTS) | set(CLIENT_POINTS)
