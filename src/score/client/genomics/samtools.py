"""``score-client samtools <op>``: samtools' own read-only commands on remote objects, through pysam.

The object id in the arguments is replaced by ``<signed URL>##idx##<local index>`` (htslib's syntax for
"this data, that index"); without the id among the arguments the input goes first (getopt moves options
ahead, so ``view -c ID chr1`` and ``view ID -c chr1`` both work), or last for ``bedcov`` (BED file first).

samtools runs inside the private working directory (see :mod:`.sandbox`), so file names the user gives
(``-o out.bam``, ``-L regions.bed``, ``--reference ref.fa``) are made absolute against the directory the
command was started in. Output: ``view`` writes records to standard output itself; everything samtools
prints through its own stdout goes to a file first and is copied out afterwards with the signed URL
replaced by the object id. ``view`` gets ``--no-PG``: its @PG line would record the signed URL.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from score.client.genomics.sandbox import redact

OPERATIONS = ("view", "flagstat", "idxstats", "depth", "quickcheck", "coverage", "stats", "mpileup", "bedcov")
# Options whose value is a file name, per operation (values of other options are passed as they are).
_PATH_OPTIONS: dict[str, frozenset[str]] = {
    "view": frozenset(
        {
            "-o",
            "--output",
            "-U",
            "--unoutput",
            "-L",
            "--target-file",
            "-T",
            "--reference",
            "-t",
            "--fai-reference",
            "-R",
            "--read-group-file",
            "-N",
            "--qname-file",
        }
    ),
    "depth": frozenset({"-o", "-b", "-f", "--reference"}),
    "coverage": frozenset({"-o", "--output", "-b", "--bam-list", "--reference"}),
    "mpileup": frozenset(
        {"-o", "--output", "-f", "--fasta-ref", "-l", "--positions", "-b", "--bam-list", "--reference"}
    ),
    "stats": frozenset({"-r", "--ref-seq", "-t", "--target-regions", "--reference"}),
    "bedcov": frozenset({"--reference", "-X"}),
}


@dataclass(frozen=True)
class Input:
    """One remote object as samtools will see it."""

    object_id: str
    url: str
    index: str | None

    @property
    def spec(self) -> str:
        return f"{self.url}##idx##{self.index}" if self.index else self.url


def _absolute(value: str, cwd: Path) -> str:
    if value in ("", "-") or value.startswith(("http://", "https://", "ftp://")) or Path(value).is_absolute():
        return value
    return str(cwd / value)


def build_arguments(op: str, args: Sequence[str], inputs: Sequence[Input], cwd: Path) -> list[str]:
    """samtools' argument list: object ids replaced by their inputs, file names made absolute."""
    path_options = _PATH_OPTIONS.get(op, frozenset())
    by_id = {i.object_id.lower(): i for i in inputs}
    placed: set[str] = set()
    result: list[str] = []
    expect_path = False
    for arg in args:
        if arg.lower() in by_id:
            result.append(by_id[arg.lower()].spec)
            placed.add(arg.lower())
            expect_path = False
            continue
        if expect_path:
            result.append(_absolute(arg, cwd))
            expect_path = False
            continue
        name, eq, value = arg.partition("=")
        if arg.startswith("--") and eq and name in path_options:
            result.append(f"{name}={_absolute(value, cwd)}")
        elif arg in path_options:
            result.append(arg)
            expect_path = True
        elif op == "bedcov" and not arg.startswith("-") and (cwd / arg).exists():
            result.append(_absolute(arg, cwd))
        else:
            result.append(arg)
    missing = [i.spec for i in inputs if i.object_id.lower() not in placed]
    result = [*result, *missing] if op == "bedcov" else [*missing, *result]
    if op == "view" and "--no-PG" not in result:
        result.insert(0, "--no-PG")
    return result


def run(op: str, arguments: Sequence[str], inputs: Sequence[Input], workdir: Path) -> int:
    """Run ``samtools op arguments`` in-process; copy its output to ours; return its exit status."""
    from pysam.libcutils import _pysam_dispatch

    captured = workdir / "samtools.stdout"
    captured.touch()
    sys.stdout.flush()
    status, stderr, _ = _pysam_dispatch("samtools", op, list(arguments), save_stdout=str(captured))
    out = sys.stdout.buffer
    replacements = [(i.spec.encode(), i.object_id.encode()) for i in inputs if i.index]
    replacements += [(i.url.encode(), i.object_id.encode()) for i in inputs]
    with open(captured, "rb") as handle:
        if not replacements:
            shutil.copyfileobj(handle, out)
        for line in handle:
            for secret, label in replacements:
                line = line.replace(secret, label)
            out.write(line)
    out.flush()
    if stderr:
        text = stderr if isinstance(stderr, str) else stderr.decode("utf-8", errors="replace")
        for i in inputs:
            text = text.replace(i.spec, i.object_id).replace(i.url, i.object_id)
        sys.stderr.write(redact(text))
        sys.stderr.flush()
    return int(status)
