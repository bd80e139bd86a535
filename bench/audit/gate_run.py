"""Benchmark of the image access gate and the audit chain on PostgreSQL: decision + audit write apart from
preview rendering, a bare INSERT, 8 writer processes. Run: .venv/bin/python -m bench.audit.gate_run"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from PIL import Image, ImageDraw, ImageFilter

if TYPE_CHECKING:
    from lab.accounts.models import User
    from lab.audit.records import Entry, RequestMeta
    from lab.gate.rules import AccessRequest
    from lab.orders.models import Order

ROOT = Path(__file__).resolve().parents[2]
TARGET_P95_MS = 2.0
WARMUP_CALLS = 20
PROBE_CALLS = 50  # untimed calls per line that count statements and the time spent inside them
PERCENTILES = (50, 95, 99)
JUSTIFICATION = "check the crop on the print"
# Environment variables left out of the run: a shared Redis cache, keys other than the fresh ones the settings
# create under the temporary LAB_VAR_DIR, and DEBUG (which would keep every query in memory).
SHARED_SETTINGS = (
    "CACHE_URL",
    "LAB_MASTER_KEY",
    "AUDIT_SIGNING_KEY",
    "AUDIT_RECORD_KEY",
    "AUDIT_RECORD_KEY_FILE",
    "AUDIT_WITNESS",
    "DEBUG",
)


# --- The database and Django ------------------------------------------------------------------------


def database_recreate(*, admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def database_drop(*, admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_environment(*, database_url: str, var_dir: Path) -> dict[str, str]:
    """What this process and every writer run with: the bench database and everything else under var_dir."""
    env = {name: value for name, value in os.environ.items() if name not in SHARED_SETTINGS}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "lab.settings",
        "DATABASE_URL": database_url,
        "LAB_VAR_DIR": str(var_dir),
        "LAB_STORAGE_DIR": str(var_dir / "storage"),
        "HOTFOLDER_ROOT": str(var_dir / "spool"),
        # Tasks enqueued on commit (release, notifications) land in a folder nobody consumes, never in a
        # shared broker whose workers would look for these rows in another database.
        "CELERY_BROKER_URL": "filesystem://",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        # Throw-away keys generated in the temporary LAB_VAR_DIR, never the environment's real ones.
        "LAB_DEMO_SECRETS": "true",
    }


def django_start(env: dict[str, str]) -> None:
    for name in SHARED_SETTINGS:
        os.environ.pop(name, None)
    os.environ.update(env)
    import django

    django.setup()


@contextmanager
def logs_to(path: Path) -> Iterator[None]:
    """The lab logs a line per access at INFO, as in production: into a file here, so the report stays
    readable and the cost of formatting and writing the line stays in the figures."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    with open(path, "a") as log:
        previous = [handler.setStream(log) for handler in handlers]
        try:
            yield
        finally:
            for handler, stream in zip(handlers, previous, strict=True):
                handler.setStream(stream or sys.stderr)


@contextmanager
def bench_database(arguments: argparse.Namespace) -> Iterator[dict[str, str]]:
    """A fresh, migrated database and a temporary LAB_VAR_DIR (master and signing keys, blobs); both go."""
    admin_url = arguments.postgres.rstrip("/") + "/postgres"
    database_url = arguments.postgres.rstrip("/") + "/" + arguments.database
    with ExitStack() as stack:
        var_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-audit-gate-"))
        database_recreate(admin_url=admin_url, name=arguments.database)
        try:
            env = bench_environment(database_url=database_url, var_dir=Path(var_dir))
            django_start(env)
            stack.enter_context(logs_to(Path(var_dir) / "lab.log"))
            from django.core.management import call_command

            call_command("migrate", "--noinput", verbosity=0)
            yield env
        finally:
            from django.db import connections

            connections.close_all()
            database_drop(admin_url=admin_url, name=arguments.database)


# --- The lab: a technician, an active print job and a finished one ----------------------------------


def photo_jpeg(*, size: tuple[int, int], seed: int) -> bytes:
    """A deterministic JPEG that compresses like a photo (gradients, sensor-like noise, hard edges), so the
    preview's decrypt and decode cost what a customer's upload costs."""
    width, height = size
    rng = random.Random(seed)
    gradients = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").rotate(90).resize(size),
            Image.linear_gradient("L").resize(size),
            Image.radial_gradient("L").resize(size),
        ),
    )
    noise = Image.merge(
        "RGB", [Image.frombytes("L", size, rng.randbytes(width * height)) for _ in range(3)]
    ).filter(ImageFilter.GaussianBlur(0.8))
    photo = Image.blend(gradients, noise, 0.35)
    draw = ImageDraw.Draw(photo)
    for _ in range(40):
        x, y, radius = rng.randrange(width), rng.randrange(height), rng.randrange(20, max(21, width // 10))
        shade = rng.randrange(256)
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius),
            outline=(shade, 255 - shade, shade // 2),
            width=rng.randrange(2, 12),
        )
    output = io.BytesIO()
    photo.save(output, "JPEG", quality=90)
    return output.getvalue()


@dataclass(frozen=True)
class Lab:
    technician_id: int
    active: AccessRequest  # printing, on a queued print job: granted
    finished: AccessRequest  # printing, on a cancelled print job: denied (print_job_not_active)
    meta: RequestMeta


def _released_order(*, customer: User, photo: bytes) -> Order:
    """A paid one-item 4x6 order of one photo, released to production (its job is queued on the printer)."""
    from django.db import transaction

    from lab.catalog.models import Product
    from lab.orders.models import Order, OrderItem
    from lab.orders.photos import asset_create_from_upload
    from lab.orders.transitions import order_locked, order_transition
    from lab.production.routing import order_release

    asset = asset_create_from_upload(owner=customer, data=photo)
    order = Order.objects.create(
        customer=customer,
        shipping_address={"name": "Bench Customer"},
        shipping_method="standard",
        subtotal_minor=35,
        shipping_minor=0,
        total_minor=35,
        currency="usd",
    )
    OrderItem.objects.create(
        order=order,
        position=1,
        product=Product.objects.get(sku="PRINT-4X6-LUSTRE"),
        asset=asset,
        copies=1,
        sizing="fill",
        unit_price_minor=35,
        line_total_minor=35,
    )
    with transaction.atomic():
        order_transition(order=order_locked(order_id=order.pk), to_status="paid")
    order_release(order_id=order.pk)
    return order


def lab_build(*, photo: bytes) -> Lab:
    from django.conf import settings
    from django.contrib.auth.models import Group

    from lab.accounts.models import User
    from lab.audit.records import RequestMeta
    from lab.catalog.demo import catalog_seed_demo
    from lab.gate.rules import AccessRequest
    from lab.production.jobs import job_move
    from lab.production.models import Printer, PrintJob
    from lab.production.states import JobStatus

    catalog_seed_demo()
    (Path(settings.HOTFOLDER_ROOT) / "minilab").mkdir(parents=True, exist_ok=True)
    Printer.objects.create(
        name="minilab", backend="hotfolder", target="minilab", media_sizes=["4x6"], papers=["lustre"]
    )
    customer = User.objects.create_user("customer@bench.invalid", full_name="Bench Customer")
    technician = User.objects.create_user("technician@bench.invalid", full_name="Bench Technician")
    technician.groups.add(Group.objects.get_or_create(name="technician")[0])

    jobs = []
    for _ in range(2):
        order = _released_order(customer=customer, photo=photo)
        jobs.append(PrintJob.objects.select_related("item").get(order=order))
    active, finished = jobs
    if active.status != JobStatus.QUEUED:
        raise RuntimeError(f"the print job was not queued on the printer: {active.status}")
    job_move(job_id=finished.pk, from_statuses={JobStatus.QUEUED}, to_status=JobStatus.CANCELLED)

    def request(job: PrintJob) -> AccessRequest:
        return AccessRequest(
            asset_id=str(job.item.asset_id),
            purpose="printing",
            justification=JUSTIFICATION,
            context_type="print_job",
            context_id=str(job.pk),
            variant="preview",
        )

    return Lab(
        technician_id=technician.pk,
        active=request(active),
        finished=request(finished),
        meta=RequestMeta(client_ip="10.1.2.3", user_agent="bench/gate_run", request_id="bench-request-0001"),
    )


# --- Phase 1: one caller, latency per call ----------------------------------------------------------


@dataclass
class Line:
    label: str
    call: Callable[[User], None]
    note: str = ""
    asks_as_caller: bool = True  # the gate's lines get the caller fresh from the database, as a request would
    latencies_ms: list[float] = field(default_factory=list)
    queries: float = 0.0  # statements per call
    sql_ms: float = 0.0  # time per call inside cursor.execute: driver + round trip + server
    round_trips: float = 0.0  # messages per call that wait for the server's answer, COMMIT included

    def percentile(self, cut: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[cut - 1]


def gate_entry(
    *, user: User, request: AccessRequest, rule: str, order_ref: str | None, digest: str, meta: RequestMeta
) -> Entry:
    """The Entry lab.gate.access.image_access writes for a granted preview (same fields, same values)."""
    from lab.accounts.roles import primary_role
    from lab.audit.records import Entry
    from lab.gate.variants import VARIANT_ACTIONS

    return Entry(
        action=VARIANT_ACTIONS[request.variant],
        actor_id=str(user.public_id),
        actor_role=primary_role(user),
        outcome="granted",
        rule=rule,
        purpose=request.purpose,
        justification=request.justification,
        asset_id=request.asset_id,
        order_ref=order_ref,
        context_type=request.context_type,
        context_id=request.context_id,
        content_sha256=digest,
        meta=meta,
    )


def phase_one_lines(lab: Lab) -> list[Line]:
    from django.db import transaction

    from lab.accounts.models import User
    from lab.accounts.roles import primary_role
    from lab.audit.records import audit_append
    from lab.gate import access as gate
    from lab.gate.facts import facts_gather
    from lab.gate.grants import grant_for
    from lab.gate.refusals import AccessDenied
    from lab.gate.rules import request_decide

    technician = User.objects.get(pk=lab.technician_id)
    digest = gate.image_access(user=technician, request=lab.active, meta=lab.meta).sha256

    def whole_call(user: User) -> None:
        gate.image_access(user=user, request=lab.active, meta=lab.meta)

    def decision_and_write(user: User) -> None:
        # image_access step by step, minus vault_read, _render and the sha256 of the rendered bytes.
        facts = facts_gather(user=user, request=lab.active)
        asset = facts.asset
        decision = request_decide(user=user, role=primary_role(user), request=lab.active, facts=facts)
        if not decision.granted or asset is None:
            raise RuntimeError(f"the active job's preview was refused: {decision.rule}")
        entry = gate_entry(
            user=user,
            request=lab.active,
            rule=decision.rule,
            order_ref=decision.order_ref,
            digest=digest,
            meta=lab.meta,
        )
        with transaction.atomic():
            grant = grant_for(user=user, asset=asset, request=lab.active, now=facts.now, live=facts.grant)
            follows = gate._written_after_delivery(grant=grant, request=lab.active)
            record = audit_append(entry, ends_transaction=not follows)
            if follows:
                gate._after_delivery(grant=grant, record=record)

    def denied_call(user: User) -> None:
        try:
            gate.image_access(user=user, request=lab.finished, meta=lab.meta)
        except AccessDenied as denied:
            if denied.details.get("rule") != "print_job_not_active":
                raise
            return
        raise RuntimeError("a finished print job's photo was shown")

    fixed_entry = gate_entry(
        user=technician,
        request=lab.active,
        rule="active_print_job",
        order_ref="PL-BENCH",
        digest=digest,
        meta=lab.meta,
    )

    def append_alone(user: User) -> None:
        with transaction.atomic():
            audit_append(fixed_entry, ends_transaction=True)

    plain_insert = raw_insert(table="bench_plain_record")
    indexed_insert = raw_insert(table="bench_indexed_record")
    return [
        Line("(a) image_access, granted preview", whole_call, "decision + decrypt + render + write"),
        Line("(b1) decision + audit write", decision_and_write, "(a) without decrypt/render/sha256"),
        Line("(b2) image_access, denied", denied_call, "decision + revoke + write, no image"),
        Line("(b3) audit_append alone", append_alone, "lane lock + hash + insert + commit", False),
        Line("(c1) INSERT, plain table", lambda user: plain_insert(), "same row, primary key only", False),
        Line(
            "(c2) INSERT, audit's indexes", lambda user: indexed_insert(), "same row, PK + 6 indexes", False
        ),
    ]


def baseline_tables_create() -> None:
    """Two plain tables with the audit record's columns and no triggers: one with only a primary key, one
    with every index of the audit table. Inserting the same row into them is the INSERT without the chain."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_plain_record (LIKE audit_auditrecord INCLUDING DEFAULTS)")
        cursor.execute("ALTER TABLE bench_plain_record ADD PRIMARY KEY (seq)")
        cursor.execute("CREATE TABLE bench_indexed_record (LIKE audit_auditrecord INCLUDING ALL)")


def raw_insert(*, table: str, first: int = 1) -> Callable[[], None]:
    """One autocommit INSERT (its own transaction and commit, like audit_append's) of the latest audit row's
    values, with a fresh seq, lane position and hash so the unique indexes see new keys."""
    from django.db import connection

    from lab.audit.models import AuditRecord

    template = AuditRecord.objects.order_by("-seq").values().first()
    if template is None:
        raise RuntimeError("no audit record to copy the row from")
    columns = list(template)
    statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    counter = iter(range(first, first + 10**9))

    def insert() -> None:
        seq = next(counter)
        row: dict[str, Any] = {**template, "seq": seq, "lane_seq": seq, "hash": f"{seq:064x}"}
        with connection.cursor() as cursor:
            cursor.execute(statement, [row[name] for name in columns])

    return insert


@contextmanager
def round_trips_counted() -> Iterator[Callable[[], int]]:
    """Round trips on Django's connection meanwhile, from libpq's own trace of the messages it sends: each
    simple-protocol Query, and each Sync that ends an extended-protocol statement, waits for the server's
    answer (BEGIN and COMMIT are Queries). The count is there once the block has ended."""
    from django.db import connection
    from psycopg import pq

    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    count = 0
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield lambda: count
        finally:
            pgconn.untrace()
            trace.seek(0)
            sent = [line.split("\t") for line in trace.read().decode(errors="replace").splitlines()]
            count = sum(1 for parts in sent if parts[0] == "F" and parts[2:3] in (["Query"], ["Sync"]))


def run_phase_one(lines: list[Line], *, technician_id: int, calls: int, rounds: int) -> None:
    """Every line calls/rounds times per round, rounds interleaved, so a drift in background load hits all
    lines alike. The gate's caller is fetched fresh (outside the timing) before each call, like a request."""
    from django.db import connection

    from lab.accounts.models import User

    technician = User.objects.get(pk=technician_id)

    def caller(line: Line) -> User:
        return User.objects.get(pk=technician_id) if line.asks_as_caller else technician

    statements: list[float] = []

    def timed(execute: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(*args)
        finally:
            statements.append((time.perf_counter() - started) * 1000)

    for line in lines:
        for _ in range(WARMUP_CALLS):
            line.call(caller(line))
        statements.clear()
        trips = 0
        for _ in range(PROBE_CALLS):
            user = caller(line)
            with connection.execute_wrapper(timed), round_trips_counted() as counted:
                line.call(user)
            trips += counted()
        line.queries, line.sql_ms = len(statements) / PROBE_CALLS, sum(statements) / PROBE_CALLS
        line.round_trips = trips / PROBE_CALLS
    for round_number in range(rounds):
        share = calls // rounds + (1 if round_number < calls % rounds else 0)
        for line in lines:
            for _ in range(share):
                user = caller(line)
                started = time.perf_counter()
                line.call(user)
                line.latencies_ms.append((time.perf_counter() - started) * 1000)
        print(f"  phase 1 round {round_number + 1}/{rounds} measured", file=sys.stderr, flush=True)


def report_phase_one(
    lines: list[Line], *, calls: int, rounds: int, photo: bytes, size: tuple[int, int]
) -> None:
    by_key = {line.label.split(")")[0] + ")": line for line in lines}
    print(
        f"phase 1: one caller, {calls} calls per line in {rounds} interleaved rounds after {WARMUP_CALLS} "
        f"warm-up; photo {size[0]}x{size[1]} JPEG, {len(photo) / 1e6:.2f} MB, preview 512 px"
    )
    print(
        f"{'':38s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'mean ms':>8s} {'stmts':>6s} {'in SQL':>7s}"
        f" {'trips':>6s}"
    )
    for line in lines:
        p50, p95, p99 = (line.percentile(cut) for cut in PERCENTILES)
        print(
            f"{line.label:38s} {p50:8.3f} {p95:8.3f} {p99:8.3f} {statistics.fmean(line.latencies_ms):8.3f} "
            f"{line.queries:6.1f} {line.sql_ms:7.3f} {line.round_trips:6.1f}  {line.note}"
        )
    print(
        f"  stmts / in SQL: statements per call and ms per call inside cursor.execute ({PROBE_CALLS} untimed "
        "calls); COMMIT is not a statement there, except in (c), whose autocommit INSERT commits inside it."
        " trips: round trips per call (libpq's trace), BEGIN and COMMIT included"
    )
    print("ratios (p50 / p50, p95 / p95):")
    for ours, base in (
        ("(a)", "(b1)"),
        ("(b1)", "(c1)"),
        ("(b1)", "(c2)"),
        ("(b2)", "(c1)"),
        ("(b3)", "(c1)"),
        ("(b3)", "(c2)"),
    ):
        mine, baseline = by_key[ours], by_key[base]
        print(
            f"  {mine.label:38s} / {baseline.label:34s} "
            f"p50 {mine.percentile(50) / baseline.percentile(50):6.2f}x  "
            f"p95 {mine.percentile(95) / baseline.percentile(95):6.2f}x"
        )
    image_share = by_key["(a)"].percentile(50) - by_key["(b1)"].percentile(50)
    print(f"image work (decrypt + render + sha256), p50(a) - p50(b1): {image_share:.3f} ms")
    for key in ("(b1)", "(b2)"):
        p95 = by_key[key].percentile(95)
        verdict = "met" if p95 <= TARGET_P95_MS else "NOT met"
        print(f"target decision + audit write p95 <= {TARGET_P95_MS:.0f} ms, {key}: {p95:.3f} ms, {verdict}")


# --- Phase 2: concurrent writer processes -----------------------------------------------------------


@dataclass(frozen=True)
class WriterResult:
    started: float
    finished: float
    latencies_ms: list[float]


def writer_main(*, appends: int, index: int, baseline: bool = False) -> None:
    """One writer process: set up, say ready, wait for "go" on stdin, append, report as one JSON line.
    baseline: instead of audit_append, the autocommit INSERT of line (c2) into the table with the audit's
    indexes (no chain, no lane, no trigger), each writer with its own seqs."""
    import django

    django.setup()
    from django.db import connection, transaction

    from lab.accounts.services import policy_current
    from lab.audit.records import Entry, RequestMeta, audit_append

    connection.ensure_connection()
    policy_current()
    if baseline:
        insert = raw_insert(table="bench_indexed_record", first=(index + 1) * 10**8)
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("writer: no go signal")
        latencies: list[float] = []
        started = time.time()
        for _ in range(appends):
            begun = time.perf_counter()
            insert()
            latencies.append((time.perf_counter() - begun) * 1000)
        finished = time.time()
        print(json.dumps({"started": started, "finished": finished, "latencies_ms": latencies}), flush=True)
        return
    entries = [
        Entry(
            action="image.view.preview",
            actor_id=f"bench-writer-{index}",
            actor_role="technician",
            outcome="granted",
            rule="active_print_job",
            purpose="printing",
            justification=JUSTIFICATION,
            asset_id=f"asset-{index}-{number}",
            order_ref=f"PL-W{index}-{number // 10}",
            context_type="print_job",
            context_id=str(number),
            content_sha256=f"{index * 1_000_003 + number:064x}",
            meta=RequestMeta(client_ip="10.0.0.9", user_agent="bench", request_id=f"w{index}-{number}"),
        )
        for number in range(appends)
    ]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("writer: no go signal")
    latencies = []
    started = time.time()
    for entry in entries:
        begun = time.perf_counter()
        with transaction.atomic():
            audit_append(entry, ends_transaction=True)
        latencies.append((time.perf_counter() - begun) * 1000)
    finished = time.time()
    print(json.dumps({"started": started, "finished": finished, "latencies_ms": latencies}), flush=True)


def run_writers(
    *, env: dict[str, str], writers: int, appends: int, baseline: bool = False
) -> tuple[list[WriterResult], float]:
    """Start the writers, wait until every one is connected and ready, release them together."""
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.audit.gate_run",
                "--writer",
                str(appends),
                "--writer-index",
                str(i),
                *(["--writer-baseline"] if baseline else []),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"writer {process.pid} did not start: exit {process.wait(timeout=30)}")
        released = time.perf_counter()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"writer {process.pid} failed: exit {process.wait(timeout=30)}")
            payload = json.loads(line)
            results.append(WriterResult(payload["started"], payload["finished"], payload["latencies_ms"]))
        wall = time.perf_counter() - released
        codes = [process.wait(timeout=60) for process in processes]
        if any(codes):
            raise RuntimeError(f"writers exited with {codes}")
        return results, wall
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def _rate(results: list[WriterResult]) -> float:
    """Records (rows) per second from the first writer's start to the last one's finish."""
    total = sum(len(result.latencies_ms) for result in results)
    return total / (max(r.finished for r in results) - min(r.started for r in results))


def report_phase_two(
    results: list[WriterResult],
    *,
    wall: float,
    appends: int,
    head_before: int,
    baseline: list[WriterResult],
) -> bool:
    """Throughput, latency under contention, the same writers' bare INSERTs, and the chain checks; True
    when every lane is linear."""
    from django.db.models import Count, Max, Min

    from lab.audit.database_verify import audit_verify_database
    from lab.audit.models import AuditHead, AuditRecord
    from lab.audit.signer import checkpoint_write

    total = appends * len(results)
    span = max(r.finished for r in results) - min(r.started for r in results)
    latencies = [value for r in results for value in r.latencies_ms]
    p50, p95, p99 = (statistics.quantiles(latencies, n=100, method="inclusive")[c - 1] for c in PERCENTILES)
    print(
        f"phase 2: {len(results)} writer processes x {appends} audit_append calls (one transaction each), "
        f"released together"
    )
    print(
        f"  {total} records in {span:.3f} s (first start to last finish): {total / span:.0f} records/s; "
        f"from the go signal to the last report {wall:.3f} s: {total / wall:.0f} records/s"
    )
    print(f"  audit_append latency under contention: p50 {p50:.3f} ms, p95 {p95:.3f} ms, p99 {p99:.3f} ms")
    base_p50, base_p95 = (
        statistics.quantiles([v for r in baseline for v in r.latencies_ms], n=100, method="inclusive")[c - 1]
        for c in (50, 95)
    )
    print(
        f"  baseline, right after: the same {len(baseline)} processes x {appends} autocommit INSERTs of line"
        f" (c2) (no chain, lane or trigger): {_rate(baseline):.0f} rows/s, p50 {base_p50:.3f} ms, p95"
        f" {base_p95:.3f} ms; audit_append reaches {_rate(results) / _rate(baseline):.2f}x of it"
    )

    numbers = AuditRecord.objects.aggregate(count=Count("seq"), low=Min("seq"), high=Max("seq"))
    seqs = list(AuditRecord.objects.order_by("seq").values_list("seq", flat=True))
    seq_gap_free = seqs == list(range(1, len(seqs) + 1))
    # Every lane: positions 1..n with no gap, in seq order, and its head row at n with the last one's hash.
    lanes: dict[int, list[tuple[int | None, str]]] = {}
    for lane, position, digest in AuditRecord.objects.order_by("seq").values_list("lane", "lane_seq", "hash"):
        lanes.setdefault(lane, []).append((position, digest))
    heads = dict(
        (lane, (position, digest))
        for lane, position, digest in AuditHead.objects.values_list("id", "seq", "hash")
    )
    lanes_linear = all(
        [position for position, _ in chain] == list(range(1, len(chain) + 1))
        and heads.get(lane) == (len(chain), chain[-1][1])
        for lane, chain in lanes.items()
    )
    per_lane = ", ".join(f"{lane}: {len(chain)}" for lane, chain in sorted(lanes.items()))
    per_writer = dict(
        AuditRecord.objects.filter(actor_id__startswith="bench-writer-")
        .values_list("actor_id")
        .annotate(n=Count("seq"))
        .values_list("actor_id", "n")
    )
    every_writer_complete = sorted(per_writer.values()) == [appends] * len(results)
    checkpoint_write(reason="schedule")
    verification = audit_verify_database()
    linear = (
        lanes_linear
        and every_writer_complete
        and numbers["count"] == head_before + total
        and verification.problem is None
    )
    print(
        f"  chain: {numbers['count']} records (was {head_before}, +{total} expected), seq"
        f" {numbers['low']}..{numbers['high']} (gap-free: {'yes' if seq_gap_free else 'no'}), in"
        f" {len(lanes)} lanes (records per lane {per_lane}); every lane gap-free, linked in seq order and"
        f" its head row on its last record: {'yes' if lanes_linear else 'NO'}; each writer's {appends}"
        f" records present: {'yes' if every_writer_complete else 'NO'}"
    )
    print(
        f"  audit_verify_database(): {verification.count} records, head {verification.head_seq}, "
        f"{verification.checkpoints} signed checkpoint(s), problem: {verification.problem}"
    )
    print(f"  no forks in any lane: {'yes' if linear else 'NO'}")
    return linear


def figures_json(
    lines: list[Line], results: list[WriterResult], baseline: list[WriterResult], *, linear: bool
) -> dict[str, object]:
    """The figures for `python -m bench`: p50/p95 and statements per phase-1 line (keyed "a", "b1", ...),
    and phase 2's records/s over first start to last finish, its p95 and whether the chain stayed linear."""
    total = sum(len(result.latencies_ms) for result in results)
    span = max(r.finished for r in results) - min(r.started for r in results)
    latencies = [value for r in results for value in r.latencies_ms]
    return {
        "benchmark": "audit-gate",
        "lines": {
            line.label[1 : line.label.index(")")]: {
                "p50_ms": line.percentile(50),
                "p95_ms": line.percentile(95),
                "statements": line.queries,
                "round_trips": line.round_trips,
            }
            for line in lines
        },
        "writers": {
            "processes": len(results),
            "records": total,
            "records_per_s": total / span,
            "p95_ms": statistics.quantiles(latencies, n=100, method="inclusive")[94],
            "chain_linear": linear,
            "baseline_rows_per_s": _rate(baseline),
        },
    }


# --- The run ----------------------------------------------------------------------------------------


def size_argument(value: str) -> tuple[int, int]:
    width, _, height = value.lower().partition("x")
    return int(width), int(height)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per phase-1 line (2000)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds of phase 1 (4)")
    parser.add_argument("--writers", type=int, default=8, help="writer processes in phase 2 (8)")
    parser.add_argument("--appends", type=int, default=500, help="audit_append calls per writer (500)")
    parser.add_argument(
        "--photo", type=size_argument, default=(1800, 1200), help="photo size WxH (1800x1200)"
    )
    parser.add_argument(
        "--postgres",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database name (trust or password in the URL)",
    )
    parser.add_argument(
        "--database", default="printlab_bench_audit", help="database to create; dropped before and after"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--writer", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--writer-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--writer-baseline", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.writer is not None:
        writer_main(
            appends=arguments.writer, index=arguments.writer_index, baseline=arguments.writer_baseline
        )
        return 0
    if arguments.calls < 2 * arguments.rounds or arguments.writers < 1 or arguments.appends < 2:
        parser.error("need --calls >= 2 x --rounds, --writers >= 1, --appends >= 2")
    # SIGTERM unwinds like Ctrl-C, so the finally blocks drop the database and stop the writers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    load_before = os.getloadavg()
    started = time.perf_counter()
    photo = photo_jpeg(size=arguments.photo, seed=7)
    with bench_database(arguments) as env:
        lab = lab_build(photo=photo)
        print(f"  set up in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        baseline_tables_create()
        lines = phase_one_lines(lab)
        run_phase_one(lines, technician_id=lab.technician_id, calls=arguments.calls, rounds=arguments.rounds)

        from lab.audit.models import AuditRecord

        head_before = AuditRecord.objects.count()
        results, wall = run_writers(env=env, writers=arguments.writers, appends=arguments.appends)
        baseline, _ = run_writers(
            env=env, writers=arguments.writers, appends=arguments.appends, baseline=True
        )
        print(
            f"PostgreSQL gate/audit benchmark, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"database {arguments.database}"
        )
        report_phase_one(
            lines, calls=arguments.calls, rounds=arguments.rounds, photo=photo, size=arguments.photo
        )
        linear = report_phase_two(
            results, wall=wall, appends=arguments.appends, head_before=head_before, baseline=baseline
        )
        if arguments.json:
            arguments.json.write_text(json.dumps(figures_json(lines, results, baseline, linear=linear)))
    load_after = os.getloadavg()
    print(
        f"total {time.perf_counter() - started:.0f} s; load average (1/5/15 min) before "
        f"{load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, at the end "
        f"{load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} (this run included)"
    )
    return 0 if linear else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; the bench database and the writers are gone", file=sys.stderr)
        sys.exit(130)
