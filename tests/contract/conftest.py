"""One deployment per storage backend, each behind the counting/corrupting store proxy.

The same contract tests run unchanged against every backend: local disk, S3 (SeaweedFS), Azure Blob
(Azurite) and Google Cloud Storage (gcp-storage-emulator), all real services started here.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ScoreServer
from tests.services.proxy import ProxyEvent, StoreProxy

KiB = 1024
MiB = 1024 * KiB
BACKENDS = ["local", "s3", "azure", "gcs", "posix"]  # each backend joins when its store lands
# S3 needs 5 MiB parts
PART_SIZE = {"local": 64 * KiB, "s3": 5 * MiB, "azure": 64 * KiB, "gcs": 64 * KiB, "posix": 64 * KiB}


@dataclass
class Deployment:
    """A score-server on one backend, the proxy its clients' signed URLs go through, and a replica maker."""

    backend: str
    server: ScoreServer
    proxy: StoreProxy
    part_size: int
    part_number: Callable[[ProxyEvent], int | None]
    env: dict[str, str]
    replicas: list[ScoreServer] = field(default_factory=list)

    def part_puts(self) -> Counter[int]:
        """Successful part uploads that crossed the wire, by part number (all objects)."""
        return Counter(
            n for e in self.proxy.requests("PUT") if e.status in (200, 201) and (n := self.part_number(e)) is not None
        )

    def replica(self) -> ScoreServer:
        """Another server process on the same store and data directory (registry, keys): a second replica."""
        server = ScoreServer(self.server.data_dir, part_size=self.part_size, extra_env=self.env).start()
        self.replicas.append(server)
        return server


SERVICE_FIXTURE = {"s3": "seaweed", "azure": "azurite", "gcs": "gcs_emulator"}
SERVICE_MODULE = {
    "local": "tests.services.local",
    "s3": "tests.services.seaweed",
    "azure": "tests.services.azurite",
    "gcs": "tests.services.gcs",
    "posix": "tests.services.local",  # the local store's data plane, on a directory every replica shares
}


@pytest.fixture(params=BACKENDS)
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    backend: str = request.param
    module = importlib.import_module(SERVICE_MODULE[backend])
    part_size = PART_SIZE[backend]
    if backend in ("local", "posix"):  # the server serves the store's signed URLs itself
        server = ScoreServer(tmp_path / "server-data", part_size=part_size)
        proxy = StoreProxy(server.url).start()
        env = {"SCORE_PUBLIC_URL": proxy.url}
        if backend == "posix":
            (tmp_path / "shared").mkdir()
            env |= {
                "SCORE_STORAGE": "posix",
                "SCORE_POSIX__ROOT": str(tmp_path / "shared"),
                "SCORE_POSIX__CREATE": "true",
            }
    else:
        service = request.getfixturevalue(SERVICE_FIXTURE[backend])
        bucket = service.fresh_bucket() if backend != "azure" else service.fresh_container()
        proxy = StoreProxy(service.endpoint).start()
        env = service.score_env(bucket, endpoint=_proxied_endpoint(service, proxy))
        server = ScoreServer(tmp_path / "server-data", part_size=part_size, extra_env=env)
    server.extra_env = {**server.extra_env, **env}
    server.start()
    deployment = Deployment(backend, server, proxy, part_size, module.part_number, server.extra_env)
    yield deployment
    for replica in deployment.replicas:
        replica.stop()
    server.stop()
    proxy.stop()


def _proxied_endpoint(service: object, proxy: StoreProxy) -> str:
    """The proxy in place of the service's host:port (Azurite's endpoint carries the account path)."""
    endpoint: str = service.endpoint  # type: ignore[attr-defined]
    return endpoint.replace(endpoint.split("/")[2], proxy.url.split("/")[2], 1)


def start_part_upload(
    deployment: Deployment, base_url: str, headers: dict[str, str], object_id: str, size: int
) -> dict:
    """An upload's specification with one URL per part, as ``POST /upload/{id}/uploads`` answers the Java
    client everywhere but on Azure: there that call answers the Java client's blob upload (one part, a blob
    SAS; see tests/e2e/test_java_azure_path.py), so the batch initiate (our client's) gives the parts."""
    if deployment.backend != "azure":
        return httpx.post(f"{base_url}/upload/{object_id}/uploads", params={"fileSize": size}, headers=headers).json()
    item = {"objectId": object_id, "fileSize": size}
    answer = httpx.post(f"{base_url}/batch/upload/initiate", json={"uploads": [item]}, headers=headers).json()
    assert not answer["errors"], answer
    return dict(answer["specs"][0])
