"""Parsing of Song's manifests (reference §6.4). Pure text in, typed rows out, each row with its line number
so that every later complaint about it can name the manifest and the line to fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from score.core.ids import is_uuid

UPLOAD_COLUMNS = 3
DOWNLOAD_COLUMNS = 11
DOWNLOAD_OBJECT_ID = 2  # the column (from 0) of the object id in a download manifest


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class UploadEntry:
    object_id: str
    file_path: str
    md5: str
    line: int = 0  # in the manifest, from 1


@dataclass(frozen=True)
class DownloadEntry:
    object_id: str
    file_name: str
    index_object_id: str
    file_size: str
    md5: str
    line: int = 0  # in the manifest, from 1


def _rows(text: str, source: str, is_data: Callable[[list[str]], bool]) -> list[tuple[int, list[str]]]:
    """The manifest's non-blank lines as (line number, cells). Song writes a header line first, which is
    skipped; a first line that ``is_data`` (someone wrote the entries alone) is read as an entry instead of
    being lost, so a header-less manifest works rather than being called empty."""
    rows = [
        (n, [cell.strip() for cell in line.split("\t")])
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if rows and not is_data(rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise ManifestError(
            f"manifest {source} is empty: it lists no files; give one tab-separated line per file "
            "(after Song's header line, if any)"
        )
    return rows


def _upload_data(cells: list[str]) -> bool:
    """An entry, not Song's header (``<analysisId><TAB><TAB>``, whose id may be a UUID too): a UUID first
    and a file path second."""
    return is_uuid(cells[0]) and len(cells) > 1 and bool(cells[1])


def _download_data(cells: list[str]) -> bool:
    """An entry, not Song's header (whose third cell is ``object_id``): a UUID in the object id column."""
    return len(cells) > DOWNLOAD_OBJECT_ID and is_uuid(cells[DOWNLOAD_OBJECT_ID])


def parse_upload_manifest(text: str, source: str = "") -> list[UploadEntry]:
    """Song's upload manifest: a header line (the analysis id), then ``objectId<TAB>path<TAB>md5``.

    A manifest without the header is read too: a first line whose first cell is a UUID and whose second is
    a path is an entry (Song's header has the analysis id alone), so it is uploaded, not skipped."""
    entries = []
    for number, cells in _rows(text, source, _upload_data):
        if len(cells) != UPLOAD_COLUMNS:
            raise ManifestError(
                f"manifest {source} line {number}: expected {UPLOAD_COLUMNS} tab-separated columns "
                f"(object id, file path, md5), found {len(cells)}; separate the columns with tabs"
            )
        entries.append(UploadEntry(object_id=cells[0], file_path=cells[1], md5=cells[2], line=number))
    return entries


def parse_download_manifest(text: str, source: str = "") -> list[DownloadEntry]:
    """Song's 11-column download manifest; only object id, file name, size, md5 and index id are used.

    A manifest without the header line is read too: a first line with a UUID in the object id column (the
    third) is an entry."""
    entries = []
    for number, cells in _rows(text, source, _download_data):
        if len(cells) != DOWNLOAD_COLUMNS:
            raise ManifestError(
                f"manifest {source} line {number}: expected {DOWNLOAD_COLUMNS} tab-separated columns, "
                f"found {len(cells)}; use the manifest the metadata server wrote, columns separated by tabs"
            )
        entries.append(
            DownloadEntry(
                object_id=cells[2],
                file_name=cells[4],
                file_size=cells[5],
                md5=cells[6],
                index_object_id=cells[7],
                line=number,
            )
        )
    return entries
