"""The registry's database seam: SQLite (embedded, the default) or PostgreSQL (shared by replicas).

The registry is hand-written SQL in a handful of plain statements, so it keeps ONE set of queries written
for SQLite (``?`` placeholders, rows read by column name or index) and this thin seam adapts them: a
dialect opens connections, runs one transaction (a read snapshot or a serialised write), translates
placeholders, and maps the driver's errors to the registry's own (``MetadataUnavailable`` -> 503,
``RegistryError`` -> Song's error shape). An ORM or SQLAlchemy Core would mean rewriting every query and
the schema for a second backend of a dozen tables; this seam is ~200 lines and the queries stay as they
were, read the same on both databases, and are tested on both by the same suite.

PostgreSQL goes through psycopg 3 with a ``psycopg_pool`` connection pool: FastAPI runs handlers in a
thread pool and a new TCP connection (with authentication) per transaction would cost more than most
registry queries; the pool also checks a connection before lending it, so a database restart costs no
failed request. The transaction semantics are SQLite's, made explicit:

* a read is one ``REPEATABLE READ READ ONLY`` transaction: one consistent snapshot, as SQLite's
  ``BEGIN`` (WAL) gives;
* a write takes a transaction-scoped advisory lock first (``pg_advisory_xact_lock``), so writers queue
  one at a time across every replica, exactly as SQLite's ``BEGIN IMMEDIATE`` makes them queue, and each
  check-then-insert sees everything committed before it (no serialization failures to retry);
* text columns use the "C" collation, so ``ORDER BY`` sorts ids byte-wise as SQLite does.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from score.server.metadata.base import MetadataUnavailable
from score.server.metadata.song_errors import INSUFFICIENT_STORAGE, MALFORMED_PARAMETER, RegistryError

_BUSY_TIMEOUT_SECONDS = 30.0
_WAL_RETRY_SECONDS = 0.01  # between two tries of the switch to WAL while another connection holds the file
_IDLE_CONNECTIONS = 16  # kept open between transactions: about the threads that query at once
_PG_CONNECT_TIMEOUT_SECONDS = 5
# The readiness probe waits at most this long for a connection: a balancer's check times out in about a second,
# and an unreachable database must read as DOWN, not as a probe that never answered.
PROBE_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class PoolLimits:
    """PostgreSQL connections per server process (``registry_pool_size``) and how long an API call waits for
    one, all busy or the database unreachable, before it answers 503 (``registry_pool_timeout``)."""

    size: int = 16
    timeout: float = 10.0


# Advisory lock keys (any 64-bit numbers, fixed): one for writes, one for migrations.
WRITE_LOCK = 0x53636F7265_01  # "Score" 1
MIGRATE_LOCK = 0x53636F7265_02


class Db(Protocol):
    """What the registry's queries use of a connection: ``sqlite3.Connection``'s ``execute``."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any: ...


def is_postgres_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def shown_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _integrity(exc: Exception) -> RegistryError:
    return RegistryError(MALFORMED_PARAMETER, f"the request conflicts with data already in the registry ({exc})")


def _disk_full() -> RegistryError:
    """The database's disk is full (SQLITE_FULL, PostgreSQL's 53100): a 507 that says reads still work."""
    return RegistryError(
        INSUFFICIENT_STORAGE,
        "the registry's disk is full, so nothing can be changed; reads still work. Free space on the database's "
        "disk (or ask its operator), then retry",
    )


# --------------------------------------------------------------------------------------------------
# SQLite


@contextmanager
def _sqlite_transaction(db: sqlite3.Connection, begin: str) -> Iterator[sqlite3.Connection]:
    """``begin``, then COMMIT, or ROLLBACK when the body raised."""
    db.execute(begin)
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteDialect:
    """The embedded file: every transaction on a connection kept from an earlier one, WAL mode."""

    name = "sqlite"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._idle: list[sqlite3.Connection] = []
        self._keeper: sqlite3.Connection | None = None
        db = self.connect()
        try:
            self._use_wal(db)
        finally:
            db.close()

    @staticmethod
    def _use_wal(db: sqlite3.Connection) -> None:
        """Switch the file to WAL (persistent: recorded in the database file). The switch needs the file to
        itself and SQLite does not wait for it (no busy handler): a replica starting while another migrates a
        new registry got "database is locked" at once. So it is tried again for up to the busy timeout."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_SECONDS
        while True:
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(_WAL_RETRY_SECONDS)

    def describe(self) -> str:
        return f"SQLite {self.db_path}"

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = NORMAL")  # durable at each WAL checkpoint; safe with WAL
        return db

    def keep_files_open(self) -> None:
        """One connection held for the registry's lifetime, so SQLite's ``-wal`` and ``-shm`` files stay
        allocated. Every call opens its own connection; without this one, the last of them to close removes
        both files, and the next must create them again: on a full disk that fails and every read of the
        registry answers "disk I/O error" (seen: a full data disk took all of /song and every download down).
        """
        self._keeper = self.connect()
        self._keeper.execute("SELECT 1 FROM study LIMIT 1").fetchall()  # maps the WAL index
        while self._idle:  # start-up's (migrations') connections are not reused: serving starts afresh
            self._idle.pop().close()

    def tables(self, db: Db) -> set[str]:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def probe(self) -> None:
        """Raise if the registry cannot be read (the readiness probe)."""
        self.fetch_one("SELECT 1 FROM study LIMIT 1")

    @contextmanager
    def migration_lock(self) -> Iterator[Db]:
        """Migrations in one ``BEGIN IMMEDIATE`` transaction: a second process starting at once waits."""
        db = self.connect()
        try:
            with _sqlite_transaction(db, "BEGIN IMMEDIATE"):
                yield db
        finally:
            db.close()

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Db]:
        """One transaction on a connection kept from an earlier one (opening a connection, with its pragmas
        and schema read, was a third of the server's CPU for a download specification). A connection is
        kept only after a clean end, at most ``_IDLE_CONNECTIONS`` of them; list ``pop``/``append`` are
        atomic, so threads need no lock to share them. A write is taken up front (IMMEDIATE) so concurrent
        writers queue instead of deadlocking on a read-to-write upgrade."""
        db = self._take()
        clean = False
        try:
            with _sqlite_transaction(db, "BEGIN IMMEDIATE" if write else "BEGIN"):
                yield db
            clean = True
        except sqlite3.IntegrityError as exc:
            raise _integrity(exc) from exc
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):  # "database or disk is full"
                raise _disk_full() from exc
            raise
        finally:
            self._give_back(db, clean)

    def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of one read statement, or None: a lone SELECT is its own read transaction, so it needs
        no BEGIN and COMMIT around it (a download specification makes two such reads)."""
        db = self._take()
        clean = False
        try:
            row = db.execute(sql, params).fetchone()
            clean = True
        finally:
            self._give_back(db, clean)
        return row

    def _take(self) -> sqlite3.Connection:
        try:
            return self._idle.pop()
        except IndexError:
            return self.connect()

    def _give_back(self, db: sqlite3.Connection, clean: bool) -> None:
        if clean and len(self._idle) < _IDLE_CONNECTIONS:
            self._idle.append(db)
        else:
            db.close()

    def close(self) -> None:
        for db in [*self._idle, *([self._keeper] if self._keeper else [])]:
            db.close()
        self._idle.clear()
        self._keeper = None


# --------------------------------------------------------------------------------------------------
# PostgreSQL


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """The registry's SQLite text for psycopg: ``?`` -> ``%s`` (no query has a ``?`` or ``%`` literal)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Row:
    """A row read by column name or by index, as ``sqlite3.Row`` is."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Any:
    index = {c.name: i for i, c in enumerate(cursor.description or ())}
    return lambda values: _Row(values, index)


class _PgDb:
    """A psycopg connection that takes the registry's SQLite-style statements."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(_pg_sql(sql), list(params))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        rows = [list(p) for p in params]
        if rows:
            with self._conn.cursor() as cur:
                cur.executemany(_pg_sql(sql), rows)


class PostgresDialect:
    """A PostgreSQL database shared by every replica, through a psycopg connection pool."""

    name = "postgresql"

    def __init__(self, url: str, pool: PoolLimits) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._psycopg = psycopg
        self.url = url
        self.errors: tuple[type[Exception], ...] = (psycopg.Error,)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool.size,
            kwargs={"autocommit": True, "row_factory": _row_factory, "connect_timeout": _PG_CONNECT_TIMEOUT_SECONDS},
            timeout=pool.timeout,
            check=ConnectionPool.check_connection,
            name="score-registry",
            open=False,
        )
        self._pool.open(wait=False)

    def describe(self) -> str:
        return f"PostgreSQL {shown_url(self.url)}"

    def keep_files_open(self) -> None:
        """Nothing to keep: the files are the server's."""

    def tables(self, db: Db) -> set[str]:
        rows = db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {r[0] for r in rows}

    def _unavailable(self, exc: Exception) -> MetadataUnavailable:
        return MetadataUnavailable(f"the metadata registry database ({shown_url(self.url)}) is unavailable ({exc})")

    def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of one read statement, or None, in one round trip: on an autocommit connection a lone
        SELECT is its own transaction (BEGIN, SELECT, COMMIT would be three)."""
        psycopg = self._psycopg
        with self._connection() as conn:
            try:
                return _PgDb(conn).execute(sql, params).fetchone()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise self._unavailable(exc) from exc

    def probe(self) -> None:
        """Raise if the registry cannot be read (the readiness probe), within ``PROBE_WAIT_SECONDS``."""
        with self._connection(wait=PROBE_WAIT_SECONDS) as conn, self._begin(conn, "BEGIN READ ONLY", None) as db:
            db.execute("SELECT 1 FROM study LIMIT 1").fetchall()

    @contextmanager
    def _connection(self, wait: float | None = None) -> Iterator[Any]:
        """A pooled connection, waiting at most ``wait`` seconds (default: the pool's timeout)."""
        psycopg = self._psycopg
        try:
            conn = self._pool.getconn(timeout=wait)
        except psycopg.Error as exc:  # PoolTimeout: the server is down or every connection is busy
            raise self._unavailable(exc) from exc
        try:
            yield conn
        finally:
            self._pool.putconn(conn)  # a broken connection is discarded, an open transaction rolled back

    def _quietly(self, conn: Any, sql: str, *params: Any) -> None:
        """A clean-up statement whose failure changes nothing: ``putconn`` discards a broken connection."""
        if conn.closed or conn.broken:
            return
        with suppress(self._psycopg.Error):
            _PgDb(conn).execute(sql, params)

    @contextmanager
    def _begin(self, conn: Any, begin: str, lock: int | None) -> Iterator[Db]:
        psycopg = self._psycopg
        db = _PgDb(conn)
        try:
            db.execute(begin)
            if lock is not None:
                db.execute("SELECT pg_advisory_xact_lock(?)", (lock,))
            try:
                yield db
            except BaseException:
                self._quietly(conn, "ROLLBACK")  # the error that ended the transaction is the one to report
                raise
            db.execute("COMMIT")
        except psycopg.IntegrityError as exc:
            raise _integrity(exc) from exc
        except psycopg.errors.DiskFull as exc:
            raise _disk_full() from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Db]:
        with self._connection() as conn:
            if write:
                with self._begin(conn, "BEGIN ISOLATION LEVEL READ COMMITTED", WRITE_LOCK) as db:
                    yield db
            else:
                with self._begin(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", None) as db:
                    yield db

    @contextmanager
    def migration_lock(self) -> Iterator[Db]:
        """Migrations under a session advisory lock (replicas starting at once take turns), in one
        transaction that also holds the write lock."""
        with self._connection() as conn:
            db = _PgDb(conn)
            try:
                db.execute("SELECT pg_advisory_lock(?)", (MIGRATE_LOCK,))
            except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as exc:
                raise self._unavailable(exc) from exc
            try:
                with self._begin(conn, "BEGIN ISOLATION LEVEL READ COMMITTED", WRITE_LOCK) as tx:
                    yield tx
            finally:
                self._quietly(conn, "SELECT pg_advisory_unlock(?)", MIGRATE_LOCK)  # a lost session lost it too

    def close(self) -> None:
        self._pool.close()


Dialect = SqliteDialect | PostgresDialect


def open_dialect(location: str | Path, pool: PoolLimits | None = None) -> Dialect:
    """PostgreSQL for a ``postgresql://`` URL (``pool``: its connection limits), else the SQLite file at that path."""
    if is_postgres_url(location):
        return PostgresDialect(str(location), pool or PoolLimits())
    return SqliteDialect(Path(location))
