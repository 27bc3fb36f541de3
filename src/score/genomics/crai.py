"""CRAI parser (CRAMv3 §12): gzipped text, one line per slice (or per reference within a multi-ref slice).

Columns: seq_id, alignment_start (1-based), alignment_span, container_offset (absolute byte offset of the
container), slice_offset (relative to the container's data), slice_size. A CRAM byte range can only start at a
container, so the planner needs just the distinct container offsets and which of them hold a region's records.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from score.genomics.bgzf import gunzip_all
from score.genomics.errors import MalformedIndex

UNMAPPED_SEQ_ID = -1
MULTI_REF_SEQ_ID = -2
"""Never written by htslib (it splits multi-ref slices per reference) but legal in a container header; an index
entry carrying it is treated as possibly overlapping every region."""


@dataclass(frozen=True)
class CraiEntry:
    """One CRAI line."""

    seq_id: int
    alignment_start: int
    alignment_span: int
    container_offset: int
    slice_offset: int
    slice_size: int

    def overlaps(self, beg: int, end: int) -> bool:
        """Whether this slice may hold records overlapping 0-based half-open [beg, end).

        The slice covers 1-based [start, start + span - 1], i.e. 0-based [start - 1, start - 1 + span); a span of 0
        (seen for slices of placed-but-unmapped reads) is widened to 1 so such slices are not lost.
        """
        first = self.alignment_start - 1
        return first < end and first + max(self.alignment_span, 1) > beg


@dataclass(frozen=True)
class CraiIndex:
    """A parsed CRAI: its entries and the sorted distinct container offsets."""

    entries: tuple[CraiEntry, ...]
    container_offsets: tuple[int, ...]
    by_seq: dict[int, tuple[CraiEntry, ...]]

    def containers(self, seq_id: int, beg: int, end: int) -> list[int]:
        """Offsets of containers with a slice of ``seq_id`` overlapping [beg, end), plus multi-ref ones."""
        if beg >= end:
            return []
        found = {e.container_offset for e in self.by_seq.get(seq_id, ()) if e.overlaps(beg, end)}
        found.update(e.container_offset for e in self.by_seq.get(MULTI_REF_SEQ_ID, ()))
        return sorted(found)

    def unmapped_containers(self) -> list[int]:
        """Offsets of containers holding unplaced unmapped reads (seq_id -1)."""
        return sorted({e.container_offset for e in self.by_seq.get(UNMAPPED_SEQ_ID, ())})

    def container_end(self, offset: int, data_end: int) -> int:
        """End of the container at ``offset``: the next indexed container's offset, or ``data_end``."""
        i = bisect.bisect_right(self.container_offsets, offset)
        return self.container_offsets[i] if i < len(self.container_offsets) else data_end


def parse_crai(data: bytes) -> CraiIndex:
    """Parse CRAI bytes (gzipped as written by samtools, or plain text)."""
    text = gunzip_all(data, "CRAI index", MalformedIndex) if data[:2] == b"\x1f\x8b" else data
    entries = []
    for lineno, line in enumerate(text.split(b"\n"), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 6:
            raise MalformedIndex(f"CRAI line {lineno} has {len(fields)} fields, expected 6")
        try:
            values = [int(f) for f in fields]
        except ValueError as exc:
            raise MalformedIndex(f"CRAI line {lineno} has a non-integer field") from exc
        entry = CraiEntry(*values)
        if entry.seq_id < MULTI_REF_SEQ_ID or entry.container_offset < 0:
            raise MalformedIndex(f"CRAI line {lineno} has impossible values")
        entries.append(entry)
    offsets = tuple(sorted({e.container_offset for e in entries}))
    by_seq: dict[int, list[CraiEntry]] = {}
    for e in entries:
        by_seq.setdefault(e.seq_id, []).append(e)
    return CraiIndex(tuple(entries), offsets, {k: tuple(v) for k, v in by_seq.items()})
