#!/usr/bin/env python3
"""Load benchmark: many concurrent API clients against one score-server and against two behind HAProxy (issue 17).

    .venv/bin/python bench/load.py [--backends local,s3] [--replicas 1,2] [--duration 10] [--connections 16]
                                   [--workloads specs,htsget,upload] [--soak SECONDS] [--profile] [--quick]
    .venv/bin/python bench/load.py --quick       # local store, one replica, 3 s per workload: a smoke test

For each backend (``local``: the embedded default store in the data directory; ``s3``: a fresh SeaweedFS bucket)
the data is prepared through the real API (an analysis of small files and a small indexed BAM registered,
uploaded with the real score-client and published; a second, unpublished analysis of tiny files for the
upload workload), then for each replica count (1: one ``score-server serve``; 2: two processes on the same
data directory behind HAProxy running deploy/haproxy.cfg unchanged) the workloads run one after another:

- ``specs``: ``GET /download/{id}?offset=0&length=-1`` with a bearer token, rotating over the published ids,
  driven by wrk (a generated Lua script; ``--latency``);
- ``htsget``: ``GET /htsget/reads/{id}?referenceName=..&start=..&end=..`` tickets on the BAM, by wrk likewise;
- ``upload``: ``--connections`` Python clients (asyncio + httpx) each looping initiate, PUT of the single part
  to its signed URL, record, finalize over its own tiny files; the figures are the three API calls (not the PUT).

Server CPU per request is the user+sys CPU of every server process (``--workers`` children included, psutil)
over the run divided by the requests; RSS is the sum over the server processes, sampled every second.
``--soak SECONDS`` adds a long specs run on one replica of the first backend, RSS sampled every 10 s.
``--profile`` records the first backend's one replica with py-spy during its specs run.

Exit status: 0 it ran (targets missed are reported, not failures), 2 a tool failed, 130 interrupted.
Every process is stopped by its PID and the temp dir removed, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
from tests.conftest import Client, Registry, ScoreServer, make_file  # noqa: E402
from tests.genomics_data import make_bam_and_cram  # noqa: E402
from tests.services.haproxy import HAPROXY, HAProxy  # noqa: E402
from tests.services.postgres import Postgres  # noqa: E402
from tests.services.process import free_port  # noqa: E402
from tests.services.seaweed import SeaweedS3  # noqa: E402

MiB = 1024 * 1024
BACKENDS = ("local", "s3", "s3-pg")
WORKLOADS = ("specs", "htsget", "upload")
STUDY = "LOAD"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
PY_SPY = str(Path(sys.executable).parent / "py-spy")
# Issue 17's targets.
TARGET_RPS = 1000.0
TARGET_P99_MS = 50.0
TARGET_SCALE = 1.6
SOAK_WARMUP = 60.0  # the soak's reference RSS is taken after the first minute
SOAK_TOLERANCE = (0.10, 20 * MiB)  # "flat": end within 10% or 20 MiB of the reference
# htsget regions (ce.fa's contigs, 0-based half-open), rotated like the ids.
CONTIGS = {
    "CHROMOSOME_I": 1_009_800,
    "CHROMOSOME_II": 1_000_000,
    "CHROMOSOME_III": 1_000_000,
    "CHROMOSOME_IV": 1_000_000,
    "CHROMOSOME_V": 1_000_000,
    "CHROMOSOME_X": 1_000_000,
}


class ToolFailed(Exception):
    """wrk, HAProxy, a server or the data preparation failed: exit status 2."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- pure helpers (tests/unit/test_bench_load.py) -------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|ms|s|m|h)\s*$")


def duration_ms(text: str) -> float:
    """wrk's latency notation (``812.00us``, ``1.23ms``, ``2.01s``, ``1.00m``) in milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    percentiles: dict[int, float]  # percentile -> ms
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def parse_wrk(text: str) -> WrkResult:
    """The figures of ``wrk --latency`` output: totals, Requests/sec, the latency distribution, errors."""
    total = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", text)
    rps = re.search(r"Requests/sec:\s*([0-9.]+)", text)
    if not total or not rps:
        raise ValueError(f"not wrk output: {text[-500:]!r}")
    percentiles: dict[int, float] = {}
    distribution = text.split("Latency Distribution", 1)
    if len(distribution) == 2:
        for line in distribution[1].splitlines()[1:]:
            match = re.match(r"^\s*([0-9.]+)%\s+(\S+)\s*$", line)
            if not match:
                break
            percentiles[round(float(match.group(1)))] = duration_ms(match.group(2))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)) if errors else {}
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    return WrkResult(
        requests=int(total.group(1)),
        seconds=duration_ms(total.group(2) + total.group(3)) / 1000,
        rps=float(rps.group(1)),
        percentiles=percentiles,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rss_flat(reference: float, end: float, tolerance: tuple[float, float] = SOAK_TOLERANCE) -> bool:
    """The soak's verdict: the end RSS within 10% or 20 MiB (whichever is larger) of the reference."""
    share, absolute = tolerance
    return abs(end - reference) <= max(share * reference, absolute)


def wrk_script(paths: Sequence[str], token: str) -> str:
    """A wrk Lua script sending GETs that rotate over ``paths`` with a bearer token."""
    quoted = ",\n".join(f'  "{p}"' for p in paths)
    return (
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        f"local paths = {{\n{quoted}\n}}\n"
        "local counter = 0\n"
        "function init(args)\n  counter = math.random(#paths)\nend\n"
        "function request()\n"
        "  counter = counter % #paths + 1\n"
        '  return wrk.format("GET", paths[counter])\n'
        "end\n"
    )


# Leaf frames that are a thread waiting, not working (a lock, a condition, the event loop's selector).
IDLE_FRAMES = ("Condition.wait", "Runner.run", "Handler.acquire", "select (", "_wait_for_tstate_lock", "Event.wait")
_LINE_NUMBER = re.compile(r":\d+\)$")


def own_time(collapsed: str, top: int = 15, lines: bool = False) -> list[tuple[str, int, float]]:
    """py-spy's raw (collapsed) stacks -> the ``top`` functions by own time (leaf frame, line numbers folded,
    idle waits left out): (function, samples, share of the non-idle samples)."""
    leaves: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1].strip()
        leaf = leaf if lines else _LINE_NUMBER.sub(")", leaf)
        if not any(leaf.startswith(idle) for idle in IDLE_FRAMES):
            leaves[leaf] += int(count)
    total = sum(leaves.values()) or 1
    return [(frame, n, n / total) for frame, n in leaves.most_common(top)]


# -- processes -------------------------------------------------------------------------------------------------


@dataclass
class Deployment:
    """One replica, or several on one data directory behind HAProxy; ``url`` is where clients connect."""

    servers: list[ScoreServer]
    balancer: HAProxy | None = None

    @property
    def url(self) -> str:
        return self.balancer.url if self.balancer else self.servers[0].url

    def processes(self) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        for server in self.servers:
            if server.process is None:
                continue
            with suppress(psutil.Error):
                top = psutil.Process(server.process.pid)
                found += [top, *top.children(recursive=True)]
        return found

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            with suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def balancer_cpu_seconds(self) -> float:
        if not self.balancer:
            return 0.0
        with suppress(psutil.Error):
            times = psutil.Process(self.balancer.process.pid).cpu_times()
            return times.user + times.system
        return 0.0

    def rss(self) -> int:
        total = 0
        for proc in self.processes():
            with suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def stop(self) -> None:
        if self.balancer:
            self.balancer.stop()
        for server in self.servers:
            server.stop()


class RssSampler:
    """Samples the deployment's RSS every ``interval`` seconds in a thread: (seconds since start, bytes)."""

    def __init__(self, deployment: Deployment, interval: float = 1.0) -> None:
        self.deployment = deployment
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic() - self._start, self.deployment.rss()))
            if self._stop.wait(self.interval):
                break

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic() - self._start, self.deployment.rss()))


# -- data ------------------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    published: list[str]  # object ids of the small files, published
    bam_id: str
    uploads: list[tuple[str, bytes, str]]  # (object id, content, md5 hex) registered, never published
    admin: str
    reader: str


def prepare(server: ScoreServer, work: Path, files: int, upload_files: int) -> Dataset:
    """Register, upload (score-client) and publish the read data; register the upload workload's files."""
    admin = server.token("score.WRITE score.READ song.WRITE", ttl="24h")
    server_bin = str(Path(sys.executable).parent / "score-server")
    reader = subprocess.run(
        [server_bin, "token", "--scopes", "score.READ", "--ttl", "24h", "--data-dir", str(server.data_dir)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    folder = work / "in"
    small = [make_file(folder / f"small-{n:04d}.bin", 4096 + n, seed=n) for n in range(files)]
    bam, _ = make_bam_and_cram(work / "genomics", reads=4000)
    bai = Path(f"{bam}.bai")
    for path in (bam, bai):
        shutil.copy(path, folder / path.name)
    registry = Registry(server, admin)
    analysis, ids = registry.submit(STUDY, [*small, folder / bam.name, folder / bai.name])
    client_work = work / "client"
    client_work.mkdir(exist_ok=True)
    client = Client(server, admin, client_work)
    done = client.run("upload", "--analysis-id", analysis, "--study-id", STUDY, "--input-dir", str(folder), timeout=600)
    if done.returncode != 0:
        raise ToolFailed(f"score-client upload failed: {done.stderr[-2000:]}")
    published = registry.publish(STUDY, analysis)
    if published.status_code != 200:
        raise ToolFailed(f"publish failed: {published.status_code} {published.text[:500]}")
    tiny_dir = work / "tiny"
    tiny = [make_file(tiny_dir / f"tiny-{n:04d}.bin", 1024, seed=100_000 + n) for n in range(upload_files)]
    _, tiny_ids = registry.submit(STUDY, tiny)
    uploads = []
    for path in tiny:
        content = path.read_bytes()
        uploads.append((tiny_ids[path.name], content, hashlib.md5(content).hexdigest()))  # noqa: S324
    registry.http.close()
    return Dataset([ids[p.name] for p in small], ids[bam.name], uploads, admin, reader)


# -- workloads -------------------------------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    replicas: int
    workload: str
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50: float = float("nan")
    p99: float = float("nan")
    errors: int = 0
    error_detail: str = ""
    cpu_ms: float = float("nan")  # server CPU per request
    lb_cpu_ms: float = float("nan")
    client_cpu: float = float("nan")  # CPU-seconds per second of the load generator (wrk or the upload clients)
    rss_start: int = 0
    rss_peak: int = 0
    rss_end: int = 0
    failed: str = ""
    rss_samples: list[tuple[float, int]] = field(default_factory=list)


def run_wrk(
    url: str, paths: Sequence[str], token: str, seconds: float, connections: int, work: Path
) -> tuple[WrkResult, float]:
    """wrk's figures and its CPU-seconds (user+sys, from the reaped child's rusage)."""
    script = work / "rotate.lua"
    script.write_text(wrk_script(paths, token))
    threads = 1 if connections < 4 else 2
    argv = [WRK, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency", "-s", str(script)]
    argv += ["--timeout", "5s", url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode != 0:
        raise ToolFailed(f"wrk failed ({done.returncode}): {done.stderr[-1000:]}")
    try:
        return parse_wrk(done.stdout), cpu
    except ValueError as exc:
        raise ToolFailed(str(exc)) from exc


def specs_paths(data: Dataset) -> list[str]:
    return [f"/download/{oid}?offset=0&length=-1" for oid in data.published]


def htsget_paths(data: Dataset) -> list[str]:
    paths = []
    for name, length in CONTIGS.items():
        for k in range(10):
            start = k * (length // 10)
            paths.append(f"/htsget/reads/{data.bam_id}?referenceName={name}&start={start}&end={start + 20_000}")
    return paths


@dataclass
class UploadTally:
    latencies: list[float] = field(default_factory=list)  # ms, API calls only
    errors: Counter[str] = field(default_factory=Counter)
    cycles: int = 0


async def _upload_worker(
    http: httpx.AsyncClient, token: str, files: list[tuple[str, bytes, str]], deadline: float, tally: UploadTally
) -> None:
    auth = {"Authorization": f"Bearer {token}"}  # the API calls only: a signed URL carries its own authority
    index = 0
    while time.monotonic() < deadline and files:
        object_id, content, md5 = files[index % len(files)]
        index += 1

        async def api(method: str, path: str, params: dict[str, object]) -> httpx.Response | None:
            began = time.perf_counter()
            try:
                response = await http.request(method, path, params=params, headers=auth)
            except httpx.HTTPError as exc:
                tally.errors[exc.__class__.__name__] += 1
                return None
            tally.latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code >= 300:
                tally.errors[f"{method} {path.split('/')[-1] or 'finalize'} {response.status_code}"] += 1
                return None
            return response

        started = await api(
            "POST", f"/upload/{object_id}/uploads", {"fileSize": len(content), "md5": md5, "overwrite": "true"}
        )
        if started is None:
            continue
        spec = started.json()
        upload_id, part = spec["uploadId"], spec["parts"][0]
        try:
            put = await http.put(
                part["url"],
                content=content,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-MD5": base64.b64encode(bytes.fromhex(md5)).decode(),
                },
            )
        except httpx.HTTPError as exc:
            tally.errors[f"PUT {exc.__class__.__name__}"] += 1
            continue
        if put.status_code not in (200, 201):
            tally.errors[f"PUT {put.status_code}"] += 1
            continue
        etag = (put.headers.get("etag") or md5).strip('"')
        params = {"uploadId": upload_id, "partNumber": 1, "md5": md5, "etag": etag}
        if await api("POST", f"/upload/{object_id}/parts", params) is None:
            continue
        if await api("POST", f"/upload/{object_id}", {"uploadId": upload_id, "md5": md5}) is None:
            continue
        tally.cycles += 1


async def _upload_load(
    url: str, token: str, files: list[tuple[str, bytes, str]], seconds: float, clients: int
) -> UploadTally:
    tally = UploadTally()
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        deadline = time.monotonic() + seconds
        shares = [files[n::clients] for n in range(clients)]  # each client its own files: no two on one object
        await asyncio.gather(*(_upload_worker(http, token, share, deadline, tally) for share in shares))
    return tally


def measure(
    deployment: Deployment,
    backend: str,
    replicas: int,
    workload: str,
    run: Callable[[Result], None],
    interval: float = 1.0,
) -> Result:
    result = Result(backend, replicas, workload)
    cpu0, lb0 = deployment.cpu_seconds(), deployment.balancer_cpu_seconds()
    began = time.monotonic()
    with RssSampler(deployment, interval) as sampler:
        run(result)
    result.seconds = result.seconds or time.monotonic() - began
    cpu, lb = deployment.cpu_seconds() - cpu0, deployment.balancer_cpu_seconds() - lb0
    if result.requests:
        result.cpu_ms = cpu / result.requests * 1000
        result.lb_cpu_ms = lb / result.requests * 1000 if deployment.balancer else float("nan")
    result.rss_samples = sampler.samples
    sizes = [s for _, s in sampler.samples]
    result.rss_start, result.rss_peak, result.rss_end = sizes[0], max(sizes), sizes[-1]
    return result


def wrk_workload(
    deployment: Deployment, backend: str, replicas: int, workload: str, paths: Sequence[str], data: Dataset,
    seconds: float, connections: int, work: Path, interval: float = 1.0,
) -> Result:  # fmt: skip
    def run(result: Result) -> None:
        out, cpu = run_wrk(deployment.url, paths, data.reader, seconds, connections, work)
        result.client_cpu = cpu / out.seconds
        result.requests, result.seconds, result.rps = out.requests, out.seconds, out.rps
        result.p50, result.p99 = out.percentiles.get(50, float("nan")), out.percentiles.get(99, float("nan"))
        result.errors = out.errors
        detail = {k: v for k, v in out.socket_errors.items() if v}
        if out.non_2xx:
            detail["non-2xx"] = out.non_2xx
        result.error_detail = ", ".join(f"{k} {v}" for k, v in detail.items())

    return measure(deployment, backend, replicas, workload, run, interval)


def upload_workload(
    deployment: Deployment, backend: str, replicas: int, data: Dataset, seconds: float, connections: int
) -> Result:
    def run(result: Result) -> None:
        began, cpu = time.monotonic(), time.process_time()
        tally = asyncio.run(_upload_load(deployment.url, data.admin, data.uploads, seconds, connections))
        result.seconds = time.monotonic() - began
        result.client_cpu = (time.process_time() - cpu) / result.seconds
        result.requests = len(tally.latencies)
        result.rps = result.requests / result.seconds
        result.p50, result.p99 = percentile(tally.latencies, 50), percentile(tally.latencies, 99)
        result.errors = sum(tally.errors.values())
        result.error_detail = ", ".join(f"{k} {v}" for k, v in tally.errors.most_common(4))

    return measure(deployment, backend, replicas, "upload", run)


# -- orchestration ---------------------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    seaweed: SeaweedS3 | None = None
    postgres: Postgres | None = None
    deployments: list[Deployment] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    soak: Result | None = None
    profile: list[tuple[str, int, float]] = field(default_factory=list)
    profile_lines: list[tuple[str, int, float]] = field(default_factory=list)
    profile_note: str = ""
    load_before: float = field(default_factory=lambda: os.getloadavg()[0])

    def deploy(self, data_dir: Path, replicas: int, env: dict[str, str]) -> Deployment:
        extra = ("--workers", str(self.args.workers)) if self.args.workers > 1 else ()
        servers = [
            ScoreServer(data_dir, part_size=5 * MiB, extra_env=dict(env), extra_args=extra) for _ in range(replicas)
        ]
        deployment = Deployment(servers)
        self.deployments.append(deployment)
        balancer_port = free_port() if replicas > 1 else None
        for server in servers:
            if balancer_port:  # the replicas sign URLs for the balancer's address
                server.extra_env["SCORE_PUBLIC_URL"] = f"http://127.0.0.1:{balancer_port}"
            try:
                server.start()
            except RuntimeError as exc:
                raise ToolFailed(str(exc)) from exc
        if balancer_port:
            log = self.work / f"haproxy-{balancer_port}.log"
            deployment.balancer = HAProxy(balancer_port, [s.port for s in servers], log)
            try:
                deployment.balancer.wait_ready()
            except RuntimeError as exc:
                raise ToolFailed(str(exc)) from exc
        return deployment

    def undeploy(self, deployment: Deployment) -> None:
        deployment.stop()
        self.deployments.remove(deployment)

    def backend_env(self, backend: str) -> dict[str, str]:
        """``local``: the embedded default; ``s3``: a SeaweedFS bucket, the registry in SQLite; ``s3-pg``: a
        bucket and the registry on PostgreSQL, the topology of replicas on several machines."""
        if backend == "local":
            return {}
        env = self.s3_env()
        if backend == "s3-pg":
            if self.postgres is None:
                say("starting PostgreSQL ...")
                try:
                    self.postgres = Postgres(self.work).start()
                except Exception as exc:
                    raise ToolFailed(f"PostgreSQL did not start: {exc}") from exc
            env["SCORE_REGISTRY_URL"] = self.postgres.create_database()
        return env

    def s3_env(self) -> dict[str, str]:
        if self.seaweed is None:
            say("starting SeaweedFS ...")
            self.seaweed = SeaweedS3(self.work / "seaweed")
            try:
                self.seaweed.start()
            except Exception as exc:
                raise ToolFailed(f"SeaweedFS did not start: {exc}") from exc
        return self.seaweed.score_env(self.seaweed.fresh_bucket())

    def run_backend(self, backend: str, first: bool) -> None:
        args = self.args
        base = self.work / backend
        base.mkdir()
        env = self.backend_env(backend)
        data_dir = base / "data"
        say(f"[{backend}] preparing data: {args.files} files + a BAM uploaded with score-client, published ...")
        deployment = self.deploy(data_dir, 1, env)
        try:
            began = time.monotonic()
            data = prepare(deployment.servers[0], base, args.files, max(args.connections * 4, 16))
            say(f"[{backend}] data ready in {time.monotonic() - began:.1f} s")
        finally:
            self.undeploy(deployment)
        for replicas in args.replicas:
            deployment = self.deploy(data_dir, replicas, env)
            try:
                for workload in args.workloads:
                    result = self.run_workload(deployment, backend, replicas, workload, data, base)
                    self.results.append(result)
                    say(
                        f"[{backend}] {replicas} replica(s) {workload:<6} {result.rps:8.0f} req/s"
                        f"  p50 {result.p50:6.2f} ms  p99 {result.p99:6.2f} ms  errors {result.errors}"
                        f"  cpu {result.cpu_ms:.2f} ms/req"
                        f"  rss {result.rss_start / MiB:.0f}->{result.rss_end / MiB:.0f} MiB"
                        + (f"  ({result.error_detail})" if result.error_detail else "")
                    )
                if args.profile and first and replicas == 1:
                    seconds = 10.0 if not args.quick else args.duration
                    say(f"[{backend}] py-spy on one replica during {seconds:.0f} s of specs (not recorded) ...")
                    with self.profiler(deployment, seconds):
                        run_wrk(deployment.url, specs_paths(data), data.reader, seconds, args.connections, base)
                if args.soak and first and replicas == 1:
                    say(f"[{backend}] soak: specs for {args.soak:.0f} s on one replica, RSS every 10 s ...")
                    self.soak = wrk_workload(
                        deployment, backend, 1, "soak", specs_paths(data), data, args.soak, args.connections, base, 10.0
                    )
            finally:
                self.undeploy(deployment)

    def run_workload(
        self, deployment: Deployment, backend: str, replicas: int, workload: str, data: Dataset, base: Path
    ) -> Result:
        args = self.args
        if workload == "upload":
            return upload_workload(deployment, backend, replicas, data, args.duration, args.connections)
        paths = specs_paths(data) if workload == "specs" else htsget_paths(data)
        return wrk_workload(deployment, backend, replicas, workload, paths, data, args.duration, args.connections, base)

    @contextmanager
    def profiler(self, deployment: Deployment, seconds: float) -> Iterator[None]:
        """py-spy on the first replica for up to 10 s of the run, leaf frames counted (idle excluded)."""
        if not Path(PY_SPY).exists():
            self.profile_note = "py-spy not installed (.venv/bin/pip install py-spy): no profile"
            yield
            return
        out = self.work / "profile.txt"
        seconds = max(1, int(seconds) - 1)  # inside the load, not past its end
        pid = deployment.servers[0].process.pid  # type: ignore[union-attr]
        argv = [PY_SPY, "record", "--pid", str(pid), "--subprocesses", "--duration", str(seconds)]
        argv += ["--rate", "100", "--format", "raw", "--output", str(out), *(["--gil"] if self.args.gil else [])]
        log = self.work / "py-spy.log"
        with log.open("wb") as sink:
            spy = subprocess.Popen(argv, stdout=sink, stderr=sink)
            try:
                yield
            finally:
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
        if out.exists():
            self.profile = own_time(out.read_text())
            self.profile_lines = own_time(out.read_text(), top=10, lines=True)
            gil = ", --gil: the thread holding the GIL" if self.args.gil else ", idle left out"
            self.profile_note = f"py-spy record --rate 100, {seconds} s, pid {pid} + children{gil}"
        else:
            self.profile_note = f"py-spy failed: {log.read_text()[-500:]}"

    def stop_all(self) -> None:
        for deployment in list(self.deployments):
            with suppress(Exception):
                deployment.stop()
        self.deployments.clear()
        for service in (self.seaweed, self.postgres):
            if service is not None:
                with suppress(Exception):
                    service.stop()


# -- report ----------------------------------------------------------------------------------------------------


def _f(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN -> "-"


def print_table(lines: list[tuple[str, ...]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for index, line in enumerate(lines):
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))))
        if index == 0:
            print("  ".join("-" * w for w in widths))


def report(bench: Bench) -> None:
    args = bench.args
    print(
        f"\nscore load bench: {args.connections} connections, {args.duration:.0f} s per workload;"
        f" {os.cpu_count()} CPUs shared by wrk/the upload clients, the server(s), HAProxy (and SeaweedFS);"
        f" score-server --workers {args.workers}; source {source()}"
        f"\nload average (1 min) at the start {bench.load_before:.2f}, at the end {os.getloadavg()[0]:.2f}:"
        " above ~1 other work shared the cores (the figures are then low and noisy)"
        "\nreq/s, p50, p99: wrk's (specs, htsget) or the Python clients' API calls (upload: initiate, record,"
        " finalize;\nnot the data PUT). CPU ms/req: user+sys of every score-server process / requests; LB: HAProxy's."
        "\nload gen CPU: CPU-seconds per second taken by wrk or the upload clients (out of the 2 cores)."
    )
    head = (
        "workload",
        "replicas",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU ms/req",
        "LB CPU ms/req",
        "load gen CPU",
        "RSS MiB start->end (peak)",
    )
    for backend in args.backends:
        rows = [r for r in bench.results if r.backend == backend]
        if not rows:
            continue
        print(f"\n=== {backend} ===\n")
        lines: list[tuple[str, ...]] = [head]
        for r in rows:
            rss = f"{r.rss_start / MiB:.0f}->{r.rss_end / MiB:.0f} ({r.rss_peak / MiB:.0f})"
            lines.append(
                (r.workload, str(r.replicas), _f(r.rps, 0), _f(r.p50, 2), _f(r.p99, 2), str(r.errors),
                 _f(r.cpu_ms, 2), _f(r.lb_cpu_ms, 2), _f(r.client_cpu, 2), rss)
            )  # fmt: skip
        print_table(lines)
        for workload in args.workloads:
            one = next((r for r in rows if r.workload == workload and r.replicas == 1), None)
            two = next((r for r in rows if r.workload == workload and r.replicas == 2), None)
            if one and two and one.rps:
                print(f"{workload}: 2 replicas / 1 replica = {two.rps / one.rps:.2f}x req/s")
        for r in rows:
            if r.error_detail:
                print(f"errors {r.workload} x{r.replicas}: {r.error_detail}")
    print()
    for line in targets(bench):
        print(line)
    if bench.profile or bench.profile_note:
        print(f"\nwhere the CPU goes (specs, one replica, {bench.profile_note}); top frames by own time:")
        for frame, samples, share in bench.profile:
            print(f"  {share * 100:5.1f}%  {samples:6d}  {frame}")
        print("the same by line:")
        for frame, samples, share in bench.profile_lines:
            print(f"  {share * 100:5.1f}%  {samples:6d}  {frame}")


def targets(bench: Bench) -> list[str]:
    lines = []
    local = {r.replicas: r for r in bench.results if r.backend == "local" and r.workload == "specs"}
    if 1 in local:
        one = local[1]
        ok = one.rps >= TARGET_RPS and one.p99 < TARGET_P99_MS
        lines.append(
            f"target specs, 1 replica, local: >= {TARGET_RPS:.0f} req/s with p99 < {TARGET_P99_MS:.0f} ms:"
            f" {one.rps:.0f} req/s, p99 {one.p99:.2f} ms -> {'MET' if ok else 'MISSED'}"
        )
    for backend in bench.args.backends:
        specs = {r.replicas: r for r in bench.results if r.backend == backend and r.workload == "specs"}
        if 1 in specs and 2 in specs and specs[1].rps:
            scale = specs[2].rps / specs[1].rps
            lines.append(
                f"target specs, 2 replicas >= {TARGET_SCALE}x 1 ({backend}): {scale:.2f}x ->"
                f" {'MET' if scale >= TARGET_SCALE else 'MISSED'}"
            )
    errors = sum(r.errors for r in bench.results)
    lines.append(f"target no errors: {errors} error(s) -> {'MET' if not errors else 'MISSED'}")
    if bench.soak is not None:
        s = bench.soak
        after = [size for t, size in s.rss_samples if t >= SOAK_WARMUP]
        if after and s.seconds >= SOAK_WARMUP:
            reference, end = after[0], s.rss_samples[-1][1]
            flat = rss_flat(reference, end)
            trace = " ".join(f"{size / MiB:.0f}" for _, size in s.rss_samples)
            lines.append(
                f"target RSS flat over a {s.seconds:.0f} s soak ({s.rps:.0f} req/s, {s.errors} errors): "
                f"{reference / MiB:.1f} MiB after 1 min -> {end / MiB:.1f} MiB at the end, peak "
                f"{s.rss_peak / MiB:.1f} -> {'MET' if flat else 'MISSED'}\n  RSS MiB every 10 s: {trace}"
            )
        else:
            lines.append("target RSS flat: the soak was shorter than a minute, no verdict")
    else:
        lines.append("target RSS flat over a 10-minute soak: not run (use --soak 600)")
    return lines


# -- entry point -----------------------------------------------------------------------------------------------


def source() -> str:
    """The commit measured, ``+dirty`` when src/ has uncommitted changes."""
    with suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return "?"


def _csv(choices: Sequence[str]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in items if t not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(choices)}")
        return list(dict.fromkeys(items))

    return parse


def _replicas(text: str) -> list[int]:
    try:
        counts = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError("replicas: a list of 1 and/or 2") from exc
    if not counts or any(c not in (1, 2) for c in counts):
        raise argparse.ArgumentTypeError("replicas: 1 and/or 2 (deploy/haproxy.cfg names two servers)")
    return counts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", type=_csv(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--replicas", type=_replicas, default=[1, 2])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per workload [10]")
    parser.add_argument("--connections", type=int, default=16, help="concurrent clients [16]")
    parser.add_argument("--workloads", type=_csv(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--workers", type=int, default=1, help="score-server serve --workers of each replica [1]")
    parser.add_argument("--files", type=int, default=200, help="published small files the specs rotate over [200]")
    parser.add_argument("--soak", type=float, default=0.0, help="SECONDS of specs on one replica, RSS every 10 s")
    parser.add_argument("--profile", action="store_true", help="py-spy the first one-replica specs run")
    parser.add_argument("--gil", action="store_true", help="--profile only the thread holding the GIL")
    parser.add_argument("--quick", action="store_true", help="local, 1 replica, 3 s per workload, 50 files")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    args.profile = args.profile or args.gil
    if args.quick:
        args.backends, args.replicas, args.duration, args.files = ["local"], [1], 3.0, 50
    if args.connections < 1 or args.duration < 1:
        parser.error("--connections and --duration must be at least 1")
    return args


def _interrupted(signum: int, _frame: object) -> None:
    with suppress(RuntimeError):
        asyncio.get_running_loop()  # the upload clients: asyncio.run unwinds a SIGINT cleanly, so pass it on
        signal.raise_signal(signal.SIGINT)
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in (WRK, *([HAPROXY] if 2 in args.replicas else [])):
        if not Path(tool).exists():
            say(f"error: {tool} is missing (apt-get install wrk haproxy)")
            return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    work = Path(tempfile.mkdtemp(prefix="score-load-", dir=args.workdir))
    os.environ["XDG_STATE_HOME"] = str(work / "xdg-state")  # score-server serve records itself there, not in ~
    bench = Bench(args, work)
    began = time.monotonic()
    try:
        say(f"work dir {work}")
        for index, backend in enumerate(args.backends):
            bench.run_backend(backend, first=index == 0)
        report(bench)
        say(f"done in {time.monotonic() - began:.0f} s")
        return 0
    except KeyboardInterrupt as exc:
        say(f"\ninterrupted ({str(exc) or 'SIGINT'}); cleaning up")
        return 130
    except (ToolFailed, OSError, subprocess.SubprocessError, httpx.HTTPError, AssertionError) as exc:
        say(f"\nFAILED: {exc.__class__.__name__}: {exc}")
        for deployment in bench.deployments:
            for server in deployment.servers:
                with suppress(OSError):
                    say(f"--- {server.log_path} ---\n{server.log_path.read_text(errors='replace')[-2000:]}")
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        bench.stop_all()
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
