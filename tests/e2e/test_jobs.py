"""Many files as one job, end to end: a real score-server, real score-client processes, a real S3 store.

Every test runs on the embedded default (local disk) and on S3 (SeaweedFS). The store sits behind the test
``StoreProxy`` (local: the signed URLs name the proxy as the server's public URL; S3: the proxy is the
server's S3 endpoint), so every part PUT and GET the client makes is counted where it lands. Interruptions
are placed, not timed: the proxy holds the data requests of a few chosen files (some small files, the last
two parts of a multi-part file) while everything else finishes, so the client is killed or interrupted with
exactly those requests in flight, and what the re-run should move is known to the part.

What is proved: bytes and MD5s of every file, the server's MD5 of every object, exit codes and messages, and
from the store's side that a re-run moves only what was missing.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from score.client.transfer.download import DIRECT_MIN
from score.core.ids import is_uuid
from tests.conftest import Client, Registry, ScoreServer, make_file, md5_of
from tests.services.forward_proxy import ForwardedRequest, ForwardProxy
from tests.services.proxy import ProxyEvent, StoreProxy

pytestmark = pytest.mark.e2e

STUDY = "JOBS"
SCOPES = "score.WRITE score.READ song.WRITE"
KiB = 1024
MiB = 1024 * KiB
PARALLEL = "4"  # --parallel: large parts at once (small files go 16 at a time whatever it is)
SETTLE = 0.3  # seconds for the client to act on answers already received, before it is stopped
# 30 small files, geometric from 2 KiB to 300 KiB: each one part on both backends
SMALL_SIZES = [round(2 * KiB * 150 ** (i / 29)) + i for i in range(30)]
HELD_SMALL = ("small-03.bin", "small-11.bin", "small-19.bin", "small-27.bin")  # frozen mid-job
HELD_BIG = "big-0.bin"  # its last two parts are frozen mid-job
LOCAL_PART = 512 * KiB
S3_PART = 5 * MiB  # S3's minimum part size: the server raises any smaller setting to it


@dataclass(frozen=True)
class Backend:
    name: str
    part_size: int
    big_sizes: tuple[int, ...]  # the multi-part files
    direct_small: tuple[int, ...] = ()  # one-part files large enough to bypass the page cache (DIRECT_MIN)


BACKENDS = {
    "local": Backend("local", LOCAL_PART, (6 * LOCAL_PART + 123, 4 * LOCAL_PART + 1, 3 * LOCAL_PART)),
    "s3": Backend("s3", S3_PART, (2 * S3_PART + 123, S3_PART + 1), (DIRECT_MIN + 4097,)),
}


@dataclass(frozen=True)
class DataRequest:
    """A client's request for an object's bytes, as the store (or a proxy on the way) saw it."""

    method: str  # PUT (a part, or a whole one-part object) or GET (a part's range)
    object_id: str
    part: int


# -- deployments -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.services.seaweed import SeaweedS3

    service = SeaweedS3(tmp_path_factory.mktemp("seaweed")).start()
    yield service
    process = service.service.process  # a throwaway store: no need to wait for a graceful stop
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Deployment:
    backend: Backend
    server: ScoreServer
    store: StoreProxy  # between everyone and the store's data: it counts what lands there
    token: str
    registry: Registry
    http: httpx.Client
    s3: Any = None  # boto3 client (S3 backend)
    bucket: str = ""

    # -- what reached the store --
    def data_request(
        self, method: str, path: str, query: dict[str, list[str]], byte_range: str | None
    ) -> DataRequest | None:
        """The request as a DataRequest if it is a client's data request (a signed URL), else None."""
        if self.backend.name == "local":
            if not path.startswith("/_store/"):
                return None
            key = unquote(path[len("/_store/") :])
        else:
            if "X-Amz-Signature" not in query:  # the server's own S3 calls are signed in a header
                return None
            key = unquote(path).lstrip("/").partition("/")[2]  # /<bucket>/<key>
        object_id = key.removeprefix("data/")
        if not key.startswith("data/") or not is_uuid(object_id):
            return None  # e.g. the data/heliograph sentinel read by --verify-connection
        if method == "PUT":
            part = int(query["partNumber"][0]) if "partNumber" in query else 1  # a whole-object PUT: part 1
        elif method == "GET":
            span = byte_range or (query.get("range") or [""])[0]
            start = re.search(r"(\d+)-", span)
            part = int(start.group(1)) // self.backend.part_size + 1 if start else 1
        else:
            return None
        return DataRequest(method, object_id, part)

    def of(self, event: ProxyEvent | ForwardedRequest) -> DataRequest | None:
        return self.data_request(event.method, event.path, event.query, event.range)

    def mark(self) -> int:
        return len(self.store.events)

    def landed(self, since: int = 0, method: str | None = None) -> Counter[DataRequest]:
        """Data requests the store answered with success since ``mark()`` was ``since``."""
        return self.answered(since, method, lambda status: 200 <= status < 300)

    def answered(self, since: int, method: str | None, status: Callable[[int], bool]) -> Counter[DataRequest]:
        """Data requests since ``mark()`` was ``since`` whose answer's status passes ``status``."""
        found: Counter[DataRequest] = Counter()
        for event in list(self.store.events)[since:]:
            request = self.of(event)
            if request is not None and status(event.status) and method in (None, request.method):
                found[request] += 1
        return found

    def held(self) -> set[DataRequest]:
        return {r for e in list(self.store.held) if (r := self.of(e)) is not None}

    def freeze(self, method: str, frozen: Callable[[DataRequest], bool]) -> None:
        def hold(event: ProxyEvent) -> bool:
            request = self.of(event)
            return request is not None and request.method == method and frozen(request)

        self.store.hold_matching(hold)

    # -- what the server says --
    def exists(self, object_id: str) -> bool:
        response = self.http.get(f"/upload/{object_id}")
        assert response.status_code == 200, response.text
        return bool(response.json())

    def specs(self, object_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The server's download specifications (size, MD5, parts) of many objects, in one call."""
        response = self.http.post("/batch/download/specs", json={"objectIds": object_ids, "excludeUrls": True})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer.get("errors", []) == [], answer["errors"]
        return {spec["objectId"]: spec for spec in answer["specs"]}

    def recorded_parts(self, object_id: str, size: int) -> set[int]:
        response = self.http.get(f"/upload/{object_id}/status", params={"fileSize": size})
        if response.status_code == 404:
            return set()
        assert response.status_code == 200, response.text
        return {p["partNumber"] for p in response.json()["parts"] if p.get("md5")}

    # -- the store itself (the backend's own API, not through the proxy) --
    def stored(self, object_id: str) -> bytes:
        if self.s3 is not None:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=f"data/{object_id}")["Body"].read())
        return (self.server.data_dir / "store" / "objects" / "data" / object_id).read_bytes()

    def overwrite_stored(self, object_id: str, data: bytes) -> None:
        if self.s3 is not None:
            self.s3.put_object(Bucket=self.bucket, Key=f"data/{object_id}", Body=data)
        else:
            (self.server.data_dir / "store" / "objects" / "data" / object_id).write_bytes(data)


@pytest.fixture(scope="module", params=list(BACKENDS))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One server per backend for the module: each test registers an analysis of its own, and counts the
    store's requests from its own mark on."""
    backend = BACKENDS[request.param]
    data_dir = tmp_path_factory.mktemp(f"server-{backend.name}") / "data"
    s3, bucket = None, ""
    if backend.name == "local":
        server = ScoreServer(data_dir, part_size=backend.part_size)
        store = StoreProxy(server.url).start()
        server.extra_env = {"SCORE_PUBLIC_URL": store.url}  # the signed URLs lead through the proxy
    else:
        seaweed = request.getfixturevalue("seaweed")
        bucket = seaweed.fresh_bucket()
        store = StoreProxy(seaweed.endpoint).start()
        env = seaweed.score_env(bucket, endpoint=store.url)
        server = ScoreServer(data_dir, part_size=backend.part_size, extra_env=env)
        s3 = seaweed.client()
    http = None
    try:
        server.start()
        token = server.token(SCOPES)
        http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        yield Deployment(backend, server, store, token, Registry(server, token), http, s3, bucket)
    finally:
        if http is not None:
            http.close()
        server.stop()
        store.stop()


@pytest.fixture
def deployment(served: Deployment) -> Iterator[Deployment]:
    yield served
    served.store.release()  # whatever a failed test left held


# -- the job's files -------------------------------------------------------------------------------------


@dataclass
class Job:
    """The files of one registered analysis, in the client's working directory (paths are relative to it, so
    the client's messages name them as a user would type them)."""

    deployment: Deployment
    client: Client
    files: list[Path]  # relative to the client's working directory
    analysis_id: str
    ids: dict[str, str]  # file name -> object id
    start: int = field(default=0)  # the store's requests from before the test are not its own

    def path(self, file: Path) -> Path:
        return self.client.workdir / file

    def oid(self, name: str) -> str:
        return self.ids[name]

    def size(self, name: str) -> int:
        return self.path(Path("in") / name).stat().st_size

    def parts(self, name: str) -> int:
        return math.ceil(self.size(name) / self.deployment.backend.part_size)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.files]

    @property
    def big(self) -> list[str]:
        return [n for n in self.names if self.parts(n) > 1]

    @property
    def small(self) -> list[str]:
        return [n for n in self.names if self.parts(n) <= 1]

    def all_parts(self, method: str) -> Counter[DataRequest]:
        """Each part of each object once: what one complete transfer moves."""
        return Counter(DataRequest(method, self.oid(n), p) for n in self.names for p in range(1, self.parts(n) + 1))

    def upload_args(self) -> tuple[str, ...]:
        return ("--parallel", PARALLEL, "upload", "--analysis-id", self.analysis_id, "--study-id", STUDY)

    def download_args(self, out: str) -> tuple[str, ...]:
        by_analysis = ("--analysis-id", self.analysis_id, "--study-id", STUDY)
        return ("--parallel", PARALLEL, "download", *by_analysis, "--output-dir", out)

    def upload_all(self) -> None:
        result = self.client.run(*self.upload_args(), "--input-dir", "in")
        assert result.returncode == 0, _said(result)
        published = self.deployment.registry.publish(STUDY, self.analysis_id)
        assert published.status_code == 200, published.text

    def assert_stored_intact(self) -> None:
        """The server's specification of every object has the file's size and MD5, and the store holds its
        bytes."""
        specs = self.deployment.specs([self.oid(n) for n in self.names])
        for name in self.names:
            source = self.path(Path("in") / name)
            spec = specs[self.oid(name)]
            assert (spec["objectSize"], spec["objectMd5"]) == (source.stat().st_size, md5_of(source)), name
            assert self.deployment.stored(self.oid(name)) == source.read_bytes(), name

    def assert_downloaded(self, out: str) -> None:
        folder = self.client.workdir / out
        for name in self.names:
            got, source = folder / name, self.path(Path("in") / name)
            assert got.exists(), f"{out}/{name} is missing"
            assert md5_of(got) == md5_of(source), name
            assert got.read_bytes() == source.read_bytes(), name
        assert sorted(p.name for p in folder.iterdir()) == sorted(self.names), "state or stray files left"


def _job(deployment: Deployment, tmp_path: Path, seed: int) -> Job:
    client = Client(deployment.server, deployment.token, tmp_path / "work")
    inputs = client.workdir / "in"
    sizes = {"empty.bin": 0, "one.bin": 1}
    sizes.update({f"small-{i:02d}.bin": size for i, size in enumerate(SMALL_SIZES)})
    sizes.update({f"big-{i}.bin": size for i, size in enumerate(deployment.backend.big_sizes)})
    sizes.update({f"whole-{i}.bin": size for i, size in enumerate(deployment.backend.direct_small)})
    files = [make_file(inputs / name, size, seed=seed * 1000 + i) for i, (name, size) in enumerate(sizes.items())]
    analysis_id, ids = deployment.registry.submit(STUDY, files)
    relative = [f.relative_to(client.workdir) for f in files]
    return Job(deployment, client, relative, analysis_id, ids, deployment.mark())


# -- freezing a job mid-way ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Freeze:
    """The data requests a test holds: all of a few small files, and the last two parts of a big one."""

    small: frozenset[str]  # object ids
    big: str
    big_parts: int

    @classmethod
    def of(cls, job: Job) -> Freeze:
        return cls(frozenset(job.oid(n) for n in HELD_SMALL), job.oid(HELD_BIG), job.parts(HELD_BIG))

    @property
    def big_done(self) -> set[int]:
        """The parts of the big file that go through before the freeze."""
        return set(range(1, self.big_parts - 1))

    def holds(self, request: DataRequest) -> bool:
        return request.object_id in self.small or (request.object_id == self.big and request.part not in self.big_done)

    def held(self, method: str) -> set[DataRequest]:
        return {DataRequest(method, oid, 1) for oid in self.small} | {
            DataRequest(method, self.big, p) for p in range(self.big_parts - 1, self.big_parts + 1)
        }

    @property
    def objects(self) -> set[str]:
        return set(self.small) | {self.big}


def _wait_for(condition: Callable[[], bool], what: Callable[[], str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached in {timeout:.0f} s: {what()}")


@contextmanager
def _started(client: Client, *args: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    process = client.start(*args, **env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _output(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        return "(still running)"
    _, stderr = process.communicate(timeout=10)
    return f"exit {process.returncode}: {stderr}"


def _frozen_upload(job: Job, freeze: Freeze, process: subprocess.Popen[str]) -> None:
    """Wait until every file but the frozen ones is finalized, the big file's first parts are recorded, and
    exactly the frozen requests are held."""
    d = job.deployment
    others = [job.oid(n) for n in job.names if job.oid(n) not in freeze.objects]

    def frozen() -> bool:
        return (
            process.poll() is None
            and d.held() == freeze.held("PUT")
            and d.recorded_parts(freeze.big, job.size(HELD_BIG)) >= freeze.big_done
            and all(d.exists(oid) for oid in others)
        )

    _wait_for(
        lambda: frozen() or process.poll() is not None,
        lambda: f"held {sorted(map(str, d.held()))}; client {_output(process)}",
    )
    assert process.poll() is None, f"the client ended before the freeze: {_output(process)}"
    time.sleep(SETTLE)


def _frozen_download(job: Job, freeze: Freeze, process: subprocess.Popen[str], out: Path) -> None:
    """Wait until every file but the frozen ones has arrived (big ones under their names), the big file's
    first parts are kept, and exactly the frozen requests are held."""
    d = job.deployment
    fetched_small = [job.oid(n) for n in job.small if job.size(n) and job.oid(n) not in freeze.small]
    done_big = [n for n in job.big if n != HELD_BIG]
    state = out / f".{freeze.big}"

    def frozen() -> bool:
        landed = {r.object_id for r in d.landed(job.start, "GET")}
        return (
            process.poll() is None
            and d.held() == freeze.held("GET")
            and all(oid in landed for oid in fetched_small)
            and all((out / n).exists() for n in done_big)
            and all((state / f"part-{p:08x}").exists() for p in freeze.big_done)
        )

    _wait_for(
        lambda: frozen() or process.poll() is not None,
        lambda: f"held {sorted(map(str, d.held()))}; client {_output(process)}",
    )
    assert process.poll() is None, f"the client ended before the freeze: {_output(process)}"
    time.sleep(SETTLE)


def _said(result: subprocess.CompletedProcess[str]) -> str:
    """What the client said, shortened: its first error lines and its last lines (summary, exit message)."""
    lines = result.stderr.splitlines()
    shown = lines if len(lines) <= 8 else [*lines[:3], f"... ({len(lines) - 6} more lines) ...", *lines[-3:]]
    return f"exit {result.returncode}:\n" + "\n".join(shown)


def _stopped_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("stopped:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _per_object(requests: Counter[DataRequest]) -> Counter[str]:
    found: Counter[str] = Counter()
    for request, n in requests.items():
        found[request.object_id] += n
    return found


# -- 1. a job of mixed sizes -----------------------------------------------------------------------------


def test_a_job_of_mixed_sizes_round_trips_by_analysis_and_by_manifest(deployment: Deployment, tmp_path: Path) -> None:
    """0 bytes, 1 byte, 30 small files and multi-part files: uploaded by --analysis-id, every part sent once;
    the server holds each object with the file's MD5; downloaded by --analysis-id and by --manifest, every
    part fetched once, every byte the original's."""
    job = _job(deployment, tmp_path, seed=1)
    d, client = deployment, job.client
    assert len(job.big) == len(d.backend.big_sizes) and all(job.parts(n) >= 2 for n in job.big)

    uploaded = client.run(*job.upload_args(), "--input-dir", "in")
    assert uploaded.returncode == 0, _said(uploaded)
    assert d.landed(job.start, "PUT") == job.all_parts("PUT"), "each part must be sent exactly once"
    job.assert_stored_intact()
    for name in job.names:  # the client reports what it stored, with the MD5 the server verified
        md5 = md5_of(job.path(Path("in") / name))
        assert f"uploaded in/{name} as {job.oid(name)}: {job.size(name)} bytes, md5 {md5}," in uploaded.stderr
    assert f"{len(job.names)} files: {len(job.names)} uploaded" in uploaded.stderr
    leftovers = [p.name for p in (client.workdir / "in").iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"upload journals left behind: {leftovers}"
    published = d.registry.publish(STUDY, job.analysis_id)  # checks every stored size and MD5 again
    assert published.status_code == 200, published.text

    mark = d.mark()
    by_analysis = client.run(*job.download_args("by-analysis"))
    assert by_analysis.returncode == 0, _said(by_analysis)
    job.assert_downloaded("by-analysis")
    assert d.landed(mark, "GET") == job.all_parts("GET"), "each part must be fetched exactly once"

    header = "repo_code\tfile_id\tobject_id\tfile_format\tfile_name\tfile_size\tmd5_sum\tindex_object_id\t"
    rows = [
        f"local\tFI{i}\t{job.oid(n)}\tBIN\t{n}\t{job.size(n)}\t{md5_of(job.path(Path('in') / n))}\t\tDO1\tP\t{STUDY}"
        for i, n in enumerate(job.names)
    ]
    (client.workdir / "manifest.tsv").write_text("\n".join([header + "donor_id\tproject_id\tstudy", *rows]) + "\n")
    mark = d.mark()
    by_manifest = client.run("--parallel", PARALLEL, "download", "--manifest", "manifest.tsv", "--output-dir", "man")
    assert by_manifest.returncode == 0, _said(by_manifest)
    job.assert_downloaded("man")
    assert d.landed(mark, "GET") == job.all_parts("GET")

    # Each file's line says it was verified (and, on a first download, nothing about parts already done).
    for result, out in ((by_analysis, "by-analysis"), (by_manifest, "man")):
        lines = result.stderr.splitlines()
        expected = {n: f"downloaded {job.oid(n)} to {out}/{n}: {job.size(n)} bytes, verified" for n in job.names}
        wrong = [line for n, line in expected.items() if line not in lines]
        said = [line for line in lines if any(job.oid(n) in line for n in job.names if expected[n] in wrong)]
        assert wrong == [], (
            "files not reported as verified downloads; expected:\n"
            + "\n".join(wrong)
            + "\nthe client said:\n"
            + "\n".join(said)
        )


def test_a_server_without_the_batch_api_gets_scores_own_calls_per_file(deployment: Deployment, tmp_path: Path) -> None:
    """The Java Score server (or an older one) has no /batch endpoints: the job falls back, after one 404, to
    Score's own calls for each file, and round-trips every byte."""
    job = _job(deployment, tmp_path, seed=7)
    d, client = deployment, job.client
    api = StoreProxy(d.server.url).start()
    api.missing = lambda path: path.startswith("/batch/")
    try:
        uploaded = client.run(*job.upload_args(), "--input-dir", "in", STORAGE_URL=api.url)
        assert uploaded.returncode == 0, _said(uploaded)
        assert d.landed(job.start, "PUT") == job.all_parts("PUT"), "each part must be sent exactly once"
        job.assert_stored_intact()
        published = d.registry.publish(STUDY, job.analysis_id)
        assert published.status_code == 200, published.text
        fetched = client.run(*job.download_args("out"), STORAGE_URL=api.url)
        assert fetched.returncode == 0, _said(fetched)
        job.assert_downloaded("out")
    finally:
        api.stop()
    calls = Counter((e.method, re.sub(r"[0-9a-f-]{36}", "{id}", e.path), e.status) for e in api.events)
    files = len(job.names)
    batch_calls = {call: n for call, n in calls.items() if call[1].startswith("/batch/")}
    assert batch_calls == {("POST", "/batch/upload/initiate", 404): 1, ("POST", "/batch/download/specs", 404): 1}
    assert calls[("POST", "/upload/{id}/uploads", 200)] == files, calls
    assert calls[("POST", "/upload/{id}", 200)] == files, calls
    assert calls[("GET", "/download/{id}", 200)] >= files, calls


# -- 2. kill -9 mid-job ----------------------------------------------------------------------------------


def test_upload_job_killed_then_rerun_sends_only_what_was_missing(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    job = _job(d, tmp_path, seed=2)
    freeze = Freeze.of(job)
    d.freeze("PUT", freeze.holds)
    with _started(job.client, *job.upload_args(), "--input-dir", "in") as process:
        _frozen_upload(job, freeze, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    d.store.release()  # the requests in flight at the kill are dropped: they never reach the store

    done_before = {job.oid(n) for n in job.names if d.exists(job.oid(n))}
    assert done_before == {job.oid(n) for n in job.names} - freeze.objects
    first = d.landed(job.start, "PUT")
    mark = d.mark()

    rerun = job.client.run(*job.upload_args(), "--input-dir", "in")
    again = d.landed(mark, "PUT")
    assert set(again) == freeze.held("PUT"), (
        f"the re-run must send exactly the parts in flight at the kill; sent {sorted(map(str, again))}"
    )
    assert [r for r in again if r.object_id in done_before] == [], "files finished before the kill were sent again"
    assert first + again == job.all_parts("PUT"), "a part reached the store twice"
    assert rerun.returncode == 0, f"the re-run of the same command did not complete: {_said(rerun)}"
    job.assert_stored_intact()
    assert d.registry.publish(STUDY, job.analysis_id).status_code == 200


def test_download_job_killed_then_rerun_fetches_only_what_was_missing(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    job = _job(d, tmp_path, seed=3)
    job.upload_all()
    freeze = Freeze.of(job)
    out = job.client.workdir / "out"
    mark = d.mark()
    d.freeze("GET", freeze.holds)
    with _started(job.client, *job.download_args("out")) as process:
        _frozen_download(job, freeze, process, out)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    d.store.release()

    named = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert not named & {*HELD_SMALL, HELD_BIG}, "a file whose bytes never all arrived has its final name"
    assert {n for n in job.big if n != HELD_BIG} <= named, "the finished multi-part files were not kept"
    kept = {int(p.name[5:], 16) for p in (out / f".{freeze.big}").glob("part-*")}
    assert kept == freeze.big_done
    # Small files are named in batches (one syncfs per 64): fetched but not yet named at the kill, they are
    # fetched again (download.py: "A kill leaves at most partial files, which the next run fetches again").
    unnamed_small = {job.oid(n) for n in job.small if job.size(n) and n not in named} - freeze.small
    first = d.landed(mark, "GET")
    mark = d.mark()

    rerun = job.client.run(*job.download_args("out"))
    assert rerun.returncode == 0, _said(rerun)
    job.assert_downloaded("out")
    again = d.landed(mark, "GET")
    name_of = {job.oid(n): n for n in job.names}
    refetched_named = [r for r in again if name_of[r.object_id] in named]
    assert refetched_named == [], f"files complete before the kill were fetched again: {refetched_named}"
    big_again = {r.part for r in again if r.object_id == freeze.big}
    assert big_again == freeze.big_done ^ set(range(1, freeze.big_parts + 1)), (
        f"the half-done file: parts {sorted(big_again)} fetched again, kept {sorted(kept)}"
    )
    assert all(n == 1 for n in again.values()), f"fetched twice in the re-run: {again}"
    expected_again = freeze.held("GET") | {DataRequest("GET", oid, 1) for oid in unnamed_small}
    assert set(again) == expected_again, f"re-run fetched {sorted(map(str, set(again) ^ expected_again))} wrongly"
    total = first + again
    assert sum(total.values()) <= sum(job.all_parts("GET").values()) + len(unnamed_small)


# -- 3. Ctrl-C mid-job -----------------------------------------------------------------------------------


def _interrupt(process: subprocess.Popen[str]) -> tuple[float, str]:
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the client did not stop within 10 s of Ctrl-C") from None
    elapsed = time.monotonic() - started
    _, stderr = process.communicate(timeout=10)
    return elapsed, stderr


def test_ctrl_c_mid_upload_stops_at_once_and_the_same_command_resumes(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    job = _job(d, tmp_path, seed=4)
    freeze = Freeze.of(job)
    d.freeze("PUT", freeze.holds)
    with _started(job.client, *job.upload_args(), "--input-dir", "in") as process:
        _frozen_upload(job, freeze, process)
        elapsed, stderr = _interrupt(process)
    d.store.release()
    assert process.returncode == 130, stderr
    assert elapsed < 1.0, f"Ctrl-C took {elapsed:.2f} s to stop the job"
    done = len(job.names) - len(freeze.objects)
    assert _stopped_line(stderr) == (
        f"stopped: {done} files done before the interruption; run the same command to resume"
    )
    first = d.landed(job.start, "PUT")
    mark = d.mark()

    rerun = job.client.run(*job.upload_args(), "--input-dir", "in")
    again = d.landed(mark, "PUT")
    assert set(again) == freeze.held("PUT"), f"the re-run sent {sorted(map(str, again))}"
    assert first + again == job.all_parts("PUT"), "a part reached the store twice"
    assert rerun.returncode == 0, f"the re-run of the same command did not complete: {_said(rerun)}"
    job.assert_stored_intact()


def test_ctrl_c_mid_download_stops_at_once_and_the_same_command_resumes(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    job = _job(d, tmp_path, seed=5)
    job.upload_all()
    freeze = Freeze.of(job)
    out = job.client.workdir / "out"
    mark = d.mark()
    d.freeze("GET", freeze.holds)
    with _started(job.client, *job.download_args("out")) as process:
        _frozen_download(job, freeze, process, out)
        elapsed, stderr = _interrupt(process)
    d.store.release()
    assert process.returncode == 130, stderr
    assert elapsed < 1.0, f"Ctrl-C took {elapsed:.2f} s to stop the job"
    done = len(job.names) - len(freeze.objects)
    assert _stopped_line(stderr) == (
        f"stopped: {done} files done before the interruption; run the same command to resume"
    )
    named = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert named == set(job.names) - {*HELD_SMALL, HELD_BIG}, "the files verified before Ctrl-C keep their names"
    first = d.landed(mark, "GET")
    mark = d.mark()

    rerun = job.client.run(*job.download_args("out"))
    assert rerun.returncode == 0, _said(rerun)
    job.assert_downloaded("out")
    again = d.landed(mark, "GET")
    assert set(again) == freeze.held("GET") and all(n == 1 for n in again.values()), (
        f"the re-run must fetch exactly what was in flight; fetched {sorted(map(str, again))}"
    )
    assert first + again == job.all_parts("GET"), "a part was fetched twice"


# -- 4. a failed file does not stop the others -----------------------------------------------------------


def test_a_damaged_object_fails_alone_and_the_rerun_fetches_only_it(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    job = _job(d, tmp_path, seed=6)
    job.upload_all()
    name = "small-05.bin"
    oid = job.oid(name)
    original = d.stored(oid)
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    d.overwrite_stored(oid, bytes(damaged))  # the store's copy rots; its size and the server's MD5 do not change

    result = job.client.run(*job.download_args("out"))
    assert result.returncode == 1, _said(result)
    assert f"error: download of {oid} failed:" in result.stderr, result.stderr
    assert f"1 of {len(job.names)} files failed ('out/{name}')" in result.stderr, result.stderr
    out = job.client.workdir / "out"
    assert not (out / name).exists() and not (out / f".{oid}.partial").exists()
    for other in job.names:
        if other != name:
            assert (out / other).read_bytes() == job.path(Path("in") / other).read_bytes(), other

    d.overwrite_stored(oid, original)  # the owner repairs it
    mark = d.mark()
    rerun = job.client.run(*job.download_args("out"))
    assert rerun.returncode == 0, _said(rerun)
    job.assert_downloaded("out")
    assert d.landed(mark, "GET") == Counter({DataRequest("GET", oid, 1): 1}), "only the failed file is fetched"


def test_a_file_not_matching_its_md5_fails_alone_and_the_rerun_sends_it_alone(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    job = _job(d, tmp_path, seed=7)
    name = "small-07.bin"
    oid = job.oid(name)
    source = job.path(Path("in") / name)
    original = source.read_bytes()
    make_file(source, len(original), seed=99)  # same size, other bytes than the registered MD5's

    result = job.client.run(*job.upload_args(), "--input-dir", "in")
    assert result.returncode == 1, _said(result)
    assert f"error: upload of 'in/{name}' failed: in/{name} hashes to {md5_of(source)}" in result.stderr
    assert f"1 of {len(job.names)} files failed ('in/{name}')" in result.stderr, result.stderr
    first = d.landed(job.start, "PUT")
    assert _per_object(first)[oid] == 0, "bytes that do not match the registered MD5 were stored"
    # A one-part file goes in one PUT whose signed Content-MD5 is the registered MD5: the store refuses the
    # other bytes (400) as they arrive, and the client, hashing the file then, does not send them again.
    refused = d.answered(job.start, "PUT", lambda status: status == 400)
    assert refused == Counter({DataRequest("PUT", oid, 1): 1}), f"refused: {sorted(map(str, refused))}"
    assert first == job.all_parts("PUT") - Counter({DataRequest("PUT", oid, 1): 1}), "the other files, once each"
    assert not d.exists(oid)
    assert all(d.exists(job.oid(n)) for n in job.names if n != name), "the other files were not all stored"

    source.write_bytes(original)  # the user fixes the file
    mark = d.mark()
    rerun = job.client.run(*job.upload_args(), "--input-dir", "in")
    again = d.landed(mark, "PUT")
    assert again == Counter({DataRequest("PUT", oid, 1): 1}), f"the re-run sent {sorted(map(str, again))}"
    assert rerun.returncode == 0, f"the re-run of the same command did not complete: {_said(rerun)}"
    job.assert_stored_intact()


def test_a_file_damaged_on_the_way_is_sent_again_and_stored(deployment: Deployment, tmp_path: Path) -> None:
    """A one-part file's PUT whose bytes are damaged on the way is refused by the store (its signed Content-MD5
    is the registered MD5); the file itself hashes right, so the client sends it again, and the job succeeds."""
    d = deployment
    job = _job(d, tmp_path, seed=8)
    oid = job.oid("small-09.bin")
    d.store.corrupt = lambda method, path, query: method == "PUT" and oid in path

    result = job.client.run(*job.upload_args(), "--input-dir", "in")
    assert result.returncode == 0, _said(result)
    assert d.store.corrupted == 1, "the test proxy damaged no PUT"
    refused = d.answered(job.start, "PUT", lambda status: status == 400)
    assert refused == Counter({DataRequest("PUT", oid, 1): 1}), f"refused: {sorted(map(str, refused))}"
    assert d.landed(job.start, "PUT") == job.all_parts("PUT"), "each part must be stored exactly once"
    job.assert_stored_intact()


# -- 5. through an HTTP proxy ----------------------------------------------------------------------------


def _run(client: Client, *args: str, env: dict[str, str], drop: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    full = client.env(**env)
    for name in drop:
        full.pop(name, None)
    return subprocess.run(
        client.command(*args), cwd=client.workdir, env=full, capture_output=True, text=True, timeout=120
    )


NO_PROXY_NAMES = ("NO_PROXY", "no_proxy")


def test_every_data_request_goes_through_the_environment_proxy(deployment: Deployment, tmp_path: Path) -> None:
    """HTTP_PROXY/HTTPS_PROXY set, NO_PROXY unset: the API and the store are on 127.0.0.1, which nothing
    exempts from the proxy by default (neither httpx nor the standard library's rules bypass loopback
    unless NO_PROXY names it), so every request of the job must go through the proxy: what the store
    answered is exactly what the proxy forwarded. With NO_PROXY=127.0.0.1 the proxy sees nothing."""
    d = deployment
    job = _job(d, tmp_path, seed=8)
    proxy = ForwardProxy().start()
    try:
        via = {"HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url, "http_proxy": proxy.url, "https_proxy": proxy.url}
        store_host = f"127.0.0.1:{d.store.port}"
        api_host = f"127.0.0.1:{d.server.port}"

        uploaded = _run(job.client, *job.upload_args(), "--input-dir", "in", env=via, drop=NO_PROXY_NAMES)
        assert uploaded.returncode == 0, _said(uploaded)
        assert d.registry.publish(STUDY, job.analysis_id).status_code == 200
        mark, seen = d.mark(), len(proxy.snapshot())
        downloaded = _run(job.client, *job.download_args("out"), env=via, drop=NO_PROXY_NAMES)
        assert downloaded.returncode == 0, _said(downloaded)
        job.assert_downloaded("out")
        job.assert_stored_intact()

        events = proxy.snapshot()
        refused = [e for e in events if e.status >= 400 or e.method == "CONNECT"]
        assert refused == [], f"requests the proxy refused or could not forward: {refused}"
        for phase, at_proxy, at_store, method in (
            ("upload", events[:seen], d.landed(job.start, "PUT"), "PUT"),
            ("download", events[seen:], d.landed(mark, "GET"), "GET"),
        ):
            proxied: Counter[DataRequest] = Counter(
                r for e in at_proxy if (r := d.of(e)) is not None and 200 <= e.status < 300
            )
            assert at_store == job.all_parts(method), phase
            assert proxied == at_store, f"{phase}: data requests the store answered without the proxy forwarding them"
            assert {e.host for e in at_proxy if d.of(e) is not None} == {store_host}
        api_calls = {(e.method, e.path) for e in events if e.host == api_host}
        assert ("POST", "/batch/upload/initiate") in api_calls and ("POST", "/batch/download/specs") in api_calls, (
            f"the API calls did not go through the proxy: {sorted(api_calls)}"
        )
        assert {e.host for e in events} == {api_host, store_host}

        # NO_PROXY naming the address: nothing goes through the proxy, the store still serves every part.
        mark, seen = d.mark(), len(proxy.snapshot())
        direct = _run(job.client, *job.download_args("direct"), env={**via, "NO_PROXY": "127.0.0.1"}, drop=())
        assert direct.returncode == 0, _said(direct)
        job.assert_downloaded("direct")
        assert proxy.snapshot()[seen:] == []
        assert d.landed(mark, "GET") == job.all_parts("GET")
    finally:
        proxy.stop()
