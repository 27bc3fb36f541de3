"""Pure, I/O-free htsget planning: index parsing and byte-range selection for BAM, CRAM, VCF.gz and BCF.

The server supplies ``read(start, end_exclusive) -> bytes`` (a ranged read of the stored object), the raw index
bytes and the object size; ``prepare`` parses once (cacheable per object version) and ``plan`` returns the
ordered ticket pieces. See ``planner`` for the contract.
"""

from score.genomics.errors import (
    GenomicsError,
    InvalidInput,
    InvalidRange,
    MalformedData,
    MalformedIndex,
    UnknownReference,
    UnsupportedFormat,
)
from score.genomics.model import UNPLACED, Piece, Region
from score.genomics.planner import (
    ALLOWED_INDEXES,
    Format,
    IndexKind,
    ParsedIndex,
    PreparedObject,
    materialize,
    parse_index,
    plan,
    prepare,
)

__all__ = [
    "ALLOWED_INDEXES",
    "UNPLACED",
    "Format",
    "GenomicsError",
    "IndexKind",
    "InvalidInput",
    "InvalidRange",
    "MalformedData",
    "MalformedIndex",
    "ParsedIndex",
    "Piece",
    "PreparedObject",
    "Region",
    "UnknownReference",
    "UnsupportedFormat",
    "materialize",
    "parse_index",
    "plan",
    "prepare",
]
