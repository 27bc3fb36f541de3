#!/usr/bin/env python3
"""Many files as one job: score-client moving a whole analysis, against s5cmd and aws-cli moving a folder.

    .venv/bin/python bench/bundle.py [--shapes 400x256KiB,40x16MiB,10000x4KiB] [--runs 3] [--tools score,s5cmd,aws]
                                     [--part-size 64MiB] [--max-seconds-per-step 900] [--workdir DIR] [--keep]
    .venv/bin/python bench/bundle.py --quick          # 40x256KiB, one run: a smoke test

Why this shape: an analysis is rarely one file. A user uploads or downloads a folder of tens to thousands
of files with one command, and compares that with ``s5cmd cp 'dir/*'`` or ``aws s3 cp --recursive`` on the
bucket. Per file, a score-client job pays for registry look-ups, a multipart initiate, part URLs, a finalize
and MD5s, where a peer pays for one PUT or GET; with files moved one after another that fixed cost, not the
bytes, sets the speed (issue 12). So every tool moves the same folder of COUNT random files to and from the
same SeaweedFS in the same run, and the table gives the time per file beside MB/s, and the CPU the client,
the store and score-server burn, so a change to the client can be judged by the same numbers every time.

The machinery is bench/race.py's (imported, not copied): one fresh SeaweedFS, score-server on it with the S3
backend, the peers found or installed, CPU from ``os.wait4`` and psutil, peak RSS from GNU time. A step that
runs longer than ``--max-seconds-per-step`` is killed and reported as "timed out" instead of blocking the run.
Exit status: 0 every downloaded file matched its MD5 and no tool failed (timed-out steps are reported, not
failures), 1 a file was missing or did not match, 2 a tool failed or anything else went wrong, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for _path in (BENCH_DIR, BENCH_DIR.parent):  # race.py and transfer.py; the tests' SeaweedFS launcher
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from tests.services.seaweed import SeaweedS3  # noqa: E402

import transfer  # noqa: E402 - its measured children, for the step time limit (see ``time_limit``)
from chart import Bar, add_chart_option, chart_path, slug, write_chart  # noqa: E402
from race import (  # noqa: E402
    Race,
    Row,
    Sample,
    ToolFailed,
    clean_up,
    find_peers,
    guarded,
    label,
    open_race,
    say,
    table,
    trap_signals,
)
from transfer import RSS_METHOD, GiB, KiB, MiB, find_tool, human, parse_size, source_state  # noqa: E402

BUNDLE_TOOLS = ("score", "s5cmd", "aws")
STUDY = "BUNDLE"
DEFAULT_SHAPES = "400x256KiB,40x16MiB,10000x4KiB"
QUICK_SHAPE = "40x256KiB"
REFERENCE_SHAPE = "400x256KiB"  # per-file times of larger file counts are compared with this one
_SHAPE = re.compile(r"^\s*(\d+)\s*[xX]\s*(.+?)\s*$")


class TimedOut(Exception):
    """A step ran past ``--max-seconds-per-step`` and was killed: reported as "timed out", the run goes on.

    ``finished`` is set when what the step was to do was then completed untimed (a score-client upload), so
    the download that reads it back can still be measured.
    """

    finished = False


class Incomplete(Exception):
    """A download did not produce every file, or a file's MD5 differs: the run goes on, the exit status is 1."""


# -- shapes and their data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """COUNT files of SIZE bytes each, e.g. ``400x256KiB``."""

    count: int
    size: int

    @property
    def name(self) -> str:
        return f"{self.count}x{human(self.size).replace(' ', '')}"

    @property
    def total(self) -> int:
        return self.count * self.size


def parse_shape(text: str) -> Shape:
    """``COUNTxSIZE`` with any size ``parse_size`` reads (``400x256KiB``, ``10000x4KiB``, ``3x1GiB``)."""
    match = _SHAPE.match(text)
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape: use COUNTxSIZE, e.g. 400x256KiB")
    return Shape(int(match.group(1)), parse_size(match.group(2)))


def parse_shapes(text: str) -> list[Shape]:
    shapes = [parse_shape(part) for part in text.split(",") if part.strip()]
    if not shapes:
        raise argparse.ArgumentTypeError(f"give at least one shape, e.g. {DEFAULT_SHAPES}")
    return list(dict.fromkeys(shapes))


def parse_tools(text: str) -> list[str]:
    tools = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in tools if t not in BUNDLE_TOOLS]
    if unknown or not tools:
        raise argparse.ArgumentTypeError(f"unknown tool(s) {unknown}; choose from {','.join(BUNDLE_TOOLS)}")
    return list(dict.fromkeys(tools))


@dataclass
class Dataset:
    """A folder of one shape's random files and their MD5s, the only truth every download is checked against."""

    shape: Shape
    folder: Path
    md5s: dict[str, str]


def make_dataset(folder: Path, shape: Shape) -> Dataset:
    """Write COUNT files of ``os.urandom`` (incompressible: no transport or store compression flatters a
    tool), MD5'd while written, so registration and checks need no extra pass."""
    folder.mkdir(parents=True)
    width = max(5, len(str(shape.count - 1)))
    md5s: dict[str, str] = {}
    for index in range(shape.count):
        name = f"file-{index:0{width}d}.bin"
        data = os.urandom(shape.size)
        (folder / name).write_bytes(data)
        md5s[name] = hashlib.md5(data).hexdigest()  # noqa: S324 - integrity, not security
    return Dataset(shape, folder, md5s)


def check_folder(folder: Path, data: Dataset, what: str) -> None:
    """Every file there and matching its MD5 (untimed); ``Incomplete`` says how many were missing or wrong."""
    missing: list[str] = []
    wrong: list[str] = []
    for name, expected in data.md5s.items():
        path = folder / name
        if not path.is_file():
            missing.append(name)
            continue
        with open(path, "rb") as handle:
            if hashlib.file_digest(handle, "md5").hexdigest() != expected:
                wrong.append(name)
    if missing or wrong:
        count = data.shape.count
        parts = [f"{len(missing)} of {count} files missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(wrong)} of {count} files with a wrong MD5 (e.g. {wrong[0]})"] if wrong else []
        raise Incomplete(f"{what} into {folder}: " + "; ".join(parts))


def tidy_input(data: Dataset) -> None:
    """Remove anything but the dataset from its folder: a killed score-client upload leaves its journals
    (``.<objectId>/``) beside the files, which the peers' ``dir/*`` and ``--recursive`` would upload too."""
    for entry in data.folder.iterdir():
        if entry.name not in data.md5s:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# -- the step time limit ------------------------------------------------------------------------------


@contextmanager
def time_limit(seconds: float) -> Iterator[threading.Event]:
    """SIGKILL the measured child's process group once ``seconds`` have passed; the event says it happened.

    ``transfer.run_measured`` blocks in ``os.wait4`` with no timeout; it starts each child in a new session
    and lists the group in ``transfer._live_children`` while it runs, and only one measured child runs at a
    time here. Killing the group from a timer (GNU time and the tool together) makes that ``wait4`` return,
    so the step ends as a failure that the caller turns into ``TimedOut``. The timer only signals: reaping
    stays with ``run_measured``, so there is no race over who waits for the child.
    """
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        for pgid in list(transfer._live_children):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


# -- the steps ------------------------------------------------------------------------------------------


@dataclass
class Analysis:
    """One registered analysis of a dataset: what score-client is pointed at."""

    study: str
    analysis_id: str
    object_ids: dict[str, str]  # file name -> object id
    published: bool = False


@dataclass
class BundleRow(Row):
    """race.py's row (samples, failure) plus the runs that timed out or could not run."""

    timed_out: int = 0
    skipped: list[str] = field(default_factory=list)
    incomplete: str | None = None


class Bundle(Race):
    """race.py's store, server, peers and measuring, with steps that move a whole folder as one command."""

    def __init__(self, args: argparse.Namespace, work: Path, store: SeaweedS3, bucket: str) -> None:
        super().__init__(args, work, store, bucket)
        self.max_seconds: float = args.max_seconds_per_step
        self.source = source_state()  # what score-server started with, and the client should stay at
        self.drift: list[str] = []  # score-client steps that ran another source (someone edited src/)
        self.context = ""  # shape and run, for those messages

    # ---- measuring, with the time limit

    def measured(self, what: str, argv: list[str], env: dict[str, str]) -> Sample:
        """One command under ``Race._run`` (sync first, store and server CPU, exit status checked), killed
        and turned into ``TimedOut`` past the step time limit."""
        if argv[0] == find_tool("score-client"):
            now = source_state()
            if now != self.source:
                self.drift.append(f"{self.context} {what}: {now}")
                say(f"           WARNING: {what} runs on {now}, not {self.source} (src/ changed)")
        with time_limit(self.max_seconds) as fired:
            try:
                return self._sample(*self._run(what, argv, env))
            except ToolFailed:
                if fired.is_set():
                    raise TimedOut(f"{what} killed after {self.max_seconds:.0f} s (--max-seconds-per-step)") from None
                raise

    def fresh_folder(self) -> Path:
        folder = self.downloads / uuid.uuid4().hex[:8]
        folder.mkdir()
        return folder

    # ---- score-client

    def register(self, data: Dataset) -> Analysis:
        """A fresh analysis of every file in the dataset (one Song submit, untimed): each run uploads new
        objects, as a user's first upload of an analysis does, with no ``--force``/unpublish path."""
        assert self.api is not None
        http = self.api.http
        response = http.post(
            f"/song/studies/{STUDY}/",
            json={"studyId": STUDY, "name": STUDY, "organization": "bench", "description": "score bundle benchmark"},
        )
        if response.status_code not in (200, 201, 409):
            raise RuntimeError(f"create study {STUDY}: HTTP {response.status_code} {response.text[:500]}")
        payload = {
            "studyId": STUDY,
            "analysisType": {"name": "sequencingRead"},
            "files": [
                {
                    "fileName": name,
                    "fileSize": data.shape.size,
                    "fileMd5sum": md5,
                    "fileType": "TXT",
                    "fileAccess": "controlled",
                    "dataType": "bench",
                }
                for name, md5 in data.md5s.items()
            ],
        }
        submitted = http.post(f"/song/submit/{STUDY}", json=payload)
        if submitted.status_code != 200:
            raise RuntimeError(f"submit analysis: HTTP {submitted.status_code} {submitted.text[:500]}")
        analysis_id = submitted.json()["analysisId"]
        listed = http.get(f"/song/studies/{STUDY}/analysis/{analysis_id}/files")
        if listed.status_code != 200:
            raise RuntimeError(f"list files: HTTP {listed.status_code} {listed.text[:500]}")
        object_ids = {f["fileName"]: f["objectId"] for f in listed.json()}
        if set(object_ids) != set(data.md5s):
            raise RuntimeError(f"analysis {analysis_id} lists {len(object_ids)} files, {data.shape.count} submitted")
        return Analysis(STUDY, analysis_id, object_ids)

    def publish(self, analysis: Analysis) -> None:
        """Downloads need the analysis published; the registry refuses unless every file is stored."""
        assert self.api is not None
        if analysis.published:
            return
        response = self.api.http.put(f"/song/studies/{analysis.study}/analysis/publish/{analysis.analysis_id}")
        if response.status_code >= 300:
            try:
                message = str(response.json().get("message", response.text))
            except (ValueError, AttributeError):
                message = response.text
            raise ToolFailed(f"publish {analysis.analysis_id}: HTTP {response.status_code}: {message[:300]}")
        analysis.published = True

    def score_upload_argv(self, data: Dataset, analysis: Analysis) -> list[str]:
        return [
            find_tool("score-client"),
            *self.client_opts,
            "upload",
            "--analysis-id",
            analysis.analysis_id,
            "--study-id",
            analysis.study,
            "--input-dir",
            str(data.folder),
        ]

    def score_upload(self, data: Dataset, analysis: Analysis) -> Sample:
        try:
            return self.measured("score-client upload", self.score_upload_argv(data, analysis), self.client_env)
        except TimedOut as exc:
            exc.finished = self.complete_upload(data, analysis)
            raise
        finally:
            tidy_input(data)

    def complete_upload(self, data: Dataset, analysis: Analysis) -> bool:
        """After a timed-out upload, finish it untimed so the download can still be measured; True when the
        registry then accepts the analysis as complete (publishes it).

        Only the files not stored yet are uploaded, from an upload manifest (asking the server file by file
        is quick; the whole analysis again would have the client refuse every stored object one by one): the
        interrupted file resumes from its journal, the others start afresh. At most the step time limit.
        """
        assert self.api is not None
        say(f"           score-client upload timed out; finishing it untimed (at most {self.max_seconds:.0f} s) ...")
        started = time.perf_counter()
        missing = []
        for name, object_id in analysis.object_ids.items():
            stored = self.api.http.get(f"/upload/{object_id}")
            if not (stored.status_code == 200 and stored.json()):
                missing.append(f"{object_id}\t{data.folder / name}\t{data.md5s[name]}")
        manifest = self.work / f"complete-{analysis.analysis_id}.tsv"
        manifest.write_text(f"{analysis.analysis_id}\n" + "".join(line + "\n" for line in missing))
        argv = [find_tool("score-client"), *self.client_opts, "upload", "--manifest", str(manifest)]
        ended = ""
        if missing:
            try:  # publishing decides whether it is complete
                self.measured(f"score-client upload of the {len(missing)} files left", argv, self.client_env)
            except (ToolFailed, TimedOut) as exc:
                ended = f" ({str(exc).splitlines()[0]})"
        try:
            self.publish(analysis)
        except ToolFailed as exc:
            say(f"           ... not finished after {time.perf_counter() - started:.0f} s{ended}: {exc}")
            return False
        took = time.perf_counter() - started
        say(f"           ... the {len(missing)} files left uploaded, analysis published, in {took:.0f} s")
        return True

    def score_download(self, data: Dataset, analysis: Analysis) -> Sample:
        self.publish(analysis)
        folder = self.fresh_folder()
        try:
            argv = [find_tool("score-client"), *self.client_opts, "download", "--analysis-id", analysis.analysis_id]
            argv += ["--study-id", analysis.study, "--output-dir", str(folder), "--output-layout", "bundle"]
            sample = self.measured("score-client download", argv, self.client_env)
            check_folder(folder / analysis.analysis_id, data, "score-client download")  # bundle: OUT/<analysis>/
            return sample
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # ---- peers

    def peer_prefix(self, tool: str, data: Dataset, run: int) -> str:
        """A key prefix of its own per tool, shape and run: every upload is of new keys, like score-client's."""
        return f"bundle/{data.shape.name}/{tool}/run{run}/"

    def bundle_peer_argv(self, tool: str, direction: str, local: Path, prefix: str) -> list[str]:
        """The plain folder copy each peer's users type, at the tool's own defaults (concurrency, part size)."""
        peer = self.peers[tool]
        url = f"s3://{self.bucket}/{prefix}"
        if tool == "s5cmd":
            ends = (f"{local}/*", url) if direction == "upload" else (f"{url}*", f"{local}/")
            return [*peer.argv0, "--endpoint-url", self.store.endpoint, "cp", *ends]
        if tool == "aws":
            ends = (str(local), url) if direction == "upload" else (url, str(local))
            return [
                *peer.argv0,
                "--endpoint-url",
                self.store.endpoint,
                "s3",
                "cp",
                "--recursive",
                "--only-show-errors",
                *ends,
            ]
        raise ValueError(tool)

    def bundle_peer_upload(self, tool: str, data: Dataset, run: int) -> Sample:
        argv = self.bundle_peer_argv(tool, "upload", data.folder, self.peer_prefix(tool, data, run))
        return self.measured(f"{label(tool)} upload", argv, self.peer_env)

    def bundle_peer_download(self, tool: str, data: Dataset, run: int) -> Sample:
        folder = self.fresh_folder()
        try:
            argv = self.bundle_peer_argv(tool, "download", folder, self.peer_prefix(tool, data, run))
            sample = self.measured(f"{label(tool)} download", argv, self.peer_env)
            check_folder(folder, data, f"{label(tool)} download")
            return sample
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # ---- one tool's run

    def tool_run(self, tool: str, data: Dataset, run: int) -> list[tuple[str, Callable[[], Sample]]]:
        """The steps of one tool in one run, upload first: the download reads back what was uploaded."""
        if tool == "score":
            analysis: list[Analysis] = []

            def upload() -> Sample:
                started = time.perf_counter()
                analysis.append(self.register(data))
                say(
                    f"           registered analysis {analysis[0].analysis_id} ({data.shape.count} files) "
                    f"in {time.perf_counter() - started:.1f} s (untimed)"
                )
                return self.score_upload(data, analysis[0])

            return [("upload", upload), ("download", lambda: self.score_download(data, analysis[0]))]
        return [
            ("upload", lambda: self.bundle_peer_upload(tool, data, run)),
            ("download", lambda: self.bundle_peer_download(tool, data, run)),
        ]


# -- reporting ----------------------------------------------------------------------------------------


def _num(value: float) -> str:
    """Two significant decimals where small numbers need them, fewer where they would be noise."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(score: BundleRow | None, peer: BundleRow | None) -> str:
    """Speed ratio of score-client to a peer: peer time / score time (above 1: score-client is faster)."""
    if score is None or peer is None or not score.samples or not peer.samples:
        return "-"
    ratio = peer.median("wall") / score.median("wall")
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x"


def _status(row: BundleRow, limit: float) -> str:
    if row.failed:
        return "FAILED"
    if row.incomplete:
        return "MD5 FAILED"
    if row.timed_out and not row.samples:
        return f"timed out (> {limit:.0f} s)"
    return "skipped" if row.skipped else "-"


def ms_per_file(row: BundleRow | None, shape: Shape, limit: float) -> str:
    """Median wall per file in ms, or a lower bound when every run timed out."""
    if row is None:
        return "-"
    if row.samples:
        return f"{_num(row.median('wall') / shape.count * 1000)} ms"
    if row.timed_out:
        return f"> {_num(limit / shape.count * 1000)} ms (timed out)"
    return "-"


def report(shape: Shape, rows: dict[tuple[str, str], BundleRow], runs: int, limit: float) -> None:
    """One table per shape, then the one-line per-file summary the issue quotes."""
    print(f"\n=== {shape.name}: {shape.count} files of {human(shape.size)} ({human(shape.total)}), one job ===\n")
    lines: list[tuple[str, ...]] = [
        (
            "tool",
            "direction",
            "wall s",
            "(min-max)",
            "ms/file",
            "MB/s",
            "client CPU-s",
            "SeaweedFS CPU-s",
            "score-server CPU-s",
            "client RSS MiB",
            "score/s5cmd",
            "score/aws",
        )
    ]
    for (tool, direction), row in rows.items():
        if not row.samples:
            lines.append((tool, direction, _status(row, limit), *[""] * 9))
            continue
        walls = [s.wall for s in row.samples]
        wall = row.median("wall")
        ratios = ("", "")
        if tool == "score-client":
            ratios = (_ratio(row, rows.get(("s5cmd", direction))), _ratio(row, rows.get(("aws-cli", direction))))
        lines.append(
            (
                tool,
                direction,
                f"{wall:.2f}",
                f"({min(walls):.2f}-{max(walls):.2f})",
                _num(wall / shape.count * 1000),
                _num(shape.total / wall / 1e6),
                f"{row.median('cpu'):.2f}",
                f"{row.median('store_cpu'):.2f}",
                f"{row.median('server_cpu'):.2f}",
                f"{row.median('rss_mib'):.0f}",
                *ratios,
            )
        )
    table(lines)
    for (tool, direction), row in rows.items():
        notes = []
        if row.timed_out:
            notes.append(f"{row.timed_out} of {runs} run(s) timed out (> {limit:.0f} s), not in the medians")
        if row.skipped:
            notes.append(f"{len(row.skipped)} run(s) skipped: {row.skipped[0]}")
        if row.incomplete:
            notes.append(row.incomplete)
        if row.failed:
            notes.append(row.failed.splitlines()[0])
        for note in notes:
            print(f"  {tool} {direction}: {note}")
    per_tool = []
    for tool in dict.fromkeys(t for t, _ in rows):
        up, down = (ms_per_file(rows.get((tool, d)), shape, limit) for d in ("upload", "download"))
        per_tool.append(f"{'score' if tool == 'score-client' else tool} {up} upload / {down} download")
    print("\nper file: " + "; ".join(per_tool))


def compare_with_reference(results: list[tuple[Shape, dict[tuple[str, str], BundleRow]]], limit: float) -> None:
    """Does the per-file cost hold as the file count grows? Each shape with more files than the reference
    shape (400x256KiB), beside it: a ratio near 1 is a fixed cost per file, below 1 a cost per job spread out."""
    by_name = {shape.name: (shape, rows) for shape, rows in results}
    if REFERENCE_SHAPE not in by_name:
        return
    ref_shape, ref_rows = by_name[REFERENCE_SHAPE]
    for shape, rows in results:
        if shape.count <= ref_shape.count:
            continue
        print(f"\ntime per file, {shape.name} relative to {ref_shape.name}:")
        for key, row in rows.items():
            ref = ref_rows.get(key)
            if ref is None:
                continue
            here, there = ms_per_file(row, shape, limit), ms_per_file(ref, ref_shape, limit)
            ratio = ""
            if row.samples and ref.samples:
                per_here = row.median("wall") / shape.count
                per_there = ref.median("wall") / ref_shape.count
                ratio = f"  ({per_here / per_there:.2f}x)"
            print(f"  {key[0]:<13} {key[1]:<9} {here} vs {there}{ratio}")


def chart_bars(results: Sequence[tuple[Shape, dict[tuple[str, str], BundleRow]]], limit: float) -> list[Bar]:
    """The report's rows as chart bars: MB/s per run (bytes / wall), the job's CPU-s split, grouped by shape
    (when there are several) and direction; a row without samples shows its status."""
    bars: list[Bar] = []
    for shape, rows in results:
        prefix = f"{shape.name} " if len(results) > 1 else ""
        for (tool, direction), row in rows.items():
            bar = Bar(f"{prefix}{direction}", tool, score=tool.startswith("score"))
            bar.rates = [shape.total / s.wall / 1e6 for s in row.samples]
            if row.samples:
                bar.cpu = (row.median("cpu"), row.median("store_cpu"), row.median("server_cpu"))
                bar.detail = f"{ms_per_file(row, shape, limit)}/file"
            else:
                bar.note = _status(row, limit)
            bars.append(bar)
    return bars


def draw_chart(
    args: argparse.Namespace,
    results: Sequence[tuple[Shape, dict[tuple[str, str], BundleRow]]],
    source: str,
    tools: Sequence[str],
) -> None:
    """The chart of this run (``--chart``): throughput and CPU split per tool, shape and direction."""
    shapes = [shape for shape, _ in results]
    what = ", ".join(f"{s.count} files of {human(s.size)}" for s in shapes)
    runs = f"{args.runs} run{'s' if args.runs > 1 else ''} per tool and direction"
    write_chart(
        chart_path(args.chart, f"bundle-{slug(*(s.name for s in shapes))}.png"),
        f"bundle: {' vs '.join(tools)}, {what} as one job",
        f"{runs}; every tool at its own defaults; {os.cpu_count()} CPUs, tools, SeaweedFS and score-server on"
        f" one machine (127.0.0.1)\nsource: {source}",
        chart_bars(results, args.max_seconds_per_step),
        cpu_label="CPU-s for the whole job",
    )


# -- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shapes", type=parse_shapes, default=parse_shapes(DEFAULT_SHAPES), help=f"COUNTxSIZE,... [{DEFAULT_SHAPES}]"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per tool and direction; medians shown [3]")
    parser.add_argument("--tools", type=parse_tools, default=list(BUNDLE_TOOLS), help=f"[{','.join(BUNDLE_TOOLS)}]")
    parser.add_argument("--part-size", type=parse_size, default=64 * MiB, help="score-server part size [64MiB]")
    parser.add_argument(
        "--max-seconds-per-step",
        type=float,
        default=900.0,
        help="kill a step after this long and report it as timed out [900]",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the temp dir goes [system temp]")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (files, store data, logs)")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK_SHAPE}, one run (overrides both)")
    add_chart_option(parser, "bundle-<shapes>.png")
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.runs = [parse_shape(QUICK_SHAPE)], 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.max_seconds_per_step <= 0:
        parser.error("--max-seconds-per-step must be positive")
    if args.part_size < 5 * MiB:
        parser.error("--part-size must be at least 5MiB (S3's minimum part size)")
    # What race.Race reads: every tool at its own defaults (concurrency, and the peers' part sizes).
    args.parallel, args.peer_defaults = None, True
    return args


def disk_needed(args: argparse.Namespace) -> int:
    """SeaweedFS keeps every upload within a run: per shape, the folder, one download at a time and one
    copy per tool per run, plus a few KiB of file-system and store overhead per file."""
    per_file = 16 * KiB
    return GiB + sum(
        (shape.total + shape.count * per_file) * (2 + len(args.tools) * args.runs) for shape in args.shapes
    )


def _version(argv: list[str]) -> str:
    with suppress(OSError, subprocess.SubprocessError, IndexError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (done.stdout.strip() or done.stderr.strip()).splitlines()[0]
    return "?"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    trap_signals()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="score-bundle-", dir=args.workdir))
    free = shutil.disk_usage(work).free
    if free < disk_needed(args):
        say(
            f"error: {work} has {free / GiB:.1f} GiB free; this run needs ~{disk_needed(args) / GiB:.1f} GiB "
            "(SeaweedFS keeps every upload): use --workdir, fewer --runs, --tools or --shapes"
        )
        shutil.rmtree(work, ignore_errors=True)
        return 2
    store = SeaweedS3(work / "seaweed")
    held: list[Race] = []  # _run hands the bench over as soon as it exists, so cleanup reaches its server
    try:
        return guarded(lambda: _run(args, work, store, held.append), held)
    finally:
        clean_up(held, store, work, args.keep)


def _run(args: argparse.Namespace, work: Path, store: SeaweedS3, keep: Callable[[Race], None]) -> int:
    """The benchmark proper; ``main`` owns the cleanup of whatever ``keep`` was handed."""
    say(f"work dir {work}")
    tools: list[str] = args.tools
    peers = find_peers(tools)
    bench = open_race(args, work, store, peers, keep, race_type=Bundle)
    assert isinstance(bench, Bundle)
    if "score" in tools:
        say(f"starting score-server on S3 (bucket {bench.bucket}, part size {human(args.part_size)}) ...")
        bench.start_server(args.part_size)
    order = [t for t in tools if t == "score" or t in peers]
    limit: float = args.max_seconds_per_step
    failures: list[str] = []
    incomplete: list[str] = []
    results: list[tuple[Shape, dict[tuple[str, str], BundleRow]]] = []
    for shape in args.shapes:
        say(f"writing {shape.count} files of {human(shape.size)} of random data ...")
        data = make_dataset(work / "data" / shape.name, shape)
        rows = {(label(t), d): BundleRow(label(t), d) for t in order for d in ("upload", "download")}
        for run in range(1, args.runs + 1):
            shift = (run - 1) % max(len(order), 1)  # rotate who goes first: drift on a busy machine spreads out
            bench.context = f"{shape.name} run {run}"
            for tool in order[shift:] + order[:shift]:
                blocked = ""  # why the rest of this tool's run cannot go on
                for direction, step in bench.tool_run(tool, data, run):
                    row = rows[(label(tool), direction)]
                    head = f"run {run}/{args.runs}  {shape.name:<11} {label(tool):<12} {direction:<8}"
                    if row.failed:
                        continue
                    if blocked:
                        row.skipped.append(blocked)
                        say(f"{head} skipped: {blocked}")
                        continue
                    try:
                        sample = step()
                    except TimedOut as exc:
                        row.timed_out += 1
                        blocked = "" if exc.finished else f"the {direction} timed out"
                        say(f"{head} TIMED OUT: {exc}")
                        continue
                    except Incomplete as exc:
                        row.incomplete = row.incomplete or f"MD5 check FAILED: {exc}"
                        incomplete.append(f"{row.tool} {direction} ({shape.name}): {exc}")
                        say(f"{head} MD5 check FAILED: {exc}")
                        continue
                    except ToolFailed as exc:
                        row.failed = f"FAILED: {exc}"
                        failures.append(f"{row.tool} {direction} ({shape.name}): {exc}")
                        say(f"{head} FAILED: {exc}")
                        blocked = f"the {direction} failed"
                        continue
                    row.samples.append(sample)
                    say(
                        f"{head} {sample.wall:7.2f} s  {sample.wall / shape.count * 1000:7.2f} ms/file  "
                        f"{shape.total / sample.wall / 1e6:7.1f} MB/s  cpu {sample.cpu:6.2f} s "
                        f"(sys {sample.sys_cpu:5.2f})  rss {sample.rss_mib:4.0f} MiB  weed {sample.store_cpu:6.2f} s  "
                        f"server {sample.server_cpu:6.2f} s"
                    )
        results.append((shape, rows))
        if not args.keep:
            shutil.rmtree(data.folder, ignore_errors=True)

    print(
        f"\nscore bundle bench: many files as one job, on one fresh SeaweedFS ({args.runs} run(s), medians;"
        f" MB = 1e6 bytes; all on 127.0.0.1; {os.cpu_count()} CPUs)"
        f"\nscore-server part size {human(args.part_size)}; every tool at its own defaults (score-client --parallel"
        " 4 parts; s5cmd 256 workers; aws-cli 10 requests); step limit"
        f" {limit:.0f} s\nsource: {bench.source}"
    )
    if "score" in tools:
        client_version = _version([find_tool("score-client"), "version"]).removeprefix("score-client ")
        print(f"  {'score-client':<12} {client_version}")
    for tool in tools:
        if tool in peers:
            print(f"  {label(tool):<12} {peers[tool].version}")
        elif tool != "score":
            print(f"  {label(tool):<12} not available: skipped")
    for shape, rows in results:
        report(shape, rows, args.runs, limit)
    compare_with_reference(results, limit)
    print(
        f"\nwall = the whole command (start-up included); ms/file = wall / files; MB/s = bytes / wall."
        f"\nscore/s5cmd, score/aws = the peer's median wall / score-client's (above 1: score-client is faster)."
        f"\nclient CPU = user+sys of the tool's process tree (os.wait4); peak RSS via {RSS_METHOD};"
        "\nSeaweedFS / score-server CPU = their user+sys during the step (psutil). score-client uploads a freshly"
        "\nregistered analysis each run (registration and publishing untimed); the peers upload to a new prefix"
        "\neach run. Every downloaded file is MD5-checked after the step (untimed). A `sync` before every step"
        "\n(untimed) keeps the previous step's writeback out of it."
    )
    drift = " (WARNING: src/ changed during the run)" if bench.drift else ""
    draw_chart(args, results, bench.source + drift, [label(t) for t in order])
    if bench.drift:
        print(
            f"\nWARNING: src/ changed during the run: {len(bench.drift)} score-client step(s) ran code other than"
            f" {bench.source} (score-server kept the code it started with); their numbers mix two versions:\n  "
            + "\n  ".join(bench.drift)
        )
    if incomplete:
        say("\nMD5 checks FAILED:\n  " + "\n  ".join(f.split("\n")[0] for f in incomplete))
        return 1
    if failures:
        say("\nFAILED tools:\n  " + "\n  ".join(f.split("\n")[0] for f in failures))
        return 2
    timeouts = [f"{r.tool} {r.direction} ({s.name})" for s, rows in results for r in rows.values() if r.timed_out]
    if timeouts:
        print(f"timed out (reported, not a failure): {', '.join(timeouts)}")
    print("all MD5 checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
