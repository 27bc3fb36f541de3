"""Migration 2: ``object_spec``, each finished object's specification (its ``.meta`` document) as the last
finalize wrote it, so a download specification or a publish check reads one row instead of asking the store
for ``.meta`` (on S3 that GET was half of a download specification's CPU, the store's included).

``document`` is NULL while there is no record to trust; ``generation`` counts the times the object's ``.meta``
was hidden or replaced, so a finalize that lost a race records nothing (``UploadService._show_final``)."""

NAME = "object specifications"

SQLITE = """
CREATE TABLE IF NOT EXISTS object_spec (
    object_id  TEXT PRIMARY KEY,
    document   TEXT,
    generation INTEGER NOT NULL DEFAULT 0
)
"""

POSTGRES = """
CREATE TABLE IF NOT EXISTS object_spec (
    object_id  TEXT COLLATE "C" PRIMARY KEY,
    document   TEXT,
    generation BIGINT NOT NULL DEFAULT 0
)
"""
