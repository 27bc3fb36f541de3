"""Parsing of Song's manifests (reference §6.4). Pure text in, typed rows out."""

from __future__ import annotations

from dataclasses import dataclass

UPLOAD_COLUMNS = 3
DOWNLOAD_COLUMNS = 11


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class UploadEntry:
    object_id: str
    file_path: str
    md5: str


@dataclass(frozen=True)
class DownloadEntry:
    object_id: str
    file_name: str
    index_object_id: str
    file_size: str
    md5: str


def _rows(text: str, source: str) -> list[tuple[int, list[str]]]:
    lines = text.splitlines()
    rows = [
        (n, [cell.strip() for cell in line.split("\t")]) for n, line in enumerate(lines[1:], start=2) if line.strip()
    ]
    if not rows:
        raise ManifestError(f"manifest {source} is empty: it needs a header line and at least one entry")
    return rows


def parse_upload_manifest(text: str, source: str = "") -> list[UploadEntry]:
    """Song's upload manifest: first line is a header (the analysis id), then ``objectId<TAB>path<TAB>md5``."""
    entries = []
    for number, cells in _rows(text, source):
        if len(cells) != UPLOAD_COLUMNS:
            raise ManifestError(
                f"manifest {source} line {number}: expected {UPLOAD_COLUMNS} tab-separated columns "
                f"(object id, file path, md5), found {len(cells)}"
            )
        entries.append(UploadEntry(object_id=cells[0], file_path=cells[1], md5=cells[2]))
    return entries


def parse_download_manifest(text: str, source: str = "") -> list[DownloadEntry]:
    """Song's 11-column download manifest; only object id, file name, size, md5 and index id are used."""
    entries = []
    for number, cells in _rows(text, source):
        if len(cells) != DOWNLOAD_COLUMNS:
            raise ManifestError(
                f"manifest {source} line {number}: expected {DOWNLOAD_COLUMNS} tab-separated columns, "
                f"found {len(cells)}"
            )
        entries.append(
            DownloadEntry(
                object_id=cells[2], file_name=cells[4], file_size=cells[5], md5=cells[6], index_object_id=cells[7]
            )
        )
    return entries
