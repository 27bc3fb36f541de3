"""Issue 14, the first hour of a new user: manifests, existing targets, leftovers after a failure.

Every case drives the real ``score-client`` against one real server (shared by the module: each case
registers its own analysis) and checks exit codes, bytes and messages:

* a manifest error names the manifest, the line and what to fix (never a usage text, never Song's terms);
* one rule for existing targets in both directions: identical content is skipped (exit 0, said in the
  summary), different content needs ``--force``; an interrupted ``--force`` upload resumes with ``--force``;
* a refused upload leaves no journal beside the file, a failed download no folder it created.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from score.crashpoints import ENV
from tests.conftest import DOWNLOAD_MANIFEST_HEADER, SMALL_PART, Client, Registry, ScoreServer, make_file, md5_of

pytestmark = pytest.mark.e2e

STUDY = "FIRSTHOUR"
HEADER = DOWNLOAD_MANIFEST_HEADER


@dataclass
class Site:
    """The module's server, an admin client and the registry; each case works in its own folder."""

    server: ScoreServer
    registry: Registry
    token: str

    def client(self, folder: Path) -> Client:
        folder.mkdir(parents=True, exist_ok=True)
        return Client(self.server, self.token, folder)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = ScoreServer(tmp_path_factory.mktemp("first-hour") / "server-data").start()
    try:
        token = server.token("score.WRITE score.READ song.WRITE")
        yield Site(server, Registry(server, token), token)
    finally:
        server.stop()


def _registered(site: Site, folder: Path, sizes: dict[str, int], seed: int) -> tuple[str, dict[str, str], list[Path]]:
    """Files of the given sizes, registered as one analysis: (analysis id, {name: object id}, paths)."""
    files = [make_file(folder / name, size, seed=seed + n) for n, (name, size) in enumerate(sizes.items())]
    analysis_id, ids = site.registry.submit(STUDY, files)
    return analysis_id, ids, files


def _published(site: Site, folder: Path, sizes: dict[str, int], seed: int) -> tuple[str, dict[str, str], list[Path]]:
    """Registered, uploaded and published."""
    analysis_id, ids, files = _registered(site, folder, sizes, seed)
    uploaded = site.client(folder).run("upload", "--analysis-id", analysis_id, "--study-id", STUDY, "--input-dir", ".")
    assert uploaded.returncode == 0, uploaded.stderr
    assert site.registry.publish(STUDY, analysis_id).status_code == 200
    return analysis_id, ids, files


def _row(n: int, oid: str, path: Path, size: int | None = None, md5: str | None = None) -> str:
    size = path.stat().st_size if size is None else size
    return f"local\tFI{n}\t{oid}\tBIN\t{path.name}\t{size}\t{md5 or md5_of(path)}\t\tDO1\tP\t{STUDY}"


def _journals(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("upload.json"))


def _no_usage(stderr: str) -> None:
    assert "Usage:" not in stderr and "Invalid value" not in stderr, stderr
    assert "Traceback" not in stderr, stderr


# -- 4. manifests ------------------------------------------------------------------------------------------


def test_a_bad_uuid_in_an_upload_manifest_names_the_file_and_the_line(site: Site, tmp_path: Path) -> None:
    analysis_id, ids, files = _registered(site, tmp_path, {"a.bin": 100, "b.bin": 200}, seed=1)
    manifest = tmp_path / "upload.tsv"
    manifest.write_text(
        f"{analysis_id}\t\t\n"
        f"{ids['a.bin']}\t{files[0]}\t{md5_of(files[0])}\n"
        f"not-a-uuid\t{files[1]}\t{md5_of(files[1])}\n"
        f"{ids['b.bin']}\t{files[1]}\tnot-an-md5\n"
    )
    result = site.client(tmp_path / "run").run("upload", "--manifest", str(manifest))
    assert result.returncode == 1, result.stderr
    _no_usage(result.stderr)
    # every bad line is named at once, with its column and what to do
    assert f"manifest {manifest}, line 3: object id 'not-a-uuid' (column 1) is not a valid UUID" in result.stderr
    assert f"manifest {manifest}, line 4: md5 'not-an-md5' (column 3) is not an MD5" in result.stderr
    assert "fix the manifest" in result.stderr
    assert _journals(tmp_path) == []  # refused before anything started

    # a file's own failure names its line too
    manifest.write_text(f"{analysis_id}\t\t\n{ids['a.bin']}\t{tmp_path / 'missing.bin'}\t{md5_of(files[0])}\n")
    result = site.client(tmp_path / "run").run("upload", "--manifest", str(manifest))
    assert result.returncode == 1
    assert f"not a readable file (manifest {manifest}, line 2)" in result.stderr, result.stderr


def test_a_manifest_without_its_header_line_is_read_as_data(site: Site, tmp_path: Path) -> None:
    """Song's manifests start with a header line; one written by hand often does not. Its first line is an
    entry (a UUID where the object id goes), so it is uploaded (or downloaded), not skipped as a header."""
    analysis_id, ids, files = _registered(site, tmp_path, {"a.bin": 1000, "b.bin": 3 * SMALL_PART}, seed=10)
    manifest = tmp_path / "upload.tsv"
    manifest.write_text("".join(f"{ids[f.name]}\t{f}\t{md5_of(f)}\n" for f in files))
    client = site.client(tmp_path / "run")
    result = client.run("upload", "--manifest", str(manifest))
    assert result.returncode == 0, result.stderr
    assert "2 files: 2 uploaded" in result.stderr, result.stderr
    assert site.registry.publish(STUDY, analysis_id).status_code == 200  # every stored size and MD5 checked

    download = tmp_path / "download.tsv"
    download.write_text("".join(_row(n, ids[f.name], f) + "\n" for n, f in enumerate(files)))
    result = client.run("download", "--manifest", str(download), "--output-dir", "out")
    assert result.returncode == 0, result.stderr
    assert [(client.workdir / "out" / f.name).read_bytes() == f.read_bytes() for f in files] == [True, True]

    # a header line alone still lists nothing: said, with what to write
    empty = tmp_path / "empty.tsv"
    empty.write_text(f"{analysis_id}\t\t\n")
    result = client.run("upload", "--manifest", str(empty))
    assert result.returncode == 1 and f"manifest {empty} is empty: it lists no files" in result.stderr


def test_a_download_manifest_disagreeing_with_the_server_stops_that_file_only(site: Site, tmp_path: Path) -> None:
    _, ids, files = _published(site, tmp_path / "in", {"a.bin": 500, "b.bin": 3 * SMALL_PART, "c.bin": 700}, seed=20)
    a, b, c = files
    wrong_md5 = "0123456789abcdef0123456789abcdef"
    manifest = tmp_path / "download.tsv"
    manifest.write_text(
        "\n".join(
            [HEADER, _row(1, ids["a.bin"], a), _row(2, ids["b.bin"], b, md5=wrong_md5), _row(3, ids["c.bin"], c, 701)]
        )
        + "\n"
    )
    client = site.client(tmp_path / "run")
    result = client.run("download", "--manifest", str(manifest), "--output-dir", "out")
    assert result.returncode == 1, result.stderr
    out = client.workdir / "out"
    assert (out / "a.bin").read_bytes() == a.read_bytes()  # the others go on
    assert not (out / "b.bin").exists() and not (out / "c.bin").exists()
    assert "verified" not in "".join(line for line in result.stderr.splitlines() if ids["b.bin"] in line)
    assert (
        f"object {ids['b.bin']} (manifest {manifest}, line 3) is listed with MD5 {wrong_md5} but the server's "
        f"record is {md5_of(b)}; nothing was downloaded" in result.stderr
    ), result.stderr
    assert (
        f"object {ids['c.bin']} (manifest {manifest}, line 4) is listed with size 701 but the server's record "
        "is 700 bytes" in result.stderr
    ), result.stderr
    assert "Fix that line or get a fresh manifest" in result.stderr
    assert "3 files: 1 downloaded" in result.stderr and "2 failed" in result.stderr


def test_an_unregistered_object_id_names_its_manifest_line_in_plain_words(site: Site, tmp_path: Path) -> None:
    _, ids, files = _published(site, tmp_path / "in", {"a.bin": 300}, seed=30)
    unknown = "00000000-0000-4000-8000-000000000001"
    manifest = tmp_path / "download.tsv"
    manifest.write_text("\n".join([HEADER, _row(1, ids["a.bin"], files[0]), _row(2, unknown, files[0])]) + "\n")
    client = site.client(tmp_path / "run")
    result = client.run("download", "--manifest", str(manifest), "--output-dir", "out")
    assert result.returncode == 1
    assert (
        f"object {unknown} (manifest {manifest}, line 3) is not registered in the metadata server; "
        "fix those lines of the manifest" in result.stderr
    ), result.stderr
    assert "LegacyEntity" not in result.stderr
    assert not (client.workdir / "out").exists()  # nothing was started, no folder made

    by_id = client.run("download", "--object-id", unknown, "--output-dir", "out")
    assert by_id.returncode == 1 and "LegacyEntity" not in by_id.stderr
    assert f"object {unknown} is not registered in the metadata server; check the object id" in by_id.stderr


def test_a_mistyped_study_is_said_not_to_exist_with_how_to_list_the_studies(site: Site, tmp_path: Path) -> None:
    analysis_id, _, _ = _registered(site, tmp_path, {"a.bin": 10}, seed=40)
    client = site.client(tmp_path / "run")
    listing = f"curl {site.server.url}/song/studies/all"
    for command in (
        ("upload", "--analysis-id", analysis_id, "--study-id", "FIRSTHUOR", "--input-dir", str(tmp_path)),
        ("download", "--analysis-id", analysis_id, "--study-id", "FIRSTHUOR", "--output-dir", "out"),
    ):
        result = client.run(*command)
        assert result.returncode == 1, result.stderr
        assert "study FIRSTHUOR does not exist in the metadata server" in result.stderr, result.stderr
        assert STUDY in result.stderr and listing in result.stderr and "check --study-id" in result.stderr
        assert "create it" not in result.stderr and "POST" not in result.stderr
    assert not (client.workdir / "out").exists()

    result = client.run("upload", "--analysis-id", "no-such-analysis", "--study-id", STUDY, "--input-dir", ".")
    assert result.returncode == 1 and "check --analysis-id" in result.stderr, result.stderr
    assert f"{site.server.url}/song/studies/{STUDY}/analysis" in result.stderr


# -- 6. existing targets: identical is skipped, different needs --force -------------------------------------


def test_uploading_the_same_file_again_is_skipped_and_other_content_needs_force(site: Site, tmp_path: Path) -> None:
    _, ids, files = _registered(site, tmp_path, {"f.bin": 2 * SMALL_PART + 5}, seed=50)
    source, oid = files[0], ids["f.bin"]
    client = site.client(tmp_path / "run")
    assert client.run("upload", "--file", str(source), "--object-id", oid).returncode == 0
    puts = len(site.server.access_events("part_put"))

    again = client.run("upload", "--file", str(source), "--object-id", oid)
    assert again.returncode == 0, again.stderr
    assert f"skipped {source} ({oid}): already uploaded, with the same size and MD5" in again.stderr
    assert "1 file: 0 uploaded" in again.stderr and "1 skipped" in again.stderr
    assert len(site.server.access_events("part_put")) == puts  # not a byte sent

    original = source.read_bytes()
    make_file(source, len(original), seed=51)  # other bytes, same size
    different = client.run("upload", "--file", str(source), "--object-id", oid)
    assert different.returncode == 1
    assert (
        f"object {oid} already exists with other content (stored: {len(original)} bytes, MD5 "
        f"{hashlib.md5(original).hexdigest()}; this file: {len(original)} bytes, MD5 {md5_of(source)}); "  # noqa: S324
        "use --force to replace it" in different.stderr
    ), different.stderr
    assert f"upload of {str(source)!r} failed" in different.stderr
    assert len(site.server.access_events("part_put")) == puts
    assert _journals(tmp_path) == []


def test_downloading_again_skips_the_same_file_and_needs_force_for_another(site: Site, tmp_path: Path) -> None:
    _, ids, files = _published(site, tmp_path / "in", {"f.bin": 3 * SMALL_PART}, seed=60)
    oid, client = ids["f.bin"], site.client(tmp_path / "run")
    args = ("download", "--object-id", oid, "--output-dir", "out")
    assert client.run(*args).returncode == 0
    target = client.workdir / "out" / "f.bin"

    again = client.run(*args)
    assert again.returncode == 0, again.stderr
    assert f"skipped {oid}: out/f.bin is already there, with the registered size and MD5" in again.stderr
    assert "1 file: 0 downloaded" in again.stderr and "1 skipped" in again.stderr

    target.write_bytes(b"my own notes, not the object")
    other = client.run(*args)
    assert other.returncode == 1
    assert (
        f"out/f.bin already exists with other content (28 bytes; object {oid} has {3 * SMALL_PART}); "
        "use --force to replace it" in other.stderr
    ), other.stderr
    assert target.read_bytes() == b"my own notes, not the object"  # never silently replaced

    damaged = bytearray(files[0].read_bytes())
    damaged[5] ^= 0xFF
    target.write_bytes(bytes(damaged))  # the same size, other bytes: the MD5 tells
    other = client.run(*args)
    assert other.returncode == 1 and f"MD5 {hashlib.md5(damaged).hexdigest()}" in other.stderr  # noqa: S324
    assert "use --force to replace it" in other.stderr

    forced = client.run(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert target.read_bytes() == files[0].read_bytes()


def _completed_parts(site: Site, oid: str, size: int) -> set[int]:
    response = httpx.get(
        f"{site.server.url}/upload/{oid}/status",
        params={"fileSize": size},
        headers={"Authorization": f"Bearer {site.token}"},
    )
    assert response.status_code == 200, response.text
    return {p["partNumber"] for p in response.json()["parts"] if p.get("sourceMd5")}  # recorded, or held


def _settled(site: Site, oid: str, size: int) -> set[int]:
    """Parts the server holds once it has finished any PUT in flight when the client was killed."""
    previous = _completed_parts(site, oid, size)
    while True:
        time.sleep(0.3)
        current = _completed_parts(site, oid, size)
        if current == previous:
            return current
        previous = current


def _puts(site: Site, upload_id: str) -> Counter[int]:
    events = site.server.access_events("part_put")
    return Counter(int(e["partNumber"]) for e in events if e.get("uploadId") == upload_id and e.get("status") == 200)


def test_an_interrupted_forced_upload_resumes_when_run_again_with_force(site: Site, tmp_path: Path) -> None:
    """``--force`` replaces the object; killed half-way and run again with ``--force``, the upload this client
    began (its journal beside the file says so) is resumed, not discarded: only the missing parts are sent."""
    parts = 160
    _, ids, files = _registered(site, tmp_path, {"big.bin": parts * SMALL_PART}, seed=70)
    source, oid = files[0], ids["big.bin"]
    client = site.client(tmp_path / "run")
    assert client.run("upload", "--file", str(source), "--object-id", oid).returncode == 0

    args = ("--parallel", "2", "upload", "--file", str(source), "--object-id", oid, "--force")
    before = len(site.server.access_events("part_put"))
    process = client.start(*args)
    deadline = time.monotonic() + 60
    while len(site.server.access_events("part_put")) < before + 30 and process.poll() is None:
        assert time.monotonic() < deadline, "the forced upload never got going"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    journal = json.loads((tmp_path / f".{oid}" / "upload.json").read_text())
    done = _settled(site, oid, parts * SMALL_PART)
    assert 10 <= len(done) < parts, len(done)
    sent_before = _puts(site, journal["uploadId"])

    resumed = client.run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(done)} already done" in resumed.stderr, resumed.stderr
    sent_after = _puts(site, journal["uploadId"])
    assert {n for n in done if sent_after[n] > sent_before[n]} == set(), "recorded parts were sent again"
    assert set(sent_after) == set(range(1, parts + 1))  # every part arrived, in the upload the kill left
    assert not (tmp_path / f".{oid}").exists()

    spec = httpx.get(
        f"{site.server.url}/download/{oid}",
        params={"offset": 0, "length": -1, "exclude-urls": "true"},
        headers={"Authorization": f"Bearer {site.token}"},
    ).json()
    assert spec["uploadId"] == journal["uploadId"] and spec["objectMd5"] == md5_of(source)


def test_a_forced_upload_killed_after_the_server_finalized_is_confirmed_not_sent_again(
    site: Site, tmp_path: Path
) -> None:
    """Killed after the server finished the ``--force`` upload (the journal still beside the file): the re-run
    with ``--force`` confirms that upload instead of replacing the object a second time."""
    _, ids, files = _registered(site, tmp_path, {"f.bin": 6 * SMALL_PART}, seed=75)
    source, oid = files[0], ids["f.bin"]
    client = site.client(tmp_path / "run")
    assert client.run("upload", "--file", str(source), "--object-id", oid).returncode == 0
    args = ("upload", "--file", str(source), "--object-id", oid, "--force")
    killed = client.run(*args, **{ENV: "upload.finalized"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / f".{oid}" / "upload.json").exists()
    puts = len(site.server.access_events("part_put"))

    rerun = client.run(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"uploaded {source} as {oid}" in rerun.stderr and "0 parts sent, 6 already done" in rerun.stderr
    assert len(site.server.access_events("part_put")) == puts
    assert not (tmp_path / f".{oid}").exists()


# -- 7. nothing left behind after a failure -----------------------------------------------------------------


def test_an_upload_the_server_refused_leaves_no_journal(site: Site, tmp_path: Path) -> None:
    source = make_file(tmp_path / "f.bin", 3 * SMALL_PART, seed=80)
    _, ids = site.registry.submit(STUDY, [source], md5s={"f.bin": "1" * 32})
    client = site.client(tmp_path / "run")
    result = client.run("upload", "--file", str(source), "--object-id", ids["f.bin"])
    assert result.returncode == 1
    assert "nothing was stored" in result.stderr and md5_of(source) in result.stderr, result.stderr
    assert _journals(tmp_path) == [] and not (tmp_path / f".{ids['f.bin']}").exists()


def test_a_failed_download_leaves_no_folder_it_created(site: Site, tmp_path: Path) -> None:
    _, ids, _ = _registered(site, tmp_path / "in", {"f.bin": 100}, seed=90)  # registered, never uploaded
    client = site.client(tmp_path / "run")
    result = client.run("download", "--object-id", ids["f.bin"], "--output-dir", "new/deeper/out")
    assert result.returncode == 1, result.stderr
    assert f"download of {ids['f.bin']} failed" in result.stderr
    assert not (client.workdir / "new").exists()

    kept = client.workdir / "kept"
    kept.mkdir()  # a folder that was there before stays, empty or not
    result = client.run(
        "download", "--object-id", ids["f.bin"], "--output-dir", "kept/out", "--output-layout", "bundle"
    )
    assert result.returncode == 1
    assert kept.is_dir() and list(kept.iterdir()) == []
