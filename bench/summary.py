"""The one table of `python -m bench`: every figure with its baseline, ratio, target and whether it is met,
built from the JSON each benchmark writes (`--json PATH`). No I/O here, so the logic is unit-tested."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Results = Mapping[str, Mapping[str, Any] | None]  # benchmark name -> its JSON, None when the run failed
Reader = Callable[[Mapping[str, Any]], float | bool | None]

MET, NOT_MET, NO_TARGET = "met", "NOT met", "-"
NOT_MEASURED, NO_BASELINE, FAILED = "not measured", "no baseline", "run failed"


@dataclass(frozen=True)
class Target:
    """at_most / at_least compare the value; ratio_at_least compares ours / baseline; is_true a yes/no."""

    kind: str
    limit: float = 0.0
    unit: str = ""

    def text(self) -> str:
        if self.kind == "at_most":
            return f"<= {number(self.limit)}{self.unit}"
        if self.kind == "at_least":
            return f">= {number(self.limit)}{self.unit}"
        if self.kind == "ratio_at_least":
            return f">= {number(self.limit)}x baseline"
        return "yes"

    def is_met(self, *, value: float | bool, ratio: float | None) -> bool | None:
        """None when the target cannot be judged (a ratio target without a baseline)."""
        if self.kind == "at_most":
            return float(value) <= self.limit
        if self.kind == "at_least":
            return float(value) >= self.limit
        if self.kind == "ratio_at_least":
            return None if ratio is None else ratio >= self.limit
        if self.kind == "is_true":
            return bool(value)
        raise ValueError(f"unknown target kind {self.kind}")


@dataclass(frozen=True)
class Figure:
    benchmark: str
    label: str
    value: Reader
    baseline_label: str = ""
    baseline: Reader | None = None
    target: Target | None = None


@dataclass(frozen=True)
class Row:
    label: str
    value: str
    baseline: str
    ratio: str
    target: str
    status: str


def dig(data: Mapping[str, Any], *path: str) -> Any:
    """data[path[0]][path[1]]..., or None when any step is missing."""
    current: Any = data
    for step in path:
        if not isinstance(current, Mapping) or step not in current:
            return None
        current = current[step]
    return current


def reader(*path: str, scale: float = 1.0) -> Reader:
    def read(data: Mapping[str, Any]) -> float | bool | None:
        found = dig(data, *path)
        if isinstance(found, bool) or found is None:
            return found
        return float(found) * scale

    return read


def number(value: float | bool) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    # Two decimals at most: 44.97 dB must not print as 45 next to a 45 dB target.
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _raster(size: str) -> list[Figure]:
    ours = reader("sizes", size, "ours_per_s")
    return [
        Figure(
            "raster",
            f"raster {size} prints/s vs decode-bound",
            ours,
            "decode-bound",
            reader("sizes", size, "decode_bound_per_s"),
            Target("ratio_at_least", 0.8),
        ),
        Figure(
            "raster",
            f"raster {size} prints/s vs plain pyvips",
            ours,
            "plain pyvips",
            reader("sizes", size, "pyvips_per_s"),
            Target("ratio_at_least", 1.1),
        ),
        Figure(
            "raster",
            f"raster {size} prints/s vs naive",
            ours,
            "naive Pillow",
            reader("sizes", size, "naive_per_s"),
        ),
        Figure(
            "raster",
            f"raster {size} peak RSS per worker, MiB",
            reader("sizes", size, "ours_rss_mib"),
            target=Target("at_most", 200, " MiB"),
        ),
        Figure(
            "raster",
            f"raster {size} PSNR (worst sample), dB",
            reader("sizes", size, "psnr_raster_db"),
            target=Target("at_least", 45, " dB"),
        ),
    ]


def _gate(line: str, label: str, target: Target | None) -> Figure:
    return Figure(
        "audit-gate",
        label,
        reader("lines", line, "p95_ms"),
        "raw INSERT p95",
        reader("lines", "c1", "p95_ms"),
        target,
    )


# The supervisor's view at 1M jobs: each figure function's p50 over a 30-day range (the heavier of the two
# timed), and the slowest figure over 7 days; baseline a plain count(*) of the jobs table.
SUPERVISOR_FIGURES = (
    "turnaround",
    "throughput",
    "failures",
    "reprints",
    "queue_depth",
    "orders_at_risk",
    "printer_time",
    "queue_history",
    "reprint_rate",
)


def _supervisor(name: str) -> Figure:
    return Figure(
        "supervisor",
        f"supervisor {name}, 30 days, p50 ms",
        reader("ranges", "30d", name),
        "count(*) p50",
        reader("baseline_count_ms"),
        Target("at_most", 1000, " ms"),
    )


def _scale() -> list[Figure]:
    """The sustained run through N minilabs: it keeps up when paid prints are printed as fast as they arrive,
    the lab's own backlog and its processes' memory do not grow, and every print is printed once."""
    return [
        Figure(
            "scale",
            "scale prints/s sustained vs arrival",
            reader("figures", "sustained_per_s"),
            "arrival",
            reader("figures", "arrival_per_s"),
            Target("ratio_at_least", 0.98),
        ),
        Figure(
            "scale",
            "scale lab backlog growth, % of arrival",
            reader("figures", "lab_backlog_growth_pct"),
            target=Target("at_most", 1, " %"),
        ),
        Figure(
            "scale",
            "scale largest RSS growth, MiB/min",
            reader("figures", "rss_growth_mib_per_min_max"),
            target=Target("at_most", 1, " MiB/min"),
        ),
        Figure("scale", "scale paid to printed p50 s (polled)", reader("figures", "latency_p50_s")),
        Figure("scale", "scale paid to printed p95 s (polled)", reader("figures", "latency_p95_s")),
        Figure(
            "scale",
            "scale every print printed once",
            reader("figures", "all_printed_once"),
            target=Target("is_true"),
        ),
    ]


FIGURES: list[Figure] = [
    *_raster("4x6"),
    *_raster("8x10"),
    Figure(
        "raster",
        "raster very large photos (to 178 MP, all formats), worst peak RSS per worker, MiB",
        reader("big_worst_rss_mib"),
        target=Target("at_most", 200, " MiB"),
    ),
    Figure(
        "web-memory",
        "web process checking a large upload (to 89 MP, all formats), worst RSS growth, MiB",
        reader("worst_intake_growth_mib"),
        "Pillow whole decode",
        reader("worst_pillow_growth_mib"),
    ),
    Figure(
        "web-memory",
        "web process making the gate's preview of it, worst RSS growth, MiB",
        reader("worst_preview_growth_mib"),
        "Pillow whole decode",
        reader("worst_pillow_growth_mib"),
    ),
    Figure(
        "slips",
        "packing slip, one page, median ms",
        reader("figures", "slip_median_ms"),
        "vector QR",
        reader("figures", "vector_median_ms"),
        Target("at_most", 20, " ms"),
    ),
    Figure("slips", "slips batch, pages/s", reader("figures", "batch_pages_per_s")),
    Figure(
        "intake",
        "quote p95 ms (4 clients)",
        reader("lines", "quote", "p95_ms"),
        "/healthz p95",
        reader("lines", "healthz", "p95_ms"),
        Target("at_most", 20, " ms"),
    ),
    Figure(
        "intake",
        "order create p95 ms (4 clients)",
        reader("lines", "order", "p95_ms"),
        "/healthz p95",
        reader("lines", "healthz", "p95_ms"),
        Target("at_most", 50, " ms"),
    ),
    Figure(
        "intake",
        "12 MP upload p95 ms (4 clients)",
        reader("lines", "upload", "p95_ms"),
        "Pillow decode p95",
        reader("lines", "decode", "p95_ms"),
    ),
    _gate("b1", "audit decision + write p95 ms", Target("at_most", 2, " ms")),
    _gate("b2", "audit denied call p95 ms", Target("at_most", 2, " ms")),
    _gate("b3", "audit append alone p95 ms", None),
    Figure(
        "audit-gate",
        "audit 8 writers, records/s",
        reader("writers", "records_per_s"),
        target=Target("at_least", 2000, "/s"),
    ),
    Figure(
        "audit-gate",
        "audit chain linear after writers",
        reader("writers", "chain_linear"),
        target=Target("is_true"),
    ),
    Figure(
        "audit-verify",
        "audit offline verify, s per 1M records",
        # Verification streams the export line by line, so its time is linear in the records: a quick run's
        # per-record time, times a million, is the figure the 1M-record target is about.
        reader("figures", "us_per_record"),
        target=Target("at_most", 30, " s"),
    ),
    Figure(
        "audit-verify",
        "audit offline verify passes",
        lambda data: (
            None if dig(data, "figures", "exit_code") is None else dig(data, "figures", "exit_code") == 0
        ),
        target=Target("is_true"),
    ),
    *(_supervisor(name) for name in SUPERVISOR_FIGURES),
    Figure(
        "supervisor",
        "supervisor slowest figure, 7 days, p50 ms",
        reader("slowest_ms", "7d"),
        "count(*) p50",
        reader("baseline_count_ms"),
        Target("at_most", 1000, " ms"),
    ),
    Figure("supervisor", "supervisor whole view, 30 days, p50 ms", reader("ranges", "30d", "whole_view")),
    *_scale(),
    Figure(
        "latency",
        "paid to printed p50 s, listener (default settings)",
        reader("phases", "events", "p50_s"),
        "poll only",
        reader("phases", "poll_only", "p50_s"),
        Target("at_most", 2, " s"),
    ),
    Figure(
        "latency",
        "paid to printed p95 s, listener (default settings)",
        reader("phases", "events", "p95_s"),
        "poll only",
        reader("phases", "poll_only", "p95_s"),
        Target("at_most", 4, " s"),
    ),
    Figure(
        "latency",
        "paid to printed p50 s, listener, CUPS' default URI",
        reader("phases", "events_default_uri", "p50_s"),
        "poll only",
        reader("phases", "poll_only", "p50_s"),
    ),
    Figure(
        "latency",
        "paid to printed: every order printed",
        lambda data: (
            None
            if not isinstance(dig(data, "phases"), Mapping)
            else all(phase.get("not_printed") == 0 for phase in data["phases"].values())
        ),
        target=Target("is_true"),
    ),
]


def row_build(figure: Figure, data: Mapping[str, Any] | None) -> Row:
    target_text = figure.target.text() if figure.target else NO_TARGET
    if data is None:
        return Row(figure.label, "", "", "", target_text, FAILED)
    value = figure.value(data)
    base = figure.baseline(data) if figure.baseline else None
    baseline_text = f"{figure.baseline_label} {number(base)}" if base is not None else ""
    if value is None:
        return Row(figure.label, "", baseline_text, "", target_text, NOT_MEASURED)
    ratio = float(value) / float(base) if base not in (None, 0) else None
    ratio_text = f"{ratio:.2f}x" if ratio is not None else ""
    if figure.target is None:
        status = NO_TARGET
    else:
        verdict = figure.target.is_met(value=value, ratio=ratio)
        status = NO_BASELINE if verdict is None else MET if verdict else NOT_MET
    return Row(figure.label, number(value), baseline_text, ratio_text, target_text, status)


def table_build(results: Results, *, figures: list[Figure] | None = None) -> list[Row]:
    """One row per figure of every benchmark present in results (a benchmark left out is not listed)."""
    return [
        row_build(figure, results[figure.benchmark])
        for figure in (FIGURES if figures is None else figures)
        if figure.benchmark in results
    ]


HEADER = Row("figure", "ours", "baseline", "ratio", "target", "met")


def table_text(rows: list[Row], *, markdown: bool = False) -> str:
    cells = [
        [row.label, row.value, row.baseline, row.ratio, row.target, row.status] for row in [HEADER, *rows]
    ]
    if markdown:
        lines = ["| " + " | ".join(cell or " " for cell in line) + " |" for line in cells]
        lines.insert(1, "|" + "---|" * len(cells[0]))
        return "\n".join(lines)
    widths = [max(len(line[column]) for line in cells) for column in range(len(cells[0]))]
    numeric = {1, 3}  # right-aligned columns
    rendered = [
        "  ".join(
            cell.rjust(width) if column in numeric else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in cells
    ]
    rendered.insert(1, "-" * len(rendered[0]))
    return "\n".join(rendered)
