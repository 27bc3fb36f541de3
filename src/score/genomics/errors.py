"""Exceptions raised by the htsget planning library.

Each maps to one htsget error name so the endpoint can translate without inspecting messages:
``UnknownReference`` → ``NotFound``, ``InvalidRange`` → ``InvalidRange``, ``InvalidInput`` → ``InvalidInput``,
``UnsupportedFormat`` → ``UnsupportedFormat``. ``MalformedIndex`` / ``MalformedData`` mean the stored object or its
index cannot be used (a server-side problem, typically reported as 500 or as ``NotFound`` for the index).
"""

from __future__ import annotations


class GenomicsError(Exception):
    """Base class: everything this package raises on bad input or bad files derives from it."""


class UnknownReference(GenomicsError):
    """The requested reference name is neither in the file header nor in the index (htsget ``NotFound``)."""


class InvalidRange(GenomicsError):
    """A region's coordinates are impossible, e.g. ``start > end`` or negative (htsget ``InvalidRange``)."""


class InvalidInput(GenomicsError):
    """The request is structurally wrong, e.g. an empty region list or ``*`` with coordinates."""


class UnsupportedFormat(GenomicsError):
    """The format / index combination (or the file's version) is not something we can plan for."""


class MalformedIndex(GenomicsError):
    """The index bytes are truncated, have a bad magic number or contain impossible values."""


class MalformedData(GenomicsError):
    """The data object is not what its format claims (bad BGZF block, bad magic, truncated header)."""
