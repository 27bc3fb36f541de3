"""Azurite (npm ``azurite``, the ``azurite-blob`` server): a real Azure Blob endpoint with SAS enforced.

Azurite is pinned and installed on first use under ``<repo>/.cache/npm`` (see ``tests.services.npm``), so
the test command needs nothing but Node and npm on the PATH.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from pathlib import Path

import httpx

from tests.services.npm import CACHE, npm_binary_or_module
from tests.services.process import ServiceProcess, free_port
from tests.services.proxy import ProxyEvent

AZURITE_VERSION = "3.37.0"
ACCOUNT_NAME = "devstoreaccount1"
# The emulator's well-known, public account key (Azurite's README); it protects nothing.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
NPM_PREFIX = CACHE / "npm"
SENTINEL_KEY = "data/heliograph"


def azurite_binary(prefix: Path = NPM_PREFIX) -> Path:
    """The pinned ``azurite-blob``, installed with npm into ``prefix`` the first time it is needed."""
    return npm_binary_or_module("azurite", AZURITE_VERSION, prefix, binary="azurite-blob")


def part_number(event: ProxyEvent) -> int | None:
    """The part number of a client's Put Block request (``PUT ...?comp=block&blockid=...``), else None.

    Block ids are base64 of ``{uploadId}-{partNumber:06d}`` (see ``score.server.storage.azure``).
    ``parse_qs`` turns an unescaped ``+`` into a space, so spaces are put back before decoding.
    """
    if event.method != "PUT" or event.query.get("comp") != ["block"]:
        return None
    block_ids = event.query.get("blockid") or [""]
    try:
        decoded = base64.b64decode(block_ids[0].replace(" ", "+"), validate=True).decode("ascii")
        return int(decoded.rsplit("-", 1)[1])
    except (binascii.Error, UnicodeDecodeError, IndexError, ValueError):
        return None


class Azurite:
    """``azurite-blob`` on a free port of 127.0.0.1 with a fresh data folder; path-style account URLs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/{ACCOUNT_NAME}"
        self.service: ServiceProcess | None = None

    def start(self) -> Azurite:
        location = self.workdir / f"data-{uuid.uuid4().hex[:8]}"
        location.mkdir()
        self.service = ServiceProcess(
            "azurite",
            [
                str(azurite_binary()),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(location),
                "--silent",
                "--disableTelemetry",
                "--skipApiVersionCheck",
            ],
            self.workdir / "azurite.log",
        )
        # Any HTTP answer (an anonymous request is refused) means the server is listening.
        self.service.start(lambda: httpx.get(f"{self.endpoint}?comp=list", timeout=1).status_code > 0, timeout=60)
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()

    def client(self):  # type: ignore[no-untyped-def]
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.endpoint, credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY})

    def fresh_container(self, sentinel: bool = True) -> str:
        """A new container (with Score's ``data/heliograph`` sentinel) for one test."""
        name = f"score-{uuid.uuid4().hex[:12]}"
        container = self.client().create_container(name)
        if sentinel:
            container.upload_blob(SENTINEL_KEY, b"heliograph\n")
        return name

    def score_env(self, container: str, endpoint: str | None = None) -> dict[str, str]:
        """Environment for a score-server using ``container``; ``endpoint`` lets a test proxy sit in front."""
        return {
            "SCORE_STORAGE": "azure",
            "SCORE_AZURE__ACCOUNT_NAME": ACCOUNT_NAME,
            "SCORE_AZURE__ACCOUNT_KEY": ACCOUNT_KEY,
            "SCORE_AZURE__ENDPOINT": endpoint or self.endpoint,
            "SCORE_AZURE__CONTAINER": container,
        }
