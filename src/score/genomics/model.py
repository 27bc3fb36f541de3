"""Value types shared by the planner and its callers: what is asked (``Region``) and what is answered (``Piece``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

UNPLACED = "*"
"""htsget's ``referenceName`` for unplaced unmapped reads."""


@dataclass(frozen=True)
class Region:
    """One htsget region: 0-based, half-open [start, end); ``None`` means from the beginning / to the end."""

    reference_name: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Piece:
    """One block of an htsget ticket, in the order the client must concatenate them.

    ``kind="range"``: bytes [start, end) of the data object (the endpoint signs a ranged URL for it).
    ``kind="inline"``: ``data`` goes into a ``data:`` URI as is (already BGZF-compressed where the format needs it).
    """

    kind: Literal["range", "inline"]
    start: int = 0
    end: int = 0
    data: bytes = field(default=b"", repr=False)
    class_: Literal["header", "body"] = "body"

    @property
    def length(self) -> int:
        """Bytes this piece contributes to the reconstructed file."""
        return self.end - self.start if self.kind == "range" else len(self.data)


@dataclass(frozen=True)
class HeaderInfo:
    """What the planner needs from a data file's header.

    ``names`` are the reference names in id order (BAM/CRAM ``n_ref`` order, BCF contig dictionary order, VCF
    ``##contig`` order). ``end`` is where records start: a virtual offset for BGZF formats, a byte offset for CRAM.
    """

    names: tuple[str, ...]
    end: int
