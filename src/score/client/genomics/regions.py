"""Genomic regions as samtools writes them, parsed without htslib so that odd contig names work.

Score's original client split region strings on ``:`` and ``-``, so contigs such as HLA alleles
(``HLA-A*01:01:01:01``) or ``chr1:100`` could not be queried. Here, as in htslib's ``hts_parse_region``:

* ``{name}`` or ``{name}:range`` quotes a contig name that contains ``:`` (or anything else);
* a string that is a contig name of the file, verbatim, means that whole contig — it wins over reading
  it as ``contig:range`` (htslib refuses such a string as ambiguous; we pick the verbatim name and say so);
* otherwise the text after the *last* ``:`` is the range: ``beg-end``, ``beg`` or ``beg-`` (to the end),
  ``-end`` (from 1); 1-based and inclusive; commas are ignored and ``k``/``M``/``G`` suffixes allowed.

Internally a region is 0-based and half-open (``start``, ``end``), the convention pysam's ``fetch`` uses.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

_NUMBER = re.compile(r"^(\d+)(?:\.(\d+))?([kKmMgG])?\Z")
_MULTIPLIER = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


class RegionError(ValueError):
    """A region that cannot be read; the message names it and says how to write it."""


class UnknownContig(RegionError):
    """A region names a contig the file does not have."""

    def __init__(self, contig: str, region: str, known: Sequence[str]) -> None:
        self.contig = contig
        self.region = region
        self.known = list(known)
        super().__init__(unknown_contig_message(contig, region, known))


def unknown_contig_message(contig: str, region: str, known: Sequence[str]) -> str:
    """Name the contig, suggest near misses (``1`` vs ``chr1``) and list a few valid names."""
    where = f" in region {region!r}" if region and region != contig else ""
    if not known:
        return f"unknown contig {contig!r}{where}: the file declares no contigs"
    close = difflib.get_close_matches(contig, known, n=3, cutoff=0.6)
    if not close:
        bare = contig.removeprefix("chr")
        close = [name for name in known if name.removeprefix("chr") == bare][:3]
    shown = ", ".join(known[:8]) + (f", ... ({len(known)} in all)" if len(known) > 8 else "")
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown contig {contig!r}{where}{hint} (the file's contigs: {shown})"


@dataclass(frozen=True)
class Region:
    """One region: ``contig`` from ``start`` (0-based, inclusive) to ``end`` (exclusive; None = contig end)."""

    contig: str
    start: int = 0
    end: int | None = None
    text: str = field(default="", compare=False)  # as the user wrote it: output file names, messages
    note: str = field(default="", compare=False)  # e.g. how an ambiguous string was read

    def __str__(self) -> str:
        """samtools notation (1-based, inclusive), with braces when the contig name needs them."""
        name = f"{{{self.contig}}}" if ":" in self.contig or "," in self.contig else self.contig
        if self.start == 0 and self.end is None:
            return name
        if self.end is None:
            return f"{name}:{self.start + 1}-"
        return f"{name}:{self.start + 1}-{self.end}"

    def overlaps(self, start: int, end: int) -> bool:
        """Whether [start, end) shares at least one base with this region (same contig assumed)."""
        return end > self.start and (self.end is None or start < self.end)

    def contains(self, start: int, end: int) -> bool:
        """Whether [start, end) lies wholly inside this region (``--contained``)."""
        return start >= self.start and (self.end is None or end <= self.end)


def _number(text: str, region: str) -> int:
    match = _NUMBER.match(text.replace(",", ""))
    if not match:
        raise RegionError(
            f"region {region!r}: {text!r} is not a position; write contig:start-end with 1-based positions "
            "(e.g. chr1:1,000-2,000), or quote a contig name containing ':' in braces: {name}:start-end"
        )
    whole, fraction, suffix = match.groups()
    try:
        value = Decimal(f"{whole}.{fraction or 0}") * _MULTIPLIER[(suffix or "").lower()]
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimal digits
        raise RegionError(f"region {region!r}: {text!r} is not a position") from None
    if value != value.to_integral_value():
        raise RegionError(f"region {region!r}: position {text!r} is not a whole number of bases")
    return int(value)


def parse_range(text: str, region: str = "") -> tuple[int, int | None]:
    """``beg-end`` / ``beg`` / ``beg-`` / ``-end`` (1-based, inclusive) -> 0-based half-open (start, end)."""
    region = region or text
    text = text.strip()
    if text == "":
        return 0, None
    if "-" in text:
        first, _, second = text.partition("-")
        begin = _number(first, region) if first.strip() else 1
        end = _number(second, region) if second.strip() else None
    else:
        begin, end = _number(text, region), None
    begin = max(begin, 1)  # htslib reads position 0 as 1
    if end is not None and end < begin:
        raise RegionError(f"region {region!r}: the end ({end}) is before the start ({begin})")
    return begin - 1, end


def parse_region(text: str, contigs: Collection[str] | None = None) -> Region:
    """Read one region; with ``contigs`` (the file's names) also resolve names containing ``:``.

    Raises :class:`UnknownContig` when ``contigs`` is given and the contig is not among them.
    """
    raw = text
    text = text.strip()
    if not text:
        raise RegionError("empty region: write contig, contig:start-end or {contig}:start-end")
    known = list(contigs) if contigs is not None else None
    names = set(known) if known is not None else None

    if text.startswith("{"):
        close = text.find("}")
        if close < 0:
            raise RegionError(f"region {raw!r}: mismatching braces; write {{contig}} or {{contig}}:start-end")
        contig, rest = text[1:close], text[close + 1 :]
        if not contig:
            raise RegionError(f"region {raw!r}: empty contig name between braces")
        if rest and not rest.startswith(":"):
            raise RegionError(f"region {raw!r}: unexpected {rest!r} after '}}'; write {{contig}}:start-end")
        start, end = parse_range(rest[1:], raw) if rest else (0, None)
        if names is not None and contig not in names:
            raise UnknownContig(contig, raw, known or [])
        return Region(contig, start, end, raw)

    if names is not None and text in names:
        note = ""
        prefix, colon, suffix = text.rpartition(":")
        if colon and prefix in names:
            try:
                parse_range(suffix)
            except RegionError:
                pass
            else:
                note = (
                    f"region {text!r} is read as the whole contig {text!r}; for {prefix!r} at {suffix} "
                    f"write {{{prefix}}}:{suffix}"
                )
        return Region(text, 0, None, raw, note)

    prefix, colon, suffix = text.rpartition(":")
    if not colon:
        if names is not None:
            raise UnknownContig(text, raw, known or [])
        return Region(text, 0, None, raw)
    if names is not None and prefix not in names:
        # Neither "a:b" nor "a" is a contig: name the one the user most likely meant.
        raise UnknownContig(prefix if _looks_like_range(suffix) else text, raw, known or [])
    start, end = parse_range(suffix, raw)
    return Region(prefix, start, end, raw)


def _looks_like_range(text: str) -> bool:
    try:
        parse_range(text)
    except RegionError:
        return False
    return True


def read_bed(path: Path) -> list[Region]:
    """Regions of a BED file (0-based starts, exclusive ends); header lines and comments are skipped.

    BED columns are tab-separated; files that use spaces instead are accepted when they have no tabs.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise RegionError(f"cannot read BED file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise RegionError(f"{path} is not a text BED file") from None
    regions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        cells = line.split("\t") if "\t" in line else line.split()
        if len(cells) < 3:
            raise RegionError(f"{path} line {number}: a BED line needs contig, start and end; found {line!r}")
        contig = cells[0].strip()
        try:
            start, end = int(cells[1]), int(cells[2])
        except ValueError:
            raise RegionError(f"{path} line {number}: start and end must be whole numbers, found {line!r}") from None
        if start < 0 or end < start:
            raise RegionError(f"{path} line {number}: need 0 <= start <= end, found {start} and {end}")
        regions.append(Region(contig, start, end, f"{contig}:{start + 1}-{end}"))
    return regions


def check_contigs(regions: Iterable[Region], contigs: Sequence[str]) -> None:
    """Raise :class:`UnknownContig` for the first region whose contig is not one of ``contigs``."""
    names = set(contigs)
    for region in regions:
        if region.contig not in names:
            raise UnknownContig(region.contig, region.text or str(region), contigs)


@dataclass(frozen=True)
class Window:
    """What one ``fetch`` reads: the union of overlapping or abutting regions of one contig."""

    contig: str
    start: int
    end: int | None
    members: tuple[Region, ...]


def plan_windows(regions: Iterable[Region], contig_order: Sequence[str]) -> list[Window]:
    """Sort regions into file order (contigs as the header lists them, then start) and merge them.

    Reading merged windows in file order is what ``samtools view -M`` does: each record comes out once,
    in the order it is stored, and the output of a sorted file stays sorted (so it can be indexed).
    """
    rank = {name: i for i, name in enumerate(contig_order)}
    ordered = sorted(regions, key=lambda r: (rank.get(r.contig, len(rank)), r.contig, r.start))
    windows: list[Window] = []
    for region in ordered:
        last = windows[-1] if windows else None
        if last is not None and last.contig == region.contig and (last.end is None or region.start <= last.end):
            end = None if last.end is None or region.end is None else max(last.end, region.end)
            windows[-1] = Window(last.contig, last.start, end, (*last.members, region))
        else:
            windows.append(Window(region.contig, region.start, region.end, (region,)))
    return windows
