"""What a file's name says: its format, and the names its index may have beside it.

Shared by the server (htsget finds an object's index among its analysis files) and the client (``view``
does the same through the metadata server), so both look for the same names in the same order.
Formats here are lower-case file kinds (``bam``, ``vcf.gz``...); ``PLANNED_FORMATS`` maps those the
planner handles to its upper-case names.
"""

from __future__ import annotations

from score.genomics.planner import Format

NAME_FORMATS = (
    (".bam", "bam"),
    (".cram", "cram"),
    (".sam", "sam"),
    (".sam.gz", "sam"),
    (".vcf.gz", "vcf.gz"),
    (".vcf.bgz", "vcf.gz"),
    (".vcf", "vcf"),
    (".bcf", "bcf"),
)
INDEX_EXTENSIONS = {
    "bam": (".bai", ".csi"),
    "cram": (".crai",),
    "sam": (".csi", ".bai"),
    "vcf.gz": (".tbi", ".csi"),
    "bcf": (".csi",),
    "vcf": (),
    "unknown": (".bai", ".crai", ".csi", ".tbi"),
}
PLANNED_FORMATS: dict[str, Format] = {"bam": "BAM", "cram": "CRAM", "vcf.gz": "VCF", "bcf": "BCF"}


def format_from_name(name: str) -> str | None:
    lower = name.lower()
    for suffix, fmt in NAME_FORMATS:
        if lower.endswith(suffix):
            return fmt
    return None


def index_names(name: str, fmt: str) -> list[str]:
    """Index file names to look for beside ``name``, best first: ``x.bam.bai``, ``x.bai``, ``x.bam.csi``..."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    names: list[str] = []
    for ext in INDEX_EXTENSIONS.get(fmt, ()):
        names.append(name + ext)
        if fmt in ("bam", "cram", "unknown") and stem != name:
            names.append(stem + ext)
    return list(dict.fromkeys(names))


def index_kind_of_name(name: str) -> str | None:
    """``bai`` / ``csi`` / ``crai`` / ``tbi`` from an index file's name."""
    extension = name.rsplit(".", 1)[-1].lower()
    return extension if extension in ("bai", "csi", "crai", "tbi") else None
