"""One PNG per bench run, for readers who would rather look than read the tables.

    from chart import Bar, add_chart_option, chart_path, slug, write_chart

Each bench turns the rows it already printed into ``Bar`` values (one per tool and group: a direction, a
shape and direction, a mount step) and calls ``write_chart``. The picture has two panels sharing their rows:
on the left the throughput (median MB/s, whiskers from the slowest to the fastest run when there were
several), on the right the CPU split of the same step as stacked bars (the tool itself, SeaweedFS,
score-server). score's own tools are drawn in blue, the peers in grey, so where the client stands is seen
at a glance; every colour is from the Okabe-Ito palette (distinct for colour-blind readers too).

matplotlib is imported only when a chart is drawn (Agg backend, no display needed), so a bench without it
still runs and prints its tables; the chart is then skipped with a line saying why.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, HEIGHT, DPI = 12.0, 7.0, 100  # 1200 x 700 px
LEGEND_PAD = 22  # points between a panel's title and its top edge: room for a row of legend keys

# Okabe & Ito (2008), "Color Universal Design": distinguishable with any common colour-vision deficiency.
SCORE_COLOUR, PEER_COLOUR = "#0072B2", "#999999"  # blue, grey
CPU_COLOURS = ("#E69F00", "#009E73", "#CC79A7")  # orange, bluish green, reddish purple
CPU_PARTS = ("client", "SeaweedFS", "score-server")
REFERENCE_COLOUR = "#D55E00"  # vermillion


@dataclass
class Bar:
    """One tool in one group (a direction; a shape and direction; a mount step): what a table row says."""

    group: str
    tool: str
    rates: list[float] = field(default_factory=list)  # MB/s, one per run; empty: no bar, ``note`` says why
    cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)  # median CPU-s of the tool, the store, score-server
    score: bool = False  # one of score's own tools (drawn highlighted)
    note: str = ""  # why there is no bar: "FAILED", "pending", "timed out"
    detail: str = ""  # shown after the MB/s figure, e.g. "30 ms/file"


# -- the option -------------------------------------------------------------------------------------


def add_chart_option(parser: argparse.ArgumentParser, default_name: str) -> None:
    """``--chart PATH``; ``default_name`` describes the default file in the help (it depends on the sizes)."""
    parser.add_argument(
        "--chart",
        metavar="PATH",
        default=None,
        help=f"write a PNG chart of the results here; 'none' for no chart [bench/results/{default_name}]",
    )


def chart_path(option: str | None, default_name: str) -> Path | None:
    """Where the chart goes: ``bench/results/<default_name>`` unless ``--chart`` says; ``None`` for ``none``."""
    if option is None:
        return RESULTS / default_name
    if option.strip().lower() == "none":
        return None
    return Path(option)


def slug(*parts: str) -> str:
    """A file-name-safe joining of sizes or shapes: ``("256 MiB",)`` -> ``256MiB``."""
    return "-".join(p.replace(" ", "") for p in parts)


# -- drawing ----------------------------------------------------------------------------------------


def write_chart(path: Path | None, title: str, subtitle: str, bars: Sequence[Bar], **options: object) -> Path | None:
    """Draw ``bars`` into ``path`` (``None``: nothing) and say where on stdout. The tables are already out,
    so a chart that cannot be drawn (no matplotlib, an unwritable path, no throughput rows) is reported on
    stderr and does not change the bench's exit status."""
    if path is None:
        return None
    if not bars:
        print("chart: nothing to draw (no throughput rows in this run)", file=sys.stderr)
        return None
    try:
        draw(path, title, subtitle, bars, **options)  # type: ignore[arg-type]
    except ImportError:
        print("chart skipped: matplotlib is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return None
    except Exception as exc:  # the measurements matter more than their picture
        print(f"chart FAILED: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return None
    print(f"\nchart: {path}")
    return path


def _layout(bars: Sequence[Bar]) -> tuple[list[tuple[float, Bar]], list[tuple[float, str]]]:
    """Row positions (top to bottom) of every bar, grouped in order of first appearance, with a header row
    for each group and a little air between groups."""
    groups: dict[str, list[Bar]] = {}
    for bar in bars:
        groups.setdefault(bar.group, []).append(bar)
    rows: list[tuple[float, Bar]] = []
    headers: list[tuple[float, str]] = []
    y = 0.0
    for name, members in groups.items():
        headers.append((y, name))
        y += 1
        for bar in members:
            rows.append((y, bar))
            y += 1
        y += 0.4
    return rows, headers


def _legend(axis: Any, handles: list[Any], two_rows: bool = False) -> None:
    """A row of keys (or two) between the panel's title and its top edge."""
    axis.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=(len(handles) + 1) // 2 if two_rows else len(handles),
        frameon=False,
        fontsize=9,
        handlelength=1.2,
        columnspacing=1.2,
        borderaxespad=0.1,
        borderpad=0.1,
    )


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def draw(
    path: Path,
    title: str,
    subtitle: str,
    bars: Sequence[Bar],
    cpu_label: str = "CPU-s",
    cpu_parts: tuple[str, str, str] = CPU_PARTS,
    cpu_reference: tuple[str, float] | None = None,
    rate_label: str = "MB/s (MB = 10^6 bytes)",
) -> Path:
    """Two panels with shared rows: throughput per tool and group, and the CPU split of the same steps.

    The throughput axis turns logarithmic when the medians span more than 50x (a bundle of 4 KiB files
    beside one of 16 MiB files), so small bars stay visible; the CPU axis stays linear (stacks on a log
    axis would mislead). ``cpu_reference`` (label, CPU-s) draws a dashed line, e.g. one MD5 pass.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter
    from PIL import Image

    rows, headers = _layout(bars)
    with plt.rc_context({"font.size": 10, "axes.titlesize": 11, "axes.spines.top": False, "axes.spines.right": False}):
        fig, (left, right) = plt.subplots(
            1,
            2,
            figsize=(WIDTH, HEIGHT),
            dpi=DPI,
            sharey=True,
            gridspec_kw={"width_ratios": [1.15, 1]},
            layout="constrained",
        )
        fig.suptitle(title, fontsize=14, fontweight="bold")
        fig.text(0.5, 0.94, subtitle, ha="center", va="top", fontsize=9, color="#444444", linespacing=1.4)
        below = 0.925 - 0.025 * subtitle.count("\n")  # the panels start under the subtitle's last line
        fig.get_layout_engine().set(rect=(0, 0, 1, below))  # type: ignore[union-attr]

        medians = [statistics.median(b.rates) for _, b in rows if b.rates]
        positive = [m for m in medians if m > 0]
        log = bool(positive) and max(positive) / min(positive) > 50
        top = max((max(b.rates) for _, b in rows if b.rates), default=1.0)
        runs = max((len(b.rates) for _, b in rows), default=0)
        for y, bar in rows:
            colour = SCORE_COLOUR if bar.score else PEER_COLOUR
            if not bar.rates:
                for axis in (left, right):
                    axis.text(0.01, y, bar.note or "no result", transform=axis.get_yaxis_transform(), va="center",
                              fontstyle="italic", color="#B00000")  # fmt: skip
                continue
            median = statistics.median(bar.rates)
            error = None
            if len(bar.rates) > 1:
                error = [[median - min(bar.rates)], [max(bar.rates) - median]]
            left.barh(y, median, height=0.72, color=colour, xerr=error, capsize=3, error_kw={"elinewidth": 1})
            end = max(bar.rates)
            left.text(
                end * (1.08 if log else 1) + (0 if log else top * 0.01),
                y,
                _number(median) + (f"  ({bar.detail})" if bar.detail else ""),
                va="center",
                fontsize=9,
                fontweight="bold" if bar.score else "normal",
            )
            start = 0.0
            for value, part_colour in zip(bar.cpu, CPU_COLOURS, strict=True):
                right.barh(y, value, left=start, height=0.72, color=part_colour)
                start += value
            right.text(start, y, f" {_number(start)}", va="center", fontsize=9)

        if log:
            left.set_xscale("log")
            left.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 0.1, 1, 10: no 10^x
            left.set_xlim(min(positive) / 2, top * 4)
        else:
            left.set_xlim(0, top * (1.3 if any(b.detail for b in bars) else 1.15))
        whiskers = f"median; whiskers: min-max of {runs} runs" if runs > 1 else "1 run"
        left.set_xlabel(f"{rate_label}, {whiskers}" + (", log scale" if log else ""))
        keys = [*cpu_parts, *([cpu_reference[0]] if cpu_reference else [])]
        two_rows = sum(map(len, keys)) > 50  # the CPU keys would not fit beside each other
        pad = LEGEND_PAD * (1.6 if two_rows else 1)
        left.set_title("throughput (longer is faster)", loc="left", fontweight="bold", pad=pad)
        _legend(left, [Patch(color=SCORE_COLOUR, label="score's tools"), Patch(color=PEER_COLOUR, label="peers")])
        totals = [sum(b.cpu) for _, b in rows if b.rates]
        right.set_xlim(0, max([*totals, cpu_reference[1] if cpu_reference else 0.0, 1e-9]) * 1.18)
        right.set_xlabel(cpu_label + (", median" if runs > 1 else ", 1 run"))
        right.set_title("CPU split (shorter is cheaper)", loc="left", fontweight="bold", pad=pad)
        handles = [Patch(color=c, label=p) for c, p in zip(CPU_COLOURS, cpu_parts, strict=True)]
        if cpu_reference is not None:
            line = right.axvline(cpu_reference[1], color=REFERENCE_COLOUR, linestyle="--", linewidth=1.2)
            line.set_label(cpu_reference[0])
            handles.append(line)  # type: ignore[arg-type]
        _legend(right, handles, two_rows)

        left.set_yticks([y for y, _ in rows], [bar.tool for _, bar in rows])
        for label, (_, bar) in zip(left.get_yticklabels(), rows, strict=True):
            if bar.score:
                label.set_color(SCORE_COLOUR)
        for y, name in headers:  # over the panel's own header row: long group names need no margin
            left.text(0.005, y, name, transform=left.get_yaxis_transform(), va="center", fontsize=11, fontweight="bold")
        left.tick_params(axis="y", length=0)
        right.tick_params(axis="y", length=0)
        left.set_ylim(max(y for y, _ in rows) + 0.7, -0.7)  # top to bottom, a little air at both ends
        for axis in (left, right):
            axis.grid(axis="x", color="#DDDDDD", linewidth=0.8)
            axis.set_axisbelow(True)

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        plt.close(fig)
    # A few flat colours and anti-aliased text: a 256-colour palette looks the same at a third of the size.
    buffer.seek(0)
    with Image.open(buffer) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        path.parent.mkdir(parents=True, exist_ok=True)
        small.save(path, format="PNG", optimize=True)
    return path
