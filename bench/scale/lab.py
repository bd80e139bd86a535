"""The scale bench's lab: a fresh database and broker queues, then gunicorn, the Celery workers, beat (and the
printer-events listener on request) and the simulated minilabs, each in its own process group with its own
log, all stopped by PID and the database dropped afterwards, also after an error or Ctrl-C."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench.intake.run import ROOT, Child, database_drop, database_recreate, free_port, manage, wait_until
from bench.throttles import throttles_lifted

VENV_BIN = Path(sys.executable).parent
WEBHOOK_SECRET = "whsec_bench_scale"
QUEUE_KEYS = ("default", "raster", "print", "webhooks", "fetch", "unacked", "unacked_index", "unacked_mutex")
# Settings of the calling shell that must not leak in: a shared cache, keys other than the throw-away ones the
# settings generate in the run's LAB_VAR_DIR, DEBUG (keeps every query in memory), the shell's own folders.
SHARED_SETTINGS = (
    "CACHE_URL",
    "LAB_MASTER_KEY",
    "AUDIT_SIGNING_KEY",
    "AUDIT_RECORD_KEY",
    "AUDIT_RECORD_KEY_FILE",
    "AUDIT_WITNESS",
    "DEBUG",
    "LAB_STORAGE_DIR",
    "HOTFOLDER_ROOT",
    "PRINT_HOST",
    "EMAIL_BACKEND",
    "PASSWORD_HASHERS",
)


@dataclass(frozen=True)
class Role:
    """One process the bench starts (its process group is the role's) and its PostgreSQL application_name."""

    name: str
    args: list[str]


def roles_for(arguments: argparse.Namespace, *, web_port: int, var_dir: Path) -> list[Role]:
    celery = str(VENV_BIN / "celery")

    def worker(name: str, queues: str, concurrency: int) -> Role:
        return Role(
            name,
            [
                *(celery, "-A", "bench.scale.probe", "worker", "-Q", queues, "-c", str(concurrency)),
                *(
                    "-n",
                    f"{name}-{os.getpid()}@%h",
                    "--without-mingle",
                    "--without-gossip",
                    "--loglevel",
                    "INFO",
                ),
            ],
        )

    web = Role(
        "web",
        [
            *(str(VENV_BIN / "gunicorn"), "bench.scale.wsgi:application", "--bind", f"127.0.0.1:{web_port}"),
            # The settings every web process of the lab shares (access log, timeout, request-line limit, no
            # control socket), so that the access log's cost is in the figures as in production.
            *("--config", str(ROOT / "gunicorn.conf.py"), "--workers", str(arguments.web_workers)),
            # As deploy/systemd/printlab-web.service: workers are recycled after about 2,000 requests.
            *("--max-requests", "2000", "--max-requests-jitter", "200"),
        ],
    )
    beat = Role(
        "beat",
        [
            celery,
            "-A",
            "bench.scale.probe",
            "beat",
            "--schedule",
            str(var_dir / "beat-schedule"),
            "--loglevel",
            "INFO",
        ],
    )
    if arguments.layout == "shared":
        # The reference layout until 2026-12-02: one worker for both queues, where the default queue starved.
        workers = [worker("worker-app", "default,raster,webhooks,fetch,audit", arguments.raster_concurrency)]
    else:
        # deploy/systemd: printlab-default (-Q default), printlab-raster (-Q raster -c cores), a print worker;
        # the bench registers no webhook endpoint and sends no photo by URL, so printlab-webhooks' and
        # printlab-fetch's queues are served by the default one, and printlab-audit's (the checkpoints) too.
        workers = [
            worker("worker-default", "default,webhooks,fetch,audit", arguments.default_concurrency),
            worker("worker-raster", "raster", arguments.raster_concurrency),
        ]
    roles = [web, *workers, worker("worker-print", "print", 1), beat]
    if arguments.printer_events:
        # The printer-events listener (lab/production/listener.py), where this tree has it: completions are
        # read as they happen instead of at the next poll round.
        roles.append(Role("listener", [sys.executable, "manage.py", "printer_events"]))
    return roles


def database_url(arguments: argparse.Namespace) -> str:
    return f"{arguments.postgres.rstrip('/')}/{arguments.database}"


def environment(arguments: argparse.Namespace, *, var_dir: Path, role: str = "setup") -> dict[str, str]:
    base = {name: value for name, value in os.environ.items() if name not in SHARED_SETTINGS}
    broker_db = int(arguments.redis.rsplit("/", 1)[1])
    return {
        **base,
        "DJANGO_SETTINGS_MODULE": "lab.settings",
        "LAB_DEMO_SECRETS": "true",  # throw-away keys, generated once in var_dir by the migration step
        "DATABASE_URL": f"{database_url(arguments)}?application_name=bench-{role}",
        "DATABASE_CONN_MAX_AGE": str(arguments.conn_max_age),
        "CELERY_BROKER_URL": arguments.redis,
        "CACHE_URL": arguments.redis.rsplit("/", 1)[0] + f"/{broker_db - 1 if broker_db else 1}",
        "LAB_VAR_DIR": str(var_dir),
        "HOTFOLDER_ROOT": str(var_dir / "spool"),
        "PRODUCTION_POLL_SECONDS": str(arguments.poll_seconds),
        "STRIPE_SECRET_KEY": "sk_test_bench_scale",  # never called: bench/scale/wsgi.py answers for Stripe
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        **throttles_lifted(),
        "BENCH_TASK_METER_DIR": str(var_dir / "meters"),
        "BENCH_CELERY_DB_REUSE_MAX": str(arguments.celery_db_reuse or ""),
    }


def broker_purge(url: str) -> None:
    """Our queues in our Redis database only: messages of an earlier run would name rows that are gone."""
    client = redis.Redis.from_url(url)
    try:
        client.delete(*QUEUE_KEYS)
    finally:
        client.close()


@dataclass
class Lab:
    web_port: int
    children: dict[str, Child]
    var_dir: Path


@contextmanager
def lab_running(arguments: argparse.Namespace) -> Iterator[Lab]:
    """Database, broker queues, the lab's processes and the minilabs up; all stopped and dropped after."""
    admin_url = arguments.postgres.rstrip("/") + "/postgres"
    children: dict[str, Child] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as directory:
        var_dir = Path(directory)
        for sub in ("meters", "device", "logs"):
            (var_dir / sub).mkdir()
        try:
            database_recreate(admin_url=admin_url, name=arguments.database)
            broker_purge(arguments.redis)
            setup_env = environment(arguments, var_dir=var_dir)
            manage("migrate", "--noinput", env=setup_env)
            done = Child(
                name="seed",
                args=[sys.executable, "-m", "bench.scale.seed", "--printers", str(arguments.printers)],
                env=setup_env,
                log=var_dir / "logs" / "seed.log",
            )
            if done.process.wait() != 0:
                raise RuntimeError(f"seeding failed:\n{done.log_tail()}")
            web_port = free_port()
            for role in roles_for(arguments, web_port=web_port, var_dir=var_dir):
                children[role.name] = Child(
                    name=role.name,
                    args=role.args,
                    env=environment(arguments, var_dir=var_dir, role=role.name),
                    log=var_dir / "logs" / f"{role.name}.log",
                )
            children["device"] = Child(
                name="device",
                args=[
                    *(sys.executable, "-m", "bench.scale.device", str(var_dir / "spool")),
                    *("--print-seconds", str(arguments.print_seconds), "--stats", str(var_dir / "device")),
                ],
                env=setup_env,
                log=var_dir / "logs" / "device.log",
            )
            for child in children.values():
                wait_until(lambda c=child: _is_up(c), timeout=90, what=child.name)
            yield Lab(web_port=web_port, children=children, var_dir=var_dir)
        except BaseException:
            for child in children.values():
                print(f"--- last lines of {child.name} ---\n{child.log_tail(lines=15)}", file=sys.stderr)
            raise
        finally:
            for child in reversed(children.values()):
                child.stop()
            if arguments.keep_logs:
                kept = arguments.out / f"logs-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
                shutil.copytree(var_dir / "logs", kept)
                print(f"logs: {kept}", file=sys.stderr)
            broker_purge(arguments.redis)
            database_drop(admin_url=admin_url, name=arguments.database)


def _is_up(child: Child) -> bool:
    if not child.is_running():
        raise RuntimeError(f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}")
    text = child.log.read_text(errors="replace") if child.log.exists() else ""
    if child.name == "web":
        return "Booting worker" in text
    if child.name.startswith("worker"):
        return " ready." in text
    if child.name == "beat":
        return "beat: Starting" in text
    if child.name == "listener":
        return True  # it logs nothing until a job completes; a listener that fails exits, seen above
    return (child.log.parent.parent / "device" / "device.json").exists()
