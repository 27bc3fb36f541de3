#!/usr/bin/env python3
"""Measure the embedded default end to end: score-client vs curl on the same signed URLs, same machine.

    .venv/bin/python bench/transfer.py [--size 1GiB] [--runs 3] [--parallel N] [--part-size BYTES] [--keep]

Why this shape: a transfer tool is only as good as its distance from the plain alternative. Every run
uploads and downloads one random file with ``score-client`` (the real console script, as users run it) and
moves the very same bytes with ``curl`` over the very same signed URLs, so the ratio between the two is the
client's own overhead (parallel parts, MD5 in both directions, journaling, fsync), not the server's or
the disk's. ``md5sum`` of the file is printed as a reference: the client hashes everything it moves, so a
client slower than md5sum is not CPU-bound on hashing alone.

Everything runs against a fresh ``score-server serve`` on a free port in a temporary directory, which is
removed (and the server stopped, by PID) on success, failure and Ctrl-C alike. Exit status: 0 when every
MD5 check passed, 1 when one failed, 2 on any other error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from score.client.transfer.hashing import md5_of_range

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dev dependency of the project
    sys.exit("bench/transfer.py needs psutil (pip install -e '.[dev]'), to read the server's CPU time")

KiB, MiB, GiB = 1024, 1024**2, 1024**3
GEN_BLOCK = 16 * MiB
HASH_BLOCK = 8 * MiB
ADMIN_SCOPES = "score.WRITE score.READ song.WRITE"
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
    "tib": 1024**4,
}
REPO_ROOT = Path(__file__).resolve().parent.parent
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


class Md5Mismatch(Exception):
    """A transferred file's MD5 differs from the original's: the benchmark must fail, not just report."""


class Interrupted(Exception):
    """SIGTERM (or SIGHUP) arrived: unwind through the ``finally`` blocks so the server is stopped."""


# -- small helpers ------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``64MiB``, ``1GiB``, ``4GiB``, ``500MB`` or plain bytes; binary and decimal units both accepted."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: use e.g. 64MiB, 1GiB, 4GiB or 500MB")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return size


def human(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_tool(name: str) -> str:
    """The project's console scripts sit next to the interpreter running this file (the virtualenv)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        sys.exit(f"{name} not found next to {sys.executable} nor on PATH; run with the project's .venv/bin/python")
    return found


def md5_file(path: Path) -> str:
    """MD5 of a file, computed in this process: checking is not part of any measured step."""
    md5 = hashlib.md5()  # noqa: S324 - integrity, not security
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(HASH_BLOCK)
        view = memoryview(buffer)
        while n := handle.readinto(buffer):
            md5.update(view[:n])
    return md5.hexdigest()


def md5_range(path: Path, offset: int, size: int) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return md5_of_range(fd, offset, size)
    finally:
        os.close(fd)


def make_random_file(path: Path, size: int) -> str:
    """Write ``size`` bytes of os.urandom (incompressible, ~0.3-1 GB/s) and return their MD5.

    Random bytes rule out any transport or filesystem compression flattering one tool; the MD5 is taken
    while writing so registration does not need a second pass over the file.
    """
    md5 = hashlib.md5()  # noqa: S324
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(GEN_BLOCK, remaining))
            md5.update(block)
            handle.write(block)
            remaining -= len(block)
    return md5.hexdigest()


def check_md5(path: Path, expected: str, what: str) -> None:
    actual = md5_file(path)
    if actual != expected:
        raise Md5Mismatch(f"{what}: {path} hashes to {actual}, expected {expected}")


def source_state() -> str:
    """The code measured: the commit, and a digest of any uncommitted change under src/.

    Baselines must say what they measured, and the client is an editable install run afresh at every step,
    so an edit under src/ during a long run changes what the later steps measure (score-server keeps the code
    it started with). bundle.py's ``Bundle.measured`` compares this before every score-client step with the
    run's start; race.py, bundle.py and mount.py print it under their header and in their chart's subtitle.
    """
    root = str(REPO_ROOT)
    git = ["git", "-C", root]
    with suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30)
        diff = subprocess.run([*git, "diff", "HEAD", "--", "src"], capture_output=True, timeout=60).stdout
        untracked = subprocess.run(
            [*git, "ls-files", "--others", "--exclude-standard", "-z", "--", "src"], capture_output=True, timeout=60
        ).stdout
        digest = hashlib.sha1(diff)  # noqa: S324 - a fingerprint, not security
        for name in filter(None, untracked.split(b"\0")):
            with suppress(OSError):
                digest.update(name + (REPO_ROOT / name.decode()).read_bytes())
        head = commit.stdout.strip() or "?"
        return f"{head} + uncommitted changes under src/ ({digest.hexdigest()[:8]})" if diff or untracked else head
    return "?"


# -- measuring child processes ---------------------------------------------------------------------


@dataclass
class Sample:
    """One measured step: wall time, the client's CPU and peak RSS, and the server's CPU meanwhile."""

    wall: float
    cpu: float
    rss_mib: float
    server_cpu: float
    sys_cpu: float = 0.0  # the kernel's share of ``cpu``: copies, page cache, fsync


@dataclass
class ChildResult:
    returncode: int
    wall: float
    cpu: float
    rss_mib: float
    sys_cpu: float
    stdout: str
    stderr: str


_live_children: set[int] = set()  # process groups to kill if we unwind while they run


def _gnu_time() -> str | None:
    """GNU time, if installed: the one way to get a child's true peak RSS (see ``run_measured``)."""
    path = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if path is None:
        return None
    with suppress(OSError, subprocess.SubprocessError):
        if "GNU" in subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5).stdout:
            return path
    return None


GNU_TIME = _gnu_time()
RSS_METHOD = "GNU time %M" if GNU_TIME else "VmHWM sampled every 10 ms"


def _poll_hwm(pid: int, done: threading.Event, peak: list[int]) -> None:
    """Fallback without GNU time: sample /proc/PID/status VmHWM (monotonic) until the child exits."""
    while not done.wait(0.01):
        with suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]))


def run_measured(
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    stdin: int | None = None,
    feed: Callable[[], None] | None = None,
    cwd: Path | None = None,
) -> ChildResult:
    """Run one child and reap it with ``os.wait4``: its user+sys CPU is exact, its peak RSS needs care.

    Linux carries the exec-ing process's old memory high-water mark into ``ru_maxrss``, and Python forks
    (or vforks) from this process, so ``ru_maxrss`` of a direct child is at least *our* RSS (a bare
    ``true`` reports ~70 MiB). So the child is started under GNU time, a tiny C program, which forks it
    from its own ~1 MiB image and reports the real peak (``%M``, KiB); wait4 on ``time`` still yields the
    child's CPU, since a reaped process's rusage includes its reaped children. Without GNU time we sample
    the child's VmHWM instead. ``feed`` (optional) runs in a thread while the child runs, e.g. to splice a
    file slice into its stdin. Output goes to temporary files, never pipes, so nothing can block.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(prefix="rss-", suffix=".txt") as rss_file,
    ):
        wrapped = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv] if GNU_TIME else list(argv)
        started = time.perf_counter()
        # Own process group: cleanup kills the child and (under GNU time) its grandchild together.
        process = subprocess.Popen(
            wrapped, env=env, stdin=stdin, stdout=out, stderr=err, cwd=cwd, start_new_session=True
        )
        _live_children.add(process.pid)
        feeder = poller = None
        done, peak = threading.Event(), [0]
        if feed is not None:
            feeder = threading.Thread(target=feed, name="feed", daemon=True)
            feeder.start()
        if not GNU_TIME:
            poller = threading.Thread(target=_poll_hwm, args=(process.pid, done, peak), daemon=True)
            poller.start()
        _, status, usage = os.wait4(process.pid, 0)  # interrupted: the group stays listed and is killed
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # tell Popen it was reaped
        _live_children.discard(process.pid)
        done.set()
        for thread in (feeder, poller):
            if thread is not None:
                thread.join(30)
        if GNU_TIME:
            lines = Path(rss_file.name).read_text().split()
            peak_kib = int(lines[-1]) if lines and lines[-1].isdigit() else 0
        else:
            peak_kib = peak[0]
        out.seek(0)
        err.seek(0)
        return ChildResult(
            process.returncode,
            wall,
            usage.ru_utime + usage.ru_stime,
            peak_kib / KiB,
            usage.ru_stime,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def kill_live_children() -> None:
    """SIGKILL the process group of each measured child still running (its id is the child's PID)."""
    for pid in list(_live_children):
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with suppress(ChildProcessError):
            os.waitpid(pid, 0)
        _live_children.discard(pid)


# -- the server and its APIs -------------------------------------------------------------------------


class Server:
    """A fresh ``score-server serve`` on a free port, stopped by PID whatever happens."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        part_size: int | None,
        extra_env: dict[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.part_size = part_size
        self.extra_env = extra_env or {}  # e.g. another storage backend's settings
        self.start_timeout = start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None

    def start(self) -> None:
        argv = [find_tool("score-server"), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.part_size:
            argv += ["--part-size", str(self.part_size)]
        env = {**os.environ, "SCORE_PUBLIC_URL": self.url, **self.extra_env}
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C in the terminal reaches only us, and we stop the server in order.
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"score-server exited at start:\n{self.log_tail()}")
            with suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/actuator/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"score-server did not become healthy in {self.start_timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        with suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return "(no log)"

    def cpu(self) -> float:
        """User+system CPU seconds of the server so far (its children too, should it ever fork workers)."""
        assert self._ps is not None
        times = self._ps.cpu_times()
        return times.user + times.system + times.children_user + times.children_system

    def peak_rss_mib(self) -> float | None:
        """VmHWM from /proc (Linux): the server's peak resident set over the whole benchmark."""
        assert self.process is not None
        with suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / KiB
        return None

    def token(self, scopes: str) -> str:
        out = subprocess.run(
            [find_tool("score-server"), "token", "--scopes", scopes, "--ttl", "12h", "--data-dir", str(self.data_dir)],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Registered:
    """A file registered in the embedded registry, and where its bytes live locally."""

    path: Path
    size: int
    md5: str
    study: str
    analysis: str
    object_id: str
    part_md5s: dict[tuple[int, int], str] = field(default_factory=dict)  # (offset, size) -> MD5, lazily


class Api:
    """The server's HTTP API as an admin: the embedded Song registry and the upload/download endpoints."""

    def __init__(self, server: Server, token: str) -> None:
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        self.published: dict[str, bool] = {}

    def close(self) -> None:
        self.http.close()

    def _ok(self, response: httpx.Response, what: str) -> httpx.Response:
        if response.status_code >= 300:
            raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:500]}")
        return response

    def register(self, path: Path, size: int, md5: str, study: str) -> Registered:
        """Create the study, submit an analysis with this one controlled file, return its object id."""
        response = self.http.post(
            f"/song/studies/{study}/",
            json={"studyId": study, "name": study, "organization": "bench", "description": "score transfer benchmark"},
        )
        if response.status_code not in (200, 201, 409):
            self._ok(response, f"create study {study}")
        payload = {
            "studyId": study,
            "analysisType": {"name": "sequencingRead"},
            "files": [
                {
                    "fileName": path.name,
                    "fileSize": size,
                    "fileMd5sum": md5,
                    "fileType": "BAM",
                    "fileAccess": "controlled",
                    "dataType": "bench",
                }
            ],
        }
        analysis = self._ok(self.http.post(f"/song/submit/{study}", json=payload), "submit analysis").json()[
            "analysisId"
        ]
        files = self._ok(self.http.get(f"/song/studies/{study}/analysis/{analysis}/files"), "list files").json()
        self.published[analysis] = False
        return Registered(path, size, md5, study, analysis, files[0]["objectId"])

    def set_published(self, item: Registered, published: bool) -> None:
        """Uploads need the analysis unpublished, download specs need it published: toggle as needed."""
        if self.published.get(item.analysis) == published:
            return
        verb = "publish" if published else "unpublish"
        self._ok(self.http.put(f"/song/studies/{item.study}/analysis/{verb}/{item.analysis}"), verb)
        self.published[item.analysis] = published

    def external_url(self, item: Registered) -> str:
        spec = self._ok(self.http.get(f"/download/{item.object_id}", params={"external": "true"}), "download spec")
        return spec.json()["parts"][0]["url"]

    def initiate(self, item: Registered) -> dict:
        params = {"fileSize": item.size, "md5": item.md5, "overwrite": "true"}
        return self._ok(self.http.post(f"/upload/{item.object_id}/uploads", params=params), "initiate").json()

    def finalize_part(self, item: Registered, upload_id: str, number: int, md5: str, etag: str) -> None:
        params = {"uploadId": upload_id, "partNumber": number, "md5": md5, "etag": etag}
        self._ok(self.http.post(f"/upload/{item.object_id}/parts", params=params), f"finalize part {number}")

    def finalize(self, item: Registered, upload_id: str) -> None:
        params = {"uploadId": upload_id, "md5": item.md5}
        self._ok(self.http.post(f"/upload/{item.object_id}", params=params), "finalize upload")


# -- the steps ----------------------------------------------------------------------------------------


class Bench:
    """Holds the server, token and work directory; each method is one measured step, MD5-checked."""

    def __init__(self, work: Path, server: Server, api: Api, token: str, parallel: int | None) -> None:
        self.work = work
        self.server = server
        self.api = api
        self.client = find_tool("score-client")
        self.curl = shutil.which("curl")
        self.md5sum = shutil.which("md5sum")
        self.global_opts = ["--quiet"] + (["--parallel", str(parallel)] if parallel else [])
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ACCESSTOKEN", "METADATA_URL", "TRANSPORT_PARALLEL", "CLIENT_UPLOADSTATEDIR")
        }
        self.env.update({"STORAGE_URL": server.url, "ACCESSTOKEN": token, "SCORE_CLIENT_CONFIG": ""})

    @contextmanager
    def server_cpu(self, into: list[float]) -> Iterator[None]:
        before = self.server.cpu()
        yield
        into.append(self.server.cpu() - before)

    def _client(self, *args: str) -> ChildResult:
        result = run_measured([self.client, *self.global_opts, *args], env=self.env, cwd=self.work)
        if result.returncode != 0:
            raise RuntimeError(f"score-client {args[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def client_upload(self, item: Registered) -> Sample:
        self.api.set_published(item, False)
        cpu: list[float] = []
        with self.server_cpu(cpu):
            r = self._client(
                "upload", "--object-id", item.object_id, "--file", str(item.path), "--md5", item.md5, "--force"
            )
        return Sample(r.wall, r.cpu, r.rss_mib, cpu[0], r.sys_cpu)

    def client_download(self, item: Registered, validate: bool) -> Sample:
        """Download into a fresh folder, check the MD5 here (not timed), then delete it to keep disk use flat."""
        self.api.set_published(item, True)
        out = self.work / f"dl-{uuid.uuid4().hex[:8]}"
        cpu: list[float] = []
        try:
            extra = [] if validate else ["--validate", "false"]
            with self.server_cpu(cpu):
                r = self._client("download", "--object-id", item.object_id, "--output-dir", str(out), "--force", *extra)
            check_md5(out / item.path.name, item.md5, f"score-client download{'' if validate else ' --validate false'}")
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return Sample(r.wall, r.cpu, r.rss_mib, cpu[0], r.sys_cpu)

    def curl_download(self, item: Registered) -> Sample:
        """One curl, one stream, the external (unranged) signed URL: the simplest possible download."""
        assert self.curl
        self.api.set_published(item, True)
        url = self.api.external_url(item)
        out = self.work / f"curl-{uuid.uuid4().hex[:8]}.bin"
        cpu: list[float] = []
        try:
            with self.server_cpu(cpu):
                r = run_measured([self.curl, "-sS", "--fail", "-o", str(out), url])
            if r.returncode != 0:
                raise RuntimeError(f"curl download failed ({r.returncode}): {r.stderr.strip()}")
            check_md5(out, item.md5, "curl download")
        finally:
            out.unlink(missing_ok=True)
        return Sample(r.wall, r.cpu, r.rss_mib, cpu[0], r.sys_cpu)

    def curl_upload(self, item: Registered) -> Sample:
        """Upload through the same part URLs the client gets, one curl per part, strictly one after another.

        A multipart upload cannot be one ``curl -T`` of the whole file, so this is the honest single-stream
        peer: each part's bytes are spliced (zero-copy, negligible CPU here) from the file into curl's
        stdin, sent with an exact Content-Length (the store refuses chunked bodies). Only the part PUTs are
        timed and counted (wall, curl CPU, server CPU); initiate, per-part finalize and finalize are API
        bookkeeping outside the measurement, whereas score-client's figures include its whole run. The
        store's ETags (its MD5 of what it received) are checked against the file's part MD5s afterwards.
        """
        assert self.curl
        self.api.set_published(item, False)
        spec = self.api.initiate(item)
        upload_id = spec["uploadId"]
        wall = cpu = rss = server = sys_cpu = 0.0
        etags: dict[int, tuple[int, int, str]] = {}
        for part in spec["parts"]:
            number, offset, size = part["partNumber"], part["offset"], part["partSize"]
            read_end, write_end = os.pipe()
            argv = [
                self.curl,
                "-sS",
                "--fail-with-body",
                "-T",
                "-",
                "-o",
                os.devnull,
                "-w",
                "%header{etag}",
                "-H",
                f"Content-Length: {size}",
                "-H",
                "Transfer-Encoding:",
                "-H",
                "Expect:",
                "-H",
                "Content-Type: application/octet-stream",
                part["url"],
            ]
            feed = _splicer(item.path, offset, size, write_end)
            before = self.server.cpu()
            try:
                r = run_measured(argv, stdin=read_end, feed=feed)
            finally:
                os.close(read_end)
            server += self.server.cpu() - before
            if r.returncode != 0:
                raise RuntimeError(f"curl PUT of part {number} failed ({r.returncode}): {r.stderr.strip()}")
            wall, cpu, rss, sys_cpu = wall + r.wall, cpu + r.cpu, max(rss, r.rss_mib), sys_cpu + r.sys_cpu
            etag = r.stdout.strip().strip('"')
            etags[number] = (offset, size, etag)
            self.api.finalize_part(item, upload_id, number, etag, etag)
        self.api.finalize(item, upload_id)
        for number, (offset, size, etag) in etags.items():
            expected = item.part_md5s.get((offset, size)) or md5_range(item.path, offset, size)
            item.part_md5s[(offset, size)] = expected
            if etag != expected:
                raise Md5Mismatch(f"curl upload: the store's ETag of part {number} is {etag}, the file's is {expected}")
        return Sample(wall, cpu, rss, server, sys_cpu)

    def md5sum_reference(self, item: Registered) -> Sample:
        """What hashing the file costs on this machine: the floor under any MD5-verifying transfer."""
        assert self.md5sum
        r = run_measured([self.md5sum, str(item.path)])
        if r.returncode != 0 or r.stdout.split()[0] != item.md5:
            raise Md5Mismatch(f"md5sum reports {r.stdout.strip()!r}, expected {item.md5}")
        return Sample(r.wall, r.cpu, r.rss_mib, 0.0, r.sys_cpu)


def _splicer(path: Path, offset: int, size: int, write_end: int) -> Callable[[], None]:
    """A feeder that moves ``size`` bytes at ``offset`` of ``path`` into a pipe, then closes it (EOF)."""

    def feed() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            position, end = offset, offset + size
            while position < end:
                if hasattr(os, "splice"):
                    n = os.splice(fd, write_end, min(MiB, end - position), offset_src=position)
                else:  # pragma: no cover - non-Linux
                    n = os.write(write_end, os.pread(fd, min(MiB, end - position), position))
                if n <= 0:
                    break
                position += n
        except OSError:
            pass  # curl went away (it failed); its exit status tells the story
        finally:
            os.close(fd)
            os.close(write_end)

    return feed


# -- reporting ----------------------------------------------------------------------------------------


@dataclass
class Row:
    tool: str
    direction: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(s, attribute) for s in self.samples)

    def rates(self, size: int) -> list[float]:
        return [size / s.wall / 1e6 for s in self.samples]


def print_table(rows: list[Row], size: int, peers: dict[str, Row]) -> None:
    """Medians per step; the last column divides score-client's MB/s by curl's in the same direction."""
    header = (
        "tool",
        "direction",
        "MB/s",
        "(min-max)",
        "wall s",
        "client CPU-s/GiB",
        "peak RSS MiB",
        "server CPU-s",
        "vs curl",
    )
    lines = [header]
    for row in rows:
        rates = row.rates(size)
        ratio = ""
        peer = peers.get(row.direction)
        if row.tool.startswith("score-client") and peer is not None:
            ratio = f"{statistics.median(rates) / statistics.median(peer.rates(size)):.2f}x"
        lines.append(
            (
                row.tool,
                row.direction,
                f"{statistics.median(rates):.0f}",
                f"({min(rates):.0f}-{max(rates):.0f})",
                f"{row.median('wall'):.2f}",
                f"{row.median('cpu') / (size / GiB):.2f}",
                f"{row.median('rss_mib'):.0f}",
                f"{row.median('server_cpu'):.2f}" if row.direction != "read (local)" else "-",
                ratio,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if index == 0:
            print("  ".join("-" * w for w in widths))


# -- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=parse_size, default=GiB, help="file size, e.g. 64MiB, 1GiB, 4GiB [1GiB]")
    parser.add_argument("--runs", type=int, default=3, help="runs per step; the table shows medians [3]")
    parser.add_argument("--parallel", type=int, default=None, help="score-client --parallel [client default]")
    parser.add_argument("--part-size", type=parse_size, default=None, help="server part size [server default]")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temp dir goes [system temp]")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (files, server data, server log)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.parallel is not None and not 1 <= args.parallel <= 64:
        parser.error("--parallel must be between 1 and 64")
    return args


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("curl", "md5sum"):
        if not shutil.which(tool):
            print(f"error: {tool} is not on PATH; it is the comparison peer", file=sys.stderr)
            return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (nohup, &)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="score-bench-", dir=args.workdir))
    server = Server(work / "server-data", work / "server.log", args.part_size)
    apis: list[Api] = []
    try:
        return _run(args, work, server, apis)
    except Md5Mismatch as exc:
        print(f"\nFAILED: MD5 mismatch: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"\ninterrupted ({str(exc) or 'SIGINT'}); cleaning up", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"\nFAILED: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        if server.process is not None:
            print(f"--- server log tail ({server.log_path}) ---\n{server.log_tail()}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        kill_live_children()
        server.stop()
        for api in apis:
            api.close()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(args: argparse.Namespace, work: Path, server: Server, apis: list[Api]) -> int:
    """The benchmark proper; ``main`` owns the cleanup, ``apis`` collects what it must close."""
    size: int = args.size
    small = max(size // 4, 1)
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731 - progress goes to stderr

    say(f"work dir {work}")
    server.start()
    api = Api(server, server.token(ADMIN_SCOPES))
    apis.append(api)
    token = api.http.headers["Authorization"].removeprefix("Bearer ")
    bench = Bench(work / "client", server, api, token, args.parallel)
    bench.work.mkdir()

    say(f"generating {human(size)} and {human(small)} of random data ...")
    data = work / "data"
    data.mkdir()
    big_path, small_path = data / "bench-big.bam", data / "bench-small.bam"
    big = api.register(big_path, size, make_random_file(big_path, size), "BENCH")
    little = api.register(small_path, small, make_random_file(small_path, small), "BENCH")

    rows = {
        key: Row(*key)
        for key in [
            ("score-client", "upload"),
            ("curl (parts, 1 stream)", "upload"),
            ("score-client", "download"),
            ("score-client --validate false", "download"),
            ("curl (external URL)", "download"),
            ("md5sum (reference)", "read (local)"),
        ]
    }
    steps: list[tuple[tuple[str, str], Callable[[], Sample]]] = [
        (("curl (parts, 1 stream)", "upload"), lambda: bench.curl_upload(big)),
        (("score-client", "upload"), lambda: bench.client_upload(big)),  # last upload: what the downloads read
        (("score-client", "download"), lambda: bench.client_download(big, validate=True)),
        (("score-client --validate false", "download"), lambda: bench.client_download(big, validate=False)),
        (("curl (external URL)", "download"), lambda: bench.curl_download(big)),
        (("md5sum (reference)", "read (local)"), lambda: bench.md5sum_reference(big)),
    ]
    for run in range(1, args.runs + 1):
        for key, step in steps:
            sample = step()
            rows[key].samples.append(sample)
            say(
                f"run {run}/{args.runs}  {key[0]:<30} {key[1]:<12} {size / sample.wall / 1e6:7.0f} MB/s  "
                f"{sample.wall:6.2f} s  cpu {sample.cpu:5.2f} s (sys {sample.sys_cpu:4.2f})  "
                f"rss {sample.rss_mib:4.0f} MiB  server cpu {sample.server_cpu:5.2f} s"
            )

    say(f"memory check: one upload + download of {human(small)} ...")
    small_up = bench.client_upload(little)
    small_down = bench.client_download(little, validate=True)

    parallel = args.parallel or "default"
    print(
        f"\nscore transfer benchmark: {human(size)} random file, {args.runs} run(s), medians; "
        f"score-client --parallel {parallel}; server part size "
        f"{human(args.part_size) if args.part_size else 'default'}; MB = 1e6 bytes; all on 127.0.0.1\n"
    )
    peers = {
        "upload": rows[("curl (parts, 1 stream)", "upload")],
        "download": rows[("curl (external URL)", "download")],
    }
    print_table(list(rows.values()), size, peers)
    print(
        f"\npeak RSS via {RSS_METHOD}. client CPU-s/GiB = user+sys of the tool's process(es) per GiB moved"
        "\n(curl upload: summed over its per-part processes). server CPU-s = score-server user+sys during the"
        "\nstep. curl upload times only the part PUTs; score-client rows time the whole command."
    )
    big_up, big_down = rows[("score-client", "upload")], rows[("score-client", "download")]
    print("\npeak client RSS vs file size (score-client, MiB):")
    print(
        f"  upload:   {human(small):>8} {small_up.rss_mib:6.1f}   {human(size):>8} {big_up.median('rss_mib'):6.1f}   "
        f"ratio {big_up.median('rss_mib') / small_up.rss_mib:.2f}"
    )
    print(
        f"  download: {human(small):>8} {small_down.rss_mib:6.1f}   {human(size):>8} "
        f"{big_down.median('rss_mib'):6.1f}   ratio {big_down.median('rss_mib') / small_down.rss_mib:.2f}"
    )
    peak = server.peak_rss_mib()
    if peak is not None:
        print(f"score-server peak RSS over the whole benchmark: {peak:.0f} MiB")
    print("all MD5 checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
