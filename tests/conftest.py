"""Shared fixtures: real server processes on free ports, the real score-client command, real HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.services.process import free_port

BIN = Path(sys.executable).parent
SMALL_PART = 64 * 1024  # tests use small parts so that a few hundred KiB make many parts
# The header line of Song's 11-column download manifest (Score skips it; the tests write it as Song does).
DOWNLOAD_MANIFEST_HEADER = "\t".join([
    "repo_code", "file_id", "object_id", "file_format", "file_name", "file_size",
    "md5_sum", "index_object_id", "donor_id", "project_id", "study",
])  # fmt: skip


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324


class ScoreServer:
    """A real ``score-server serve`` process with its own data directory and log file."""

    def __init__(
        self,
        data_dir: Path,
        part_size: int = SMALL_PART,
        extra_env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,  # run in the child before exec, e.g. to set resource limits
        extra_args: tuple[str, ...] = (),  # more ``serve`` options, e.g. ("--workers", "2")
    ):
        self.extra_args = extra_args
        self.data_dir = data_dir
        self.preexec_fn = preexec_fn
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.part_size = part_size
        self.extra_env = extra_env or {}
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ScoreServer:
        env = {**os.environ, "SCORE_MIN_PART_SIZE": "1024", "SCORE_PUBLIC_URL": self.url, **self.extra_env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [
                str(BIN / "score-server"),
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--part-size",
                str(self.part_size),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"score-server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/actuator/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"score-server did not become healthy: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def token(self, scopes: str, ttl: str = "1h") -> str:
        out = subprocess.run(
            [str(BIN / "score-server"), "token", "--scopes", scopes, "--ttl", ttl, "--data-dir", str(self.data_dir)],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def access_events(self, event: str | None = None) -> list[dict[str, object]]:
        """The store's access log lines (one per part PUT/GET), parsed: counts prove what was sent."""
        events = []
        text = self.log_path.read_text(errors="replace")
        # A line the running server is still writing is not read yet (it ends without its newline).
        for line in text[: text.rfind("\n") + 1].splitlines():
            if "score.store.access" not in line or "{" not in line:
                continue
            record = json.loads(line[line.index("{") :])
            if event is None or record.get("event") == event:
                events.append(record)
        return events


class Registry:
    """Talks to the embedded registry's Song API over HTTP, as a Song user would."""

    def __init__(self, server: ScoreServer, token: str) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=f"{server.url}/song", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def study(self, study_id: str) -> None:
        response = self.http.post(
            f"/studies/{study_id}/",
            json={"studyId": study_id, "name": study_id, "organization": "test", "description": ""},
        )
        assert response.status_code in (200, 201, 409), response.text

    def submit(
        self, study_id: str, files: list[Path], access: str = "controlled", md5s: dict[str, str] | None = None
    ) -> tuple[str, dict[str, str]]:
        """Register an analysis of ``files``; return its id and {file name: object id}."""
        self.study(study_id)
        payload = {
            "studyId": study_id,
            "analysisType": {"name": "sequencingRead"},
            "files": [
                {
                    "fileName": f.name,
                    "fileSize": f.stat().st_size,
                    "fileMd5sum": (md5s or {}).get(f.name, md5_of(f)),
                    "fileType": "BAM" if f.suffix == ".bam" else "TXT",
                    "fileAccess": access,
                    "dataType": "test",
                }
                for f in files
            ],
        }
        response = self.http.post(f"/submit/{study_id}", json=payload)
        assert response.status_code == 200, response.text
        analysis_id = response.json()["analysisId"]
        listed = self.http.get(f"/studies/{study_id}/analysis/{analysis_id}/files")
        assert listed.status_code == 200, listed.text
        return analysis_id, {f["fileName"]: f["objectId"] for f in listed.json()}

    def publish(self, study_id: str, analysis_id: str) -> httpx.Response:
        return self.http.put(f"/studies/{study_id}/analysis/publish/{analysis_id}")

    def unpublish(self, study_id: str, analysis_id: str) -> httpx.Response:
        return self.http.put(f"/studies/{study_id}/analysis/unpublish/{analysis_id}")


class Client:
    """Runs the real ``score-client`` command against a server."""

    def __init__(self, server: ScoreServer, token: str | None, workdir: Path) -> None:
        self.server = server
        self.token = token
        self.workdir = workdir

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("ACCESSTOKEN", "METADATA_URL")}
        env.update({"STORAGE_URL": self.server.url, "STORAGE_RETRYNUMBER": "2", "SCORE_CLIENT_CONFIG": ""})
        if self.token:
            env["ACCESSTOKEN"] = self.token
        env.update(extra)
        return env

    def command(self, *args: str) -> list[str]:
        return [str(BIN / "score-client"), "--quiet", *args]

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), cwd=self.workdir, env=self.env(**env), capture_output=True, text=True, timeout=timeout
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.workdir,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def recorded_specs(data_dir: Path) -> dict[str, str]:
    """The embedded registry's records of finished objects' ``.meta`` (``object_spec`` rows that hold one), by
    object id: what download specifications are answered from."""
    with closing(sqlite3.connect(data_dir / "registry.sqlite")) as db:
        rows = db.execute("SELECT object_id, document FROM object_spec WHERE document IS NOT NULL").fetchall()
    return dict(rows)


def forget_recorded_specs(data_dir: Path) -> None:
    """Empty ``object_spec``, as in a registry from before schema version 2."""
    with closing(sqlite3.connect(data_dir / "registry.sqlite")) as db, db:
        db.execute("DELETE FROM object_spec")


def upload_analysis(
    server: ScoreServer, token: str, study: str, files: list[Path], access: str, work: Path, publish: bool = True
) -> tuple[str, dict[str, str]]:
    """Register ``files`` as one analysis, upload each with the real ``score-client``, publish it unless told
    not to: (analysis id, {file name: object id})."""
    registry = Registry(server, token)
    analysis, ids = registry.submit(study, files, access=access)
    client = Client(server, token, work)
    for path in files:
        result = client.run("upload", "--file", str(path), "--object-id", ids[path.name])
        assert result.returncode == 0, result.stderr
    if publish:
        assert registry.publish(study, analysis).status_code == 200
    return analysis, ids


@pytest.fixture(scope="session", autouse=True)
def private_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``score-server serve`` records itself in ``$XDG_STATE_HOME/score/server.json`` (so ``token`` finds its
    key from any directory): the suite's servers record themselves here, not in the user's home."""
    state = tmp_path_factory.mktemp("xdg-state")
    previous = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(state)
    yield state
    if previous is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = previous


# -- the real storage services, one of each per test session (per xdist worker), started on first use ---------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.services.seaweed import SeaweedS3

    service = SeaweedS3(tmp_path_factory.mktemp("seaweed")).start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.services.azurite import Azurite

    service = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.services.gcs import GcsEmulator

    service = GcsEmulator(tmp_path_factory.mktemp("gcs")).start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real PostgreSQL cluster (Debian's package), one per session and xdist worker."""
    from tests.services.postgres import Postgres

    service = Postgres(tmp_path_factory.mktemp("postgres")).start()
    yield service
    service.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def registry_db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Where a registry keeps its data, once per database the registry runs on: a fresh SQLite file's
    path, or a fresh PostgreSQL database's URL (what ``registry_url`` takes). Every registry opened on
    it is closed, and the database dropped, after the test."""
    if request.param == "sqlite":
        yield str(tmp_path / "registry" / "song.db")
        return
    from score.server.metadata.dialect import PoolLimits, PostgresDialect

    service = request.getfixturevalue("postgres")
    url = service.create_database()
    opened: list[PostgresDialect] = []
    original = PostgresDialect.__init__

    def tracked(self: PostgresDialect, location: str, pool: PoolLimits) -> None:
        original(self, location, pool)
        opened.append(self)

    monkeypatch.setattr(PostgresDialect, "__init__", tracked)
    yield url
    for dialect in opened:
        dialect.close()
    service.drop_database(url)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ScoreServer]:
    instance = ScoreServer(tmp_path / "server-data").start()
    yield instance
    instance.stop()


@pytest.fixture
def admin_token(server: ScoreServer) -> str:
    return server.token("score.WRITE score.READ song.WRITE")


@pytest.fixture
def registry(server: ScoreServer, admin_token: str) -> Registry:
    return Registry(server, admin_token)


@pytest.fixture
def client(server: ScoreServer, admin_token: str, tmp_path: Path) -> Client:
    work = tmp_path / "work"
    work.mkdir()
    return Client(server, admin_token, work)


def make_file(path: Path, size: int, seed: int = 0) -> Path:
    """A file of ``size`` pseudo-random bytes (deterministic per seed, so no two parts are alike)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(str(seed).encode()).digest() * 4096
    with open(path, "wb") as handle:
        written = 0
        counter = 0
        while written < size:
            chunk = hashlib.sha256(block + counter.to_bytes(8, "big")).digest() + block
            chunk = chunk[: size - written]
            handle.write(chunk)
            written += len(chunk)
            counter += 1
    return path
