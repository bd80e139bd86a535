"""The scale bench's printed summary, from its result (config, window, setup and analysis figures)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _line(label: str, text: str) -> str:
    return f"{label:<28s} {text}"


def report_text(result: Mapping[str, Any]) -> str:
    config, setup, figures = result["config"], result["setup"], result["figures"]
    window = result["window"]
    capacity = config["printers"] / config["print_seconds"]
    ratio = figures["sustained_per_s"] / figures["arrival_per_s"]
    lines = [
        f"scale: {config['prints']:,} 4x6 prints ordered {config['prints_per_order']} per order; "
        f"{config['printers']} hot-folder minilabs x {config['print_seconds']:g} s per print "
        f"(capacity {capacity:.2f}/s); arrival {config['rate']:.2f} prints/s",
        f"lab: {', '.join(config['roles'])} ({config['layout']} layout,"
        f" raster -c {config['raster_concurrency']},"
        f" gunicorn {config['web_workers']} workers), PRODUCTION_POLL_SECONDS={config['poll_seconds']:g},"
        f" DATABASE_CONN_MAX_AGE={config['conn_max_age']}; {config['cores']} cores;"
        f" load average before {config['load_before']:.2f}, after {config['load_after']:.2f};"
        f" CPU calibration loop {config['calibration_ms'][0]:.0f} / {config['calibration_ms'][1]:.0f} ms",
        _line(
            "fed / printed / device",
            f"{setup['fed_prints']:,.0f} / {setup['printed_prints']:,.0f} / {setup['device_prints']:,.0f}"
            f" ({'all printed' if setup['drained'] else 'NOT all printed before the drain timeout'}),"
            f" failed jobs {figures['jobs_failed']:.0f}, bad print files {figures['bad_files']:.0f}",
        ),
        _line(
            "steady window",
            f"t={window['start_s']:.0f}..{window['end_s']:.0f} s ({figures['window_s']:.0f} s,"
            f" {figures['prints_in_window']:,.0f} prints),"
            f" mean load average {figures['load_average_mean']:.2f}",
        ),
        _line(
            "throughput",
            f"{figures['sustained_per_s']:.2f} prints/s printed ({ratio:.3f}x arrival"
            f" {figures['arrival_per_s']:.2f}/s; fed {figures['fed_per_s']:.2f}/s); minilabs"
            f" {figures['device_per_s']:.2f}/s,"
            f" busy {100 * figures['minilab_utilisation']:.1f} % of the time",
        ),
        _line(
            "lab backlog (not yet sent)",
            f"mean {figures['lab_backlog_mean']:.1f}, max {figures['lab_backlog_max']:.0f} prints; slope"
            f" {figures['lab_backlog_growth_per_min']:+.2f}/min"
            f" ({figures['lab_backlog_growth_pct']:+.2f} % of arrival);"
            f" broker max {figures['broker_max']:.0f} messages",
        ),
        _line(
            "at the minilabs",
            f"mean {figures['at_minilabs_mean']:.1f} jobs submitted (incl. printed, not yet polled); slope"
            f" {figures['at_minilabs_growth_per_min']:+.2f}/min",
        ),
    ]
    latency = result["latency"]
    lines.append(
        _line(
            "paid -> printed",
            f"p50 {latency['p50_s']:.1f} s, p95 {latency['p95_s']:.1f} s, max {latency['max_s']:.1f} s"
            f" ({latency['jobs']:,} jobs); by third of the window: "
            + ", ".join(
                f"p50 {third['p50_s']:.1f} / p95 {third['p95_s']:.1f}" for third in latency["thirds"]
            ),
        )
    )
    lines.append(
        _line(
            "  its parts (p50, s)",
            ", ".join(f"{name} {value:.2f}" for name, value in latency["parts_p50_s"].items()),
        )
    )
    lines.append(_line("memory (RSS, MiB)", "start -> end, slope per minute over the window"))
    for role, memory in result["memory"].items():
        lines.append(
            _line(
                f"  {role}",
                f"{memory['start_mib']:7.1f} -> {memory['end_mib']:7.1f}  max {memory['max_mib']:7.1f}"
                f"  {memory['slope_mib_per_min']:+.2f} MiB/min",
            )
        )
    lines.append(
        _line(
            "CPU per process",
            "cores over the window, ms of CPU per print paid (pg_*: backends alive at a sample; a worker's"
            " per-task connections are counted under the stages)",
        )
    )
    for role, cpu in result["cpu"].items():
        lines.append(_line(f"  {role}", f"{cpu['cores']:5.2f} cores  {cpu['ms_per_print']:7.1f} ms/print"))
    lines.append(
        _line("CPU per stage (tasks)", "worker ms + its PostgreSQL backend ms per print, SQL, cores")
    )
    for stage, cpu in result["stages"].items():
        lines.append(
            _line(
                f"  {stage}",
                f"{cpu['worker_ms_per_print']:6.1f} + {cpu['db_ms_per_print']:5.1f} ms/print"
                f" {cpu['queries_per_print']:5.1f} queries/print  {cpu['cores']:5.2f} cores"
                f"  ({cpu['runs']:,.0f} runs: {cpu['ms_per_run']:.1f} ms CPU,"
                f" {cpu['wall_ms_per_run']:.0f} ms wall, {cpu['queries_per_run']:.1f} queries each)",
            )
        )
    lines.append(
        _line(
            "web, setup and clients",
            f"12 MP upload {1000 * setup['upload_seconds']:.0f} ms,"
            f" {setup['upload_web_cpu_ms']:.0f} ms gunicorn CPU;"
            f" order + payment p50 {1000 * setup['order_and_payment_p50_s']:.0f} ms; client lag max"
            f" {setup['feed_lag_max_s']:.1f} s; storage written"
            f" {figures['storage_mib_per_print']:.2f} MiB/print",
        )
    )
    return "\n".join(lines)
