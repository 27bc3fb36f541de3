"""bench/load.py's pure parts: reading wrk's output, percentiles, the soak verdict, the py-spy summary."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_load", BENCH / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


load = _load_bench()

WRK_OK = """\
Running 10s test @ http://127.0.0.1:40123
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    41.52ms   18.30ms 212.04ms   79.41%
    Req/Sec   190.12     35.77   290.00     71.00%
  Latency Distribution
     50%   39.17ms
     75%   49.02ms
     90%   61.88ms
     99%  112.12ms
  3796 requests in 10.07s, 3.45MB read
Requests/sec:    376.96
Transfer/sec:    350.61KB
"""

WRK_ERRORS = """\
Running 3s test @ http://127.0.0.1:40123
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us  100.00us   2.01s    90.00%
    Req/Sec     1.20k   100.00     1.50k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.00ms
     90%    1.50ms
     99%    2.01s
  3600 requests in 3.00s, 1.00MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   1200.00
Transfer/sec:    341.33KB
"""


def test_wrk_figures_are_read() -> None:
    result = load.parse_wrk(WRK_OK)
    assert result.requests == 3796
    assert result.seconds == pytest.approx(10.07)
    assert result.rps == pytest.approx(376.96)
    assert result.percentiles == {50: 39.17, 75: 49.02, 90: 61.88, 99: 112.12}
    assert result.non_2xx == 0
    assert result.errors == 0


def test_wrk_errors_and_units() -> None:
    result = load.parse_wrk(WRK_ERRORS)
    assert result.percentiles[50] == pytest.approx(0.812)
    assert result.percentiles[99] == pytest.approx(2010.0)
    assert result.socket_errors == {"connect": 1, "read": 2, "write": 0, "timeout": 3}
    assert result.non_2xx == 7
    assert result.errors == 13


def test_not_wrk_output_is_refused() -> None:
    with pytest.raises(ValueError, match="not wrk output"):
        load.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


@pytest.mark.parametrize(
    ("text", "ms"), [("812.00us", 0.812), ("1.23ms", 1.23), ("2.01s", 2010.0), ("1.50m", 90_000.0), ("5ms", 5.0)]
)
def test_durations(text: str, ms: float) -> None:
    assert load.duration_ms(text) == pytest.approx(ms)


def test_a_bad_duration_is_refused() -> None:
    with pytest.raises(ValueError):
        load.duration_ms("12 parsecs")


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100, shuffled order must not matter
    shuffled = values[::2] + values[1::2]
    assert load.percentile(shuffled, 50) == pytest.approx(50.5)
    assert load.percentile(shuffled, 99) == pytest.approx(99.01)
    assert load.percentile(shuffled, 0) == 1.0
    assert load.percentile(shuffled, 100) == 100.0
    assert load.percentile([7.0], 99) == 7.0
    assert math.isnan(load.percentile([], 50))


def test_rss_flat_within_ten_percent_or_twenty_mib() -> None:
    mib = 1024 * 1024
    assert load.rss_flat(100 * mib, 119 * mib)  # 19 MiB: within the 20 MiB floor
    assert not load.rss_flat(100 * mib, 121 * mib)
    assert load.rss_flat(400 * mib, 439 * mib)  # 10% of 400 MiB is 40 MiB
    assert not load.rss_flat(400 * mib, 441 * mib)
    assert load.rss_flat(100 * mib, 85 * mib)  # shrinking is within bounds too


def test_wrk_script_rotates_over_every_path() -> None:
    script = load.wrk_script(["/download/a?offset=0&length=-1", "/download/b?offset=0&length=-1"], "T0KEN")
    assert 'wrk.headers["Authorization"] = "Bearer T0KEN"' in script
    assert '"/download/a?offset=0&length=-1"' in script and '"/download/b?offset=0&length=-1"' in script
    assert "counter % #paths + 1" in script


def test_own_time_counts_leaf_frames_and_leaves_idle_out() -> None:
    collapsed = "\n".join([
        "process 1;<module> (x.py:1);Runner.run (asyncio/runners.py:118) 50",
        "process 1;worker (t.py:3);Condition.wait (threading.py:327) 40",
        "process 1;handler (a.py:9);Registry.entity (registry.py:355) 30",
        "process 1;handler (a.py:9);Registry.entity (registry.py:356) 10",
        "process 1;handler (a.py:9);uuid4 (uuid.py:723) 20",
        "garbage",
    ])  # fmt: skip
    top = load.own_time(collapsed)
    assert top[0] == ("Registry.entity (registry.py)", 40, pytest.approx(40 / 60))
    assert top[1] == ("uuid4 (uuid.py)", 20, pytest.approx(20 / 60))
    assert len(top) == 2
