"""``score-client download --archive FILE.tar`` end to end: real server and client processes, on the local
store and on S3 (SeaweedFS), checked with the real ``tar`` and ``md5sum``.

Which parts crossed the wire comes from the store's side: the local store's access log, or a proxy in front
of SeaweedFS (every part GET carries its Range), never from the client's own account.
"""

from __future__ import annotations

import signal
import subprocess
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from score.core.ids import is_uuid
from tests.conftest import SMALL_PART, Client, Registry, ScoreServer, make_file, md5_of
from tests.services.proxy import StoreProxy
from tests.services.seaweed import SeaweedS3

STUDY = "ARCHIVE"
MiB = 1 << 20
S3_PART = 5 * MiB  # S3's smallest part


@dataclass
class Backend:
    name: str
    server: ScoreServer
    registry: Registry
    client: Client
    part_size: int
    gets: Callable[[], Counter[tuple[str, str]]]  # (object id, "first-last") -> GETs that completed

    def publish(self, files: list[Path]) -> tuple[str, dict[str, str]]:
        """Register, upload and publish ``files`` as one analysis: its id and {file name: object id}."""
        analysis_id, ids = self.registry.submit(STUDY, files)
        upload = self.client.run(
            "upload", "--analysis-id", analysis_id, "--study-id", STUDY, "--input-dir", str(files[0].parent)
        )
        assert upload.returncode == 0, upload.stderr
        assert self.registry.publish(STUDY, analysis_id).status_code == 200
        return analysis_id, ids


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    service = SeaweedS3(tmp_path_factory.mktemp("seaweed-archive")).start()
    yield service
    service.stop()


def _local_gets(server: ScoreServer) -> Callable[[], Counter[tuple[str, str]]]:
    def gets() -> Counter[tuple[str, str]]:
        return Counter(
            (str(e["key"]).removeprefix("data/"), str(e["range"]))
            for e in server.access_events("get")
            if str(e["key"]).startswith("data/") and is_uuid(str(e["key"]).removeprefix("data/"))
        )

    return gets


def _proxy_gets(proxy: StoreProxy) -> Callable[[], Counter[tuple[str, str]]]:
    def gets() -> Counter[tuple[str, str]]:
        found: Counter[tuple[str, str]] = Counter()
        for e in proxy.requests("GET", lambda e: "/data/" in e.path and e.status in (200, 206)):
            key = e.path.rsplit("/data/", 1)[1]
            if is_uuid(key) and e.range:
                found[(key, e.range.removeprefix("bytes="))] += 1
        return found

    return gets


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The same test on the local store and on S3."""
    yield from _backend(request.param, request, tmp_path)


@pytest.fixture
def local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """For what the store makes no difference to (the client's own decisions) or that damages its files."""
    yield from _backend("local", request, tmp_path)


def _backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    proxy = None
    if kind == "local":
        server = ScoreServer(tmp_path / "server-data").start()
        part_size, gets = SMALL_PART, _local_gets(server)
    else:
        store: SeaweedS3 = request.getfixturevalue("seaweed")
        proxy = StoreProxy(store.endpoint).start()  # signed URLs name the proxy: it sees every part GET
        env = store.score_env(store.fresh_bucket(), proxy.url)
        server = ScoreServer(tmp_path / "server-data", part_size=S3_PART, extra_env=env).start()
        part_size, gets = S3_PART, _proxy_gets(proxy)
    token = server.token("score.WRITE score.READ song.WRITE")
    work = tmp_path / "work"
    work.mkdir()
    try:
        yield Backend(kind, server, Registry(server, token), Client(server, token, work), part_size, gets)
    finally:
        server.stop()
        if proxy is not None:
            proxy.stop()


def _mixed_files(root: Path, part_size: int, prefix: str = "") -> list[Path]:
    """0 bytes, 1 byte, a small file, a multi-part file (last part short), and a name past ustar's limits."""
    return [
        make_file(root / f"{prefix}empty.txt", 0),
        make_file(root / f"{prefix}one.bin", 1, seed=1),
        make_file(root / f"{prefix}small.vcf", 3000, seed=2),
        make_file(root / f"{prefix}multi.bam", 2 * part_size + 1234, seed=3),
        make_file(root / (prefix + "a-rather-long-file-name-" * 6 + "end.txt"), 777, seed=4),
    ]


def _check_archive(archive: Path, sources: dict[str, Path], tmp_path: Path) -> None:
    """``tar -xf`` gives back exactly the sources under their member names, and ``md5sum -c`` passes."""
    assert archive.exists()
    listed = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines() == [*sorted(sources), "MD5SUMS"]
    with tarfile.open(archive) as tar:  # and Python's reader agrees
        assert [m.name for m in tar.getmembers()] == [*sorted(sources), "MD5SUMS"]
    out = tmp_path / f"extracted-{archive.stem}"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], capture_output=True, check=True)
    for name, source in sources.items():
        assert (out / name).read_bytes() == source.read_bytes(), name
    check = subprocess.run(["md5sum", "-c", "MD5SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(sources)
    leftovers = sorted(p.name for p in archive.parent.iterdir() if p.name != archive.name)
    assert not [n for n in leftovers if archive.name in n], f"state left behind: {leftovers}"


def test_analysis_saved_as_one_archive(backend: Backend, tmp_path: Path) -> None:
    files = _mixed_files(tmp_path / "in", backend.part_size)
    analysis_id, _ = backend.publish(files)
    archive = tmp_path / "out" / "job.tar"
    result = backend.client.run(
        "download", "--analysis-id", analysis_id, "--study-id", STUDY, "--archive", str(archive)
    )
    assert result.returncode == 0, result.stderr
    assert f"saved 5 files in {archive}" in result.stderr and "MD5SUMS" in result.stderr
    _check_archive(archive, {f.name: f for f in files}, tmp_path)
    # every part of every file was fetched once: the multi-part one in parts, the others whole
    gets = backend.gets()
    assert sum(gets.values()) == 3 + 3  # one, small, long name; multi.bam's three parts (empty: none)
    assert set(gets.values()) == {1}


def test_object_ids_and_manifest_in_bundle_and_id_layouts(local: Backend, tmp_path: Path) -> None:
    backend = local
    first = _mixed_files(tmp_path / "in", backend.part_size)[:4]
    second = [make_file(tmp_path / "in2" / "other.txt", 5000, seed=9)]
    a1, ids1 = backend.publish(first)
    a2, ids2 = backend.publish(second)

    bundle = tmp_path / "bundle.tar"
    all_ids = [ids1[f.name] for f in first] + [ids2["other.txt"]]
    result = backend.client.run(
        "download", "--object-id", *all_ids, "--archive", str(bundle), "--output-layout", "bundle"
    )
    assert result.returncode == 0, result.stderr
    expected = {f"{a1}/{f.name}": f for f in first} | {f"{a2}/other.txt": second[0]}
    _check_archive(bundle, expected, tmp_path)

    columns = "repo_code file_id object_id file_format file_name file_size md5_sum index_object_id donor_id project_id"
    header = "\t".join([*columns.split(), "study"])
    rows = [
        f"local\tFI{i}\t{ids1[f.name]}\tBAM\t{f.name}\t{f.stat().st_size}\t{md5_of(f)}\t\tDO1\tP\t{STUDY}"
        for i, f in enumerate(first)
    ]
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("\n".join([header, *rows]) + "\n")
    by_id = tmp_path / "by-id.tar"
    result = backend.client.run(
        "download", "--manifest", str(manifest), "--archive", str(by_id), "--output-layout", "id", "--validate", "false"
    )
    assert result.returncode == 0, result.stderr
    assert "NOT verified (--validate false)" in result.stderr  # so the manifest's MD5s are those of the bytes saved
    _check_archive(by_id, {ids1[f.name]: f for f in first}, tmp_path)


def test_refusals(local: Backend, tmp_path: Path) -> None:
    backend = local
    files = _mixed_files(tmp_path / "in", backend.part_size)[:2]
    analysis_id, ids = backend.publish(files)
    archive = tmp_path / "job.tar"
    oid = ids[files[1].name]

    for extra in (["--offset", "10"], ["--length", "5"]):
        refused = backend.client.run("download", "--object-id", oid, "--archive", str(archive), *extra)
        assert refused.returncode == 1
        assert "--archive saves whole files: it cannot be combined with --offset or --length" in refused.stderr
    both = backend.client.run("download", "--object-id", oid, "--archive", str(archive), "--output-dir", "x")
    assert both.returncode == 1 and "without --output-dir" in both.stderr
    neither = backend.client.run("download", "--object-id", oid)
    assert neither.returncode == 1 and "give --output-dir (or --archive" in neither.stderr
    compressed = backend.client.run("download", "--object-id", oid, "--archive", str(tmp_path / "job.tar.gz"))
    assert compressed.returncode == 1 and "uncompressed tar" in compressed.stderr
    assert not archive.exists() and not list(tmp_path.glob("*.partial"))

    archive.write_bytes(b"an earlier archive")
    exists = backend.client.run(
        "download", "--analysis-id", analysis_id, "--study-id", STUDY, "--archive", str(archive)
    )
    assert exists.returncode == 1 and f"{archive} already exists; use --force to replace it" in exists.stderr
    assert archive.read_bytes() == b"an earlier archive"
    forced = backend.client.run(
        "download", "--analysis-id", analysis_id, "--study-id", STUDY, "--archive", str(archive), "--force"
    )
    assert forced.returncode == 0, forced.stderr
    _check_archive(archive, {f.name: f for f in files}, tmp_path)


def _wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def _settled(gets: Callable[[], Counter[tuple[str, str]]]) -> Counter[tuple[str, str]]:
    """The GETs once those in flight when the client died have been logged (or dropped)."""
    previous = gets()
    while True:
        time.sleep(0.5)
        current = gets()
        if current == previous:
            return current
        previous = current


def _part_range(number: int, part_size: int, size: int) -> str:
    start = (number - 1) * part_size
    return f"{start}-{min(start + part_size, size) - 1}"


def test_killed_mid_download_resumes_without_fetching_finished_parts(backend: Backend, tmp_path: Path) -> None:
    parts = 400 if backend.name == "local" else 24  # enough to be interrupted reliably
    big_size = parts * backend.part_size - 100
    files = [*_mixed_files(tmp_path / "in", backend.part_size), make_file(tmp_path / "in" / "big.bam", big_size, 7)]
    analysis_id, ids = backend.publish(files)
    big = ids["big.bam"]

    archive = tmp_path / "out" / "job.tar"
    state = archive.with_name(".job.tar.state")
    command = ["--parallel", "2", "download", "--analysis-id", analysis_id, "--study-id", STUDY]
    process = backend.client.start(*command, "--archive", str(archive))
    _wait_for(lambda: len(list((state / big).glob("part-*"))) >= parts // 8 or process.poll() is not None)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    assert not archive.exists(), "an unfinished archive must never appear under its final name"
    partial = archive.with_name("job.tar.partial")
    assert partial.exists() and (state / "layout.json").exists()
    finished = {int(p.name.split("-")[1], 16) for p in (state / big).glob("part-*")}
    assert 2 <= len(finished) < parts, len(finished)
    small_done = {p.name.removesuffix(".done") for p in state.glob("*.done")}
    gets_before = _settled(backend.gets)

    result = backend.client.run(*command, "--archive", str(archive))
    assert result.returncode == 0, result.stderr
    assert f"{len(finished)} parts already done" in result.stderr
    _check_archive(archive, {f.name: f for f in files}, tmp_path)
    new = backend.gets() - gets_before
    refetched = [n for n in finished if new[(big, _part_range(n, backend.part_size, big_size))]]
    assert refetched == [], f"finished parts fetched again: {refetched}"
    assert sum(n for (key, _), n in new.items() if key == big) == parts - len(finished)
    again = [key for (key, _), n in new.items() if key in small_done and n]
    assert again == [], f"files finished before the kill fetched again: {again}"


def _flip_byte(path: Path, position: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(position)
        value = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([value ^ 0xFF]))


def test_a_failed_file_fails_the_job_and_the_rerun_fetches_only_what_is_missing(local: Backend, tmp_path: Path) -> None:
    backend = local  # the object is damaged in the local store's own files
    files = [
        *_mixed_files(tmp_path / "in", backend.part_size),
        make_file(tmp_path / "in" / "bad.bam", 4 * backend.part_size, seed=8),
    ]
    analysis_id, ids = backend.publish(files)
    stored = backend.server.data_dir / "store" / "objects" / "data" / ids["bad.bam"]
    _flip_byte(stored, backend.part_size + 5)  # the store's copy is damaged

    archive = tmp_path / "job.tar"
    command = ["download", "--analysis-id", analysis_id, "--study-id", STUDY, "--archive", str(archive)]
    failed = backend.client.run(*command)
    assert failed.returncode == 1
    assert f"download of {ids['bad.bam']} (bad.bam in {archive}) failed" in failed.stderr
    assert "1 of 6 files failed ('bad.bam')" in failed.stderr
    assert f"{archive} was not written: 1 of 6 files are not done ('bad.bam')" in failed.stderr
    assert not archive.exists() and archive.with_name("job.tar.partial").exists()

    _flip_byte(stored, backend.part_size + 5)  # repaired
    before = backend.gets()
    result = backend.client.run(*command)
    assert result.returncode == 0, result.stderr
    _check_archive(archive, {f.name: f for f in files}, tmp_path)
    new = backend.gets() - before
    assert {key for key, _ in new} == {ids["bad.bam"]}, "only the failed file is fetched again"
    assert sum(new.values()) == 4


def test_another_set_of_files_starts_the_archive_over(local: Backend, tmp_path: Path) -> None:
    backend = local
    files = _mixed_files(tmp_path / "in", backend.part_size)
    analysis_id, ids = backend.publish(files)
    stored = backend.server.data_dir / "store" / "objects" / "data" / ids["multi.bam"]
    _flip_byte(stored, 10)
    archive = tmp_path / "job.tar"
    failed = backend.client.run(
        "download", "--analysis-id", analysis_id, "--study-id", STUDY, "--archive", str(archive)
    )
    assert failed.returncode == 1 and archive.with_name("job.tar.partial").exists()

    others = [f for f in files if f.name != "multi.bam"]
    result = backend.client.run("download", "--object-id", *[ids[f.name] for f in others], "--archive", str(archive))
    assert result.returncode == 0, result.stderr
    assert "starting" in result.stderr and "over: the files of this download" in result.stderr
    _check_archive(archive, {f.name: f for f in others}, tmp_path)
