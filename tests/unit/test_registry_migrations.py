"""The registry's versioned schema: migrations from an empty database and from a registry made before
versioning, a later migration applied over data, replicas starting at once, ``score-server migrate``;
on SQLite and on PostgreSQL (``registry_db``)."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from score.server.cli import main
from score.server.metadata import migrations
from score.server.metadata.base import UNPUBLISHED, MetadataUnavailable
from score.server.metadata.dialect import open_dialect
from score.server.metadata.registry import Registry, object_id_for

MD5 = "0cc175b9c0f1b6a831c399e269772661"


def _payload(*names: str) -> dict:
    return {
        "studyId": "S1",
        "analysisType": {"name": "t"},
        "files": [
            {"fileName": n, "fileSize": 3, "fileMd5sum": MD5, "fileType": "BAM", "fileAccess": "open", "dataType": "d"}
            for n in names
        ],
    }


def _raw(registry_db: str, sql: str) -> None:
    """One statement outside the registry, as an operator (or an older release) would run it."""
    if registry_db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(registry_db, autocommit=True) as conn:
            conn.execute(sql)
    else:
        with sqlite3.connect(registry_db) as db:
            db.execute(sql)


def test_an_empty_database_gets_every_migration_once(registry_db: str) -> None:
    first = Registry(registry_db)
    assert first.migrations_applied == ["1 initial schema", "2 object specifications"]
    assert first.schema_version() == migrations.LATEST
    first.create_study("S1", {})
    again = Registry(registry_db)
    assert again.migrations_applied == []
    assert again.study_ids() == ["S1"]


def test_a_registry_from_before_versioning_is_adopted_as_version_1_with_its_data(registry_db: str) -> None:
    old = Registry(registry_db)
    old.create_study("S1", {"name": "kept"})
    aid = old.submit("S1", _payload("a.bam", "b.bam"))
    old.suppress("S1", aid)  # its state history is kept too
    before = old.get_analysis("S1", aid)
    old.close()
    _raw(registry_db, "DROP TABLE schema_version")  # the previous release's schema is migration 1 without it

    reopened = Registry(registry_db)
    assert reopened.migrations_applied == [
        "1 initial schema: adopted the existing registry as version 1",
        "2 object specifications",
    ]
    assert reopened.schema_version() == migrations.LATEST
    assert reopened.get_analysis("S1", aid) == before
    assert reopened.get_study("S1") == {"studyId": "S1", "name": "kept"}
    assert reopened.entity(object_id_for(aid, "b.bam")).fileSize == 3


# The schema a registry had before versioning and before /schemas (the release before analysis types):
# written out as that release wrote it, so the upgrade is tested against the real thing.
_PRE_VERSIONING_SQLITE = """
CREATE TABLE study (study_id TEXT PRIMARY KEY, name TEXT, organization TEXT, description TEXT, info TEXT,
    created_at TEXT NOT NULL);
CREATE TABLE analysis (analysis_id TEXT PRIMARY KEY, study_id TEXT NOT NULL REFERENCES study(study_id),
    state TEXT NOT NULL, analysis_type TEXT NOT NULL, data TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, first_published_at TEXT, published_at TEXT);
CREATE INDEX analysis_by_study ON analysis(study_id, state);
CREATE TABLE state_change (id INTEGER PRIMARY KEY AUTOINCREMENT,
    analysis_id TEXT NOT NULL REFERENCES analysis(analysis_id), initial_state TEXT NOT NULL,
    updated_state TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX state_change_by_analysis ON state_change(analysis_id, id);
CREATE TABLE file (object_id TEXT PRIMARY KEY, analysis_id TEXT NOT NULL REFERENCES analysis(analysis_id),
    study_id TEXT NOT NULL, position INTEGER NOT NULL, file_name TEXT NOT NULL, file_size INTEGER NOT NULL,
    file_md5sum TEXT NOT NULL, file_type TEXT NOT NULL, file_access TEXT NOT NULL, data_type TEXT NOT NULL,
    info TEXT, UNIQUE (analysis_id, file_name));
CREATE INDEX file_by_analysis ON file(analysis_id, position);
CREATE INDEX file_by_study ON file(study_id);
CREATE INDEX file_by_name ON file(file_name);
INSERT INTO study VALUES ('S1', 'old study', NULL, NULL, '{"k":1}', '2025-01-01T00:00:00.000');
INSERT INTO analysis VALUES ('A1', 'S1', 'PUBLISHED', '{"name":"legacy"}', '{"experiment":{"x":1}}',
    '2025-01-01T00:00:00.000', '2025-01-02T00:00:00.000', '2025-01-02T00:00:00.000', '2025-01-02T00:00:00.000');
INSERT INTO state_change (analysis_id, initial_state, updated_state, updated_at)
    VALUES ('A1', 'UNPUBLISHED', 'PUBLISHED', '2025-01-02T00:00:00.000');
INSERT INTO file VALUES ('O1', 'A1', 'S1', 0, 'a.bam', 5000000000, '0cc175b9c0f1b6a831c399e269772661', 'BAM',
    'controlled', 'reads', NULL);
"""


def test_an_sqlite_registry_of_an_older_release_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(_PRE_VERSIONING_SQLITE)
    registry = Registry(path)
    assert registry.migrations_applied == [
        "1 initial schema: adopted the existing registry as version 1",
        "2 object specifications",
    ]
    analysis = registry.get_analysis("S1", "A1")
    assert analysis["analysisState"] == "PUBLISHED"
    assert analysis["experiment"] == {"x": 1}
    assert analysis["analysisStateHistory"] == [
        {"initialState": "UNPUBLISHED", "updatedState": "PUBLISHED", "updatedAt": "2025-01-02T00:00:00.000"}
    ]
    assert analysis["files"][0]["fileSize"] == 5_000_000_000
    assert registry.get_study("S1") == {"studyId": "S1", "name": "old study", "info": {"k": 1}}
    assert registry.list_analysis_types(
        names=None, versions=None, hide_schema=True, unrendered_only=True, limit=5, offset=0, sort=["name"],
        descending=False,
    )["count"] == 0  # fmt: skip
    assert registry.submit("S1", _payload("new.bam"))  # writable, and analysis_type exists now
    assert Registry(path).migrations_applied == []


def test_a_later_migration_is_applied_over_the_data(registry_db: str) -> None:
    registry = Registry(registry_db)
    registry.create_study("S1", {})
    aid = registry.submit("S1", _payload("a.bam"))
    extra = migrations.Migration(
        migrations.LATEST + 1,
        "study notes",
        {"sqlite": "ALTER TABLE study ADD COLUMN notes TEXT", "postgresql": "ALTER TABLE study ADD COLUMN notes TEXT"},
    )
    dialect = open_dialect(registry_db)
    try:
        assert migrations.migrate(dialect, (*migrations.MIGRATIONS, extra)) == [f"{migrations.LATEST + 1} study notes"]
        assert migrations.migrate(dialect, (*migrations.MIGRATIONS, extra)) == []
    finally:
        dialect.close()
    assert registry.schema_version() == migrations.LATEST + 1
    assert registry.analysis_state("S1", aid) == UNPUBLISHED


def test_a_failed_migration_changes_nothing(registry_db: str) -> None:
    Registry(registry_db).create_study("S1", {})
    broken = migrations.Migration(
        migrations.LATEST + 1,
        "broken",
        {
            "sqlite": "ALTER TABLE study ADD COLUMN notes TEXT; SELECT * FROM nowhere",
            "postgresql": "ALTER TABLE study ADD COLUMN notes TEXT; SELECT * FROM nowhere",
        },
    )
    dialect = open_dialect(registry_db)
    try:
        with pytest.raises(Exception, match="nowhere"):
            migrations.migrate(dialect, (*migrations.MIGRATIONS, broken))
    finally:
        dialect.close()
    registry = Registry(registry_db)
    assert registry.schema_version() == migrations.LATEST
    assert registry.study_ids() == ["S1"]
    registry.create_study("S2", {})  # the column was not half-added: the whole migration rolled back


def test_replicas_starting_at_once_migrate_once(registry_db: str) -> None:
    applied: list[list[str]] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        applied.append(Registry(registry_db).migrations_applied)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(applied) == [[], [], [], ["1 initial schema", "2 object specifications"]]


def test_score_server_migrate_prints_what_it_applied(
    registry_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SCORE_CONFIG", "SCORE_DATA_DIR", "SCORE_METADATA_URL", "SCORE_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if registry_db.startswith("postgresql://"):
        monkeypatch.setenv("SCORE_REGISTRY_URL", registry_db)
        shown = registry_db.split("@")[1]
    else:
        shown = str(data_dir / "registry.sqlite")
    runner = CliRunner()
    first = runner.invoke(main, ["migrate", "--data-dir", str(data_dir)])
    assert first.exit_code == 0, first.output
    assert first.stdout == "applied migration 1 initial schema\napplied migration 2 object specifications\n"
    assert shown in first.stderr and "now at version 2" in first.stderr
    assert "registry-test" not in first.stderr  # the password is never printed
    again = runner.invoke(main, ["migrate", "--data-dir", str(data_dir)])
    assert (again.exit_code, again.stdout) == (0, "")
    assert "already at version 2" in again.stderr


def test_an_unreachable_postgres_fails_the_start_with_a_clear_message() -> None:
    with pytest.raises(MetadataUnavailable, match=r"registry database \(postgresql://u:\*\*\*@127.0.0.1:1/db\)"):
        Registry("postgresql://u:secret@127.0.0.1:1/db")


def test_a_new_sqlite_registry_opened_while_another_connection_writes_waits_for_it(tmp_path: Path) -> None:
    """The switch to WAL needs the file to itself and SQLite does not wait for it: a replica that opened a new
    registry while another was migrating it failed with "database is locked" (seen in CI). It waits now."""
    path = tmp_path / "registry.sqlite"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE early (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO early VALUES (1)")
    release = threading.Timer(0.3, holder.execute, ["COMMIT"])
    release.start()
    try:
        registry = Registry(path)
    finally:
        release.join()
        holder.close()
    assert registry.schema_version() == migrations.LATEST
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
