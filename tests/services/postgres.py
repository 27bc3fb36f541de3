"""A real PostgreSQL server (Debian's ``postgresql`` package) for the registry's tests.

``initdb`` and ``postgres`` come from /usr/lib/postgresql/<newest>/bin. PostgreSQL refuses to run as root
and the tests run as root, so the cluster belongs to a dedicated system user (``score-pg``, created once,
idempotently) in a fresh directory of its own under the system temp dir; the server listens on 127.0.0.1
on a free port, with password authentication, and each test gets a database of its own
(``create_database``) dropped afterwards (``drop_database``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.services.process import ServiceProcess, free_port

USER = "score-pg"
PASSWORD = "registry-test"  # a throwaway local cluster


def pg_bin() -> Path:
    """The newest installed server's bin directory."""
    roots = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not roots:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (see .ci/run)")
    return roots[-1].parent


def _system_user() -> pwd.struct_passwd:
    """The unprivileged user the cluster runs as; created when missing (only root may, and must)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())  # not root: postgres runs as ourselves
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
        check=False,  # another xdist worker may have created it just now
        capture_output=True,
    )
    return pwd.getpwnam(USER)


class Postgres:
    """One PostgreSQL cluster; ``url(db)`` is what ``SCORE_REGISTRY_URL`` takes."""

    def __init__(self, log_dir: Path) -> None:
        self.bin = pg_bin()
        self.user = _system_user()
        self.as_user = [] if self.user.pw_uid == os.geteuid() else ["runuser", "-u", self.user.pw_name, "--"]
        self.root = Path(tempfile.mkdtemp(prefix="score-pg-"))  # not under pytest's root-only 0700 dirs
        os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self.log_path = log_dir / "postgres.log"
        self.service: ServiceProcess | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def start(self) -> Postgres:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        subprocess.run(
            [
                *self.as_user,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--locale-provider=icu",  # a natural-language default collation (not byte order), as most
                "--icu-locale=en-US",  # production clusters have: the registry must sort ids as SQLite does
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=self.root,
        )
        self.service = ServiceProcess(
            "postgres",
            [
                *self.as_user,
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.root),  # its Unix socket stays in its own directory
                "-c",
                "fsync=off",  # a throwaway cluster: durability costs time and proves nothing here
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ],
            self.log_path,
            cwd=self.root,
        )
        self.service.start(self._ready, timeout=60)
        return self

    def _ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.url(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def admin(self, sql: str) -> None:
        """Run one statement as the cluster's superuser, outside any transaction."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = "registry_" + uuid.uuid4().hex[:12]
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # ends any session left on it

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        shutil.rmtree(self.root, ignore_errors=True)
