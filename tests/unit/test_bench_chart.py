"""bench/chart.py: the PNG a bench writes beside its tables, and the ``--chart`` option of the benches."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_chart():
    spec = importlib.util.spec_from_file_location("bench_chart", BENCH / "chart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


chart = _load_chart()


def _bars() -> list:
    Bar = chart.Bar
    return [
        Bar("upload", "score-client", [310.0, 290.0, 330.0], (1.2, 1.5, 0.1), score=True),
        Bar("upload", "s5cmd", [350.0, 340.0, 360.0], (0.8, 1.4, 0.0)),
        Bar("upload", "aws-cli", [180.0], (3.1, 1.4, 0.0)),
        Bar("download", "score-client --validate false", [520.0, 500.0], (0.6, 0.9, 0.05), score=True),
        Bar("download", "s5cmd", [600.0], (0.5, 0.9, 0.0)),
        Bar("download", "aws-cli", [], note="FAILED"),
    ]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("spread", [1, 1000], ids=["linear", "log-scale"])
def test_draws_one_small_png_of_about_1200_by_700(tmp_path: Path, spread: int) -> None:
    pytest.importorskip("matplotlib")
    bars = _bars()
    bars[0].rates = [r / spread for r in bars[0].rates]  # a 1000x spread turns the throughput axis logarithmic
    path = tmp_path / "sub" / "race.png"
    written = chart.draw(path, "race: a title", "1 run; source abc1234", bars, cpu_reference=("MD5 pass (md5sum)", 1.6))
    assert written == path
    width, height = _png_size(path)
    assert 1100 <= width <= 1300 and 600 <= height <= 800
    assert 5_000 < path.stat().st_size < 150_000


def test_write_chart_says_where_and_none_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(chart, "RESULTS", tmp_path)
    assert chart.write_chart(chart.chart_path("none", "race-1GiB.png"), "t", "s", _bars()) is None
    assert chart.write_chart(chart.chart_path(" NONE ", "race-1GiB.png"), "t", "s", _bars()) is None
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().out == ""

    written = chart.write_chart(chart.chart_path(None, "race-1GiB.png"), "t", "s", _bars())
    assert written == tmp_path / "race-1GiB.png"
    assert written.read_bytes()[:8] == PNG_MAGIC
    assert f"chart: {written}" in capsys.readouterr().out


def test_chart_path() -> None:
    assert chart.chart_path(None, "bundle-40x256KiB.png") == chart.RESULTS / "bundle-40x256KiB.png"
    assert chart.chart_path("none", "x.png") is None
    assert chart.chart_path("out/x.png", "y.png") == Path("out/x.png")
    assert chart.slug("256 MiB", "1 GiB") == "256MiB-1GiB"


def test_write_chart_with_no_bars_writes_nothing(tmp_path: Path) -> None:
    assert chart.write_chart(tmp_path / "x.png", "t", "s", []) is None
    assert not (tmp_path / "x.png").exists()


def test_benches_take_chart_none_and_turn_their_rows_into_bars() -> None:
    """Each bench's ``--chart`` (parsed, not run) and race/bundle's rows as bars, in a child process: the
    benches put bench/ on sys.path, which this test process should not see."""
    code = textwrap.dedent(
        """
        import json, sys
        sys.path.insert(0, "bench")
        import bundle, chart, mount, race
        out = {}
        for name, module, extra in (("race", race, []), ("bundle", bundle, ["--quick"]), ("mount", mount, ["--quick"])):
            args = module.parse_args([*extra, "--chart", "none"])
            out[name] = [chart.chart_path(args.chart, "x.png"), module.parse_args(extra).chart]
        size = 256 * race.MiB
        samples = [race.Sample(1.0, 0.5, 70, 0.25, 0.125), race.Sample(2.0, 1, 70, 0.5, 0.25)]
        row = race.Row("score-client", "upload", samples)
        failed = race.Row("aws-cli", "download", failed="FAILED: boom")
        bars = race.chart_bars([(size, {("score-client", "upload"): row, ("aws-cli", "download"): failed}, row)], False)
        out["race_bars"] = [[b.group, b.tool, b.rates, list(b.cpu), b.score, b.note] for b in bars]
        shape = bundle.Shape(40, 256 * race.KiB)
        brow = bundle.BundleRow("s5cmd", "download", [race.Sample(0.5, 0.1, 20, 0.2, 0.0)])
        bars = bundle.chart_bars([(shape, {("s5cmd", "download"): brow})], 900)
        out["bundle_bars"] = [[b.group, b.tool, b.rates, list(b.cpu), b.score, b.note] for b in bars]
        print(json.dumps(out, default=str))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for name in ("race", "bundle", "mount"):
        assert out[name] == [None, None], name  # 'none': no chart; unset: the bench's default file
    mb = 256 * 1024**2 / 1e6
    assert out["race_bars"] == [
        ["upload", "score-client", [mb, mb / 2], [0.75 * 4, 0.375 * 4, 0.1875 * 4], True, ""],
        ["download", "aws-cli", [], [0.0, 0.0, 0.0], False, "FAILED"],
    ]
    assert out["bundle_bars"] == [["download", "s5cmd", [40 * 256 * 1024 / 0.5 / 1e6], [0.1, 0.2, 0.0], False, ""]]
