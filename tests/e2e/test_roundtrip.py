"""Upload and download end to end: real server process, real score-client, real HTTP, bytes compared."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import DOWNLOAD_MANIFEST_HEADER, SMALL_PART, Client, Registry, ScoreServer, make_file, md5_of

STUDY = "ABC123"


def _files(root: Path) -> list[Path]:
    return [
        make_file(root / "empty.txt", 0),
        make_file(root / "one.bin", 1, seed=1),
        make_file(root / "multi.bam", 5 * SMALL_PART + 1234, seed=2),  # six parts, the last one short
    ]


def _published(registry: Registry, client: Client, tmp_path: Path) -> tuple[str, dict[str, str], list[Path]]:
    files = _files(tmp_path / "in")
    analysis_id, object_ids = registry.submit(STUDY, files)
    result = client.run(
        "upload", "--analysis-id", analysis_id, "--study-id", STUDY, "--input-dir", str(files[0].parent)
    )
    assert result.returncode == 0, result.stderr
    assert registry.publish(STUDY, analysis_id).status_code == 200
    return analysis_id, object_ids, files


def test_upload_by_analysis_then_download_in_every_layout(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    analysis_id, object_ids, files = _published(registry, client, tmp_path)
    assert len(server.access_events("part_put")) == 1 + 6  # one part for the 1-byte file, six for multi.bam

    for layout, expected in {
        "bundle": lambda f: Path(analysis_id) / f.name,
        "filename": lambda f: Path(f.name),
        "id": lambda f: Path(object_ids[f.name]),
    }.items():
        out = tmp_path / f"out-{layout}"
        result = client.run(
            "download",
            "--analysis-id",
            analysis_id,
            "--study-id",
            STUDY,
            "--output-dir",
            str(out),
            "--output-layout",
            layout,
        )
        assert result.returncode == 0, result.stderr
        for f in files:
            got = out / expected(f)
            assert got.read_bytes() == f.read_bytes(), f"{layout}: {got}"
        leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".")]
        assert leftovers == [], f"state left behind: {leftovers}"


def test_download_by_object_ids_and_by_manifest(registry: Registry, client: Client, tmp_path: Path) -> None:
    _analysis_id, object_ids, files = _published(registry, client, tmp_path)
    out = tmp_path / "by-id"
    ids = [object_ids[f.name] for f in files]
    result = client.run("download", "--object-id", *ids, "--output-dir", str(out), "--output-layout", "id")
    assert result.returncode == 0, result.stderr
    for f in files:
        assert md5_of(out / object_ids[f.name]) == md5_of(f)

    header = DOWNLOAD_MANIFEST_HEADER
    rows = [
        f"local\tFI{i}\t{object_ids[f.name]}\tBAM\t{f.name}\t{f.stat().st_size}\t{md5_of(f)}\t\tDO1\tP\t{STUDY}"
        for i, f in enumerate(files)
    ]
    manifest = tmp_path / "download-manifest.tsv"
    manifest.write_text("\n".join([header, *rows]) + "\n")
    out = tmp_path / "by-manifest"
    result = client.run("download", "--manifest", str(manifest), "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    for f in files:
        assert (out / f.name).read_bytes() == f.read_bytes()


def test_upload_by_file_and_by_manifest(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    files = _files(tmp_path / "in")
    analysis_id, object_ids = registry.submit(STUDY, files)
    single = files[2]
    result = client.run(
        "upload", "--file", str(single), "--object-id", object_ids[single.name], "--md5", md5_of(single)
    )
    assert result.returncode == 0, result.stderr
    assert "6 parts sent" in result.stderr

    manifest = tmp_path / "upload-manifest.tsv"
    lines = [f"{analysis_id}\t\t"] + [f"{object_ids[f.name]}\t{f}\t{md5_of(f)}" for f in files[:2]]
    manifest.write_text("\n".join(lines) + "\n")
    result = client.run("upload", "--manifest", str(manifest))
    assert result.returncode == 0, result.stderr
    assert registry.publish(STUDY, analysis_id).status_code == 200

    spec = httpx.get(
        f"{server.url}/download/{object_ids[single.name]}",
        params={"offset": 0, "length": -1},
        headers={"Authorization": f"Bearer {client.token}"},
    ).json()
    assert spec["objectMd5"] == md5_of(single)
    assert spec["objectSize"] == single.stat().st_size
    assert [p["sourceMd5"] for p in spec["parts"]] == [
        md5_of_range(single, p["offset"], p["partSize"]) for p in spec["parts"]
    ]


def md5_of_range(path: Path, offset: int, size: int) -> str:
    import hashlib

    with open(path, "rb") as handle:
        handle.seek(offset)
        return hashlib.md5(handle.read(size)).hexdigest()  # noqa: S324


def test_ranged_download_is_verified_and_exact(registry: Registry, client: Client, tmp_path: Path) -> None:
    _analysis_id, object_ids, files = _published(registry, client, tmp_path)
    source = files[2].read_bytes()
    oid = object_ids["multi.bam"]
    for offset, length, validate in [
        (100, 1000, "true"),
        (SMALL_PART, SMALL_PART, "true"),
        (SMALL_PART - 10, 3 * SMALL_PART, "false"),
        (5 * SMALL_PART, -1, "true"),
    ]:
        out = tmp_path / f"range-{offset}-{length}-{validate}"
        result = client.run(
            "download",
            "--object-id",
            oid,
            "--output-dir",
            str(out),
            "--output-layout",
            "id",
            "--offset",
            str(offset),
            "--length",
            str(length),
            "--validate",
            validate,
        )
        assert result.returncode == 0, result.stderr
        end = len(source) if length == -1 else offset + length
        assert (out / oid).read_bytes() == source[offset:end]
        if validate == "true":
            assert "verified" in result.stderr and "NOT verified" not in result.stderr


def test_url_info_version_and_manifest_commands(registry: Registry, client: Client, tmp_path: Path) -> None:
    _, object_ids, files = _published(registry, client, tmp_path)
    result = client.run("url", "--object-id", object_ids["multi.bam"])
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert httpx.get(url).content == files[2].read_bytes()
    ranged = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == files[2].read_bytes()[10:20]

    info = client.run("info", "--verbose")
    assert info.returncode == 0
    assert client.token and client.token not in info.stdout + info.stderr  # never print the token
    assert "expires in" in info.stdout and client.server.url in info.stdout

    version = client.run("version")
    assert version.returncode == 0 and version.stdout.startswith("score-client ")

    manifest = tmp_path / "m.tsv"
    manifest.write_text("header\nline\n")
    shown = client.run("manifest", "--manifest", str(manifest))
    assert shown.stdout == "header\nline\n"


def test_download_brings_the_index_file_unless_told_not_to(registry: Registry, client: Client, tmp_path: Path) -> None:
    files = [
        make_file(tmp_path / "in" / "reads.bam", 3 * SMALL_PART, seed=5),
        make_file(tmp_path / "in" / "reads.bam.bai", 100, seed=6),
    ]
    analysis_id, object_ids = registry.submit(STUDY, files)
    upload = client.run(
        "upload", "--analysis-id", analysis_id, "--study-id", STUDY, "--input-dir", str(files[0].parent)
    )
    assert upload.returncode == 0, upload.stderr
    assert registry.publish(STUDY, analysis_id).status_code == 200

    with_index = tmp_path / "with-index"
    result = client.run("download", "--object-id", object_ids["reads.bam"], "--output-dir", str(with_index))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in with_index.iterdir()) == ["reads.bam", "reads.bam.bai"]
    assert (with_index / "reads.bam.bai").read_bytes() == files[1].read_bytes()

    without = tmp_path / "without-index"
    result = client.run(
        "download",
        "--object-id",
        object_ids["reads.bam"],
        "--output-dir",
        str(without),
        "--index",
        "false",
        "--verify-connection",
        "false",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in without.iterdir()) == ["reads.bam"]

    again = client.run(
        "download", "--object-id", object_ids["reads.bam"], "--output-dir", str(without), "--index", "false"
    )
    assert again.returncode == 0, again.stderr  # the same file again: skipped, said so
    assert "reads.bam is already there, with the registered size and MD5" in again.stderr
    assert "1 skipped" in again.stderr
