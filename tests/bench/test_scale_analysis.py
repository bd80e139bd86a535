"""The scale benchmark's figures from canned samples: a lab that keeps up, one that falls behind, and the
CPU and latency arithmetic (bench/scale/analysis.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.scale.analysis import percentile, slope, stage_prints, steady_window, summarize
from bench.summary import table_build

ARRIVAL = 2.0  # prints/s


def samples(
    *, printed_per_s: float, backlog_per_s: float = 0.0, rss_per_s: float = 0.0
) -> list[dict[str, float]]:
    """A sample every 5 s for 300 s: prints paid at ARRIVAL, printed 20 s later at `printed_per_s`."""
    rows = []
    for t in range(0, 301, 5):
        rows.append(
            {
                "t": float(t),
                "unix": 1000.0 + t,
                "load1": 1.0,
                "fed_prints": ARRIVAL * t,
                "printed_copies": max(0.0, printed_per_s * (t - 20)),
                "device_copies_done": max(0.0, printed_per_s * (t - 15)),
                "device_busy_s": 10 * 12 * t / 12,
                "jobs_queued": 10 + backlog_per_s * t,
                "jobs_submitted": 24.0,
                "rss_mib_web": 300 + rss_per_s * t,
                "cpu_s_web": 0.1 * t,
                "task_runs_raster": ARRIVAL * t,
                "task_cpu_s_raster": 0.2 * t,
                "task_db_cpu_s_raster": 0.02 * t,
                "task_runs_release": ARRIVAL * t / 4,
                "task_cpu_s_release": 0.04 * t,
            }
        )
    return rows


def job(*, paid: float, took: float) -> dict[str, Any]:
    return {
        "paid": paid,
        "released": paid + 0.5,
        "rasterized": paid + 1.5,
        "submitted": paid + 1.7,
        "device_started": paid + 1.7,
        "device_finished": paid + 13.7,
        "printed": paid + took,
    }


def test_a_lab_that_keeps_up_has_flat_queues_and_memory():
    # given a run where prints are printed as fast as they are paid, the backlog and memory flat
    rows = samples(printed_per_s=ARRIVAL)
    jobs = [job(paid=1000.0 + second, took=18.0 + second % 5) for second in range(40, 280)]

    # when the steady window from 60 s to 300 s is summarized
    result = summarize(
        rows, jobs, start=60, end=300, arrival_per_s=ARRIVAL, printers=10, prints_per_order=4, roles=["web"]
    )

    # then it sustains the arrival rate with no growth, and CPU is split per process and per stage
    figures = result["figures"]
    assert figures["window_s"] == 240
    assert figures["sustained_per_s"] == pytest.approx(ARRIVAL)
    assert figures["device_per_s"] == pytest.approx(ARRIVAL)
    assert figures["lab_backlog_mean"] == pytest.approx(10)
    assert figures["lab_backlog_growth_pct"] == pytest.approx(0, abs=1e-9)
    assert figures["rss_growth_mib_per_min_max"] == pytest.approx(0, abs=1e-9)
    assert figures["rss_growth_role"] == "web"
    assert figures["minilab_utilisation"] == pytest.approx(1.0)
    assert result["cpu"]["web"]["cores"] == pytest.approx(0.1)
    assert result["cpu"]["web"]["ms_per_print"] == pytest.approx(50)  # 0.1 core at 2 prints/s
    raster, release = result["stages"]["raster"], result["stages"]["release"]
    assert (raster["ms_per_run"], raster["worker_ms_per_print"], raster["db_ms_per_print"]) == pytest.approx(
        (110, 100, 10)
    )
    assert (release["ms_per_run"], release["worker_ms_per_print"]) == pytest.approx((80, 20))  # 4 per order
    # and paid to printed is read from the jobs printed inside the window only, with its parts
    latency = result["latency"]
    assert latency["jobs"] == 238  # printed from t=60 to t=300: paid at t=41..278
    assert latency["p50_s"] == 20.0
    assert latency["parts_p50_s"]["printing"] == pytest.approx(12)
    assert latency["parts_p50_s"]["poll"] == pytest.approx(6.3)


def test_a_lab_that_falls_behind_shows_a_growing_backlog_and_misses_the_table_targets():
    # given prints printed at half the arrival rate, the unsent backlog growing by 1/s, memory by 2 MiB/min
    rows = samples(printed_per_s=ARRIVAL / 2, backlog_per_s=1.0, rss_per_s=2 / 60)

    # when summarized
    result = summarize(
        rows, [], start=60, end=300, arrival_per_s=ARRIVAL, printers=10, prints_per_order=4, roles=["web"]
    )

    # then the growth is measured per minute and against the arrival rate, and the table says NOT met
    figures = result["figures"]
    assert figures["sustained_per_s"] == pytest.approx(1.0)
    assert figures["lab_backlog_growth_per_min"] == pytest.approx(60)
    assert figures["lab_backlog_growth_pct"] == pytest.approx(50)
    assert figures["rss_growth_mib_per_min_max"] == pytest.approx(2)
    rows_of_table = {row.label: row for row in table_build({"scale": result})}
    assert rows_of_table["scale prints/s sustained vs arrival"].status == "NOT met"
    assert rows_of_table["scale lab backlog growth, % of arrival"].status == "NOT met"
    assert rows_of_table["scale largest RSS growth, MiB/min"].status == "NOT met"


def test_percentile_slope_and_window_arithmetic():
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert percentile([], 50) != percentile([], 50)  # NaN: no jobs, no latency
    assert slope([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]) == 2.0
    assert slope([1.0], [1.0]) == 0.0
    with pytest.raises(ValueError, match="only 2 samples"):
        steady_window(samples(printed_per_s=ARRIVAL), start=0, end=5)
    window = steady_window(samples(printed_per_s=ARRIVAL), start=60, end=120)
    assert stage_prints("release", runs=3, window=window, prints_per_order=4) == 12
    assert stage_prints("tracking", runs=6, window=window, prints_per_order=4) == 120  # printed in 60 s
    assert stage_prints("notify", runs=30, window=window, prints_per_order=4) == 120  # paid in 60 s
