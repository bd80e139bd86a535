"""The table of `python -m bench` from canned benchmark JSON: values, ratios and met / not met per target."""

from __future__ import annotations

from bench.summary import FIGURES, Results, table_build, table_text

RASTER_SIZE = {
    "ours_per_s": 12.0,
    "naive_per_s": 3.0,
    "decode_bound_per_s": 16.0,
    "ours_rss_mib": 150.0,
    "psnr_raster_db": 44.97,
}
CANNED: Results = {
    # 8x10 and pyvips missing
    "raster": {"benchmark": "raster", "sizes": {"4x6": RASTER_SIZE}, "big_worst_rss_mib": 211.0},
    "slips": {"figures": {"slip_median_ms": 12.0, "vector_median_ms": 48.0, "batch_pages_per_s": 120.0}},
    "intake": {
        "lines": {
            "healthz": {"p95_ms": 5.0},
            "quote": {"p95_ms": 20.0},
            "order": {"p95_ms": 51.0},
            "upload": {"p95_ms": 300.0},
            "decode": {"p95_ms": 150.0},
        }
    },
    "web-memory": {
        "worst_intake_growth_mib": 93.0,
        "worst_preview_growth_mib": 134.0,
        "worst_pillow_growth_mib": 604.0,
    },
    "audit-gate": None,  # the run failed
    "audit-verify": {"figures": {"us_per_record": 13.4, "exit_code": 1}},
    "supervisor": {
        "baseline_count_ms": 40.0,
        "ranges": {"30d": {"turnaround": 120.0, "printer_time": 1200.0, "whole_view": 2500.0}},
        "slowest_ms": {"7d": 400.0},
    },
    "scale": {
        "figures": {
            "sustained_per_s": 8.1,
            "arrival_per_s": 8.33,
            "lab_backlog_growth_pct": 0.4,
            "rss_growth_mib_per_min_max": 1.5,
            "latency_p50_s": 21.0,
            "all_printed_once": True,
        }
    },
    "latency": {
        "phases": {
            "events": {"p50_s": 0.9, "p95_s": 4.2, "not_printed": 0},
            "poll_only": {"p50_s": 6.0, "p95_s": 10.5, "not_printed": 1},
        }
    },
}


def test_table_judges_each_target_from_canned_figures():
    # given canned figures of every benchmark; when the table is built
    rows = {row.label: row for row in table_build(CANNED)}

    # then each figure is judged against its own target, the ratio being ours / baseline
    def cells(label: str) -> tuple[str, str, str, str, str]:
        row = rows[label]
        return (row.value, row.baseline, row.ratio, row.target, row.status)

    assert cells("raster 4x6 prints/s vs decode-bound") == (
        "12",
        "decode-bound 16",
        "0.75x",
        ">= 0.8x baseline",
        "NOT met",
    )
    assert cells("raster 4x6 prints/s vs plain pyvips") == (
        "12",
        "",
        "",
        ">= 1.1x baseline",
        "no baseline",
    )
    assert cells("raster 4x6 prints/s vs naive") == ("12", "naive Pillow 3", "4.00x", "-", "-")
    assert cells("raster 4x6 peak RSS per worker, MiB") == ("150", "", "", "<= 200 MiB", "met")
    assert cells("raster 4x6 PSNR (worst sample), dB") == ("44.97", "", "", ">= 45 dB", "NOT met")
    assert cells("raster 8x10 peak RSS per worker, MiB")[4] == "not measured"
    assert cells("raster very large photos (to 178 MP, all formats), worst peak RSS per worker, MiB") == (
        "211",
        "",
        "",
        "<= 200 MiB",
        "NOT met",
    )
    assert cells("packing slip, one page, median ms") == (
        "12",
        "vector QR 48",
        "0.25x",
        "<= 20 ms",
        "met",
    )
    assert cells("quote p95 ms (4 clients)")[2:] == ("4.00x", "<= 20 ms", "met")  # the limit itself is met
    assert cells("order create p95 ms (4 clients)")[4] == "NOT met"
    assert cells("audit decision + write p95 ms")[4] == "run failed"
    assert cells("audit offline verify, s per 1M records")[3:] == ("<= 30 s", "met")
    assert cells("audit offline verify passes")[0::4] == ("no", "NOT met")
    assert cells("supervisor turnaround, 30 days, p50 ms") == (
        "120",
        "count(*) p50 40",
        "3.00x",
        "<= 1,000 ms",
        "met",
    )
    assert cells("supervisor printer_time, 30 days, p50 ms")[4] == "NOT met"
    assert cells("supervisor throughput, 30 days, p50 ms")[4] == "not measured"
    assert cells("supervisor slowest figure, 7 days, p50 ms")[0::4] == ("400", "met")
    assert cells("supervisor whole view, 30 days, p50 ms")[0::4] == ("2,500", "-")
    assert cells("scale prints/s sustained vs arrival") == (
        "8.1",
        "arrival 8.33",
        "0.97x",
        ">= 0.98x baseline",
        "NOT met",
    )
    assert cells("scale lab backlog growth, % of arrival")[3:] == ("<= 1 %", "met")
    assert cells("scale largest RSS growth, MiB/min")[0::4] == ("1.5", "NOT met")
    assert cells("scale paid to printed p50 s (polled)")[0::4] == ("21", "-")
    assert cells("scale paid to printed p95 s (polled)")[4] == "not measured"
    assert cells("scale every print printed once")[0::4] == ("yes", "met")
    assert cells("paid to printed p50 s, listener (default settings)") == (
        "0.9",
        "poll only 6",
        "0.15x",
        "<= 2 s",
        "met",
    )
    assert cells("paid to printed p95 s, listener (default settings)")[2:] == ("0.40x", "<= 4 s", "NOT met")
    assert cells("paid to printed p50 s, listener, CUPS' default URI")[4] == "not measured"
    assert cells("paid to printed: every order printed")[0::4] == ("no", "NOT met")
    assert cells("web process checking a large upload (to 89 MP, all formats), worst RSS growth, MiB") == (
        "93",
        "Pillow whole decode 604",
        "0.15x",
        "-",
        "-",
    )
    assert len(rows) == len(FIGURES)
    assert table_text(list(rows.values())).splitlines()[0].split() == [
        "figure",
        "ours",
        "baseline",
        "ratio",
        "target",
        "met",
    ]


def test_a_benchmark_left_out_has_no_rows():
    rows = table_build({"slips": CANNED["slips"]})

    assert [row.label for row in rows] == ["packing slip, one page, median ms", "slips batch, pages/s"]
