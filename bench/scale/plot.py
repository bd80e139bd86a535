"""The scale bench's picture: throughput, queue depth, latency, memory and CPU over time, one panel each,
from the samples and printed jobs of a run (matplotlib, written as a PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt

from bench.scale.analysis import Row, database_roles

RATE_WINDOW_SECONDS = 60.0
CPU_WINDOW_SECONDS = 30.0


def rolling_rate(rows: Sequence[Row], name: str, *, seconds: float) -> list[float]:
    """Per row: the growth of a cumulative column per second over the last `seconds` (fewer at the start)."""
    rates: list[float] = []
    first = 0
    for row in rows:
        while rows[first]["t"] < row["t"] - seconds:
            first += 1
        earlier = rows[first]
        span = row["t"] - earlier["t"]
        rates.append((row.get(name, 0.0) - earlier.get(name, 0.0)) / span if span > 0 else 0.0)
    return rates


def plot_write(
    path: Path,
    rows: Sequence[Row],
    jobs: Sequence[Mapping[str, Any]],
    *,
    arrival_per_s: float,
    title: str,
    steady: tuple[float, float],
    roles: Sequence[str],
) -> None:
    minutes = [row["t"] / 60 for row in rows]
    figure, axes = plt.subplots(5, 1, figsize=(12, 17), sharex=True)
    throughput, queues, latency, memory, cpu = axes

    for name, label in (
        ("fed_prints", "paid (arrivals)"),
        ("device_copies_done", "printed by the minilabs"),
        ("printed_copies", "printed in the lab's database (after the poll)"),
    ):
        throughput.plot(minutes, rolling_rate(rows, name, seconds=RATE_WINDOW_SECONDS), label=label)
    throughput.axhline(arrival_per_s, color="grey", linestyle="--", label=f"target {arrival_per_s:.2f}/s")
    throughput.set_ylabel("prints/s (60 s window)")

    def total(*names: str) -> list[float]:
        return [sum(row.get(name, 0.0) for name in names) for row in rows]

    for values, label in (
        (total("items_paid_unreleased"), "paid, not released"),
        (total("jobs_no_printer", "jobs_queued", "jobs_rasterizing"), "waiting for / in raster"),
        (total("jobs_ready", "jobs_submitting"), "ready / being sent"),
        (total("jobs_submitted"), "at the minilabs (incl. printed, not yet polled)"),
        (total("device_pending"), "tickets waiting in hot folders"),
        (total("broker_default", "broker_raster", "broker_print"), "broker messages"),
    ):
        queues.plot(minutes, values, label=label)
    queues.set_ylabel("jobs / prints")

    start_unix = rows[0]["unix"] - rows[0]["t"]
    latency.scatter(
        [(job["printed"] - start_unix) / 60 for job in jobs],
        [job["printed"] - job["paid"] for job in jobs],
        s=2,
        alpha=0.3,
        color="tab:blue",
        label="one job",
    )
    latency.plot(
        minutes,
        [row.get("latency_p50_s", float("nan")) for row in rows],
        color="tab:green",
        label="p50 (60 s)",
    )
    latency.plot(
        minutes, [row.get("latency_p95_s", float("nan")) for row in rows], color="tab:red", label="p95 (60 s)"
    )
    latency.set_ylabel("paid → printed, s")

    for role in (*roles, "pg", "redis", "device"):
        memory.plot(minutes, [row.get(f"rss_mib_{role}", 0.0) for row in rows], label=role)
    memory.set_ylabel("RSS, MiB (PostgreSQL: private)")

    for role in roles:
        cpu.plot(minutes, rolling_rate(rows, f"cpu_s_{role}", seconds=CPU_WINDOW_SECONDS), label=role)
    pg_rates = [
        rolling_rate(rows, f"cpu_s_{role}", seconds=CPU_WINDOW_SECONDS) for role in database_roles(roles)
    ]
    pg_cores = [sum(values) for values in zip(*pg_rates, strict=True)]
    cpu.plot(minutes, pg_cores, label="PostgreSQL (our backends)")
    for role in ("redis", "device", "bench"):
        cpu.plot(
            minutes,
            rolling_rate(rows, f"cpu_s_{role}", seconds=CPU_WINDOW_SECONDS),
            label=role,
            linestyle=":",
        )
    cpu.set_ylabel("CPU, cores (30 s window)")
    cpu.set_xlabel("minutes since the first paid order")

    for axis in axes:
        axis.axvspan(steady[0] / 60, steady[1] / 60, color="grey", alpha=0.08)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize=8)
    figure.suptitle(title + "\n(shaded: the steady window the summary's figures come from)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
