"""Benchmark of paid → printed: the time from an order's `paid` to its last job `printed`, on the real stack
with the lab's default settings, with the printer-events listener and without it (beat's poll only), in one
run. Run: .venv/bin/python -m bench.latency.run

The stack is started here and stopped by PID: a private PostgreSQL and Redis, a private cupsd with
ippeveprinter devices, localstripe, gunicorn, a Celery worker (-c 2) and Celery beat, and the listener
(`manage.py printer_events`) in the phases that have it. The harnesses are the test suite's
(`tests/support/`: the same processes the end-to-end tests start), imported, never copied. Orders are
created over the API beforehand and paid one by one, at random intervals around `--interval`, by a signed
Stripe webhook as Stripe sends it; the times are the database's own (`OrderEvent` paid, `JobEvent` printed).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from PIL import Image

from bench.throttles import throttles_lifted
from tests.support.cups import PrivateCups
from tests.support.http import call, multipart
from tests.support.postgres_server import PrivatePostgres
from tests.support.processes import Service, free_port, port_open, wait_for
from tests.support.redis_server import PrivateRedis
from tests.support.stripe_server import signed_event
from tests.support.web_server import PROJECT_DIR, LabWebServer, app_environment, django_manage

VENV_BIN = Path(sys.executable).parent
STRIPE_KEY, WEBHOOK_SECRET = "sk_test_bench_latency", "whsec_bench_latency"
MEDIA = ["na_index-4x6_4x6in"]
SKU = "PRINT-4X6-LUSTRE"
PHOTO_SIZE = (4000, 3000)  # 12 MP, a phone camera's frame
# Queues: the production recommendation (the ipp backend ends when the device has the document) and CUPS'
# default device URI (the backend then polls the device for the job's end: 1 s, 1 s, 2 s, ...).
QUEUE_NO_WAIT, QUEUE_CUPS_DEFAULT = "photo", "photo-waitjob"
# The settings a phase must not inherit from the caller's environment: the lab's defaults are measured.
SETTINGS_PREFIXES = ("PRODUCTION_", "PRINTER_EVENTS_", "NOTIFY_", "CELERY_TASK_")
# localstripe pickles its whole store to /tmp/localstripe.pickle after every write, a file every localstripe
# on the machine shares (bench/intake/run.py): keep this one's store in memory.
LOCALSTRIPE_IN_MEMORY = """
import sys
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
sys.exit(server.start())
"""
ADDRESS = {
    "name": "Bench Latency",
    "line1": "1 Quick St",
    "city": "Fast",
    "postal_code": "10001",
    "country": "US",
}


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    label: str
    listener: bool
    queue: str


PHASES = (
    PhaseSpec("events", "listener, waitjob=false (production)", listener=True, queue=QUEUE_NO_WAIT),
    PhaseSpec("poll_only", "poll only, waitjob=false", listener=False, queue=QUEUE_NO_WAIT),
    PhaseSpec("events_default_uri", "listener, CUPS' default URI", listener=True, queue=QUEUE_CUPS_DEFAULT),
)


@dataclass
class PhaseResult:
    spec: PhaseSpec
    paid_to_printed: list[float] = field(default_factory=list)
    paid_to_ready_to_pack: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    not_printed: int = 0
    load_before: float = 0.0
    load_after: float = 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "label": self.spec.label,
            "orders": len(self.paid_to_printed),
            "not_printed": self.not_printed,
            "p50_s": percentile(self.paid_to_printed, 50),
            "p95_s": percentile(self.paid_to_printed, 95),
            "max_s": max(self.paid_to_printed, default=None),
            "ready_to_pack_p50_s": percentile(self.paid_to_ready_to_pack, 50),
            "ready_to_pack_p95_s": percentile(self.paid_to_ready_to_pack, 95),
            "stage_p50_s": {name: percentile(values, 50) for name, values in self.stages.items()},
            "load_before": self.load_before,
            "load_after": self.load_after,
        }


def percentile(values: list[float], cut: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[cut - 1]


def photo_jpeg(*, seed: int) -> bytes:
    """A 12 MP JPEG that compresses like a photo: gradients under grain."""
    random.seed(seed)
    base = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").rotate(90).resize(PHOTO_SIZE),
            Image.linear_gradient("L").resize(PHOTO_SIZE),
            Image.radial_gradient("L").resize(PHOTO_SIZE),
        ),
    )
    grain = Image.effect_noise(PHOTO_SIZE, 40).convert("RGB")
    output = io.BytesIO()
    Image.blend(base, grain, 0.25).save(output, "JPEG", quality=90)
    return output.getvalue()


# --- The stack ---------------------------------------------------------------------------------------


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    database_url: str
    web: LabWebServer
    token: str = ""
    asset_id: str = ""
    services: dict[str, Service] = field(default_factory=dict)

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as connection:
            cursor = connection.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def start(self, name: str, args: list[str], *, ready: str = "", timeout: float = 120.0) -> None:
        log = self.root / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        service = Service(args, log=log, env=self.env, cwd=PROJECT_DIR).start()
        self.services[name] = service
        if ready:
            wait_for(lambda: ready in log.read_text(errors="replace")[offset:], timeout=timeout, what=name)

    def stop(self, name: str) -> None:
        service = self.services.pop(name, None)
        if service is not None:
            service.stop()

    def stop_all(self) -> None:
        for name in list(self.services):
            self.stop(name)


@contextlib.contextmanager
def stack_running(root: Path) -> Iterator[Stack]:
    with contextlib.ExitStack() as cleanup:
        postgres = cleanup.enter_context(PrivatePostgres())
        redis_server = cleanup.enter_context(PrivateRedis())
        cups = cleanup.enter_context(PrivateCups())
        cups.add_printer(QUEUE_NO_WAIT, media=MEDIA, media_ready=MEDIA, device_uri_options="waitjob=false")
        cups.add_printer(QUEUE_CUPS_DEFAULT, media=MEDIA, media_ready=MEDIA)
        stripe_port = free_port()
        database_url = postgres.create_database("lab")
        env = {
            name: value
            for name, value in app_environment(
                database_url=database_url,
                broker_url=redis_server.url(db=0),
                var_dir=root / "var",
                extra={
                    "LAB_DEMO_SECRETS": "true",
                    "STRIPE_SECRET_KEY": STRIPE_KEY,
                    "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
                    "CUPS_SERVER": cups.server,
                    "PASSWORD_HASHERS": "django.contrib.auth.hashers.MD5PasswordHasher",
                    **throttles_lifted(),
                    "DJANGO_SETTINGS_MODULE": "lab.settings",
                },
            ).items()
            if not name.startswith(SETTINGS_PREFIXES)
        }
        django_manage("migrate", "--no-input", "-v", "0", env=env)
        django_manage("seed_demo", env=env)
        django_manage("printers_sync", "--server", cups.server, "--papers", "lustre,glossy", env=env)
        web = LabWebServer(work_dir=root / "web", env=env)
        stack = Stack(root=root, env=env, database_url=database_url, web=web)
        cleanup.callback(stack.stop_all)
        stack.start("localstripe", [sys.executable, "-c", LOCALSTRIPE_IN_MEMORY, "--port", str(stripe_port)])
        wait_for(lambda: port_open(stripe_port), timeout=90, what="localstripe")
        web.start()
        cleanup.callback(web.stop)
        # Only the CUPS queues print: the demo hot folder is out of service.
        stack.sql("UPDATE production_printer SET is_paused_by_lab = true WHERE backend = 'hotfolder'")
        celery = str(VENV_BIN / "celery")
        stack.start(
            "worker",
            [celery, "-A", "workers", "worker", "-Q", "default,raster,print,webhooks,fetch,audit", "-c", "2",
             "--without-mingle", "--without-gossip", "-n", f"bench-latency-{os.getpid()}@%h",
             "--loglevel", "INFO"],
            ready=" ready.",
        )  # fmt: skip
        stack.start(
            "beat",
            [celery, "-A", "workers", "beat", "--schedule", str(root / "beat-schedule"), "-l", "INFO"],
            ready="beat: Starting",
        )
        customer_prepare(stack)
        yield stack


def customer_prepare(stack: Stack) -> None:
    status, account = call(
        stack.web.url,
        "POST",
        "/api/v1/accounts",
        json.dumps(
            {
                "email": "latency@example.org",
                "password": "a long latency secret 42",
                "full_name": "Bench Latency",
                "address": ADDRESS,
                "birth_date": "1980-01-01",
                "privacy_policy_version": "1.0",
            }
        ).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 201, account
    stack.token = account["token"]
    body, content_type = multipart("file", "photo.jpg", photo_jpeg(seed=7))
    status, asset = call(
        stack.web.url,
        "POST",
        "/api/v1/assets",
        body,
        {"Authorization": f"Token {stack.token}", "Content-Type": content_type},
    )
    assert status == 201, asset
    stack.asset_id = asset["id"]


def order_place(stack: Stack) -> dict[str, Any]:
    body = {
        "items": [{"sku": SKU, "asset": stack.asset_id, "copies": 1, "sizing": "fill"}],
        "shipping_method": "standard",
        "shipping_address": ADDRESS,
    }
    status, order = call(
        stack.web.url,
        "POST",
        "/api/v1/orders",
        json.dumps(body).encode(),
        {
            "Authorization": f"Token {stack.token}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert status == 201, order
    return dict(order)


def order_pay(stack: Stack, order: dict[str, Any]) -> None:
    payload, header = signed_event(
        event_type="payment_intent.succeeded",
        data_object={
            "id": order["payment"]["payment_intent"],
            "object": "payment_intent",
            "amount": order["total_minor"],
            "amount_received": order["total_minor"],
        },
        secret=WEBHOOK_SECRET,
        event_id=f"evt_{uuid.uuid4().hex}",
    )
    status, answer = call(
        stack.web.url,
        "POST",
        "/api/v1/webhooks/stripe",
        payload,
        {"Content-Type": "application/json", "Stripe-Signature": header},
    )
    assert 200 <= status < 300, (status, answer)


# --- A phase -----------------------------------------------------------------------------------------


def phase_run(stack: Stack, spec: PhaseSpec, *, orders: int, interval: float, seed: int) -> PhaseResult:
    """Pay `orders` orders one by one and wait until each is ready to pack (or stuck for a person)."""
    stack.sql(
        "UPDATE production_printer SET is_paused_by_lab = (name <> %s) WHERE backend = 'cups'",
        spec.queue,
    )
    if spec.listener and "listener" not in stack.services:
        stack.start("listener", [sys.executable, "manage.py", "printer_events"], ready="watching server=")
    if not spec.listener:
        stack.stop("listener")
    placed = [order_place(stack) for _ in range(orders)]
    pacing = random.Random(seed)
    result = PhaseResult(spec=spec, load_before=os.getloadavg()[0])
    print(f"--- {spec.name}: {spec.label}; {orders} orders", file=sys.stderr, flush=True)
    for order in placed:
        order_pay(stack, order)
        time.sleep(interval * pacing.uniform(0.5, 1.5))
    refs = [order["ref"] for order in placed]
    settle_deadline = time.monotonic() + 120
    while time.monotonic() < settle_deadline and settling(stack, refs):
        time.sleep(0.5)
    result.load_after = os.getloadavg()[0]
    measure(stack, refs, result)
    return result


def settling(stack: Stack, refs: list[str]) -> bool:
    """Some order is still on its way: not ready to pack, and no job of it waits for a person."""
    rows = stack.sql(
        "SELECT o.ref, o.status, bool_or(j.status IN ('suspect', 'unknown', 'failed')) FROM orders_order o "
        "LEFT JOIN production_printjob j ON j.order_id = o.id WHERE o.ref = ANY(%s) GROUP BY o.ref, o.status",
        refs,
    )
    return any(status != "ready_to_pack" and not stuck for _, status, stuck in rows)


def measure(stack: Stack, refs: list[str], result: PhaseResult) -> None:
    rows = stack.sql(
        """
        SELECT o.ref,
               (SELECT min(e.created_at) FROM orders_orderevent e
                 WHERE e.order_id = o.id AND e.to_status = 'paid'),
               (SELECT min(e.created_at) FROM orders_orderevent e
                 WHERE e.order_id = o.id AND e.to_status = 'ready_to_pack'),
               bool_and(j.status = 'printed'),
               max(p.created_at), max(c.created_at), max(r.created_at), max(s.created_at)
          FROM orders_order o
          JOIN production_printjob j ON j.order_id = o.id
          LEFT JOIN production_jobevent p ON p.job_id = j.id AND p.kind = 'printed'
          LEFT JOIN production_jobevent c ON c.job_id = j.id AND c.kind = 'created'
          LEFT JOIN production_jobevent r ON r.job_id = j.id AND r.kind = 'rasterized'
          LEFT JOIN production_jobevent s ON s.job_id = j.id AND s.kind = 'submitted'
         WHERE o.ref = ANY(%s)
         GROUP BY o.id, o.ref
        """,
        refs,
    )
    stages: dict[str, list[float]] = {
        "paid_to_released": [],
        "released_to_rasterized": [],
        "rasterized_to_submitted": [],
        "submitted_to_printed": [],
    }
    for _, paid, ready, all_printed, printed, created, rasterized, submitted in rows:
        if not all_printed or printed is None:
            result.not_printed += 1
            continue
        result.paid_to_printed.append((printed - paid).total_seconds())
        if ready is not None:
            result.paid_to_ready_to_pack.append((ready - paid).total_seconds())
        if None not in (created, rasterized, submitted):
            stages["paid_to_released"].append((created - paid).total_seconds())
            stages["released_to_rasterized"].append((rasterized - created).total_seconds())
            stages["rasterized_to_submitted"].append((submitted - rasterized).total_seconds())
            stages["submitted_to_printed"].append((printed - submitted).total_seconds())
    result.not_printed += len(refs) - len(rows)
    result.stages = stages


# --- Report ------------------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(results: list[PhaseResult], *, arguments: argparse.Namespace) -> None:
    print(
        f"\npaid -> printed, {arguments.orders} orders per phase (one 4x6 print of a 12 MP JPEG each), paid "
        f"every {arguments.interval:g} s +-50 %; default settings; {os.cpu_count()} cores",
        file=sys.stderr,
    )
    header = f"{'phase':40} {'orders':>6} {'p50 s':>6} {'p95 s':>6} {'max s':>6} {'->pack p50':>10} load"
    print(header, file=sys.stderr)
    for result in results:
        figures = result.figures()
        print(
            f"{result.spec.label:40} {figures['orders']:>6} {seconds(figures['p50_s']):>6} "
            f"{seconds(figures['p95_s']):>6} {seconds(figures['max_s']):>6} "
            f"{seconds(figures['ready_to_pack_p50_s']):>10} "
            f"{result.load_before:>4.1f}->{result.load_after:<4.1f}",
            file=sys.stderr,
        )
        stages = ", ".join(f"{name} {seconds(value)}" for name, value in figures["stage_p50_s"].items())
        print(f"{'':40} stage p50 s: {stages}", file=sys.stderr)
        if result.not_printed:
            print(f"{'':40} NOT printed (suspect/failed/timeout): {result.not_printed}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=40, help="orders paid per phase (default 40)")
    # Far enough apart that the worker (-c 2) is not saturated on a shared 2-core machine: this measures the
    # pipeline's latency, not its queueing (bench/scale measures throughput).
    parser.add_argument("--interval", type=float, default=2.5, help="mean s between payments (default 2.5)")
    parser.add_argument("--warmup", type=int, default=3, help="orders paid and not counted first (default 3)")
    parser.add_argument(
        "--phases",
        default=",".join(spec.name for spec in PHASES),
        help=f"comma-separated subset of: {', '.join(spec.name for spec in PHASES)}",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs) and print it")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    arguments = parser.parse_args()
    chosen = [spec for spec in PHASES if spec.name in arguments.phases.split(",")]
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    try:
        with stack_running(root) as stack:
            if arguments.warmup:
                phase_run(stack, PHASES[0], orders=arguments.warmup, interval=arguments.interval, seed=0)
            results = [
                phase_run(
                    stack, spec, orders=arguments.orders, interval=arguments.interval, seed=arguments.seed
                )
                for spec in chosen
            ]
    finally:
        if arguments.keep:
            print(f"logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(results, arguments=arguments)
    print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if arguments.json:
        arguments.json.write_text(
            json.dumps(
                {
                    "benchmark": "latency",
                    "orders": arguments.orders,
                    "interval_s": arguments.interval,
                    "phases": {result.spec.name: result.figures() for result in results},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
