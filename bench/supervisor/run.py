"""Benchmark of the supervisor's view at 1,000,000 print jobs: every figure function's p50 over a 7-day and a
30-day range, against a plain `SELECT count(*)` of the jobs table in the same run.
Run from the checkout: `.venv/bin/python -m bench.supervisor.run [--jobs 1000000] [--days 365] [--runs 5]`."""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.audit.gate_run import bench_environment, database_drop, database_recreate, django_start

DATABASE = "printlab_bench_supervisor"
PRINTERS = 8
TARGET_MS = 1000.0  # per figure at 1M jobs (issue 13)
RANGES = (7, 30)
LOADED_TABLES = (
    "orders_order",
    "orders_orderitem",
    "orders_orderevent",
    "production_printjob",
    "production_jobevent",
)


@contextmanager
def bench_database(*, postgres: str, keep: bool = False) -> Iterator[None]:
    """A fresh, migrated `printlab_bench_supervisor` and a temporary LAB_VAR_DIR; both are removed after
    (the database stays with `keep`, for EXPLAIN; the next run drops it first)."""
    admin_url = postgres.rstrip("/") + "/postgres"
    with ExitStack() as stack:
        var_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-supervisor-"))
        database_recreate(admin_url=admin_url, name=DATABASE)
        try:
            django_start(
                bench_environment(database_url=f"{postgres.rstrip('/')}/{DATABASE}", var_dir=Path(var_dir))
            )
            from django.core.management import call_command

            call_command("migrate", "--noinput", verbosity=0)
            yield
        finally:
            from django.db import connections

            connections.close_all()
            if not keep:
                database_drop(admin_url=admin_url, name=DATABASE)


def _fixtures() -> tuple[int, str, list[int]]:
    """The rows every generated order points at: one product, one asset, PRINTERS printers."""
    from lab.catalog.models import Product
    from lab.orders.models import Asset
    from lab.production.models import Printer

    product = Product.objects.filter(sku="PRINT-4X6-LUSTRE").first() or Product.objects.create(
        sku="PRINT-4X6-LUSTRE", name="4x6 lustre", width_in=4, height_in=6, paper="lustre", price_minor=50
    )
    asset = Asset.objects.create(status=Asset.Status.READY)
    printers = [
        Printer.objects.create(
            name=f"bench-{index}", backend="hotfolder", target=f"bench-{index}", media_sizes=["4x6"]
        )
        for index in range(PRINTERS)
    ]
    # In the lab before the span the jobs are spread over: the printer-time figure counts a printer from
    # when it was added, and these were added now.
    Printer.objects.filter(pk__in=[printer.pk for printer in printers]).update(
        created_at=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    )
    return product.pk, str(asset.pk), [printer.pk for printer in printers]


# Each order is paid at an even step over the span; it holds two jobs. A job: created (no_printer), routed
# (queued) a minute later, waits 0 to 89 min for a raster worker, rasterizes for a minute, waits 3 to 22 min
# for its printer, prints for 8 minutes; every 50th fails at the printer instead; every 100th is reprinted 30
# minutes later. Events later than the bench's "now" are not written; each job's status is its last event's.
# Like the lab's, a status change made by job_move names the job's printer (and a failure its code); the
# `created` and `routed` events written with the job (jobs_create) and a reprint's request do not.
LOAD_SQL = """
CREATE TEMP TABLE bench_job AS
SELECT id, order_id, position, printer_id, created,
       created + interval '1 minute' AS queued,
       created + interval '1 minute' * (2 + id %% 90) AS rasterizing,
       created + interval '1 minute' * (3 + id %% 90) AS ready,
       created + interval '1 minute' * (6 + id %% 90 + id %% 20) AS submitted,
       created + interval '1 minute' * (14 + id %% 90 + id %% 20) AS finished,
       CASE WHEN id %% 50 = 0 THEN 'failed' ELSE 'printed' END AS outcome
FROM (
    SELECT (o - 1) * 2 + p AS id, o AS order_id, p AS position,
           (%(printers)s::int[])[1 + ((o - 1) * 2 + p) %% %(printer_count)s] AS printer_id,
           %(start)s::timestamptz + %(step)s * interval '1 second' * (o - 1) + interval '1 minute'
               + interval '10 seconds' * p AS created
    FROM generate_series(1, %(orders)s) AS o, generate_series(1, 2) AS p
) AS j;

INSERT INTO orders_order (id, ref, customer_id, guest_email, guest_token_hash, status, shipping_address,
    shipping_method, subtotal_minor, shipping_minor, total_minor, currency, payment_intent_id,
    payment_client_secret, payment_status, promised_by, hold_message, carrier, tracking_number, is_anonymized,
    created_at, updated_at, shipped_at, address_sealed)
SELECT o, 'PL-' || lpad(o::text, 12, '0'), NULL, 'bench@lab.example', '',
       CASE WHEN paid + shipped_after <= %(now)s THEN 'shipped' ELSE 'in_production' END, '{}',
       CASE WHEN o %% 5 = 0 THEN 'express' ELSE 'standard' END, 1000, 500, 1500, 'usd', '', '', 'succeeded',
       paid + CASE WHEN o %% 5 = 0 THEN interval '1 day' ELSE interval '3 days' END, '', '', '', false,
       paid - interval '5 minutes', paid,
       CASE WHEN paid + shipped_after <= %(now)s THEN paid + shipped_after END, ''
FROM (
    SELECT o, %(start)s::timestamptz + %(step)s * interval '1 second' * (o - 1) AS paid,
           CASE WHEN o %% 5 = 0 THEN interval '1 hour' * (12 + o %% 16)
                ELSE interval '1 hour' * (20 + o %% 60) END AS shipped_after
    FROM generate_series(1, %(orders)s) AS o
) AS generated;

INSERT INTO orders_orderevent (order_id, kind, from_status, to_status, actor_id, actor_kind, note, created_at)
SELECT id, 'status_changed', from_status, to_status, NULL, 'system', '', at
FROM orders_order, LATERAL (VALUES
    ('awaiting_payment', 'paid', updated_at),
    ('paid', 'in_production', updated_at + interval '1 minute'),
    ('ready_to_pack', 'shipped', shipped_at)
) AS steps (from_status, to_status, at)
WHERE at IS NOT NULL;

INSERT INTO orders_orderitem (id, order_id, position, product_id, asset_id, copies, sizing, unit_price_minor,
    line_total_minor, preflight, orientation, border_mm, print_orientation)
SELECT id, order_id, position, %(product)s, %(asset)s::uuid, 1 + id %% 3, 'fill', 50, 50 * (1 + id %% 3),
       '{}', 'auto', 0, ''
FROM bench_job;

INSERT INTO production_printjob (id, order_id, item_id, printer_id, status, copies, copies_verified,
    copies_rejected, raster_blob, raster_sha256, raster_width_px, raster_height_px, raster_engine,
    backend_job_id, backend_state,
    cancel_at_printer, backend_restarted, submit_attempts, claimed_by, failure_code, failure_message,
    failure_is_permanent, reprint_reason, reprint_request_key, title_token, created_at, updated_at,
    printed_at)
SELECT id, order_id, id, printer_id,
       CASE WHEN finished <= %(now)s THEN outcome WHEN submitted <= %(now)s THEN 'submitted'
            WHEN ready <= %(now)s THEN 'ready' WHEN rasterizing <= %(now)s THEN 'rasterizing'
            WHEN queued <= %(now)s THEN 'queued' ELSE 'no_printer' END,
       1 + id %% 3, 0, 0, '', '', 0, 0, '', '', '', false, false, 1, '',
       CASE WHEN outcome = 'failed' THEN 'printer_aborted' ELSE '' END, '', false, '', '',
       md5(id::text)::char(8), created, created,
       CASE WHEN outcome = 'printed' AND finished <= %(now)s THEN finished END
FROM bench_job;

INSERT INTO production_jobevent (job_id, printer_id, kind, from_status, to_status, failure_code, actor_id,
    note, created_at)
SELECT id, CASE WHEN moved THEN printer_id END, kind, from_status, to_status,
       CASE WHEN to_status = 'failed' THEN 'printer_aborted' ELSE '' END, NULL, '', at
FROM bench_job, LATERAL (VALUES
    ('created', '', 'no_printer', created, false),
    ('routed', 'no_printer', 'queued', queued, false),
    ('claimed', 'queued', 'rasterizing', rasterizing, true),
    ('rasterized', 'rasterizing', 'ready', ready, true),
    ('submitted', 'ready', 'submitted', submitted, true),
    (CASE WHEN outcome = 'failed' THEN 'backend_failed' ELSE 'printed' END, 'submitted', outcome, finished,
     true)
) AS steps (kind, from_status, to_status, at, moved)
WHERE at <= %(now)s;

INSERT INTO production_printjob (id, order_id, item_id, printer_id, status, copies, copies_verified,
    copies_rejected, raster_blob, raster_sha256, raster_width_px, raster_height_px, raster_engine,
    backend_job_id, backend_state,
    cancel_at_printer, backend_restarted, submit_attempts, claimed_by, failure_code, failure_message,
    failure_is_permanent, reprint_of_id, reprint_reason, reprint_request_key, title_token, created_at,
    updated_at, printed_at)
SELECT %(jobs)s + 1 + id / 100, order_id, id, printer_id, 'printed', 1, 0, 0, '', '', 0, 0, '', '', '', false,
       false, 1, '', '', '', false, id,
       (ARRAY['damaged', 'colour', 'crop', 'paper_jam', 'other'])[1 + (id / 100) %% 5], '',
       md5((-id)::text)::char(8),
       finished + interval '30 minutes', finished + interval '30 minutes', finished + interval '1 hour'
FROM bench_job WHERE id %% 100 = 7 AND finished + interval '1 hour' <= %(now)s;

INSERT INTO production_jobevent (job_id, printer_id, kind, from_status, to_status, actor_id, note, created_at)
SELECT id, CASE WHEN moved THEN printer_id END, kind, from_status, to_status, NULL, '', at
FROM production_printjob, LATERAL (VALUES
    ('reprint_requested', '', 'no_printer', created_at, false),
    ('submitted', 'ready', 'submitted', printed_at - interval '8 minutes', true),
    ('printed', 'submitted', 'printed', printed_at, true)
) AS steps (kind, from_status, to_status, at, moved)
WHERE reprint_of_id IS NOT NULL;

INSERT INTO production_jobevent (job_id, printer_id, kind, from_status, to_status, actor_id, note, created_at)
SELECT NULL, printer_id, 'printer_state', '', state, NULL, '', day + at
FROM unnest(%(printers)s::int[]) WITH ORDINALITY AS printers (printer_id, number),
     generate_series(%(start)s::timestamptz, %(now)s, interval '1 day') AS day,
     LATERAL (VALUES
        ('error', interval '10 hours' + interval '7 minutes' * number),
        ('online', interval '10 hours 20 minutes' + interval '7 minutes' * number),
        ('paused', interval '15 hours'),
        ('online', interval '15 hours 10 minutes')
     ) AS changes (state, at)
WHERE day + at <= %(now)s
"""


def _indexes_without_constraints(cursor: Any) -> list[tuple[str, str]]:
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes i WHERE tablename = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        [list(LOADED_TABLES)],
    )
    return list(cursor.fetchall())


def load(*, jobs: int, days: int, now: datetime.datetime) -> dict[str, float]:
    """Generate `jobs` jobs (their orders and events too) over `days` days up to now, in SQL; row counts."""
    from django.db import connection, transaction

    product, asset, printers = _fixtures()
    orders = jobs // 2
    start = now - timedelta(days=days)
    with transaction.atomic(), connection.cursor() as cursor:
        # A bulk load: the indexes are built once at the end, and the foreign keys (consistent by
        # construction) are not checked row by row; `replica` turns their triggers off for this transaction.
        cursor.execute("SET LOCAL session_replication_role = replica")
        indexes = _indexes_without_constraints(cursor)
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        parameters = {
            "orders": orders,
            "jobs": orders * 2,
            "start": start,
            "now": now,
            "step": days * 86400 / orders,
            "printers": printers,
            "printer_count": len(printers),
            "product": product,
            "asset": asset,
        }
        for statement in LOAD_SQL.split(";\n\n"):
            cursor.execute(statement, parameters)
        for _, definition in indexes:
            cursor.execute(definition)
    with connection.cursor() as cursor:
        for table in LOADED_TABLES:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        cursor.execute("VACUUM ANALYZE")
        counts = {}
        for table in LOADED_TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    return counts


def p50_ms(call: Callable[[], object], *, runs: int) -> float:
    call()  # warm: plans and caches, as on a page that is open all day
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def figure_calls(*, days: int, now: datetime.datetime) -> dict[str, Callable[[], object]]:
    from lab.production.alerts import orders_at_risk
    from lab.staff import supervisor, supervisor_timelines
    from lab.staff.views.supervisor import _figures

    today = now.date()
    filters = supervisor.Filters(
        start=datetime.datetime.combine(
            today - timedelta(days=days - 1), datetime.time.min, tzinfo=datetime.UTC
        ),
        end=datetime.datetime.combine(today + timedelta(days=1), datetime.time.min, tzinfo=datetime.UTC),
        printer_id=None,
    )
    return {
        "turnaround": lambda: supervisor.turnaround(filters=filters),
        "throughput": lambda: supervisor.throughput(filters=filters),
        "failures": lambda: supervisor.failures(filters=filters),
        "reprints": lambda: supervisor.reprints(filters=filters),
        "queue_depth": lambda: supervisor.queue_depth(printer_id=None),
        "orders_at_risk": lambda: orders_at_risk(now=now),
        "printer_time": lambda: supervisor_timelines.printer_time(filters=filters, now=now),
        "queue_history": lambda: supervisor_timelines.queue_history(now=now, printer_id=None),
        "reprint_rate": lambda: supervisor_timelines.reprint_rate(filters=filters),
        "whole_view": lambda: _figures(filters),  # every table of the page, as the view builds it
    }


def baseline_ms(*, runs: int) -> float:
    from django.db import connection

    def count() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM production_printjob")
            cursor.fetchone()

    return p50_ms(count, runs=runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000, help="print jobs to generate (two per order)")
    parser.add_argument("--days", type=int, default=365, help="the span the jobs are spread over, up to now")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per figure (after one warm-up call)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server URL, no db")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (for EXPLAIN)")
    arguments = parser.parse_args()
    now = datetime.datetime.now(tz=datetime.UTC).replace(second=0, microsecond=0)
    with bench_database(postgres=arguments.postgres, keep=arguments.keep):
        started = time.perf_counter()
        counts = load(jobs=arguments.jobs, days=arguments.days, now=now)
        loaded_s = time.perf_counter() - started
        print(
            f"generated in {loaded_s:.0f} s: "
            + ", ".join(f"{table} {count:,}" for table, count in counts.items()),
            flush=True,
        )
        baseline = baseline_ms(runs=arguments.runs)
        print(f"baseline SELECT count(*) FROM production_printjob: p50 {baseline:.1f} ms", flush=True)
        ranges: dict[str, dict[str, float]] = {}
        for days in RANGES:
            ranges[f"{days}d"] = {}
            for name, call in figure_calls(days=days, now=now).items():
                p50 = p50_ms(call, runs=arguments.runs)
                ranges[f"{days}d"][name] = p50
                verdict = "" if name == "whole_view" else ("met" if p50 <= TARGET_MS else "NOT met")
                print(
                    f"{days:>2}-day range  {name:<15} p50 {p50:8.1f} ms  {p50 / baseline:6.2f}x count(*)"
                    f"  {verdict}",
                    flush=True,
                )
    slowest = {
        key: max((value, name) for name, value in figures.items() if name != "whole_view")
        for key, figures in ranges.items()
    }
    print(
        f"target <= {TARGET_MS:.0f} ms per figure at {arguments.jobs:,} jobs: "
        + ", ".join(f"{key}: slowest {name} {value:.0f} ms" for key, (value, name) in slowest.items())
    )
    if arguments.json:
        arguments.json.write_text(
            json.dumps(
                {
                    "benchmark": "supervisor",
                    "jobs": arguments.jobs,
                    "days": arguments.days,
                    "runs": arguments.runs,
                    "rows": counts,
                    "load_s": loaded_s,
                    "baseline_count_ms": baseline,
                    "ranges": ranges,
                    "slowest_ms": {key: value for key, (value, _) in slowest.items()},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
