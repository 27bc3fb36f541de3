"""gcp-storage-emulator (PyPI): a real GCS JSON/XML API server for tests, on 127.0.0.1 with a fresh data dir.

It serves V4 signed GET/PUT URLs but validates neither signatures nor expiry, and does not check
``Content-MD5``: signing is tested offline against the service account's public key instead, and
part integrity is caught by the server's ETag/MD5 comparison at part finalize.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import uuid
from pathlib import Path

import httpx

from tests.services.process import ServiceProcess, free_port
from tests.services.proxy import ProxyEvent

PROJECT = "test"
SENTINEL_KEY = "data/heliograph"
_PART_PUT = re.compile(r"/multipart/[0-9a-f]{32}/part-(\d{8})$")


def emulator_binary() -> str:
    found = shutil.which("gcp-storage-emulator") or str(Path(sys.executable).parent / "gcp-storage-emulator")
    if not Path(found).exists():
        raise RuntimeError("gcp-storage-emulator is missing: pip install -e '.[dev]' installs it")
    return found


def write_service_account(path: Path, email: str = "score-test@test-project.iam.gserviceaccount.com") -> Path:
    """A throwaway service-account key file with a fresh RSA key: signs URLs, authenticates nothing real."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test-project",
                "private_key_id": uuid.uuid4().hex,
                "private_key": pem,
                "client_email": email,
                "client_id": "100000000000000000000",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    path.chmod(0o600)
    return path


def part_number(event: ProxyEvent) -> int | None:
    """The part number of a client's part PUT (to ``multipart/<uploadId>/part-N``), else None."""
    if event.method != "PUT":
        return None
    match = _PART_PUT.search(event.path)
    return int(match.group(1)) if match else None


class GcsEmulator:
    """``gcp-storage-emulator start`` on a free port, data in a fresh directory, plus a signing key file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / f"data-{uuid.uuid4().hex[:8]}"
        self.credentials_file = write_service_account(workdir / "service-account.json")
        self.service = ServiceProcess(
            "gcp-storage-emulator",
            [
                emulator_binary(),
                "-d",
                str(self.data_dir),
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "-q",
            ],
            workdir / "gcs-emulator.log",
        )

    def start(self) -> GcsEmulator:
        self.data_dir.mkdir()
        self.service.start(lambda: httpx.get(self.endpoint + "/", timeout=1).status_code == 200, timeout=60)
        return self

    def stop(self) -> None:
        self.service.stop()

    def client(self):  # type: ignore[no-untyped-def]
        """An SDK client for test set-up (the emulator ignores auth)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": self.endpoint}
        )

    def fresh_bucket(self, sentinel: bool = True) -> str:
        """A new bucket (with Score's ``data/heliograph`` sentinel) for one test."""
        name = f"score-{uuid.uuid4().hex[:12]}"
        bucket = self.client().create_bucket(name)
        if sentinel:
            bucket.blob(SENTINEL_KEY).upload_from_string(b"heliograph\n")
        return name

    def score_env(self, bucket: str, endpoint: str | None = None) -> dict[str, str]:
        """Environment for a score-server using ``bucket``; ``endpoint`` lets a test proxy sit in front."""
        return {
            "SCORE_STORAGE": "gcs",
            "SCORE_GCS__BUCKET": bucket,
            "SCORE_GCS__PROJECT": PROJECT,
            "SCORE_GCS__ENDPOINT": endpoint or self.endpoint,
            "SCORE_GCS__CREDENTIALS_FILE": str(self.credentials_file),
        }
