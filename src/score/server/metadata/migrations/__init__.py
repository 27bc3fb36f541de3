"""The registry's schema, versioned: numbered migrations, each with its SQL for every dialect.

``schema_version`` holds one row per applied migration. ``migrate`` runs at every start-up (and from
``score-server migrate``): it only reads when the schema is current (a start on a full disk works), and
otherwise applies what is pending in one transaction under a lock, so replicas starting at once take turns
(PostgreSQL: ``pg_advisory_lock``; SQLite: ``BEGIN IMMEDIATE``) and the second finds nothing to do.

A registry made before versioning (its tables present, no ``schema_version``) is version 1: migration 1
is all ``IF NOT EXISTS`` and is run over it to add anything missing, then recorded.

To change the schema, add ``mNNNN_<what>.py`` with ``NAME``, ``SQLITE`` and ``POSTGRES`` and list it in
``MIGRATIONS``; never edit a migration that has shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType

from score.server.metadata.dialect import Db, Dialect
from score.server.metadata.migrations import m0001_initial, m0002_object_specs


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: dict[str, str]  # dialect name -> statements separated by ';'

    @classmethod
    def of(cls, version: int, module: ModuleType) -> Migration:
        return cls(version, module.NAME, {"sqlite": module.SQLITE, "postgresql": module.POSTGRES})


MIGRATIONS: tuple[Migration, ...] = (Migration.of(1, m0001_initial), Migration.of(2, m0002_object_specs))
LATEST = MIGRATIONS[-1].version

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "applied_at TEXT NOT NULL)"
)
_REGISTRY_TABLES = {"study", "analysis", "state_change", "file"}


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def current_version(dialect: Dialect, db: Db) -> int | None:
    """The schema's version; None for a database without ``schema_version`` (empty, or made before it)."""
    if "schema_version" not in dialect.tables(db):
        return None
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(dialect: Dialect, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """Bring the schema up to date; returns one line per migration applied (empty when it was current)."""
    latest = migrations[-1].version
    with dialect.transaction(write=False) as db:  # the usual case: current, and nothing is written
        if current_version(dialect, db) == latest:
            return []
    applied: list[str] = []
    with dialect.migration_lock() as db:
        tables = dialect.tables(db)
        current = current_version(dialect, db)  # again, under the lock: another replica may have done it
        if current is None:
            db.execute(_VERSION_TABLE)
            current = 0
            if _REGISTRY_TABLES & tables:
                first = migrations[0]
                for statement in _statements(first.sql[dialect.name]):
                    db.execute(statement)
                _record(db, first.version, f"{first.name} (adopted the existing tables)")
                applied.append(f"{first.version} {first.name}: adopted the existing registry as version 1")
                current = first.version
        for migration in migrations:
            if migration.version <= current:
                continue
            for statement in _statements(migration.sql[dialect.name]):
                db.execute(statement)
            _record(db, migration.version, migration.name)
            applied.append(f"{migration.version} {migration.name}")
    return applied


def _record(db: Db, version: int, name: str) -> None:
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    db.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)", (version, name, now))
