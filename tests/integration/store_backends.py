"""Every storage backend as one entry of a table, and the ``store`` fixture that builds a fresh, empty store of
each (``tests/integration/test_object_store_contract.py`` runs the ObjectStore contract on all of them).

A fifth backend is one more ``Backend`` in ``BACKENDS``: the session fixture of the real service it needs (see
``tests/conftest.py``), how to build an empty store on it, the part size the tests use, and, as data, what its
documentation says it does differently (and any known gap, run as a strict xfail so that a fix is noticed).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from score.server.storage.base import ObjectStore

if TYPE_CHECKING:
    from score.server.storage.azure import AzureStore

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class Backend:
    """How to get a fresh, empty store of one backend, and what its documentation says it does differently."""

    name: str  # ObjectStore.name
    service: str | None  # the session fixture of the service the store talks to (tests/conftest.py, or below)
    build: Callable[[Any, Path], ObjectStore]  # (that service, a fresh tmp_path) -> an empty store of its own
    part_size: int  # the size of every part but the last in the tests: at least the store's min_part_size
    # ``list_uploaded_parts`` of a well-formed id the store never issued (or completed, or aborted) raises
    # UploadNotFound. False: Azure keeps no record of an upload, its block ids carry it: such an id lists as [].
    knows_upload_ids: bool = True
    # ``complete_upload`` knows the upload's total size, so a part list short of a part is refused. False:
    # Azure's uncommitted blocks record no total (``check_part_list`` with ``size=None``).
    knows_upload_size: bool = True
    # ``list_uploaded_parts`` names a part sent more than once once per PUT, not once (SeaweedFS's ListParts; the
    # upload service allows for it: ``_uploaded_versions`` in services/uploads.py), and completing with the ETag
    # of one of them assembles that one.
    repeats_resent_parts: bool = False
    # ``list_uploads`` shows a started upload. False: Azure yields nothing by design (its docstring).
    lists_uploads: bool = True
    # Why this backend's service does not enforce a signed URL's expiry, None when it does.
    unenforced_expiry: str | None = None
    # Contract checks (test id, e.g. "test_complete_refuses_a_bad_part_list[wrong_size]") the store is known
    # to fail, with why: run as strict xfails, so a fix shows up as XPASS and the entry must go.
    known_gaps: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


# -- how each store is built -------------------------------------------------------------------------------


@dataclass
class LocalDataPlane:
    """A uvicorn server with the local store's /_store routes, serving whichever LocalStore a test plugs in."""

    app: Any
    base_url: str


def _local(plane: LocalDataPlane, tmp_path: Path) -> ObjectStore:
    from score.server.storage.local import LocalStore

    store = LocalStore(tmp_path / "store", plane.base_url)
    plane.app.state.context = SimpleNamespace(store=store)  # the one the data plane now serves
    return store


def _posix(plane: LocalDataPlane, tmp_path: Path) -> ObjectStore:
    from score.server.settings import PosixConfig
    from score.server.storage.posix import PosixStore

    (tmp_path / "shared").mkdir()
    store = PosixStore.shared(PosixConfig(root=tmp_path / "shared", create=True), plane.base_url, 0)
    plane.app.state.context = SimpleNamespace(store=store)
    return store


def _s3(seaweed: Any, _tmp_path: Path) -> ObjectStore:
    from pydantic import SecretStr

    from score.server.settings import S3Config
    from score.server.storage.s3 import S3Store
    from tests.services.seaweed import ACCESS_KEY, SECRET_KEY

    bucket = seaweed.fresh_bucket(sentinel=False)
    config = S3Config(endpoint=seaweed.endpoint, access_key=ACCESS_KEY, secret_key=SecretStr(SECRET_KEY), bucket=bucket)
    return S3Store(config)


def azure_store(azurite: Any, _tmp_path: Path | None = None) -> AzureStore:
    """An AzureStore on a fresh container of the session's Azurite (no sentinel)."""
    from pydantic import SecretStr

    from score.server.settings import AzureConfig
    from score.server.storage.azure import AzureStore
    from tests.services.azurite import ACCOUNT_KEY, ACCOUNT_NAME

    config = AzureConfig(
        account_name=ACCOUNT_NAME,
        account_key=SecretStr(ACCOUNT_KEY),
        endpoint=azurite.endpoint,
        container=azurite.fresh_container(sentinel=False),
    )
    return AzureStore(config)


def _gcs(emulator: Any, _tmp_path: Path) -> ObjectStore:
    from score.server.settings import GcsConfig
    from score.server.storage.gcs import GcsStore
    from tests.services.gcs import PROJECT

    config = GcsConfig(
        bucket=emulator.fresh_bucket(sentinel=False),
        project=PROJECT,
        endpoint=emulator.endpoint,
        credentials_file=str(emulator.credentials_file),
    )
    return GcsStore(config)


_S3_TOTAL = (  # S3 keeps no upload's total: the upload service checks a part list against its own specification
    "S3 does not know a multipart upload's total size, and part numbers may have gaps: "
)

BACKENDS: list[Backend] = [
    Backend("local", "local_data_plane", _local, part_size=64 * KiB),
    Backend("posix", "local_data_plane", _posix, part_size=64 * KiB),
    Backend(
        "s3",
        "seaweed",
        _s3,
        part_size=5 * MiB,  # S3's minimum for all parts but the last
        repeats_resent_parts=True,
        known_gaps=MappingProxyType(
            {
                "test_complete_refuses_a_bad_part_list[missing_middle]": _S3_TOTAL
                + "it completes without the part left out",
                "test_complete_refuses_a_bad_part_list[missing_last]": _S3_TOTAL + "it completes without the last part",
            }
        ),
    ),
    Backend(
        "azure",
        "azurite",
        azure_store,
        part_size=64 * KiB,
        knows_upload_ids=False,
        knows_upload_size=False,
        lists_uploads=False,
    ),
    Backend(
        "gcs",
        "gcs_emulator",
        _gcs,
        part_size=64 * KiB,
        unenforced_expiry="gcp-storage-emulator validates neither signatures nor expiry (tests/services/gcs.py)",
    ),
]


# -- fixtures (made visible to tests/integration by its conftest.py) -----------------------------------------


@pytest.fixture(scope="session")
def local_data_plane() -> Iterator[LocalDataPlane]:
    """One uvicorn server on a free loopback port for the session (per xdist worker)."""
    import uvicorn
    from fastapi import FastAPI

    from score.server.errors import install_error_handlers
    from score.server.storage.local.data_plane import build_store_data_router

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_store_data_router())
    app.state.context = SimpleNamespace(store=None)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield LocalDataPlane(app, f"http://127.0.0.1:{sock.getsockname()[1]}")
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The backend under test; its known gaps mark the test as a strict xfail."""
    entry: Backend = request.param
    name, _, ids = request.node.name.partition("[")
    others = [part for part in ids.rstrip("]").split("-") if part != entry.name]
    test_id = name + (f"[{'-'.join(others)}]" if others else "")
    reason = entry.known_gaps.get(test_id)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{entry.name}: {reason}"))
    return entry


@pytest.fixture
def store(backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh, empty store of each backend (its own directory, bucket or container)."""
    service = request.getfixturevalue(backend.service) if backend.service else None
    return backend.build(service, tmp_path)
