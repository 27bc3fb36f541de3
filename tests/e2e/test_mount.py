"""``score-client mount`` / ``unmount`` end to end: a real score-server, real ``score-client mount`` processes
(libfuse3 through mfusepy), and real tools (md5sum, ls, samtools, bcftools, pysam) reading the mount.

One server and one published analysis serve every test that only reads; the tests that damage the store or
restart the server get a server of their own. Each mount runs in the foreground under ``mounted()``, which
waits for the kernel to show it, and whatever happens unmounts it (``fusermount3 -u``, lazily if busy) and
ends its process; a watchdog kills a mount that outlives its test, so a hung FUSE read fails the test
instead of hanging the run. The mount's stderr goes to a file: that is the mount log the tests read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pysam
import pytest

from tests.conftest import SMALL_PART, Client, Registry, ScoreServer, make_file, md5_of
from tests.genomics_data import REFERENCE, make_bam_and_cram, make_vcf_and_bcf

pytestmark = pytest.mark.e2e

assert shutil.which("fusermount3") and os.path.exists("/dev/fuse"), "the mount tests need fuse3 and /dev/fuse"
assert REFERENCE.exists() and shutil.which("samtools") and shutil.which("bcftools"), (
    "the genomics tests need: apt-get install samtools bcftools tabix htslib-test samtools-test (.ci/run does it)"
)

KiB, MiB = 1024, 1024 * 1024
STUDY_A = "MNTA"  # the readable study: every kind of file
STUDY_B = "MNTB"  # another study: one controlled file, one open file
STUDY_NEW = "MNTN"  # where test_new_analysis_appears publishes, after the mount started
ADMIN = "score.WRITE score.READ song.WRITE"
MULTI_SIZE = 6 * MiB + 123  # 97 parts of 64 KiB: more than SEQUENTIAL_AFTER (4 MiB), so md5sum reads it sequentially
SMALL_SIZE = 5000  # one part
MOUNTED_SECONDS = 30.0  # how long a mount may take to come up
WATCHDOG_SECONDS = 90.0  # a test's mount still up after this long is killed (a hung read fails instead of hanging)
MODULE_WATCHDOG_SECONDS = 900.0  # the shared mount lives as long as the module

# ce.fa: CHROMOSOME_I is 1,009,800 bases, the others 5,000
BAM_REGIONS = ["CHROMOSOME_I:500001-510000", "CHROMOSOME_I:1000000-1009800", "CHROMOSOME_III:1000-2000", "CHROMOSOME_X"]
VCF_REGIONS = ["1:10000000-10000020", "2:5000000-5001000", "10"]


# -- mounts -------------------------------------------------------------------------------------------------
def in_mount_table(point: Path) -> bool:
    """Whether the kernel has a mount there, stale or not (``os.path.ismount`` depends on stat answering)."""
    target = os.path.realpath(point)
    with open("/proc/self/mountinfo") as table:
        return any(line.split()[4].replace("\\040", " ") == target for line in table)


def release(point: Path, process: subprocess.Popen[bytes] | None = None) -> None:
    """Unmount ``point`` however it is (busy, stale) and end ``process``: nothing is left behind."""
    for _ in range(3):
        if not in_mount_table(point):
            break
        if subprocess.run(["fusermount3", "-u", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["fusermount3", "-uz", str(point)], capture_output=True)
    if process is not None and process.poll() is None:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_mounted(point: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + MOUNTED_SECONDS
    while not os.path.ismount(point):
        if process.poll() is not None:
            raise AssertionError(f"the mount exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not mounted after {MOUNTED_SECONDS} s:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


@dataclass
class Mount:
    point: Path
    process: subprocess.Popen[bytes]
    log: Path
    watchdog_fired: list[bool] = field(default_factory=list)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None and os.path.ismount(self.point)


def mount_env(client: Client, state: Path, **extra: str) -> dict[str, str]:
    return client.env(XDG_STATE_HOME=str(state), **extra)  # default pid and log files go to the test's folder


@contextmanager
def mounted(
    client: Client, point: Path, *args: str, watchdog_seconds: float = WATCHDOG_SECONDS, **env: str
) -> Iterator[Mount]:
    """``score-client mount --mount-point point *args`` in the foreground, mounted; unmounted afterwards."""
    point.mkdir(parents=True, exist_ok=True)
    log = point.with_name(point.name + ".log")
    with open(log, "wb") as output:
        process = subprocess.Popen(
            client.command("mount", "--mount-point", str(point), *args),
            cwd=client.workdir,
            env=mount_env(client, point.parent, **env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
    mount = Mount(point, process, log)

    def kill() -> None:
        if process.poll() is None:
            mount.watchdog_fired.append(True)
            process.kill()

    watchdog = threading.Timer(watchdog_seconds, kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        wait_mounted(point, process, log)
        yield mount
    finally:
        watchdog.cancel()
        release(point, process)
    assert not mount.watchdog_fired, f"the mount was still up after {watchdog_seconds} s and was killed"


# -- reading --------------------------------------------------------------------------------------------------
def md5_via_mount(path: Path, chunk: int = 1 * MiB) -> str:
    digest = hashlib.md5()  # noqa: S324
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def run(*args: str, timeout: float = 60) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
    return result.stdout


def records(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(("@", "#"))]


def published_time(registry: Registry, study: str, analysis_id: str) -> float:
    """The analysis's publication time: the registry writes UTC without an offset (Song's LocalDateTime)."""
    analysis = registry.http.get(f"/studies/{study}/analysis/{analysis_id}").json()
    return datetime.fromisoformat(analysis["publishedAt"]).replace(tzinfo=UTC).timestamp()


# -- the shared repository -----------------------------------------------------------------------------------
@dataclass
class Analysis:
    study: str
    id: str
    ids: dict[str, str]  # file name -> object id
    md5s: dict[str, str]  # file name -> the MD5 registered for it
    local: Path  # the same files on local disk


@dataclass
class Repo:
    root: Path
    server: ScoreServer
    registry: Registry
    admin: Client
    a: Analysis  # STUDY_A: empty, one-byte, small and multi-part files, BAM/CRAM/VCF.gz/BCF with indexes
    b_controlled: Analysis  # STUDY_B, controlled
    b_open: Analysis  # STUDY_B, open
    before_publish: float  # time.time() just before the first publication

    def client(self, scopes: str, name: str) -> Client:
        work = self.root / f"work-{name}"
        work.mkdir(exist_ok=True)
        return Client(self.server, self.server.token(scopes), work)


def publish(registry: Registry, client: Client, study: str, folder: Path, access: str = "controlled") -> Analysis:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    analysis_id, ids = registry.submit(study, files, access=access)
    upload = client.run("upload", "--analysis-id", analysis_id, "--study-id", study, "--input-dir", str(folder))
    assert upload.returncode == 0, upload.stderr
    assert registry.publish(study, analysis_id).status_code == 200
    listed = registry.http.get(f"/studies/{study}/analysis/{analysis_id}/files").json()
    md5s = {f["fileName"]: f["fileMd5sum"] for f in listed}
    assert md5s == {f.name: md5_of(f) for f in files}
    return Analysis(study, analysis_id, ids, md5s, folder)


def small_repository(root: Path, multi_size: int) -> tuple[ScoreServer, Registry, Client, Analysis]:
    """A server of one's own with one published analysis: a multi-part and a one-part file."""
    folder = root / "files"
    make_file(folder / "multi.bin", multi_size, seed=11)
    make_file(folder / "small.bin", SMALL_SIZE, seed=12)
    server = ScoreServer(root / "server-data").start()
    try:
        token = server.token(ADMIN)
        registry = Registry(server, token)
        work = root / "work"
        work.mkdir()
        client = Client(server, token, work)
        return server, registry, client, publish(registry, client, STUDY_A, folder)
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    root = tmp_path_factory.mktemp("mount")
    local = root / "a"
    make_file(local / "empty.bin", 0)
    make_file(local / "one.bin", 1, seed=1)
    make_file(local / "small.bin", SMALL_SIZE, seed=2)
    make_file(local / "multi.bin", MULTI_SIZE, seed=3)
    make_bam_and_cram(local, reads=12_000)  # sampled.bam(.bai), sampled.cram(.crai): ~1.2 MB, ~0.7 MB
    make_vcf_and_bcf(local)  # variants.vcf.gz(.tbi), variants.bcf(.csi)
    make_file(root / "b-controlled" / "secret.bin", 3000, seed=4)
    make_file(root / "b-open" / "public.bin", 3000, seed=5)

    server = ScoreServer(root / "server-data").start()
    try:
        token = server.token(ADMIN)
        registry = Registry(server, token)
        work = root / "work"
        work.mkdir()
        admin = Client(server, token, work)
        before = time.time()
        a = publish(registry, admin, STUDY_A, local)
        b_controlled = publish(registry, admin, STUDY_B, root / "b-controlled")
        b_open = publish(registry, admin, STUDY_B, root / "b-open", access="open")
        assert (a.local / "multi.bin").stat().st_size // SMALL_PART > 90  # many parts
        yield Repo(root, server, registry, admin, a, b_controlled, b_open, before)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bundle(repo: Repo) -> Iterator[Mount]:
    """The admin's mount of everything, layout bundle, shared by the tests that only read it."""
    with mounted(repo.admin, repo.root / "mnt-bundle", watchdog_seconds=MODULE_WATCHDOG_SECONDS) as mount:
        yield mount
    assert "Traceback" not in mount.log_text(), mount.log_text()


# -- reading through the mount ------------------------------------------------------------------------------
def test_samtools_bcftools_and_pysam_queries_match_local_files(repo: Repo, bundle: Mount) -> None:
    """Random reads through the mount's index-driven path (this runs first on the shared mount: nothing of
    these files is in any cache yet)."""
    a = repo.a
    folder = bundle.point / a.id
    nonempty = 0
    for name, reference in [("sampled.bam", []), ("sampled.cram", ["-T", str(REFERENCE)])]:
        for region in BAM_REGIONS:
            theirs = records(run("samtools", "view", *reference, str(a.local / name), region))
            ours = records(run("samtools", "view", *reference, str(folder / name), region))
            assert ours == theirs, (name, region)
            nonempty += bool(theirs)
        counted = run("samtools", "idxstats", str(folder / name))
        assert counted == run("samtools", "idxstats", str(a.local / name)), name
    for name in ["variants.vcf.gz", "variants.bcf"]:
        for region in VCF_REGIONS:
            theirs = records(run("bcftools", "view", "-H", "-r", region, str(a.local / name)))
            ours = records(run("bcftools", "view", "-H", "-r", region, str(folder / name)))
            assert ours == theirs, (name, region)
            nonempty += bool(theirs)
    assert run("tabix", str(folder / "variants.vcf.gz"), "1:10000000-10000020") == run(
        "tabix", str(a.local / "variants.vcf.gz"), "1:10000000-10000020"
    )
    assert nonempty >= 9  # the comparisons are not between empty outputs

    with (
        pysam.AlignmentFile(str(folder / "sampled.bam")) as remote,
        pysam.AlignmentFile(str(a.local / "sampled.bam")) as local,
    ):
        ours_reads = [r.to_string() for r in remote.fetch("CHROMOSOME_I", 200_000, 230_000)]
        theirs_reads = [r.to_string() for r in local.fetch("CHROMOSOME_I", 200_000, 230_000)]
    assert ours_reads == theirs_reads and len(theirs_reads) > 50


def store_gets(server: ScoreServer, object_id: str) -> list[tuple[int, int]]:
    """The byte ranges of the store's GETs of an object, from the server's access log."""
    ranges = []
    for event in server.access_events("get"):
        if event.get("key") == f"data/{object_id}":
            first, last = (int(v) for v in str(event["range"]).split("-"))
            ranges.append((first, last))
    return ranges


def test_every_file_reads_back_with_its_registered_md5(repo: Repo, bundle: Mount) -> None:
    a = repo.a
    folder = bundle.point / a.id
    assert sorted(os.listdir(folder)) == sorted(a.ids)
    assert store_gets(repo.server, a.ids["multi.bin"]) == []  # nothing of it read yet
    for name, md5 in a.md5s.items():
        path = folder / name
        assert os.stat(path).st_size == (a.local / name).stat().st_size, name
        assert md5_via_mount(path) == md5, name
    sizes = {"empty.bin": 0, "one.bin": 1, "small.bin": SMALL_SIZE, "multi.bin": MULTI_SIZE}
    assert {n: os.stat(folder / n).st_size for n in sizes} == sizes
    # the real md5sum, on the multi-part file and the small one
    out = run("md5sum", str(folder / "multi.bin"), str(folder / "small.bin"), str(folder / "empty.bin"))
    assert [line.split()[0] for line in out.splitlines()] == [
        a.md5s["multi.bin"],
        a.md5s["small.bin"],
        a.md5s["empty.bin"],
    ]
    assert (folder / "one.bin").read_bytes() == (a.local / "one.bin").read_bytes()
    assert (folder / "empty.bin").read_bytes() == b""

    # read sequentially (with read-ahead), then again by md5sum: the store sent each part once, whole
    gets = store_gets(repo.server, a.ids["multi.bin"])
    parts = [(offset, min(offset + SMALL_PART, MULTI_SIZE) - 1) for offset in range(0, MULTI_SIZE, SMALL_PART)]
    assert sorted(gets) == parts, f"{len(gets)} GETs for {len(parts)} parts"


def test_concurrent_readers_get_the_same_bytes(repo: Repo, bundle: Mount) -> None:
    path = bundle.point / repo.a.id / "multi.bin"
    results: list[str] = []
    errors: list[BaseException] = []

    def read(chunk: int) -> None:
        try:
            results.append(md5_via_mount(path, chunk))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(chunk,)) for chunk in (4096, 65536, 1 * MiB, 333_333)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results == [repo.a.md5s["multi.bin"]] * 4


def test_sizes_modes_and_times(repo: Repo, bundle: Mount) -> None:
    a = repo.a
    folder = bundle.point / a.id
    listing = run("ls", "-ln", "--time-style=+%s", str(folder))
    rows = {line.split()[-1]: line.split() for line in listing.splitlines()[1:]}
    assert set(rows) == set(a.ids)
    for name, row in rows.items():
        assert row[0] == "-r--r--r--", row
        assert int(row[4]) == (a.local / name).stat().st_size, row
    published = published_time(repo.registry, a.study, a.id)
    now = time.time()
    for name in a.ids:
        mtime = os.stat(folder / name).st_mtime
        assert repo.before_publish - 2 <= mtime <= now + 2, (name, mtime, now)
        assert abs(mtime - published) < 1, (name, mtime, published)  # the analysis's publication
    for directory in (bundle.point, folder):
        info = os.stat(directory)
        assert oct(info.st_mode & 0o777) == "0o555"
        assert repo.before_publish - 60 <= info.st_mtime <= now + 2


@pytest.mark.parametrize("zone", ["EST5", "JST-9"])  # UTC-5 (times would be in the future), UTC+9
def test_mtimes_do_not_depend_on_the_clients_time_zone(repo: Repo, tmp_path: Path, zone: str) -> None:
    a = repo.a
    published = published_time(repo.registry, a.study, a.id)
    scope = ("--analysis-id", a.id, "--study-id", a.study)
    with mounted(repo.admin, tmp_path / "mnt", *scope, TZ=zone) as mount:
        mtime = os.stat(mount.point / a.id / "small.bin").st_mtime
        now = time.time()
    assert mtime <= now + 2, f"TZ={zone}: the file's mtime is {mtime - now:+.0f} s from now, in the future"
    assert abs(mtime - published) < 1, f"TZ={zone}: mtime {mtime} is {mtime - published:+.0f} s off its publication"


def test_object_id_layout_and_index_links(repo: Repo, tmp_path: Path) -> None:
    a = repo.a
    ids = a.ids
    scope = ("--analysis-id", a.id, "--study-id", a.study)
    with mounted(repo.admin, tmp_path / "mnt", "--layout", "object-id", *scope) as mount:
        point = mount.point
        links = {
            f"{ids['sampled.bam']}.bai": ids["sampled.bam.bai"],
            f"{ids['sampled.cram']}.crai": ids["sampled.cram.crai"],
            f"{ids['variants.vcf.gz']}.tbi": ids["variants.vcf.gz.tbi"],
            f"{ids['variants.bcf']}.csi": ids["variants.bcf.csi"],
        }
        assert sorted(os.listdir(point)) == sorted([*ids.values(), *links])
        for link, target in links.items():
            assert (point / link).is_symlink() and os.readlink(point / link) == target
            assert (point / link).read_bytes() == (a.local / a_name(a, target)).read_bytes()

        # random reads first (this process's caches are empty): each compared with the local bytes
        multi = point / ids["multi.bin"]
        local = (a.local / "multi.bin").read_bytes()
        with open(multi, "rb", buffering=0) as handle:
            for n in range(40):
                offset = (n * 2_654_435_761) % MULTI_SIZE
                size = 1 + (n * 7919) % 200_000
                assert os.pread(handle.fileno(), size, offset) == local[offset : offset + size], (offset, size)
            assert os.pread(handle.fileno(), 10, MULTI_SIZE - 3) == local[-3:]
            assert os.pread(handle.fileno(), 10, MULTI_SIZE + 5) == b""

        for region in BAM_REGIONS[:2]:
            assert records(run("samtools", "view", str(point / ids["sampled.bam"]), region)) == records(
                run("samtools", "view", str(a.local / "sampled.bam"), region)
            )
            cram = ["samtools", "view", "-T", str(REFERENCE)]
            assert records(run(*cram, str(point / ids["sampled.cram"]), region)) == records(
                run(*cram, str(a.local / "sampled.cram"), region)
            )
        for name, md5 in a.md5s.items():
            assert md5_via_mount(point / ids[name]) == md5, name


def a_name(analysis: Analysis, object_id: str) -> str:
    return next(name for name, i in analysis.ids.items() if i == object_id)


# -- read-only ------------------------------------------------------------------------------------------------
def test_every_change_is_refused_with_erofs(repo: Repo, bundle: Mount) -> None:
    folder = bundle.point / repo.a.id
    existing = folder / "small.bin"
    attempts = {
        "create in an analysis": lambda: open(folder / "new.txt", "wb"),  # noqa: SIM115
        "create at the root": lambda: open(bundle.point / "new.txt", "xb"),  # noqa: SIM115
        "write to a file": lambda: open(existing, "r+b"),  # noqa: SIM115
        "append to a file": lambda: open(existing, "ab"),  # noqa: SIM115
        "truncate": lambda: os.truncate(existing, 0),
        "mkdir": lambda: os.mkdir(folder / "folder"),
        "mkdir at the root": lambda: os.mkdir(bundle.point / "folder"),
        "rename": lambda: os.rename(existing, folder / "renamed.bin"),
        "chmod": lambda: os.chmod(existing, 0o644),
        "unlink": lambda: os.unlink(existing),
        "rmdir": lambda: os.rmdir(folder),
        "symlink": lambda: os.symlink("small.bin", folder / "link"),
        "utime": lambda: os.utime(existing, (0, 0)),
    }
    for what, attempt in attempts.items():
        with pytest.raises(OSError) as raised:
            attempt()
        assert raised.value.errno == errno.EROFS, f"{what}: {raised.value!r}"
    assert sorted(os.listdir(folder)) == sorted(repo.a.ids)
    assert md5_via_mount(existing) == repo.a.md5s["small.bin"]
    assert bundle.alive()


# -- access -------------------------------------------------------------------------------------------------
def walk(point: Path) -> set[tuple[str, str]]:
    return {(folder, name) for folder in os.listdir(point) for name in os.listdir(point / folder)}


def test_a_study_token_sees_only_what_it_may_read(repo: Repo) -> None:
    reader = repo.client(f"PROGRAMDATA-{STUDY_A}.READ", "study-a")
    secret = repo.b_controlled
    with mounted(reader, repo.root / "mnt-study-a") as mount:
        listed = walk(mount.point)
        for analysis in (repo.a, repo.b_open):
            assert {(analysis.id, name) for name in analysis.ids} <= listed
        assert not any(folder == secret.id for folder, _ in listed)  # its one file is refused: no folder
        assert all(folder in (repo.a.id, repo.b_open.id) for folder, _ in listed), listed
        with pytest.raises(FileNotFoundError):
            os.stat(mount.point / secret.id / "secret.bin")
        for analysis, name in [(repo.a, "small.bin"), (repo.a, "multi.bin"), (repo.b_open, "public.bin")]:
            assert md5_via_mount(mount.point / analysis.id / name) == analysis.md5s[name]
        assert mount.alive()


def test_a_cached_listing_of_another_identity_is_not_used(repo: Repo) -> None:
    """A listing saved by the admin's mount (--cache-metadata) lists study B's controlled file; a study-A
    token's mount in the same directory must not start from it (it would list what that token may not
    read): the controlled file is not there, the open one is, and the mount serves it."""
    scope = ("--study-id", STUDY_B, "--cache-metadata")
    admin = Client(repo.server, repo.admin.token, repo.root / "work-cache")
    admin.workdir.mkdir()
    with mounted(admin, repo.root / "mnt-cache-admin", *scope) as mount:
        assert (mount.point / repo.b_controlled.id / "secret.bin").exists()
    cache = admin.workdir / ".score-mount.cache"
    admins = json.loads(cache.read_text())["identity"]
    reader = Client(repo.server, repo.server.token(f"PROGRAMDATA-{STUDY_A}.READ"), admin.workdir)
    with mounted(reader, repo.root / "mnt-cache-reader", *scope) as mount:
        secret = mount.point / repo.b_controlled.id / "secret.bin"
        with pytest.raises(OSError) as raised:
            open(secret, "rb").close()
        assert raised.value.errno == errno.ENOENT, repr(raised.value)
        public = mount.point / repo.b_open.id / "public.bin"
        assert md5_via_mount(public) == repo.b_open.md5s["public.bin"]
        assert mount.alive()
    assert json.loads(cache.read_text())["identity"] != admins  # saved again, for the reader


def test_an_expired_token_gives_eacces_and_says_to_remount(repo: Repo) -> None:
    """Files listed while the token was valid; once it has expired, opening one the mount has no URL for
    yet is refused with EACCES, the mount stays up, and its log says to remount with a new token."""
    short = Client(repo.server, repo.server.token(f"PROGRAMDATA-{STUDY_A}.READ", ttl="6s"), repo.root / "work-short")
    short.workdir.mkdir()
    expires = time.time() + 6
    with mounted(short, repo.root / "mnt-short", "--study-id", STUDY_A) as mount:
        files = [p for p in mount.point.rglob("*") if p.is_file()]
        assert files, "nothing listed while the token was valid"
        time.sleep(max(expires - time.time(), 0) + 1.5)
        with pytest.raises(OSError) as raised:
            open(files[0], "rb").close()
        assert raised.value.errno == errno.EACCES, repr(raised.value)
        assert mount.alive()
        assert "remount" in mount.log_text() and "expired" in mount.log_text(), mount.log_text()


# -- scope and freshness ------------------------------------------------------------------------------------
MANIFEST_COLUMNS = [
    "repo_code", "file_id", "object_id", "file_format", "file_name", "file_size",
    "md5_sum", "index_object_id", "donor_id", "project_id", "study",
]  # fmt: skip


def manifest_row(analysis: Analysis, name: str, index: str = "") -> str:
    size = (analysis.local / name).stat().st_size
    cells = ["local", f"FI-{name}", analysis.ids[name], "BAM", name, str(size), analysis.md5s[name], index]
    return "\t".join([*cells, "DO1", "PR1", analysis.study])


def test_manifest_mounts_its_files_and_their_index_files(repo: Repo, tmp_path: Path) -> None:
    a = repo.a
    manifest = tmp_path / "manifest.tsv"
    rows = [
        manifest_row(a, "sampled.bam", a.ids["sampled.bam.bai"]),  # the index named in column 8
        manifest_row(a, "small.bin"),
        manifest_row(repo.b_open, "public.bin"),
    ]
    manifest.write_text("\n".join(["\t".join(MANIFEST_COLUMNS), *rows]) + "\n")
    with mounted(repo.admin, tmp_path / "mnt", "--manifest", str(manifest)) as mount:
        assert walk(mount.point) == {
            (a.id, "sampled.bam"),
            (a.id, "sampled.bam.bai"),
            (a.id, "small.bin"),
            (repo.b_open.id, "public.bin"),
        }
        assert md5_via_mount(mount.point / a.id / "small.bin") == a.md5s["small.bin"]
        region = BAM_REGIONS[0]
        assert records(run("samtools", "view", str(mount.point / a.id / "sampled.bam"), region)) == records(
            run("samtools", "view", str(a.local / "sampled.bam"), region)
        )


def test_manifest_row_without_index_column_still_gets_its_index(repo: Repo, tmp_path: Path) -> None:
    """Song's manifests often leave column 8 empty; ``download --manifest`` then still fetches ``x.cram.crai``
    (index files are found by name in the file's analysis). The mount should show the same files."""
    a = repo.a
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("\n".join(["\t".join(MANIFEST_COLUMNS), manifest_row(a, "sampled.cram")]) + "\n")
    downloaded = repo.admin.run("download", "--manifest", str(manifest), "--output-dir", str(tmp_path / "out"))
    assert downloaded.returncode == 0, downloaded.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["sampled.cram", "sampled.cram.crai"]
    with mounted(repo.admin, tmp_path / "mnt", "--manifest", str(manifest)) as mount:
        assert walk(mount.point) == {(a.id, "sampled.cram"), (a.id, "sampled.cram.crai")}


def test_new_analysis_appears_without_remounting(repo: Repo, tmp_path: Path) -> None:
    folder = tmp_path / "new"
    make_file(folder / "new.bin", 70_000, seed=21)  # two parts
    with mounted(repo.admin, tmp_path / "mnt", "--metadata-ttl", "5") as mount:
        before = set(os.listdir(mount.point))
        assert repo.a.id in before
        added = publish(repo.registry, repo.admin, STUDY_NEW, folder)
        assert added.id not in before
        published = time.monotonic()
        while added.id not in os.listdir(mount.point):
            assert time.monotonic() - published < 15, f"not listed 15 s after publication:\n{mount.log_text()}"
            time.sleep(0.25)
        assert os.listdir(mount.point / added.id) == ["new.bin"]
        assert md5_via_mount(mount.point / added.id / "new.bin") == added.md5s["new.bin"]
        assert md5_via_mount(mount.point / repo.a.id / "small.bin") == repo.a.md5s["small.bin"]


# -- integrity and failures of the store ----------------------------------------------------------------------
def stored_file(server: ScoreServer, object_id: str, size: int) -> Path:
    """The store's own file of an object, found on disk under the server's data directory."""
    found = [p for p in (server.data_dir / "store").rglob(object_id) if p.is_file() and p.stat().st_size == size]
    assert len(found) == 1, found
    return found[0]


def flip(path: Path, position: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)
        handle.seek(position)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_a_damaged_object_reads_as_eio_never_as_wrong_bytes(tmp_path: Path) -> None:
    """The multi-part file is large enough to be read sequentially: its damaged part is first met by
    read-ahead, which must not serve or cache it either."""
    server, _, client, analysis = small_repository(tmp_path, MULTI_SIZE)
    try:
        multi_store = stored_file(server, analysis.ids["multi.bin"], MULTI_SIZE)
        small_store = stored_file(server, analysis.ids["small.bin"], SMALL_SIZE)
        middle = MULTI_SIZE // 2 + 1000
        flip(multi_store, middle)
        flip(small_store, SMALL_SIZE // 2)
        local = (analysis.local / "multi.bin").read_bytes()
        scope = ("--analysis-id", analysis.id, "--study-id", analysis.study)
        with mounted(client, tmp_path / "mnt", *scope) as mount:
            multi = mount.point / analysis.id / "multi.bin"
            small = mount.point / analysis.id / "small.bin"
            got = bytearray()
            with pytest.raises(OSError) as raised, open(multi, "rb") as handle:
                while block := handle.read(256 * KiB):
                    got += block
            assert raised.value.errno == errno.EIO, repr(raised.value)
            assert len(got) <= middle and got == local[: len(got)]  # what came before the error was right
            with pytest.raises(OSError) as raised:
                small.read_bytes()
            assert raised.value.errno == errno.EIO, repr(raised.value)

            # what is intact still reads; the damaged part never does, in any size of read
            bad_part = middle // SMALL_PART
            with open(multi, "rb", buffering=0) as handle:
                fd = handle.fileno()
                assert os.pread(fd, SMALL_PART, 0) == local[:SMALL_PART]
                good = (bad_part + 3) * SMALL_PART
                assert os.pread(fd, 1000, good) == local[good : good + 1000]
                for offset, size in [(middle, 1), (bad_part * SMALL_PART, SMALL_PART), (middle - 10, 4096)]:
                    with pytest.raises(OSError) as raised:
                        os.pread(fd, size, offset)
                    assert raised.value.errno == errno.EIO, (offset, size)

            log = mount.log_text()
            for object_id, part in [(analysis.ids["multi.bin"], bad_part + 1), (analysis.ids["small.bin"], 1)]:
                lines = [line for line in log.splitlines() if object_id in line and "MD5" in line]
                assert lines, f"no MD5 mismatch logged for {object_id}:\n{log}"
                assert f"part {part} " in lines[0] and "damaged" in lines[0], lines[0]

            # repaired in the store: a failed part was not cached, so it reads again
            flip(multi_store, middle)
            flip(small_store, SMALL_SIZE // 2)
            assert md5_via_mount(multi) == analysis.md5s["multi.bin"]
            assert md5_via_mount(small) == analysis.md5s["small.bin"]
            assert mount.alive()
    finally:
        server.stop()


def test_server_restart_mid_read(tmp_path: Path) -> None:
    size = 3 * MiB + 7  # 49 parts
    server, _, client, analysis = small_repository(tmp_path, size)
    try:
        local = (analysis.local / "multi.bin").read_bytes()
        scope = ("--analysis-id", analysis.id, "--study-id", analysis.study)
        with mounted(client, tmp_path / "mnt", *scope) as mount:
            path = mount.point / analysis.id / "multi.bin"
            far = size - 300 * KiB  # never fetched before the server stops
            with open(path, "rb", buffering=0) as handle:
                fd = handle.fileno()
                assert os.pread(fd, 256 * KiB, 0) == local[: 256 * KiB]
                server.stop()
                began = time.monotonic()
                with pytest.raises(OSError) as raised:
                    os.pread(fd, 64 * KiB, far)
                assert raised.value.errno == errno.EIO, repr(raised.value)
                assert time.monotonic() - began < 30
                assert os.pread(fd, 1000, 1000) == local[1000:2000]  # already fetched: still served
                assert mount.alive()

                server.start()  # the same port and data directory
                assert os.pread(fd, 64 * KiB, far) == local[far : far + 64 * KiB]
            assert md5_via_mount(path) == analysis.md5s["multi.bin"]
            assert mount.alive()
    finally:
        server.stop()


# -- the process: daemon, signals, stale mounts, the mount point ----------------------------------------------
def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has ended; reaping it is its parent's business, here init's)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_daemonize_then_unmount(repo: Repo, tmp_path: Path) -> None:
    point = tmp_path / "mnt"
    point.mkdir()
    pid_file, log_file = tmp_path / "state" / "mount.pid", tmp_path / "state" / "mount.log"
    client = repo.admin
    pid = 0
    try:
        daemonize = ["--daemonize", "--pid-file", str(pid_file), "--log-file", str(log_file)]
        started = subprocess.run(
            client.command("mount", "--mount-point", str(point), *daemonize),
            cwd=client.workdir,
            env=mount_env(client, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert started.returncode == 0, started.stderr
        assert os.path.ismount(point)  # mounted when the command returns
        assert f"mounted at {point}" in started.stderr
        pid = int(pid_file.read_text().strip())
        assert running(pid) and b"score" in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert log_file.exists() and "mounting" in log_file.read_text()
        assert md5_via_mount(point / repo.a.id / "small.bin") == repo.a.md5s["small.bin"]

        unmounted = client.run("unmount", str(point), "--pid-file", str(pid_file), timeout=60)
        assert unmounted.returncode == 0, unmounted.stderr
        assert f"unmounted {point}" in unmounted.stderr
        assert not in_mount_table(point) and os.listdir(point) == []
        deadline = time.monotonic() + 10
        while running(pid):
            assert time.monotonic() < deadline, f"the daemon {pid} is still running after unmount"
            time.sleep(0.05)
        assert not pid_file.exists()
        assert "Traceback" not in log_file.read_text(), log_file.read_text()
    finally:
        release(point)
        if pid and running(pid):
            os.kill(pid, signal.SIGKILL)


def test_kill_9_leaves_a_stale_mount_that_unmount_clears(repo: Repo, tmp_path: Path) -> None:
    point = tmp_path / "mnt"
    with mounted(repo.admin, point) as mount:
        mount.process.kill()
        mount.process.wait(10)
        # stale: the kernel may still answer stat of the root from its cache, but nothing inside answers
        with pytest.raises(OSError) as raised:
            os.listdir(point)
        assert raised.value.errno == errno.ENOTCONN
        with pytest.raises(OSError) as raised:
            os.stat(point / repo.a.id)
        assert raised.value.errno == errno.ENOTCONN

        again = repo.admin.run("mount", "--mount-point", str(point), timeout=60, XDG_STATE_HOME=str(tmp_path))
        assert again.returncode == 1, again.stderr
        assert "stale" in again.stderr and f"score-client unmount {point}" in again.stderr, again.stderr

        cleared = repo.admin.run("unmount", str(point), timeout=60, XDG_STATE_HOME=str(tmp_path))
        assert cleared.returncode == 0, cleared.stderr
        assert os.stat(point).st_nlink >= 1 and not os.path.ismount(point) and not in_mount_table(point)
        assert os.listdir(point) == []

    with mounted(repo.admin, point) as mount:  # and the mount point serves again
        assert md5_via_mount(mount.point / repo.a.id / "one.bin") == repo.a.md5s["one.bin"]


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_unmounts_cleanly(repo: Repo, tmp_path: Path, sent: signal.Signals) -> None:
    with mounted(repo.admin, tmp_path / "mnt") as mount:
        assert md5_via_mount(mount.point / repo.a.id / "one.bin") == repo.a.md5s["one.bin"]
        mount.process.send_signal(sent)
        code = mount.process.wait(15)
        assert not in_mount_table(mount.point)
        assert os.listdir(mount.point) == []
        log = mount.log_text()
        assert "Traceback" not in log and "could not mount" not in log, log
        assert code == 0, log


def test_mount_point_must_be_an_empty_directory(repo: Repo, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine\n")
    refused = repo.admin.run("mount", "--mount-point", str(full), timeout=60, XDG_STATE_HOME=str(tmp_path))
    assert refused.returncode == 1
    assert f"mount point {full} is not empty; mount on an empty directory" in refused.stderr, refused.stderr
    assert not in_mount_table(full) and (full / "keep.txt").read_text() == "mine\n"

    missing = repo.admin.run("mount", "--mount-point", str(tmp_path / "absent"), XDG_STATE_HOME=str(tmp_path))
    assert missing.returncode == 1 and "does not exist" in missing.stderr, missing.stderr

    unmounted = repo.admin.run("unmount", str(full), XDG_STATE_HOME=str(tmp_path))
    assert unmounted.returncode == 1 and f"{full} is not mounted" in unmounted.stderr, unmounted.stderr
