"""Benchmark of the customer intake API: requests/s and p50/p95 latency of quotes, orders and 12 MP uploads on
PostgreSQL + gunicorn + localstripe, each next to a baseline measured in the same run. Run: .venv/bin/python
-m bench.intake.run"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from PIL import ExifTags, Image, ImageDraw, ImageFilter

from bench.throttles import throttles_lifted

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PHOTO_SIZE = (4000, 3000)  # 12 MP, a phone camera's 4:3 frame
JPEG_QUALITY = 90
# scripts/run's default (WEB_WORKERS); on 2 cores, 3 or 5 workers served quotes and orders no faster
# (they are CPU-bound here) and cost each /healthz more CPU (bench/intake/README.md). --workers to compare.
WEB_WORKERS = 2
STRIPE_KEY = "sk_test_bench"
PASSWORD = "bench-intake-Passw0rd-2025"
# localstripe 1.15.10 pickles its whole store to the fixed path /tmp/localstripe.pickle after every write:
# the cost of a PaymentIntent grows with the number already made (0.6 ms at 300, 2.6 ms at 1200), and every
# localstripe on the machine (the test suite's too) shares that file, so a run could truncate it under
# another one. The bench runs the same server with the store kept in memory only; real Stripe has neither.
LOCALSTRIPE_IN_MEMORY = """
import sys
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
sys.exit(server.start())
"""
ADDRESS = {
    "name": "Ada Quill",
    "line1": "1 Lens Lane",
    "city": "Exposure",
    "postal_code": "12345",
    "country": "US",
}


# --- Processes and the database -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


class Child:
    """One child process in its own process group; stopping it signals that group, found by its PID."""

    def __init__(self, *, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as handle:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                args, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
            )

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if not self.is_running():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def log_tail(self, *, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def database_recreate(*, admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def database_drop(*, admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(*arguments: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *arguments], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(arguments)} failed:\n{done.stdout}\n{done.stderr}")


# --- The photo -------------------------------------------------------------------------------------


def photo_jpeg(*, seed: int) -> bytes:
    """A deterministic 12 MP JPEG that compresses like a photo: smooth gradients under fine sensor-like
    noise and some hard edges, with phone-style EXIF including GPS (so intake's GPS strip runs)."""
    width, height = PHOTO_SIZE
    rng = random.Random(seed)
    gradients = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").rotate(90).resize(PHOTO_SIZE),
            Image.linear_gradient("L").resize(PHOTO_SIZE),
            Image.radial_gradient("L").resize(PHOTO_SIZE),
        ),
    )
    noise = Image.merge(
        "RGB", [Image.frombytes("L", PHOTO_SIZE, rng.randbytes(width * height)) for _ in range(3)]
    ).filter(ImageFilter.GaussianBlur(0.8))
    photo = Image.blend(gradients, noise, 0.35)
    draw = ImageDraw.Draw(photo)
    for _ in range(60):
        x, y, radius = rng.randrange(width), rng.randrange(height), rng.randrange(40, 400)
        shade = rng.randrange(256)
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius),
            outline=(shade, 255 - shade, shade // 2),
            width=rng.randrange(2, 20),
        )
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "BenchCam"
    exif[ExifTags.Base.Model] = "Intake 12"
    exif[ExifTags.Base.Orientation] = 1
    exif[ExifTags.Base.DateTime] = "2025:03:14 12:00:00"
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (54.0, 21.0, 7.5),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (18.0, 38.0, 42.0),
    }
    output = io.BytesIO()
    photo.save(output, "JPEG", quality=JPEG_QUALITY, exif=exif)
    return output.getvalue()


def multipart(*, data: bytes, filename: str) -> tuple[bytes, str]:
    boundary = f"bench-{uuid.uuid4().hex}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# --- Load ----------------------------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    count: int
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    server_cpu_seconds: float = 0.0  # gunicorn's and localstripe's processes, while this line ran

    @property
    def server_cpu_ms(self) -> float:
        """CPU per request in the servers we started (not PostgreSQL, shared with the machine): unlike
        latency, it barely moves when other work on the machine makes requests wait for a core."""
        return self.server_cpu_seconds * 1000 / self.count

    @property
    def requests_per_second(self) -> float:
        return self.count / self.wall_seconds

    def percentile(self, cut: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[cut - 1]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)


def drive(*, label: str, count: int, concurrency: int, warmup: int, call: Callable[[], None]) -> Phase:
    """Run `call` count times from `concurrency` threads; the wall clock covers the measured calls only.

    A call raises on a wrong answer, which stops the phase: a benchmark of errors measures nothing.
    """
    for _ in range(warmup):
        call()
    phase = Phase(label=label, count=count, concurrency=concurrency)
    remaining = iter(range(count))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        while not failures:
            with lock:
                if next(remaining, None) is None:
                    return
            started = time.perf_counter()
            try:
                call()
            except Exception as error:
                failures.append(error)
                return
            elapsed_ms = (time.perf_counter() - started) * 1000
            with lock:
                phase.latencies_ms.append(elapsed_ms)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.wall_seconds = time.perf_counter() - started
    if failures:
        raise failures[0]
    return phase


def http_call(
    *,
    port: int,
    method: str,
    path: str,
    expect: int,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """One request on a fresh connection: gunicorn's sync workers close every connection anyway."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    if response.status != expect:
        raise RuntimeError(f"{method} {path}: HTTP {response.status}, expected {expect}: {payload[:500]!r}")
    return payload


def json_call(
    *, port: int, path: str, body: object, expect: int, token: str = "", extra: dict[str, str] | None = None
) -> dict[str, object]:
    headers = {"Content-Type": "application/json", **(extra or {})}
    if token:
        headers["Authorization"] = f"Token {token}"
    payload = http_call(
        port=port, method="POST", path=path, body=json.dumps(body).encode(), headers=headers, expect=expect
    )
    result: dict[str, object] = json.loads(payload)
    return result


def pillow_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


# --- The run -------------------------------------------------------------------------------------


def process_tree_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their live children (gunicorn's workers), read from
    /proc (Linux; 0 elsewhere). A worker that exits takes its seconds with it; ours live for the whole run."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    pending = list(pids)
    while pending:
        pid = pending.pop()
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime
        pending.extend(int(child) for child in children)
    return total / ticks


@dataclass
class Lab:
    web_port: int
    stripe_port: int
    token: str
    photo: bytes
    asset_ids: list[str]
    server_pids: list[int]


@contextmanager
def lab_running(arguments: argparse.Namespace, *, photo: bytes) -> Iterator[Lab]:
    """Database, localstripe and gunicorn up, a registered customer with three photos; all torn down after."""
    admin_url = arguments.postgres.rstrip("/") + "/postgres"
    database_url = arguments.postgres.rstrip("/") + "/" + arguments.database
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as var_dir:
        try:
            database_recreate(admin_url=admin_url, name=arguments.database)
            stripe_port, web_port = free_port(), free_port()
            env = {
                **os.environ,
                "DATABASE_URL": database_url,
                "DATABASE_CONN_MAX_AGE": str(arguments.conn_max_age),
                "LAB_VAR_DIR": var_dir,
                "STRIPE_SECRET_KEY": STRIPE_KEY,
                "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
                **throttles_lifted(),
                # The order e-mail's task message goes to kombu's filesystem broker in the run's directory:
                # nothing consumes it, and it never reaches a broker (or a worker) the environment names.
                "CELERY_BROKER_URL": "filesystem://",
                "DJANGO_SETTINGS_MODULE": "lab.settings",
                # Throw-away keys generated in the run's temporary LAB_VAR_DIR (with DEBUG off, settings
                # refuse to start without real ones otherwise).
                "LAB_DEMO_SECRETS": "true",
            }
            for folder in ("queue", "control"):
                (Path(var_dir) / "broker" / folder).mkdir(parents=True)
            manage("migrate", "--noinput", env=env)
            manage("seed_demo", env=env)
            logs = Path(var_dir)
            children.append(
                Child(
                    name="localstripe",
                    args=[
                        sys.executable,
                        "-c",
                        LOCALSTRIPE_IN_MEMORY,
                        "--port",
                        str(stripe_port),
                        "--from-scratch",
                    ],
                    env=env,
                    log=logs / "localstripe.log",
                )
            )
            children.append(
                Child(
                    name="gunicorn",
                    args=[
                        str(VENV_BIN / "gunicorn"),
                        "lab.wsgi",
                        # The settings every web process of the lab shares: the access log (its cost is in
                        # the figures, as in production), the timeout, no control socket (one fixed path
                        # under $HOME, shared with any other gunicorn on the machine).
                        "--config",
                        str(ROOT / "gunicorn.conf.py"),
                        "--workers",
                        str(arguments.workers),
                        "--bind",
                        f"127.0.0.1:{web_port}",
                    ],
                    env=env,
                    log=logs / "gunicorn.log",
                )
            )
            for child, port in zip(children, (stripe_port, web_port), strict=True):
                wait_until(lambda c=child, p=port: _answers(c, p), timeout=60, what=child.name)
            token = _register(port=web_port)
            asset_ids = [_upload(port=web_port, token=token, photo=photo) for _ in range(3)]
            yield Lab(
                web_port=web_port,
                stripe_port=stripe_port,
                token=token,
                photo=photo,
                asset_ids=asset_ids,
                server_pids=[child.process.pid for child in children],
            )
        except Exception:
            for child in children:
                print(f"--- last lines of {child.name} ---\n{child.log_tail()}", file=sys.stderr)
            raise
        finally:
            for child in reversed(children):
                child.stop()
            database_drop(admin_url=admin_url, name=arguments.database)


def _answers(child: Child, port: int) -> bool:
    if not child.is_running():
        raise RuntimeError(f"{child.name} exited with {child.process.returncode}")
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        connection.close()
    except OSError:
        return False
    return True


def _register(*, port: int) -> str:
    account = json_call(
        port=port,
        path="/api/v1/accounts",
        expect=201,
        body={
            "email": f"bench-{uuid.uuid4().hex[:8]}@example.org",
            "password": PASSWORD,
            "full_name": "Ada Quill",
            "address": ADDRESS,
            "birth_date": "1985-02-03",
            "privacy_policy_version": "1.0",
        },
    )
    return str(account["token"])


def _upload(*, port: int, token: str, photo: bytes) -> str:
    body, content_type = multipart(data=photo, filename="IMG_0001.jpg")
    payload = http_call(
        port=port,
        method="POST",
        path="/api/v1/assets",
        body=body,
        headers={"Content-Type": content_type, "Authorization": f"Token {token}"},
        expect=201,
    )
    asset = json.loads(payload)
    # The photo must take the same path as a phone's: full decode, then the GPS strip.
    if (asset["width_px"], asset["height_px"], asset["gps_stripped"]) != (*PHOTO_SIZE, True):
        raise RuntimeError(f"upload was not stored as a 12 MP photo with GPS removed: {asset}")
    return str(asset["id"])


def basket(asset_ids: list[str]) -> list[dict[str, object]]:
    """Three lines over three photos: a small, a medium and a large print, fill and fit."""
    first, second, third = asset_ids
    return [
        {"sku": "PRINT-4X6-LUSTRE", "asset": first, "copies": 2, "sizing": "fill"},
        {"sku": "PRINT-8X10-MATTE", "asset": second, "copies": 1, "sizing": "fit"},
        {"sku": "PRINT-11X14-METALLIC", "asset": third, "copies": 1, "sizing": "fill"},
    ]


def run_phases(
    lab: Lab, *, count: int, concurrency: int, rounds: int, lines: frozenset[str] | None = None
) -> list[Phase]:
    port, token = lab.web_port, lab.token
    items = basket(lab.asset_ids)
    quote_body = {"items": items, "shipping_method": "standard"}
    order_body = {**quote_body, "shipping_address": ADDRESS}
    upload_body, upload_type = multipart(data=lab.photo, filename="IMG_0001.jpg")

    def healthz() -> None:
        http_call(port=port, method="GET", path="/healthz", expect=200)

    def quote() -> None:
        json_call(port=port, path="/api/v1/quotes", body=quote_body, token=token, expect=200)

    def order() -> None:
        created = json_call(
            port=port,
            path="/api/v1/orders",
            body=order_body,
            token=token,
            expect=201,
            extra={"Idempotency-Key": str(uuid.uuid4())},
        )
        payment = created["payment"]
        if not (isinstance(payment, dict) and str(payment.get("payment_intent", "")).startswith("pi_")):
            raise RuntimeError(f"order without a PaymentIntent: {created}")

    def stripe_direct() -> None:
        form = urllib.parse.urlencode(
            {
                "amount": "1234",
                "currency": "usd",
                "payment_method_types[]": "card",
                "metadata[order_ref]": "PL-BENCH",
            }
        ).encode()
        http_call(
            port=lab.stripe_port,
            method="POST",
            path="/v1/payment_intents",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": f"Bearer {STRIPE_KEY}",
                "Idempotency-Key": str(uuid.uuid4()),
            },
            expect=200,
        )

    def decode() -> None:
        pillow_decode(lab.photo)

    def upload() -> None:
        http_call(
            port=port,
            method="POST",
            path="/api/v1/assets",
            body=upload_body,
            headers={"Content-Type": upload_type, "Authorization": f"Token {token}"},
            expect=201,
        )

    plan: list[tuple[str, Callable[[], None]]] = [
        ("GET /healthz", healthz),
        ("POST /api/v1/quotes", quote),
        ("POST /api/v1/orders", order),
        ("localstripe PaymentIntent", stripe_direct),
        ("Pillow decode in-process", decode),
        ("POST /api/v1/assets", upload),
    ]
    if lines is not None:
        plan = [(label, call) for label, call in plan if JSON_NAMES[label] in lines]
    # Rounds interleave every line with its baseline, so a drift in background load on the machine hits
    # both sides of a ratio alike instead of whichever line happened to run during it.
    phases = {label: Phase(label=label, count=0, concurrency=concurrency) for label, _ in plan}
    for round_number in range(rounds):
        share = count // rounds + (1 if round_number < count % rounds else 0)
        for label, call in plan:
            for _ in range(concurrency if round_number == 0 else 0):
                call()  # warm-up, outside the clocks
            cpu_before = process_tree_cpu_seconds(lab.server_pids)
            measured = drive(label=label, count=share, concurrency=concurrency, warmup=0, call=call)
            phases[label].server_cpu_seconds += process_tree_cpu_seconds(lab.server_pids) - cpu_before
            phases[label].count += measured.count
            phases[label].wall_seconds += measured.wall_seconds
            phases[label].latencies_ms.extend(measured.latencies_ms)
        print(f"  round {round_number + 1}/{rounds} measured", file=sys.stderr, flush=True)
    return list(phases.values())


def report(phases: list[Phase], *, photo: bytes, arguments: argparse.Namespace) -> None:
    by_label = {phase.label: phase for phase in phases}
    print(
        f"intake API on gunicorn ({arguments.workers} sync workers) + PostgreSQL + localstripe, loopback, "
        f"{os.cpu_count()} cores; {arguments.requests} requests per line in {arguments.rounds} interleaved "
        f"rounds after {arguments.concurrency} warm-up, concurrency {arguments.concurrency}, "
        f"DATABASE_CONN_MAX_AGE={arguments.conn_max_age}"
    )
    print(f"photo: {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG q{JPEG_QUALITY}, {len(photo) / 1e6:.2f} MB")
    print(f"{'':34s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'CPU ms':>8s}")
    notes = {
        "GET /healthz": "(baseline for quotes, orders)",
        "localstripe PaymentIntent": "(reference: Stripe call alone)",
        "Pillow decode in-process": "(baseline for assets)",
    }
    for phase in phases:
        cpu = "-" if phase.label in IN_PROCESS_LINES else f"{phase.server_cpu_ms:.1f}"
        print(
            f"{phase.label:34s} {phase.requests_per_second:8.1f} {phase.p50:8.1f} {phase.p95:8.1f} "
            f"{cpu:>8s}  {notes.get(phase.label, '')}".rstrip()
        )
    print(
        "CPU ms: per request, in gunicorn's and localstripe's processes while the line ran (PostgreSQL's "
        "share not included)"
    )
    print("ratios (ours / baseline; req/s below 1 = slower, latency above 1 = slower):")
    for ours, baseline in (
        ("POST /api/v1/quotes", "GET /healthz"),
        ("POST /api/v1/orders", "GET /healthz"),
        ("POST /api/v1/assets", "Pillow decode in-process"),
    ):
        if ours not in by_label or baseline not in by_label:
            continue  # left out with --lines
        mine, base = by_label[ours], by_label[baseline]
        cpu = ""
        if baseline not in IN_PROCESS_LINES and base.server_cpu_seconds > 0:
            cpu = f"   CPU {mine.server_cpu_ms / base.server_cpu_ms:6.2f}x"
        print(
            f"  {ours:20s} / {baseline:25s} req/s {mine.requests_per_second / base.requests_per_second:6.3f}"
            f"   p50 {mine.p50 / base.p50:6.2f}x   p95 {mine.p95 / base.p95:6.2f}x{cpu}"
        )


IN_PROCESS_LINES = {"Pillow decode in-process"}  # run in this process: no server CPU to show
JSON_NAMES = {
    "GET /healthz": "healthz",
    "POST /api/v1/quotes": "quote",
    "POST /api/v1/orders": "order",
    "localstripe PaymentIntent": "stripe",
    "Pillow decode in-process": "decode",
    "POST /api/v1/assets": "upload",
}


def figures_json(phases: list[Phase]) -> dict[str, object]:
    """The table's figures for `python -m bench`: requests/s, p50 and p95 per line, by short name."""
    return {
        "benchmark": "intake",
        "lines": {
            JSON_NAMES[phase.label]: {
                "requests_per_s": phase.requests_per_second,
                "p50_ms": phase.p50,
                "p95_ms": phase.p95,
                "server_cpu_ms": phase.server_cpu_ms,
            }
            for phase in phases
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="measured requests per line (default 300)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds that interleave all lines (default 3)")
    parser.add_argument(
        "--postgres",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database name (trust or password in the URL)",
    )
    parser.add_argument(
        "--database", default="printlab_bench", help="database to create; dropped before and after"
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=60,
        help="DATABASE_CONN_MAX_AGE for gunicorn (default 60, as shipped; 0 = a connection per request)",
    )
    parser.add_argument(
        "--workers", type=int, default=WEB_WORKERS, help=f"gunicorn sync workers (default {WEB_WORKERS})"
    )
    parser.add_argument(
        "--lines",
        default=",".join(JSON_NAMES.values()),
        help="comma-separated lines to run (default all): " + ", ".join(JSON_NAMES.values()),
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    arguments = parser.parse_args()
    if arguments.concurrency < 1 or arguments.rounds < 1 or arguments.requests < 2 * arguments.rounds:
        parser.error("need --concurrency >= 1, --rounds >= 1 and --requests >= 2 x --rounds")
    lines = frozenset(name.strip() for name in arguments.lines.split(",") if name.strip())
    if not lines or not lines <= set(JSON_NAMES.values()):
        parser.error(f"--lines takes some of: {', '.join(JSON_NAMES.values())}")
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every child we started; Ctrl-C is restored
    # because a shell starting us in the background hands us SIGINT ignored.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    # Another busy process on a 2-core machine skews everything: show the reader what the load was.
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    photo = photo_jpeg(seed=12)
    with lab_running(arguments, photo=photo) as lab:
        print(f"  set up in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        phases = run_phases(
            lab,
            count=arguments.requests,
            concurrency=arguments.concurrency,
            rounds=arguments.rounds,
            lines=lines,
        )
    report(phases, photo=photo, arguments=arguments)
    if arguments.json:
        arguments.json.write_text(json.dumps(figures_json(phases)))
    print(
        f"total {time.perf_counter() - started:.0f} s; 1-minute load average before the run "
        f"{load_before:.2f}, at the end {os.getloadavg()[0]:.2f} (this run included)"
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted; the servers and the database this run started are gone", file=sys.stderr)
        sys.exit(130)
