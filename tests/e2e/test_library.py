"""The Python API (``from score.client import ScoreClient``) against a real server process: the same engine as
the command, so the checks are the command's — bytes and MD5s round trip, a wrong MD5 fails the file with
the report attached, a signed URL serves any range, a region view matches samtools on the local file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from score.client import ClientError, ScoreClient, TransferFailed
from tests.conftest import Registry, ScoreServer, make_file, md5_of
from tests.genomics_data import make_bam_and_cram

pytestmark = pytest.mark.e2e
STUDY = "LIB"


def test_upload_and_download_an_analysis(server: ScoreServer, registry: Registry, admin_token: str, tmp_path: Path):
    source = tmp_path / "in"
    files = [make_file(source / "empty.txt", 0), make_file(source / "a.bin", 300_000, 1), make_file(source / "b", 5)]
    analysis_id, ids = registry.submit(STUDY, files)
    with ScoreClient(server.url, admin_token) as score:
        uploaded = score.upload_analysis(STUDY, analysis_id, source)
        assert sorted(o.status for o in uploaded.outcomes) == ["done"] * 3
        again = score.upload_analysis(STUDY, analysis_id, source)  # a finished job is skipped, not redone
        assert sorted(o.status for o in again.outcomes) == ["skipped"] * 3
        assert registry.publish(STUDY, analysis_id).status_code == 200
        report = score.download(analysis_id=analysis_id, study_id=STUDY, output_dir=tmp_path / "out", layout="bundle")
        assert all(o.verified for o in report.of("done")) and len(report.of("done")) == 3
        for f in files:
            assert md5_of(tmp_path / "out" / analysis_id / f.name) == md5_of(f)
        one = score.download([ids["a.bin"]], output_dir=tmp_path / "by-id", layout="id")
        assert md5_of(tmp_path / "by-id" / ids["a.bin"]) == md5_of(files[1]) and one.failed == []

        url = score.url(ids["a.bin"])
        piece = httpx.get(url, headers={"Range": "bytes=1000-1999"})
        assert piece.status_code == 206 and piece.content == files[1].read_bytes()[1000:2000]


def test_a_wrong_md5_fails_that_file_with_the_report(
    server: ScoreServer, registry: Registry, admin_token: str, tmp_path: Path
):
    good, bad = make_file(tmp_path / "good.bin", 1000, 1), make_file(tmp_path / "bad.bin", 1000, 2)
    analysis_id, ids = registry.submit(STUDY, [good, bad], md5s={"bad.bin": "0" * 32})
    with ScoreClient(server.url, admin_token) as score:
        with pytest.raises(TransferFailed) as failed:
            score.upload_analysis(STUDY, analysis_id, tmp_path)
        outcomes = {o.object_id: o for o in failed.value.report.outcomes}
        assert outcomes[ids["good.bin"]].status == "done"
        assert outcomes[ids["bad.bin"]].status == "failed" and "MD5" in outcomes[ids["bad.bin"]].detail
        with pytest.raises(ClientError, match="exactly one of"):
            score.download(output_dir=tmp_path / "out")
        with pytest.raises(ClientError, match="not a valid object id"):
            score.url("not-an-id")


def test_view_a_region(server: ScoreServer, registry: Registry, admin_token: str, tmp_path: Path):
    bam, _ = make_bam_and_cram(tmp_path / "genomics", reads=4000)
    index = Path(f"{bam}.bai")
    analysis_id, ids = registry.submit(STUDY, [bam, index])
    region = "CHROMOSOME_I:1000-20000"
    with ScoreClient(server.url, admin_token) as score:
        score.upload_analysis(STUDY, analysis_id, bam.parent)
        assert registry.publish(STUDY, analysis_id).status_code == 200
        written = score.view(ids[bam.name], tmp_path / "view", queries=[region])
    count = subprocess.run(["samtools", "view", "-c", str(written)], capture_output=True, text=True, check=True)
    local = subprocess.run(["samtools", "view", "-c", str(bam), region], capture_output=True, text=True, check=True)
    assert int(count.stdout) == int(local.stdout) > 0
