"""The exactly-once promise under real faults, on a stack this module starts for itself so it may break
it: a private PostgreSQL, a private Redis (no persistence, like a cache-configured one), a private `cupsd`
with ippeveprinter printers, the app's gunicorn and a real `celery worker -B`. Orders are placed over HTTP
and paid with really signed Stripe webhooks; every file each printer received is counted.

Each scenario ends with, per job, once CUPS has sent all it holds of the test's jobs: exactly one file at the
printer, one CUPS job that sent it, and the job `printed` — or the job in a state a person sees on the board
(`suspect`: may have printed twice, `unknown`). Never a silent loss or duplicate.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import cups
import psycopg
import pytest
import stripe

from lab.orders.models import REF_REGEX
from lab.production.models import PrintJob, job_title
from printers.base import JobState
from printers.cups_ipp import connect
from printers.errors import PrinterError
from tests.support.celery_worker import CeleryWorker, wait_until
from tests.support.clock import clock_off_by
from tests.support.cups import CupsJob, PrivateCups
from tests.support.http import call, multipart, serving
from tests.support.images import jpeg_bytes
from tests.support.postgres_server import PrivatePostgres
from tests.support.printer_events import PrinterEventsListener
from tests.support.redis_server import PrivateRedis
from tests.support.stripe_server import LocalStripe, card_payment_method, signed_event
from tests.support.web_server import PROJECT_DIR, LabWebServer, app_environment, django_manage

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "whsec_faults"
PHOTO_MEDIA = ["na_index-4x6_4x6in"]
LARGE_MEDIA = ["na_govt-letter_8x10in"]
# Fast clocks: beat polls every second, reconciles every 3 s, a hand-off may take 1 s before it is redone.
FAULT_ENV = {
    "PRODUCTION_POLL_SECONDS": "1",
    "PRODUCTION_CLAIM_LEASE_SECONDS": "8",
    # A process frozen inside a transaction loses its session (and its locks) after this (production: 60).
    "DATABASE_IDLE_IN_TRANSACTION_SECONDS": "10",
    "PRODUCTION_HANDOFF_GRACE_SECONDS": "1",
    "PRODUCTION_RETRY_BASE_SECONDS": "1",
    "PRODUCTION_RETRY_CAP_SECONDS": "3",
    "NOTIFY_SWEEP_SECONDS": "2",
    # The copy check counts each job's jobs in CUPS's history, which this sweep purges once they are over.
    "PRINTER_DOCUMENTS_DISCARD_SECONDS": "86400",
    "ASSET_FETCH_SWEEP_SECONDS": "2",
    # Photos by URL come from a server the test runs on loopback.
    "ASSET_FETCH_ALLOW_PRIVATE": "true",
    "ASSET_FETCH_ALLOW_HTTP": "true",
    "STRIPE_SECRET_KEY": "sk_test_faults",
    "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "PASSWORD_HASHERS": "django.contrib.auth.hashers.MD5PasswordHasher",
    # Every e-mail sent is written to a file under $LAB_VAR_DIR/mail (EMAIL_FILE_PATH), where the 'paid' check
    # counts them; whatever backend the test command's environment names.
    "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
}
SETTLE_TIMEOUT = 120.0
# How long the 'paid' e-mail check waits for each order's e-mail to be sent.
MAIL_TIMEOUT = 30.0
# The subject line of a 'paid' e-mail as the file mail backend writes it (lab/notify/emails.py).
PAID_SUBJECT = re.compile(rf"^Subject: Payment confirmed for order ({REF_REGEX})\r?$", re.MULTILINE)
# Order statuses a settled order of the test may be in without being made: done, or for a person.
SETTLED_ORDER_STATUSES = {"ready_to_pack", "packed", "shipped", "on_hold", "cancelled"}
# Job statuses of a job still on its way: it moves on without a person.
MOVING_JOB_STATUSES = {"no_printer", "queued", "rasterizing", "ready", "submitting", "submitted"}
# Job statuses on the board for a person: "may have printed twice", "fate unknown".
PERSON_JOB_STATUSES = {"suspect", "unknown"}
# The events of a job whose claim another worker took over once its lease ran out, by the status it was
# claimed in: a raster claim is claimed again (lab/production/rasterizing.py), a submit claim is settled by
# the reconciler (lab/production/submit_reconcile.py: reconcile_submitting).
TAKEOVER_EVENT_KINDS = {
    "rasterizing": {"lease_taken_over"},
    "submitting": {"reconciled", "fate_unknown", "claim_expired_unsent"},
}
# How long the copy check waits for CUPS to finish sending the test's jobs before it counts.
CUPS_DONE_TIMEOUT = 30.0
PRINT_SECONDS = 2.0
ADDRESS = {
    "name": "Fault Tester",
    "line1": "1 Restart Road",
    "city": "Crashville",
    "postal_code": "10001",
    "country": "US",
}


@dataclass
class Stack:
    postgres: PrivatePostgres
    redis: PrivateRedis
    cups: PrivateCups
    web: LabWebServer
    worker: CeleryWorker
    database_url: str
    token: str = ""
    asset_id: str = ""
    orders: list[str] = field(default_factory=list)

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        for attempt in range(40):  # the database may be restarting under the test
            try:
                with psycopg.connect(self.database_url, connect_timeout=3) as connection:
                    return connection.execute(query, params).fetchall()
            except psycopg.OperationalError:
                if attempt == 39:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    # --- Customer side, over HTTP -------------------------------------------------------------------

    def order_body(self, lines: list[tuple[str, int]]) -> bytes:
        body = {
            "items": [
                {"sku": sku, "asset": self.asset_id, "copies": copies, "sizing": "fill"}
                for sku, copies in lines
            ],
            "shipping_method": "standard",
            "shipping_address": ADDRESS,
        }
        return json.dumps(body).encode()

    def place_order(self, lines: list[tuple[str, int]]) -> dict[str, Any]:
        status, order = call(
            self.web.url,
            "POST",
            "/api/v1/orders",
            self.order_body(lines),
            {
                "Authorization": f"Token {self.token}",
                "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        assert status == 201, order
        self.orders.append(order["ref"])
        return dict(order)

    def pay(self, order: dict[str, Any], *, deadline_seconds: float = 60.0) -> list[int]:
        """Deliver a signed payment_intent.succeeded like Stripe does: retried until it is answered 2xx."""
        payload, headers = succeeded_event(order)
        answers = []
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            status, _ = call(
                self.web.url,
                "POST",
                "/api/v1/webhooks/stripe",
                payload,
                headers,
            )
            answers.append(status)
            if 200 <= status < 300:
                return answers
            time.sleep(0.5)
        raise AssertionError(f"Stripe's retries never got a 2xx: {answers}")

    def pay_and_wait_until_a_job_is_being_made(
        self, *, orders: int, held: tuple[str, ...] = ("rasterizing", "ready", "submitting")
    ) -> None:
        """Place and pay `orders` orders, then wait until one of their jobs is in one of the `held` states (by
        default: held by a worker or at CUPS's door)."""
        for order in [self.place_order(LINES) for _ in range(orders)]:
            self.pay(order)
        wait_until(
            lambda: any(status in held for _, status, _, _ in self.jobs()),
            timeout=60,
            interval=0.05,
            what=lambda: f"a job being made; jobs {self.jobs()}",
        )

    # --- What happened ------------------------------------------------------------------------------

    def paid_events(self, refs: list[str]) -> int:
        """Transitions to `paid` of these orders: a payment applied twice would show as two."""
        return int(
            self.sql(
                "SELECT count(*) FROM orders_orderevent e JOIN orders_order o ON o.id = e.order_id "
                "WHERE o.ref = ANY(%s) AND e.to_status = 'paid'",
                refs,
            )[0][0]
        )

    @property
    def mail_dir(self) -> Path:
        """Where the file mail backend of every process of the stack writes each message it sends
        (EMAIL_FILE_PATH: $LAB_VAR_DIR/mail)."""
        return Path(self.worker.env["LAB_VAR_DIR"]) / "mail"

    def paid_mails(self, refs: list[str]) -> dict[str, int]:
        """'Payment confirmed' e-mails sent per order: the messages in the mail files. (Not the notification
        rows: the first claim writes one before anything is sent, and a second one is refused, so they
        count one whether the e-mail went out once, never or twice.)"""
        subjects: Counter[str] = Counter()
        for path in self.mail_dir.glob("*.log"):
            subjects.update(PAID_SUBJECT.findall(path.read_text(errors="replace")))
        return {ref: subjects[ref] for ref in refs}

    def paid_notifications(self, refs: list[str]) -> list[tuple[str, str]]:
        """(order, status) of the 'paid' notification rows of these orders."""
        rows = self.sql(
            "SELECT o.ref, n.status FROM notify_notification n JOIN orders_order o ON o.id = n.order_id "
            "WHERE o.ref = ANY(%s) AND n.order_status = 'paid' ORDER BY o.ref",
            refs,
        )
        return [(str(ref), str(status)) for ref, status in rows]

    def assert_paid_mail_sent_once_each(self, refs: list[str]) -> None:
        """Each order's 'paid' e-mail went out exactly once: its notification `sent`, and one message with
        its subject in the mail files. Waits (MAIL_TIMEOUT) until each order has its message and its row is
        `sent`, then counts: a second message written by then is counted too."""
        sent = sorted((ref, "sent") for ref in refs)
        wait_until(
            lambda: self.paid_notifications(refs) == sent and all(self.paid_mails(refs).values()),
            timeout=MAIL_TIMEOUT,
            interval=0.25,
            what=lambda: (
                f"each order's 'paid' e-mail sent: notifications {self.paid_notifications(refs)}, "
                f"e-mails in {self.mail_dir} {self.paid_mails(refs)}\n{self.worker.log_tail()}"
            ),
        )
        assert self.paid_mails(refs) == dict.fromkeys(refs, 1), (
            "every customer gets the 'paid' e-mail exactly once",
            self.paid_mails(refs),
        )

    def payment_status(self, ref: str) -> str:
        return str(self.sql("SELECT payment_status FROM orders_order WHERE ref = %s", ref)[0][0])

    def asset_status(self, asset_id: str) -> str:
        return str(self.sql("SELECT status FROM orders_asset WHERE id = %s", asset_id)[0][0])

    def order_statuses(self) -> dict[str, str]:
        rows = self.sql("SELECT ref, status FROM orders_order WHERE ref = ANY(%s)", self.orders)
        return dict(rows)

    def job_statuses_by_order(self) -> dict[str, list[str]]:
        """The status of each job of each order of the test (an order with no job: an empty list)."""
        by_order: dict[str, list[str]] = {ref: [] for ref in self.orders}
        for ref, status in self.sql(
            "SELECT o.ref, j.status FROM production_printjob j JOIN orders_order o ON o.id = j.order_id "
            "WHERE o.ref = ANY(%s) ORDER BY j.id",
            self.orders,
        ):
            by_order[str(ref)].append(str(status))
        return by_order

    def jobs(self) -> list[tuple[int, str, str, int]]:
        """(job id, status, printer name, copies) of this test's orders."""
        return [
            (int(pk), str(status), str(printer or ""), int(copies))
            for pk, status, printer, copies in self.sql(
                "SELECT j.id, j.status, p.name, j.copies FROM production_printjob j "
                "JOIN orders_order o ON o.id = j.order_id "
                "LEFT JOIN production_printer p ON p.id = j.printer_id "
                "WHERE o.ref = ANY(%s) ORDER BY j.id",
                self.orders,
            )
        ]

    def received(self) -> Counter[int]:
        """Files received per job, over every printer (ippeveprinter keeps each document it is sent), under
        whatever title it was sent with. What CUPS still holds is not there yet: see wait_cups_done."""
        counts: Counter[int] = Counter()
        for queue in ("photo", "large"):
            for path in self.cups.received_files(queue):
                title = path.stem.partition("-")[2]  # "<its job number>-lab-job-<pk>-<token>"
                if (job_id := PrintJob.id_from_title(title)) is not None:
                    counts[job_id] += 1
        return counts

    def received_files(self) -> list[tuple[str, float]]:
        """Each file the devices received with its time: which send of a job reached a device when."""
        files = [path for queue in ("photo", "large") for path in self.cups.received_files(queue)]
        return sorted(
            (f"{path.parent.parent.name}/{path.name}", round(path.stat().st_mtime, 2)) for path in files
        )

    def restart_events(self) -> object:
        """(watch, [(sequence, time)]) of each subscription cupsd holds now: which restarts it reports."""
        try:
            connection = connect(server=self.cups.server)
            watches = [int(w["notify-subscription-id"]) for w in connection.getSubscriptions("/")]
            return [
                (
                    watch,
                    [
                        (event.get("notify-sequence-number"), event.get("printer-up-time"))
                        for event in connection.getNotifications([watch]).get("events", [])
                    ],
                )
                for watch in watches
            ]
        except (RuntimeError, cups.IPPError) as error:
            return repr(error)

    def cups_queues(self) -> object:
        """Each queue's state and reasons at cupsd (a queue CUPS stopped holds its jobs pending)."""
        try:
            printers = connect(server=self.cups.server).getPrinters()
        except (RuntimeError, cups.IPPError) as error:
            return repr(error)
        return {
            name: (attributes.get("printer-state"), attributes.get("printer-state-reasons"))
            for name, attributes in printers.items()
        }

    def diagnosis(self) -> str:
        """What a lost race needs to be read without a rerun: every job event in time order, which send of
        each job reached a device when, what CUPS and the worker said, and which restarts the lab heard."""
        worker_lines = [
            line for line in self.worker.log_text().splitlines() if "restart" in line or "job status" in line
        ]
        cupsd_lines = [
            line
            for line in self.cups.error_log().splitlines()
            if "Expiring subscriptions" not in line and "job.cache" not in line
        ]
        device_lines = [
            f"{name}: {line}"
            for name in ("photo", "large")
            for line in self.cups.device_log(name).splitlines()
            if line.startswith("harness:")
        ]
        cursors = self.sql("SELECT name, server_watch_id, server_event_sequence FROM production_printer")
        return "\n".join(
            [
                "job events:",
                self.timeline(),
                f"received by the devices: {self.received_files()}",
                f"CUPS jobs {self.cups_jobs()}",
                f"CUPS queues {self.cups_queues()}",
                f"restart cursors {cursors}; restart events at cupsd {self.restart_events()}",
                "worker:",
                *worker_lines[-60:],
                "cupsd:",
                *cupsd_lines[-60:],
                "devices given up on a job without its document:",
                *device_lines,
            ]
        )

    def wait_settled(
        self, *, timeout: float = SETTLE_TIMEOUT, more: Callable[[], str] = str
    ) -> dict[str, str]:
        """Until every order of the test is past production, or in production with none of its jobs moving
        and one not printed (held for a person; an order all printed goes on to be packed): an order not yet
        released (`paid`) is waited for. A timeout's message holds what CUPS and the worker (and `more()`)
        say: a failure in CI can be read without a rerun. What it settled in: see assert_orders_made."""

        def settled() -> bool:
            statuses = self.order_statuses()
            jobs = self.job_statuses_by_order()
            return len(statuses) == len(self.orders) and all(
                status in SETTLED_ORDER_STATUSES
                or (
                    status == "in_production"
                    and not MOVING_JOB_STATUSES.intersection(jobs[ref])
                    and set(jobs[ref]) != {"printed"}
                )
                for ref, status in statuses.items()
            )

        wait_until(
            settled,
            timeout=timeout,
            interval=0.5,
            what=lambda: (
                f"orders settled: {self.order_statuses()} jobs {self.jobs()}\n{self.diagnosis()}\n"
                f"worker log:\n{self.worker.log_tail()}\n{more()}"
            ),
        )
        return self.order_statuses()

    def wait_cups_done(self) -> list[CupsJob]:
        """Wait until CUPS holds no job of this test's print jobs pending, held or processing, whatever its
        title (one a person gave up counts too); those still there after CUPS_DONE_TIMEOUT. An order settles
        when the one CUPS job the lab tracks per print job is over: a second one still queued would reach its
        device after the count, or be cancelled unseen by the fixture's `cancel -a`."""
        ours = {job_id for job_id, _, _, _ in self.jobs()}
        return self.cups.wait_jobs_over(
            lambda title: PrintJob.id_from_title(title) in ours, timeout=CUPS_DONE_TIMEOUT
        )

    def cups_sends(self) -> dict[int, list[CupsJob]]:
        """Per print job of the test, its jobs at CUPS not cancelled or aborted: each sends its document."""
        ours = {job_id for job_id, _, _, _ in self.jobs()}
        sends: dict[int, list[CupsJob]] = {job_id: [] for job_id in ours}
        for job in self.cups.jobs():
            job_id = PrintJob.id_from_title(job.title)
            if job_id in sends and job.state not in (JobState.CANCELED, JobState.ABORTED):
                sends[job_id].append(job)
        return sends

    def cups_jobs(self) -> dict[int, Any]:
        """Every job CUPS knows with what a failure needs to be read: state, reasons, times, documents."""
        try:
            return dict(
                connect(server=self.cups.server).getJobs(
                    which_jobs="all",
                    requested_attributes=[
                        "job-id",  # pycups keys the answer by it: without it the answer is empty
                        "job-name",
                        "job-state",
                        "job-state-reasons",
                        "time-at-creation",
                        "time-at-processing",
                        "time-at-completed",
                        "number-of-documents",
                        "job-impressions-completed",
                        "job-printer-uri",
                    ],
                )
            )
        except (PrinterError, RuntimeError, cups.IPPError) as error:
            return {0: {"unreadable": repr(error)}}

    def processing_at_cups(self) -> list[int]:
        """CUPS job ids of ours that CUPS is sending to a device right now."""
        try:
            connection = connect(server=self.cups.server)
            # "not-completed" answers nothing on this CUPS; "all" with the state does.
            jobs = connection.getJobs(
                which_jobs="all", requested_attributes=["job-id", "job-state", "job-name"]
            )
        except (PrinterError, RuntimeError, cups.IPPError):
            return []
        return [
            job_id
            for job_id, attributes in jobs.items()
            if attributes.get("job-state") == 5 and str(attributes.get("job-name", "")).startswith("lab-job-")
        ]

    def _cups_job(self, job_id: int) -> dict[str, object]:
        rows = self.sql("SELECT backend_job_id FROM production_printjob WHERE id = %s", job_id)
        try:
            return dict(connect(server=self.cups.server).getJobAttributes(int(rows[0][0])))
        except Exception as error:
            return {"error": repr(error)}

    def job_events(self, job_id: int) -> list[tuple[Any, ...]]:
        """(kind, from, to, note) of each event of the job, oldest first."""
        return self.sql(
            "SELECT kind, from_status, to_status, note FROM production_jobevent"
            " WHERE job_id = %s ORDER BY id",
            job_id,
        )

    def timeline(self) -> str:
        """Every event of the test's jobs in time order (epoch seconds): what a lost race needs to be read."""
        rows = self.sql(
            "SELECT extract(epoch FROM e.created_at)::numeric(14, 2), e.job_id, e.kind, e.from_status, "
            "e.to_status, e.note FROM production_jobevent e JOIN production_printjob j ON j.id = e.job_id "
            "JOIN orders_order o ON o.id = j.order_id WHERE o.ref = ANY(%s) ORDER BY e.id",
            self.orders,
        )
        return "\n".join(" ".join(map(str, row)) for row in rows)

    def story(self) -> str:
        """Jobs and the events of each job not `printed`: what a failed assertion needs to be read."""
        lines = [f"orders {self.order_statuses()}"]
        for job_id, status, printer, _copies in self.jobs():
            events = [] if status == "printed" else self.job_events(job_id)
            lines.append(f"job {job_id} on {printer}: {status} {events}")
        return "\n".join(lines)

    def assert_orders_made(self, *, printed_at_least: int = 1) -> None:
        """Each order of the test released into one job per line (LINES) and made: ready to pack with every
        job printed, or in production with each job printed or on the board for a person (suspect, unknown)
        — never an order left unreleased, or a job lost, failed or cancelled. And at least `printed_at_least`
        jobs printed: a run that put every job on the board checked no copy at all."""
        statuses = self.order_statuses()
        jobs = self.job_statuses_by_order()
        made = {
            ref: len(jobs[ref]) == len(LINES)
            and (
                (statuses.get(ref) == "ready_to_pack" and set(jobs[ref]) == {"printed"})
                or (
                    statuses.get(ref) == "in_production"
                    and set(jobs[ref]) <= {"printed", *PERSON_JOB_STATUSES}
                )
            )
            for ref in self.orders
        }
        printed = sum(status == "printed" for statuses_of in jobs.values() for status in statuses_of)
        assert all(made.values()) and printed >= printed_at_least, (
            f"orders not made: {[ref for ref, ok in made.items() if not ok]}; {printed} jobs printed "
            f"(at least {printed_at_least} expected)\n{self.story()}"
        )

    def pay_and_freeze_the_worker_mid_claim(self, *, attempts: int = 5) -> dict[int, tuple[str, str]]:
        """Place and pay an order, and freeze (SIGSTOP) the worker while it holds the claim of one of the
        test's jobs (making its raster, or sending it); with another order when the job moved on before the
        freeze (up to `attempts` orders). The claims it holds frozen: job id -> (its holder, the status it
        holds the job in). The worker stays frozen (resume it)."""
        for _ in range(attempts):
            self.pay_and_wait_until_a_job_is_being_made(orders=1, held=("rasterizing", "submitting"))
            self.worker.pause()
            time.sleep(0.2)  # a commit the worker sent just before it froze is applied before the read
            held = {
                int(job_id): (str(holder), str(status))
                for job_id, holder, status in self.sql(
                    "SELECT j.id, j.claimed_by, j.status FROM production_printjob j"
                    " JOIN orders_order o ON o.id = j.order_id"
                    " WHERE o.ref = ANY(%s) AND j.status IN ('rasterizing', 'submitting')",
                    self.orders,
                )
            }
            if held:
                return held
            self.worker.resume()  # it moved on before the freeze: another order
        raise AssertionError(f"the worker never froze holding a claim in {attempts} tries\n{self.story()}")

    def assert_each_copy_once_or_shown(self) -> None:
        """Each job of the test `printed`, sent by one CUPS job and received once by its device — or on the
        board for a person. Counted once CUPS has finished with the test's jobs (wait_cups_done)."""
        unfinished = self.wait_cups_done()
        received = self.received()
        sends = self.cups_sends()
        for job_id, status, printer, _copies in self.jobs():
            if status in ("suspect", "unknown"):
                continue  # on the board for a person: "may have printed twice" / "fate unknown"
            if (status, received[job_id], len(sends[job_id])) != ("printed", 1, 1):
                raise AssertionError(
                    f"job {job_id} on {printer}: {status}, {received[job_id]} files at the device, "
                    f"{len(sends[job_id])} CUPS jobs not cancelled or aborted {sends[job_id]}; "
                    f"unfinished at CUPS after {CUPS_DONE_TIMEOUT:g} s: {unfinished}; "
                    f"events {self.job_events(job_id)}; "
                    f"at CUPS {self._cups_job(job_id)}\n{self.diagnosis()}"
                )


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, localstripe: LocalStripe, migrated_schema: Path
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("faults")
    with contextlib.ExitStack() as cleanup:
        postgres = cleanup.enter_context(PrivatePostgres())
        redis_server = cleanup.enter_context(PrivateRedis())
        cups = cleanup.enter_context(PrivateCups())
        # Each print takes the device 2 s, so a job stays `processing` at CUPS long enough to restart cupsd.
        cups.add_printer("photo", media=PHOTO_MEDIA, media_ready=PHOTO_MEDIA, print_seconds=PRINT_SECONDS)
        cups.add_printer("large", media=LARGE_MEDIA, media_ready=LARGE_MEDIA, print_seconds=PRINT_SECONDS)
        database_url = postgres.create_database("lab", schema=migrated_schema)
        env = app_environment(
            database_url=database_url,
            broker_url=redis_server.url(db=0),
            var_dir=root / "var",
            extra={**FAULT_ENV, "STRIPE_API_BASE": localstripe.url, "CUPS_SERVER": cups.server},
        )
        django_manage("seed_demo", env=env)
        django_manage("printers_sync", "--server", cups.server, "--papers", "lustre,glossy", env=env)
        web = LabWebServer(work_dir=root / "web", env=env).start()
        cleanup.callback(web.stop)
        worker = CeleryWorker(
            work_dir=root / "worker",
            project_dir=PROJECT_DIR,
            env=env,
            broker_url=redis_server.url(db=0),
            database_url=database_url,
        )
        cleanup.callback(worker.stop)
        stack = Stack(
            postgres=postgres,
            redis=redis_server,
            cups=cups,
            web=web,
            worker=worker,
            database_url=database_url,
        )
        # Only the two CUPS printers print here: the demo hot folder is taken out of service.
        stack.sql(
            "UPDATE production_printer SET is_paused_by_lab = true WHERE backend = 'hotfolder' RETURNING id"
        )
        status, account = call(
            web.url,
            "POST",
            "/api/v1/accounts",
            json.dumps(
                {
                    "email": "faults@example.org",
                    "password": "a long fault secret 77",
                    "full_name": "Fault Tester",
                    "address": ADDRESS,
                    "birth_date": "1980-01-01",
                    "privacy_policy_version": "1.0",
                }
            ).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 201, json.dumps(account)
        stack.token = account["token"]
        upload, content_type = multipart("file", "p.jpg", jpeg_bytes(1800, 1200))
        status, asset = call(
            web.url,
            "POST",
            "/api/v1/assets",
            upload,
            {
                "Authorization": f"Token {stack.token}",
                "Content-Type": content_type,
            },
        )
        assert status == 201, asset
        stack.asset_id = asset["id"]
        worker.start(purge=True)
        yield stack


@pytest.fixture
def lab(stack: Stack) -> Iterator[Stack]:
    """The module's stack with a fresh list of this test's orders; every service running again afterwards, and
    no job left at CUPS: a test that failed with jobs stuck there must not hold up the next one's prints."""
    stack.orders = []
    yield stack
    stack.postgres.resume()  # a test that failed while it had one stalled
    stack.redis.resume()
    if not stack.redis.is_running:
        stack.redis.start()
    if not stack.postgres.is_running:
        stack.postgres.start()
    if not stack.cups.is_cupsd_running():
        stack.cups.start_cupsd()
    stack.cups.cancel_all()
    if not stack.worker.is_running:
        stack.worker.start()
    if not stack.web.is_running:
        stack.web.start()


LINES = [("PRINT-4X6-GLOSSY", 2), ("PRINT-8X10-LUSTRE", 1)]


def test_redis_restarted_twice_mid_run_loses_no_paid_order_and_prints_each_copy_once(lab: Stack):
    orders = [lab.place_order(LINES) for _ in range(6)]
    lab.worker.stop()
    with serving({"/photo.jpg": jpeg_bytes(1200, 800)}) as (photo_site, asked):
        status, photo = call(
            lab.web.url,
            "POST",
            "/api/v1/assets",
            json.dumps({"url": f"{photo_site}/photo.jpg"}).encode(),
            {"Authorization": f"Token {lab.token}", "Content-Type": "application/json"},
        )
        assert (status, photo.get("status")) == (202, "pending"), photo
        for order in orders[:3]:
            lab.pay(order)
        # No persistence: the three release messages (and their e-mails), and the photo's fetch, waiting in
        # Redis are gone for sure.
        lab.redis.restart()
        lab.worker.start()
        for order in orders[3:]:
            lab.pay(order)
        # and again while the worker is rasterizing or submitting
        wait_until(
            lambda: any(status in ("rasterizing", "submitting") for _, status, _, _ in lab.jobs()),
            timeout=60,
            interval=0.02,
            what=lambda: f"a job rasterizing or submitting; jobs {lab.jobs()}",
        )
        lab.redis.restart()

        lab.wait_settled()
        wait_until(
            lambda: lab.asset_status(photo["id"]) != "pending",
            timeout=30,
            what=lambda: f"the photo by URL fetched; worker log:\n{lab.worker.log_tail()}",
        )

    assert set(lab.order_statuses().values()) == {"ready_to_pack"}, lab.story()
    lab.assert_each_copy_once_or_shown()
    assert len(lab.orders) == len(orders)
    lab.assert_paid_mail_sent_once_each(lab.orders)  # every customer still gets it, exactly once
    assert (lab.asset_status(photo["id"]), asked["/photo.jpg"]) == ("ready", 1)


def test_the_copy_check_counts_a_second_copy_cups_still_holds_when_the_order_settles(
    lab: Stack, tmp_path: Path
) -> None:
    # given an order made, each copy printed once
    lab.pay(lab.place_order(LINES))
    lab.wait_settled()
    lab.assert_each_copy_once_or_shown()
    ((job_id, printer, queue, token), *_) = lab.sql(
        "SELECT j.id, p.name, p.target, j.title_token FROM production_printjob j"
        " JOIN orders_order o ON o.id = j.order_id JOIN production_printer p ON p.id = j.printer_id"
        " WHERE o.ref = ANY(%s) ORDER BY j.id",
        lab.orders,
    )

    # when CUPS takes a second copy of one job, under its title, and starts sending it as the check begins
    second_copy = tmp_path / "second-copy.jpg"
    second_copy.write_bytes(jpeg_bytes(600, 400))
    lab.cups.disable(queue)
    try:
        lab.cups.print_file(queue, second_copy, title=job_title(job_id, token))
    finally:
        lab.cups.enable(queue)

    # then the check waits for CUPS to send it and fails, naming the job: two sends, two files at the device
    counted_twice = rf"job {job_id} on {printer}: printed, 2 files at the device, 2 CUPS jobs not cancelled"
    with pytest.raises(AssertionError, match=counted_twice):
        lab.assert_each_copy_once_or_shown()


def test_the_stripe_webhook_is_answered_2xx_while_the_broker_is_down_and_the_order_still_prints(lab: Stack):
    order = lab.place_order(LINES)
    lab.redis.stop()

    started = time.monotonic()
    answers = lab.pay(order, deadline_seconds=20)
    answered_in = time.monotonic() - started
    assert lab.order_statuses()[order["ref"]] == "paid"
    lab.redis.start()

    assert answers == [200]
    assert answered_in < 10
    lab.wait_settled()
    assert lab.order_statuses()[order["ref"]] == "ready_to_pack"
    lab.assert_each_copy_once_or_shown()


def test_a_stalled_redis_holds_up_no_webhook_or_customer_request_and_the_order_still_prints(lab: Stack):
    order = lab.place_order(LINES)
    customer = {"Authorization": f"Token {lab.token}"}

    # when Redis (broker and shared cache) stalls: connections are taken and never answered
    lab.redis.pause()
    try:
        started = time.monotonic()
        answers = lab.pay(order, deadline_seconds=30)
        paid_in = time.monotonic() - started
        started = time.monotonic()
        status, read = call(lab.web.url, "GET", f"/api/v1/orders/{order['ref']}", None, customer)
        read_in = time.monotonic() - started
        started = time.monotonic()  # anonymous: counted by the throttle, in the stalled cache
        browsing, products = call(lab.web.url, "GET", "/api/v1/products")
        browsed_in = time.monotonic() - started
        assert lab.order_statuses()[order["ref"]] == "paid"
    finally:
        lab.redis.resume()

    # then Stripe's webhook and the customers' requests were answered, well inside any proxy's or Stripe's
    # patience (6 s, 0.01 s and 2 s measured), and once Redis answers again the order prints, each copy once
    assert (answers, status, browsing) == ([200], 200, 200), (read, products)
    assert paid_in < 10
    assert read_in < 10
    assert browsed_in < 10
    lab.wait_settled()
    assert lab.order_statuses()[order["ref"]] == "ready_to_pack"
    lab.assert_each_copy_once_or_shown()


def test_a_worker_killed_inside_the_release_loses_no_order(lab: Stack):
    order = lab.place_order(LINES)
    # The order's "received" e-mail goes first: its task, still queued ahead of the release, would wait on the
    # held row (its notification row points at the order) and the one-process worker would never reach the
    # release (a flake seen in CI when the worker was slower than the test).
    wait_until(
        lambda: lab.sql(
            "SELECT count(*) FROM notify_notification n JOIN orders_order o ON o.id = n.order_id "
            "WHERE o.ref = %s AND n.kind = 'order_received' AND n.status IN ('sent', 'skipped')",
            order["ref"],
        )[0][0],
        timeout=30,
        what=lambda: f"the order's 'received' e-mail\n{lab.worker.log_tail()}",
    )
    lab.worker.stop()
    lab.pay(order)  # the release message waits in the broker
    with psycopg.connect(lab.database_url) as blocker:
        # Hold the order's row: the release task blocks on its lock, inside order_release.
        blocker.execute("SELECT id FROM orders_order WHERE ref = %s FOR UPDATE", (order["ref"],))
        started_at = lab.worker.log_offset()
        lab.worker.start()
        wait_until(
            lambda: lab.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                "%orders_order%FOR UPDATE%",
            )[0][0],
            timeout=30,
            what=lambda: (
                f"the release task to wait for the order's lock; tasks taken: "
                f"{lab.worker.tasks_received_since(started_at)}"
            ),
        )
        # One process, one message in hand: the task waiting on the row is the last one taken, the release.
        assert lab.worker.tasks_received_since(started_at)[-1] == "production.order_release"
        lab.worker.kill()
    lab.worker.start()

    lab.wait_settled()

    assert lab.order_statuses()[order["ref"]] == "ready_to_pack"
    lab.assert_each_copy_once_or_shown()


def test_a_worker_frozen_past_its_claim_s_lease_mid_job_never_prints_a_copy_twice_unseen(
    lab: Stack, tmp_path: Path
) -> None:
    # given a job held by the worker (rasterizing or being sent), and the worker frozen there, its claim held
    held = lab.pay_and_freeze_the_worker_mid_claim()
    # when another worker (with its own beat: the frozen one's is frozen too) sees the claim run out and takes
    # the job over, and then the frozen worker goes on with the claim it still believes it holds
    other = CeleryWorker(
        work_dir=tmp_path / "other-worker",
        project_dir=PROJECT_DIR,
        env=lab.worker.env,
    )

    def taken_over(job_id: int, holder: str, status: str) -> bool:
        kinds = {kind for kind, _, _, note in lab.job_events(job_id) if note != holder}
        return bool(kinds & TAKEOVER_EVENT_KINDS[status])

    try:
        other.start()
        wait_until(
            lambda: all(taken_over(job_id, *claim) for job_id, claim in held.items()),
            timeout=SETTLE_TIMEOUT,
            what=lambda: f"each frozen claim taken over: {lab.timeline()}\n{other.log_tail()}",
        )
        # Claims frozen making their raster: the other worker makes and prints them alone. A claim frozen
        # while sending may have its job created at CUPS and its document still in the frozen worker's upload:
        # cupsd holds that job (job-incoming) for its sender until MultipleOperationTimeout, so it settles
        # once that worker goes on (a run froze it there, and the test waited for it in vain).
        if all(status == "rasterizing" for _, status in held.values()):
            lab.wait_settled(more=other.log_tail)
        lab.worker.resume()
        lab.wait_settled(more=other.log_tail)
    finally:
        other.stop()
        lab.worker.resume()
    lab.worker.wait_rounds(poll=2, reconcile=2, timeout=60)

    # then the other worker took each frozen claim over, every order is made (each job printed, or on the
    # board for a person), and no copy reached a printer twice unseen
    lab.wait_settled()
    lab.assert_orders_made()
    lab.assert_each_copy_once_or_shown()
    for job_id, (holder, status) in held.items():
        assert taken_over(job_id, holder, status), (holder, status, lab.job_events(job_id))


def test_a_worker_whose_clock_runs_hours_ahead_takes_over_no_claim_another_worker_holds(
    lab: Stack, tmp_path: Path
) -> None:
    # given a job the lab's worker holds (making its raster or sending it), frozen there, its claim live
    held = lab.pay_and_freeze_the_worker_mid_claim()
    frozen_at = lab.sql("SELECT coalesce(max(id), 0) FROM production_jobevent")[0][0]
    # when a second worker with its own beat joins from a host whose clock runs two hours ahead, and runs its
    # reconcile rounds while the claim is live (its lease there: two minutes)
    other = CeleryWorker(
        work_dir=tmp_path / "worker-two-hours-ahead",
        project_dir=PROJECT_DIR,
        env=clock_off_by(timedelta(hours=2), {**lab.worker.env, "PRODUCTION_CLAIM_LEASE_SECONDS": "120"}),
    )
    try:
        other.start()
        other.wait_rounds(reconcile=2, timeout=60)
        other.stop()
        # The lab's worker is still frozen: every event of its jobs since the freeze is the other worker's.
        while_frozen = lab.sql(
            "SELECT job_id, kind, from_status, to_status, note FROM production_jobevent"
            " WHERE id > %s AND job_id = ANY(%s) ORDER BY id",
            frozen_at,
            list(held),
        )
    finally:
        other.stop()
        lab.worker.resume()

    # then it took over no claim, as a raster claim is taken over (claimed again) nor as a submit claim is
    # (settled by the reconciler: sent again, adopted or left to a person): before, only `lease_taken_over`
    # was looked for, and a submit claim the reconciler settled on the worker's clock went unseen
    taken_over = set().union(*TAKEOVER_EVENT_KINDS.values())
    assert not [event for event in while_frozen if event[1] in taken_over], (held, while_frozen)
    # and only their own worker took any over (once its own lease ran out), no job waits for a person, and
    # each copy was printed once
    lab.wait_settled()
    assert {status for _, status, _, _ in lab.jobs()} == {"printed"}, lab.story()
    lab.assert_each_copy_once_or_shown()
    for job_id, (holder, _) in held.items():
        takers = {note for kind, _, _, note in lab.job_events(job_id) if kind == "lease_taken_over"}
        assert takers <= {holder}, (holder, lab.job_events(job_id))


def test_postgresql_restarted_while_webhooks_arrive_loses_no_order_and_prints_each_copy_once(lab: Stack):
    first, *others = orders = [lab.place_order(LINES) for _ in range(4)]

    # given the first order's webhook inside its transaction, waiting for the order's row lock
    with contextlib.closing(psycopg.connect(lab.database_url)) as blocker:
        blocker.execute("SELECT id FROM orders_order WHERE ref = %s FOR UPDATE", (first["ref"],))
        delivery, in_flight = _in_flight(functools.partial(lab.pay, first))
        wait_until(
            lambda: lab.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                "%orders_order%payment_intent_id%FOR UPDATE%",
            )[0][0],
            timeout=30,
            what="the webhook waiting for the order's lock",
        )
        # when PostgreSQL crashes and restarts (immediate stop) there, while the other orders' webhooks arrive
        restarter = threading.Thread(target=lab.postgres.restart, kwargs={"mode": "immediate"})
        restarter.start()
        retried = [lab.pay(order) for order in others]
        restarter.join()
    delivery.join(timeout=90)

    # then the webhook in flight met the outage and was retried until answered 200, as every other was; each
    # payment applied once, and each copy printed once
    assert in_flight and len(in_flight[0]) > 1 and in_flight[0][-1] == 200, in_flight
    assert all(answers[-1] == 200 for answers in retried), retried
    lab.wait_settled()
    assert set(lab.order_statuses().values()) == {"ready_to_pack"}, lab.story()
    lab.assert_each_copy_once_or_shown()
    assert lab.paid_events(lab.orders) == len(orders)  # a retried webhook applied once


def test_postgresql_crashed_twice_while_jobs_rasterize_and_print_needs_no_person_and_prints_each_copy_once(
    lab: Stack,
) -> None:
    # when PostgreSQL crashes (immediate stop, crash recovery at start) while jobs are being made, and again
    # while CUPS sends one to a device
    lab.pay_and_wait_until_a_job_is_being_made(orders=3)
    lab.postgres.restart(mode="immediate")
    wait_until(lab.processing_at_cups, timeout=60, interval=0.1, what=lambda: f"a job at CUPS; {lab.jobs()}")
    lab.postgres.restart(mode="immediate")

    # then every order is made, each copy printed once, and nothing waits for a person
    lab.wait_settled()
    assert set(lab.order_statuses().values()) == {"ready_to_pack"}, lab.story()
    lab.assert_each_copy_once_or_shown()
    assert {status for _, status, _, _ in lab.jobs()} == {"printed"}


def test_postgresql_stalled_past_every_claim_s_lease_while_jobs_are_made_prints_each_copy_once(lab: Stack):
    # when PostgreSQL stalls (every backend SIGSTOPped) while jobs are being made, for longer than a claim's
    # lease: when it answers again, the workers go on with the claims they hold while the reconciler, by the
    # clock, sees each of those claims run out
    lab.pay_and_wait_until_a_job_is_being_made(orders=3)
    lab.postgres.pause()
    try:
        time.sleep(int(FAULT_ENV["PRODUCTION_CLAIM_LEASE_SECONDS"]) + 3)
    finally:
        lab.postgres.resume()

    # then no copy is printed twice unseen, and no order waits for ever: each is made, its jobs printed or on
    # the board for a person
    lab.wait_settled()
    lab.assert_orders_made()
    lab.assert_each_copy_once_or_shown()


def test_cupsd_restarted_while_jobs_print_never_prints_a_copy_twice_unseen(lab: Stack):
    orders = [lab.place_order(LINES) for _ in range(3)]
    for order in orders:
        lab.pay(order)

    for _ in range(3):  # again and again: each restart hits a job that CUPS is sending to a device
        wait_until(
            lab.processing_at_cups,
            timeout=60,
            interval=0.1,
            what=lambda: f"a job processing at CUPS; jobs {lab.jobs()}",
        )
        lab.cups.restart_cupsd()
        time.sleep(PRINT_SECONDS)

    lab.wait_settled()

    # then each order is made: its jobs printed, or shown to a person; no copy printed twice unseen (three
    # restarts may each mark a job per printer: every job may end on the board, checked below)
    lab.assert_orders_made(printed_at_least=0)
    lab.assert_each_copy_once_or_shown()
    suspect = [job_id for job_id, status, _, _ in lab.jobs() if status == "suspect"]
    assert suspect, "the restarted jobs are shown to a person as 'may have printed twice'"
    events = lab.sql("SELECT DISTINCT kind FROM production_jobevent WHERE job_id = ANY(%s)", suspect)
    assert {kind for (kind,) in events} & {"requeued_by_printer", "printed_more_than_once"}


@contextlib.contextmanager
def listener_and_no_poll(lab: Stack, tmp_path: Path) -> Iterator[tuple[CeleryWorker, PrinterEventsListener]]:
    """The printer-events listener (its log at DEBUG), and a worker of the stack's whose beat never polls
    printers: every restart and completion is heard from the listener alone. The module's worker is stopped
    meanwhile (the `lab` fixture starts it again)."""
    lab.worker.stop()
    worker = CeleryWorker(
        work_dir=tmp_path / "worker",
        project_dir=PROJECT_DIR,
        env={**lab.worker.env, "PRODUCTION_POLL_SECONDS": "3600"},
    )
    listener = PrinterEventsListener(
        work_dir=tmp_path / "listener", env={**lab.worker.env, "LOG_LEVEL": "DEBUG"}, project_dir=PROJECT_DIR
    )
    try:
        worker.start(purge=True)  # not the poll rounds the module's beat left queued
        listener.start().wait_watching(lab.cups.server)
        yield worker, listener
    finally:
        listener.stop()
        worker.stop()


def test_cupsd_restarted_mid_job_with_the_listener_and_no_poll_ends_the_job_suspect_not_printed(
    lab: Stack, tmp_path: Path
) -> None:
    # given the printer-events listener, and a worker whose beat never polls printers in this test: every
    # restart and completion is heard from the listener alone
    with listener_and_no_poll(lab, tmp_path) as (worker, listener):
        orders = [lab.place_order(LINES) for _ in range(2)]
        for order in orders:
            lab.pay(order)

        # when cupsd restarts while it sends one of our jobs to a device
        (interrupted,) = wait_until(
            lambda: lab.processing_at_cups()[:1],
            timeout=60,
            interval=0.05,
            what=lambda: f"a job processing at CUPS; jobs {lab.jobs()}\n{listener.log_tail()}",
        )
        lab.cups.restart_cupsd()
        lab.wait_settled(more=lambda: f"listener log:\n{listener.log_tail(8000)}")

    # then that job is shown to a person as "may have printed twice", never silently printed; every other
    # copy was printed once (each order made); and no poll or reconcile round ran
    ((job_id, status),) = lab.sql(
        "SELECT j.id, j.status FROM production_printjob j JOIN orders_order o ON o.id = j.order_id "
        "WHERE o.ref = ANY(%s) AND j.backend_job_id = %s",
        lab.orders,
        str(interrupted),
    )
    events = lab.sql(
        "SELECT created_at, kind, note FROM production_jobevent WHERE job_id = %s ORDER BY id", job_id
    )
    assert status == "suspect", "\n".join(
        [*map(str, events), f"jobs {lab.jobs()}", f"CUPS jobs {lab.cups_jobs()}", listener.log_tail(8000)]
    )
    lab.assert_orders_made()
    lab.assert_each_copy_once_or_shown()
    assert re.findall(r"Task production\.(printer_poll|reconcile)\[", worker.log_text()) == []


def test_postgresql_crashed_while_jobs_print_with_the_listener_and_no_poll_loses_no_completion(
    lab: Stack, tmp_path: Path
) -> None:
    # given the printer-events listener, and a worker whose beat never polls printers in this test: every
    # completion is heard from the listener alone
    with listener_and_no_poll(lab, tmp_path) as (worker, listener):
        for order in [lab.place_order(LINES) for _ in range(2)]:
            lab.pay(order)

        # when PostgreSQL crashes (immediate stop) while CUPS prints them, every job already handed over
        def handed_over_and_printing() -> bool:
            statuses = [status for _, status, _, _ in lab.jobs()]
            return (
                len(statuses) == 2 * len(LINES)
                and set(statuses) <= {"submitted", "printed"}
                and "submitted" in statuses
            )

        wait_until(
            handed_over_and_printing,
            timeout=60,
            interval=0.05,
            what=lambda: f"every job handed to CUPS, one printing; jobs {lab.jobs()}\n{listener.log_tail()}",
        )
        lab.postgres.restart(mode="immediate")
        lab.wait_settled(more=lambda: f"listener log:\n{listener.log_tail(8000)}")

    # then the listener met the crash and went on: every job printed, each copy once, with no poll or
    # reconcile round, and nothing for a person
    assert "printer events: database error" in listener.log_text() or (
        "printer events: cannot read the printers" in listener.log_text()
    ), listener.log_tail()
    assert {status for _, status, _, _ in lab.jobs()} == {"printed"}
    assert set(lab.order_statuses().values()) == {"ready_to_pack"}, lab.story()
    lab.assert_each_copy_once_or_shown()
    assert re.findall(r"Task production\.(printer_poll|reconcile)\[", worker.log_text()) == []


# --- The same requests raced across several web processes ------------------------------------------------

Request = tuple[LabWebServer, str, str, bytes, dict[str, str]]
Answer = TypeVar("Answer")


def race(requests: list[Request], *, delays: list[float] | None = None) -> list[tuple[int, Any]]:
    """Send every request at the same moment (or that many seconds after it), each from its own thread; the
    answers in request order."""
    answers: list[tuple[int, Any]] = [(0, None)] * len(requests)
    barrier = threading.Barrier(len(requests))

    def send(index: int, request: Request) -> None:
        web, method, path, body, headers = request
        barrier.wait()
        time.sleep(delays[index] if delays else 0)
        answers[index] = call(web.url, method, path, body, headers)

    threads = [threading.Thread(target=send, args=pair) for pair in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    return answers


def charge_at_stripe(lab: Stack, order: dict[str, Any]) -> stripe.StripeClient:
    """What the customer's browser does: a test card on the order's PaymentIntent, confirmed at Stripe."""
    client = stripe.StripeClient(
        FAULT_ENV["STRIPE_SECRET_KEY"], base_addresses={"api": lab.worker.env["STRIPE_API_BASE"]}
    )
    intent = order["payment"]["payment_intent"]
    client.v1.payment_intents.update(intent, params={"payment_method": card_payment_method(client)})
    assert client.v1.payment_intents.confirm(intent).status == "succeeded"
    return client


def succeeded_event(order: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
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
    return payload, {"Content-Type": "application/json", "Stripe-Signature": header}


@pytest.fixture
def three_web_processes(lab: Stack, tmp_path: Path) -> Iterator[list[LabWebServer]]:
    """The stack's gunicorn and two more, each its own process on the same database and broker."""
    others: list[LabWebServer] = []
    try:
        for n in (2, 3):
            others.append(LabWebServer(work_dir=tmp_path / f"web{n}", env=lab.worker.env).start())
        yield [lab.web, *others]
    finally:
        for web in others:
            web.stop()


def test_the_same_requests_raced_across_three_web_processes_take_effect_once(
    lab: Stack, three_web_processes: list[LabWebServer]
) -> None:
    webs = three_web_processes
    assert len({web.pid for web in webs}) == 3
    customer = {"Authorization": f"Token {lab.token}", "Content-Type": "application/json"}

    # given one order sent with one Idempotency-Key to each process three times, all at once
    body = lab.order_body(LINES)
    key = {**customer, "Idempotency-Key": uuid.uuid4().hex}
    created = race([(web, "POST", "/api/v1/orders", body, key) for web in webs for _ in range(3)])

    # then one order exists, with one PaymentIntent, and every caller got it: once 201, then 200 replays
    assert sorted(status for status, _ in created) == [200] * 8 + [201], created
    assert len({(order["ref"], order["payment"]["payment_intent"]) for _, order in created}) == 1
    order = created[0][1]
    lab.orders.append(order["ref"])
    assert lab.sql("SELECT count(*) FROM orders_order WHERE ref = %s", order["ref"]) == [(1,)]

    # when it is paid and Stripe's one event arrives at every process twice, at once
    charge_at_stripe(lab, order)
    payload, headers = succeeded_event(order)
    delivered = race([(web, "POST", "/api/v1/webhooks/stripe", payload, headers) for web in webs * 2])

    # then every delivery is answered 2xx, the payment is applied once, and each copy prints once
    assert [status for status, _ in delivered] == [200] * 6, delivered
    lab.wait_settled()
    assert lab.order_statuses() == {order["ref"]: "ready_to_pack"}
    lab.assert_each_copy_once_or_shown()
    assert lab.paid_events([order["ref"]]) == 1
    lab.assert_paid_mail_sent_once_each([order["ref"]])


def test_a_cancel_raced_against_the_payment_across_web_processes_either_refunds_once_or_prints_once(
    lab: Stack, three_web_processes: list[LabWebServer]
) -> None:
    webs = three_web_processes
    # given orders their customer has paid at Stripe
    orders = [lab.place_order(LINES) for _ in range(6)]
    clients = [charge_at_stripe(lab, order) for order in orders]

    # when, for each, the customer's cancel reaches one process while Stripe's event reaches the other two;
    # the cancel comes a little later for some, so that it meets every step: before the payment, after it,
    # and after the release (which one it meets is up to the race, and each outcome is checked below)
    cancels = []
    for order, late in zip(orders, (0, 0, 0.05, 0.1, 0.3, 1.0), strict=True):
        payload, headers = succeeded_event(order)
        cancel: Request = (
            webs[1],
            "POST",
            f"/api/v1/orders/{order['ref']}/cancel",
            b"",
            {"Authorization": f"Token {lab.token}"},
        )
        answers = race(
            [
                (webs[0], "POST", "/api/v1/webhooks/stripe", payload, headers),
                cancel,
                (webs[2], "POST", "/api/v1/webhooks/stripe", payload, headers),
            ],
            delays=[0, late, 0],
        )
        assert (answers[0][0], answers[2][0]) == (200, 200), answers
        assert answers[1][0] in (200, 409), answers
        cancels.append(answers[1][0])

    # then each order either was cancelled and refunded once, printing nothing, or printed each copy once
    # and refunded nothing; never both, never neither
    lab.wait_settled()
    cancelled = [order["ref"] for order, status in zip(orders, cancels, strict=True) if status == 200]
    wait_until(
        lambda: all(lab.payment_status(ref) == "refunded" for ref in cancelled),
        timeout=SETTLE_TIMEOUT,
        what=lambda: f"orders {cancelled} refunded\n{lab.worker.log_tail()}",
    )
    statuses = lab.order_statuses()
    lab.wait_cups_done()
    received = lab.received()
    for order, cancel_status, client in zip(orders, cancels, clients, strict=True):
        ref, intent = order["ref"], order["payment"]["payment_intent"]
        refunds = client.v1.refunds.list(params={"payment_intent": intent}).data
        if cancel_status == 200:
            printed = lab.sql(
                "SELECT j.id FROM production_printjob j JOIN orders_order o ON o.id = j.order_id "
                "WHERE o.ref = %s",
                ref,
            )
            assert statuses[ref] == "cancelled"
            assert [received[job_id] for (job_id,) in printed if received[job_id]] == []
            assert [refund.amount for refund in refunds] == [order["total_minor"]]
        else:
            assert statuses[ref] == "ready_to_pack"
            assert lab.payment_status(ref) == "succeeded"
            assert refunds == []
    lab.assert_each_copy_once_or_shown()


def _in_flight(send: Callable[[], Answer]) -> tuple[threading.Thread, list[Answer]]:
    answers: list[Answer] = []
    thread = threading.Thread(target=lambda: answers.append(send()))
    thread.start()
    return thread, answers


def _wait_for_a_lock_wait(lab: Stack, table: str) -> None:
    wait_until(
        lambda: lab.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            f"%{table}%",
        )[0][0],
        timeout=30,
        what=f"a request waiting for a lock on {table}",
    )


def test_a_web_process_killed_mid_request_loses_nothing_and_the_retry_applies_once(lab: Stack) -> None:
    body = lab.order_body(LINES)
    headers = {
        "Authorization": f"Token {lab.token}",
        "Content-Type": "application/json",
        "Idempotency-Key": uuid.uuid4().hex,
    }
    send_order = functools.partial(call, lab.web.url, "POST", "/api/v1/orders", body, headers)

    # given an order request inside its transaction (its key row written, waiting for the photo's lock)
    with psycopg.connect(lab.database_url) as blocker:
        blocker.execute("SELECT id FROM orders_asset WHERE id = %s FOR UPDATE", (lab.asset_id,))
        thread, answers = _in_flight(send_order)
        _wait_for_a_lock_wait(lab, "orders_asset")
        # when the web process is SIGKILLed there
        lab.web.kill()
    thread.join(timeout=30)
    assert answers[0][0] == 0, answers  # the client got no answer
    lab.web.start()

    # then nothing of it was kept, and the client's retry with the same key creates the order, once
    assert lab.sql(
        "SELECT count(*) FROM orders_idempotencykey WHERE key = %s", headers["Idempotency-Key"]
    ) == [(0,)]
    status, order = send_order()
    assert status == 201, order
    lab.orders.append(order["ref"])
    assert send_order()[1]["ref"] == order["ref"]

    # given Stripe's event for it inside its transaction (waiting for the order's lock)
    charge_at_stripe(lab, order)
    payload, event_headers = succeeded_event(order)
    deliver = functools.partial(call, lab.web.url, "POST", "/api/v1/webhooks/stripe", payload, event_headers)
    with psycopg.connect(lab.database_url) as blocker:
        blocker.execute("SELECT id FROM orders_order WHERE ref = %s FOR UPDATE", (order["ref"],))
        thread, answers = _in_flight(deliver)
        _wait_for_a_lock_wait(lab, "orders_order")
        # when the web process is SIGKILLed there
        lab.web.kill()
    thread.join(timeout=30)
    assert answers[0][0] == 0, answers
    lab.web.start()

    # then the order is still unpaid; Stripe's retry (it got no 2xx) pays it once, and each copy prints once
    assert lab.payment_status(order["ref"]) == "requires_payment"
    assert deliver()[0] == 200
    lab.wait_settled()
    assert lab.order_statuses() == {order["ref"]: "ready_to_pack"}
    lab.assert_each_copy_once_or_shown()
    assert lab.paid_events([order["ref"]]) == 1


def test_one_cancel_sent_to_three_web_processes_at_once_cancels_and_refunds_once(
    lab: Stack, three_web_processes: list[LabWebServer]
) -> None:
    # given an order paid at Stripe and recorded paid, whose release the worker has not run yet
    lab.worker.stop()
    order = lab.place_order(LINES)
    client = charge_at_stripe(lab, order)
    assert lab.pay(order) == [200]

    # when the customer's cancel reaches each web process twice, all at once
    cancel = (f"/api/v1/orders/{order['ref']}/cancel", b"", {"Authorization": f"Token {lab.token}"})
    answers = race([(web, "POST", *cancel) for web in three_web_processes * 2])

    # then one cancel wins, the others are told it is no longer cancellable, and Stripe refunds once
    assert sorted(status for status, _ in answers) == [200] + [409] * 5, answers
    lab.worker.start()
    wait_until(
        lambda: lab.payment_status(order["ref"]) == "refunded",
        timeout=SETTLE_TIMEOUT,
        what=lambda: f"order {order['ref']} refunded\n{lab.worker.log_tail()}",
    )
    refunds = client.v1.refunds.list(params={"payment_intent": order["payment"]["payment_intent"]}).data
    assert [refund.amount for refund in refunds] == [order["total_minor"]]
    assert lab.order_statuses() == {order["ref"]: "cancelled"}
    assert lab.jobs() == []
