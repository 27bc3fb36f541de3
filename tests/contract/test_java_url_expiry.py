"""Download URLs carry an expiry the Java client can read, on every backend.

Before resuming a download the Java client checks every stored part URL's expiry (DownloadStateStore.java:97)
with the validator of the server's profile; an URL it cannot parse throws an exception that nothing catches
(DownloadService.java:151-163), so the resume aborts. The validators are transcribed below.
"""

from __future__ import annotations

import time
from calendar import timegm
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.conftest import Client, Registry, make_file, md5_of
from tests.contract.conftest import Deployment

STUDY = "CONTRACT"


def java_s3_url_expiry(url: str) -> float:
    """S3PresignedUrlValidator.java:44-55,69-102: parameter names lower-cased; ``expires`` (epoch seconds) or
    ``x-amz-date`` (``yyyyMMdd'T'HHmmssX``) plus ``x-amz-expires``; anything else is an IllegalArgumentException."""
    args = {name.lower(): value for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    if "expires" in args:
        return int(args["expires"])  # Long.parseLong: digits only
    if "x-amz-expires" in args and "x-amz-date" in args:
        signed = datetime.strptime(args["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return timegm(signed.timetuple()) + int(args["x-amz-expires"])
    raise AssertionError(f"the Java client cannot read this URL's expiry (parameters {sorted(args)})")


def java_azure_url_expiry(url: str) -> float:
    """AzurePresignedUrlValidator.java:42-54: ``se`` as ``yyyy-MM-dd'T'HH:mm:ssX``."""
    args = {name.lower(): value for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    if "se" not in args:
        raise AssertionError(f"the Java client cannot read this SAS's expiry (parameters {sorted(args)})")
    return datetime.strptime(args["se"], "%Y-%m-%dT%H:%M:%S%z").timestamp()


def test_every_download_url_has_an_expiry_the_java_client_reads(deployment: Deployment, tmp_path: Path) -> None:
    server = deployment.server
    token = server.token("score.WRITE score.READ song.WRITE")
    auth = {"Authorization": f"Bearer {token}"}
    registry = Registry(server, token)
    source = make_file(tmp_path / "in" / "r.bin", 2 * deployment.part_size + 11, seed=5)
    data = source.read_bytes()
    analysis_id, ids = registry.submit(STUDY, [source])
    work = tmp_path / "work"
    work.mkdir()
    uploaded = Client(server, token, work).run("upload", "--file", str(source), "--object-id", ids["r.bin"])
    assert uploaded.returncode == 0, uploaded.stderr
    assert registry.publish(STUDY, analysis_id).status_code == 200

    profile = httpx.get(f"{server.url}/profile", headers=auth).text
    validator = java_azure_url_expiry if profile == "az" else java_s3_url_expiry
    before = time.time()
    spec = httpx.get(f"{server.url}/download/{ids['r.bin']}", headers=auth, params={"offset": 0, "length": -1})
    assert spec.status_code == 200, spec.text
    parts = spec.json()["parts"]
    assert len(parts) == 3
    for part in parts:
        expiry = validator(part["url"])
        assert before < expiry <= time.time() + 86400 + 2, (profile, expiry - before)
        # The URL still works with that parameter in it, with the Range header the Java client sends
        # (AbstractStorageService.java:55-57).
        first, last = part["offset"], part["offset"] + part["partSize"] - 1
        got = httpx.get(part["url"], headers={"Range": f"bytes={first}-{last}"}, timeout=60)
        assert got.status_code in (200, 206), got.text
        assert got.content == data[first : last + 1]
    assert md5_of(source) == spec.json()["objectMd5"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/b/k?X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-Signature=x", 1767225660),
        ("https://h/b/k?Expires=1767225600&Signature=x", 1767225600),
    ],
)
def test_the_transcribed_validator_reads_s3_urls(url: str, expected: int) -> None:
    assert java_s3_url_expiry(url) == expected


def test_the_transcribed_validator_refuses_what_the_java_client_refuses() -> None:
    google_only = "https://h/b/k?X-Goog-Date=20260101T000000Z&X-Goog-Expires=60&X-Goog-Signature=x"
    with pytest.raises(AssertionError, match="cannot read"):
        java_s3_url_expiry(google_only)
