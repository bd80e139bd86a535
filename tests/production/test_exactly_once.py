"""Exactly once, at the service level on real hot-folder printers: lost hand-offs are redone by the
reconciler, cancels and refunds are one decision, money taken back during production holds the order, a
retry never sends a second copy. (The same guarantees under real faults — Redis, PostgreSQL and cupsd
restarts, killed workers — are in tests/e2e/test_faults.py.)

Inside these tests `transaction.on_commit` hooks never run (each test is one transaction), so every task
message that a commit would send is "lost": exactly the situation the reconcile sweeps exist for.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core import mail
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.utils import timezone

from api.errors import http_status
from lab.catalog.models import Product
from lab.catalog.services import product_save
from lab.lib.errors import DomainError, PermissionDenied
from lab.notify.models import Notification
from lab.notify.services import notifications_sweep
from lab.orders import payment_refunds
from lab.orders.cancellation import order_cancel
from lab.orders.models import Order, OrderEvent
from lab.production import jobs, rasterizing, reconcile, routing, submission, tracking
from lab.production.backends import backend_for
from lab.production.cancellation import order_cancel_in_production, printer_cancels_settle
from lab.production.holds import order_release_hold
from lab.production.models import JobEvent, PrintJob
from lab.production.states import JobStatus
from printers.base import JobState
from printers.hotfolder import HotFolderBackend
from printers.hotfolder_device import process_pending
from tests.builders import (
    broker_tasks,
    hotfolder_printer,
    job_walk,
    paid_order,
    person,
    printer_folder,
    released_order,
)
from tests.builders.packing_station import station_token
from tests.support.stripe_server import card_payment_method, signed_event

pytestmark = pytest.mark.django_db
J = JobStatus
WORKER = "test-worker:1"


@pytest.fixture(autouse=True)
def _immediate_handoffs(settings):
    settings.PRODUCTION_HANDOFF_GRACE_SECONDS = 0
    connection = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    connection.delete("raster", "default", "print")


def _ready(job: PrintJob) -> PrintJob:
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    job.refresh_from_db()
    return job


def _device_files(printer_name: str) -> list[Path]:
    folder = Path(settings.HOTFOLDER_ROOT) / printer_name
    return sorted(p for p in folder.rglob("*.jpg"))


# --- Lost hand-offs ------------------------------------------------------------------------------------


def test_reconcile_releases_a_paid_order_whose_release_message_was_lost():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    assert not PrintJob.objects.filter(order=order).exists()

    first = reconcile.production_reconcile()
    second = reconcile.production_reconcile()

    order.refresh_from_db()
    assert order.status == "in_production"
    assert first["orders_released"] == 1
    assert "orders_released" not in second
    assert list(PrintJob.objects.filter(order=order).values_list("copies", "status")) == [(2, "queued")]


def test_a_reconcile_sweep_releases_a_bounded_number_of_orders_oldest_first(monkeypatch):
    monkeypatch.setattr(reconcile, "RELEASES_PER_SWEEP", 2)
    hotfolder_printer("minilab", sizes=["4x6"])
    orders = [paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]) for _ in range(3)]

    first = reconcile.production_reconcile()
    released_first = set(Order.objects.filter(status="in_production").values_list("pk", flat=True))
    second = reconcile.production_reconcile()

    assert first["orders_released"] == 2 and released_first == {orders[0].pk, orders[1].pk}
    assert second["orders_released"] == 1
    assert set(Order.objects.values_list("status", flat=True)) == {"in_production"}


def test_beat_sweeps_carry_their_interval_never_an_expiry_and_checkpoints_are_never_skipped():
    """A sweep is judged by its interval on the database's clock (lab.celery.LabTask), never by Celery's
    `expires`, a time on beat's clock that a worker whose clock ran ahead found past."""
    from lab.celery import SWEEP_INTERVAL_HEADER, app

    schedule = app.conf.beat_schedule
    sweeps = {
        name: entry
        for name, entry in schedule.items()
        if SWEEP_INTERVAL_HEADER in entry.get("options", {}).get("headers", {})
    }

    expected = {"printer-poll", "production-reconcile", "notifications-sweep", "privacy-retention-purge"}
    assert expected <= set(sweeps)
    for entry in sweeps.values():
        assert entry["options"]["headers"][SWEEP_INTERVAL_HEADER] == entry["schedule"]
    assert not [name for name, entry in schedule.items() if "expires" in entry.get("options", {})]
    assert "options" not in schedule["audit-checkpoint"]
    assert "options" not in schedule["audit-review-sample-daily"]


def test_reconcile_leaves_a_fresh_paid_order_to_its_message(settings):
    settings.PRODUCTION_HANDOFF_GRACE_SECONDS = 3600
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])

    assert "orders_released" not in reconcile.production_reconcile()
    order.refresh_from_db()
    assert order.status == "paid"


def test_reconcile_resends_raster_messages_only_when_the_broker_lost_them():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-GLOSSY", 1)])
    job_ids = sorted(PrintJob.objects.filter(order=order).values_list("pk", flat=True))
    assert broker_tasks("raster") == []  # the commit's messages never went out

    assert reconcile.production_reconcile()["rasterize_requeued"] == 2
    assert sorted(kwargs["job_id"] for _, kwargs in broker_tasks("raster")) == job_ids
    # The broker now holds a message per waiting job: nothing is sent twice.
    assert "rasterize_requeued" not in reconcile.production_reconcile()
    assert len(broker_tasks("raster")) == 2


def test_reconcile_resends_only_as_many_raster_messages_as_the_broker_lacks_newest_first():
    # A backlog of five waiting jobs. The broker holds messages for the three oldest: the two newest were
    # lost (a broker restart lost its last writes). Sending all five again would double three rasters'
    # messages; at a backlog of thousands, with a worker holding a message or two at any time, every sweep
    # used to send the whole backlog again.
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)] * 5)
    job_ids = sorted(PrintJob.objects.filter(order=order).values_list("pk", flat=True))
    for job_id in job_ids[:3]:
        jobs.rasterize_enqueue(job_id)

    assert reconcile.production_reconcile()["rasterize_requeued"] == 2
    assert sorted(kwargs["job_id"] for _, kwargs in broker_tasks("raster")) == job_ids
    assert "rasterize_requeued" not in reconcile.production_reconcile()


def test_reconcile_moves_a_printed_order_to_packing_and_asks_for_its_slip():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    for job in PrintJob.objects.filter(order=order):
        job_walk(job, J.PRINTED)

    assert reconcile.production_reconcile()["orders_ready_to_pack"] == 1
    order.refresh_from_db()
    assert order.status == "ready_to_pack"
    assert reconcile.production_reconcile()["slips_requested"] == 1
    assert ("packing.slip_render", {"order_id": order.pk}) in broker_tasks("default")


def test_notifications_sweep_sends_the_mail_whose_message_was_lost():
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    OrderEvent.objects.filter(order=order).update(created_at=timezone.now() - timedelta(minutes=5))
    mail.outbox.clear()

    sent = notifications_sweep()

    assert sent == OrderEvent.objects.filter(order=order).count() == 1  # paid
    assert Notification.objects.filter(order=order).count() == 1
    assert notifications_sweep() == 0
    assert len(mail.outbox) == len({m.subject for m in mail.outbox})  # no mail twice


# --- Cancels and refunds -------------------------------------------------------------------------------


def _mark_captured(order: Order, intent: str = "pi_test_captured") -> Order:
    Order.objects.filter(pk=order.pk).update(payment_intent_id=intent, payment_status="succeeded")
    order.refresh_from_db()
    return order


def test_a_customer_cancel_that_loses_the_race_with_the_release_refunds_nothing():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = _mark_captured(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    routing.order_release(order_id=order.pk)

    with pytest.raises(DomainError) as refused:
        order_cancel(order=order, actor=order.customer, actor_kind="customer")

    assert (refused.value.code, http_status(refused.value)) == ("order_not_cancellable", 409)
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("in_production", "succeeded")
    assert not OrderEvent.objects.filter(order=order, kind__startswith="refund").exists()


def test_a_release_that_loses_the_race_with_a_cancel_makes_no_job(settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # Stripe unreachable: the refund stays decided
    hotfolder_printer("minilab", sizes=["4x6"])
    order = _mark_captured(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]))

    cancelled = order_cancel(order=order, actor=order.customer, actor_kind="customer")

    assert (cancelled.status, cancelled.payment_status) == ("cancelled", "refund_pending")
    assert routing.order_release(order_id=order.pk) == 0
    assert not PrintJob.objects.filter(order=order).exists()
    assert ("payments.refund_issue", {"order_id": order.pk}) in broker_tasks("default")


def test_a_decided_refund_is_issued_once_stripe_answers_again(settings, localstripe):
    import stripe

    client = stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses={"api": localstripe.url})
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    intent = client.v1.payment_intents.create(
        params={"amount": 1234, "currency": "usd", "payment_method": method.id, "confirm": True}
    )
    order = _mark_captured(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]), intent=intent.id)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    order_cancel(order=order, actor=order.customer, actor_kind="customer")
    assert payment_refunds.refunds_reconcile() == 0

    settings.STRIPE_API_BASE = localstripe.url
    assert payment_refunds.refunds_reconcile() == 1
    assert payment_refunds.refunds_reconcile() == 0

    order.refresh_from_db()
    assert order.payment_status == "refunded"
    assert len(client.v1.refunds.list(params={"payment_intent": intent.id}).data) == 1


def _captured_at_stripe(localstripe_url: str, amount: int = 1234) -> tuple[Any, str]:
    import stripe

    client = stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses={"api": localstripe_url})
    method = card_payment_method(client)
    intent = client.v1.payment_intents.create(
        params={"amount": amount, "currency": "usd", "payment_method": method, "confirm": True}
    )
    return client, intent.id


class _WorkerDied(Exception):
    pass


def test_a_refund_stripe_made_before_the_worker_died_uncommitted_is_not_made_again(settings, localstripe):
    # given a cancelled order whose refund Stripe made, while the worker that asked died before its commit
    settings.STRIPE_API_BASE = localstripe.url
    client, intent = _captured_at_stripe(localstripe.url)
    order = _mark_captured(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]), intent=intent)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the cancel's own attempt fails: left to the reconciler
    order_cancel(order=order, actor=order.customer, actor_kind="customer")
    settings.STRIPE_API_BASE = localstripe.url
    with pytest.raises(_WorkerDied), transaction.atomic():
        assert payment_refunds.refund_issue(order_id=order.pk) is True
        raise _WorkerDied  # everything it wrote is rolled back; Stripe's refund is not
    order.refresh_from_db()
    assert order.payment_status == "refund_pending"

    # when the reconciler asks again (later than Stripe keeps an idempotency key, or on a Stripe that ignores
    # it, as localstripe does), then it finds that refund and makes no second one
    assert payment_refunds.refunds_reconcile() == 1
    order.refresh_from_db()
    assert order.payment_status == "refunded"
    refunds = client.v1.refunds.list(params={"payment_intent": intent}).data
    assert [(refund.amount, refund.metadata.to_dict()) for refund in refunds] == [
        (1234, {"lab_refund": f"order-{order.ref}-refund"})
    ]


def test_a_supervisor_cancel_stops_a_submitted_job_at_the_printer():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-GLOSSY", 1)])
    sent, waiting = PrintJob.objects.filter(order=order).order_by("pk")
    _ready(sent)
    assert submission.print_job_submit(job_id=sent.pk, worker=WORKER) == "submitted"
    sent.refresh_from_db()

    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))

    sent.refresh_from_db()
    waiting.refresh_from_db()
    assert (sent.status, sent.cancel_at_printer, waiting.status) == ("cancelled", False, "cancelled")
    assert backend_for(printer).job_state(sent.backend_job_id) is JobState.CANCELED
    assert process_pending(folder=printer_folder(printer), delay_seconds=0) == []
    assert JobEvent.objects.filter(job=sent, kind="printer_cancelled").count() == 1


def test_a_cancel_that_lands_while_the_worker_sends_takes_the_copy_back(monkeypatch):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = _ready(PrintJob.objects.get(order=order))
    real_submit = HotFolderBackend.submit

    def submit_then_supervisor_cancels(self, **kwargs):
        handle = real_submit(self, **kwargs)
        order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
        return handle

    monkeypatch.setattr(HotFolderBackend, "submit", submit_then_supervisor_cancels)

    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "cancelled"

    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer) == ("cancelled", False)
    assert backend_for(printer).job_state(job.backend_job_id) is JobState.CANCELED
    assert process_pending(folder=printer_folder(printer), delay_seconds=0) == []


def test_a_cancel_while_a_dead_worker_was_sending_is_settled_by_title():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = job_walk(PrintJob.objects.get(order=order), J.SUBMITTING)
    # The worker reached the printer, then died before it saved the handle.
    raster = Path(settings.MEDIA_ROOT) / "raster.jpg"
    raster.parent.mkdir(parents=True, exist_ok=True)
    raster.write_bytes(b"\xff\xd8\xff\xd9")
    handle = backend_for(printer).submit(path=raster, title=job.title, media="na_index-4x6_4x6in", copies=1)

    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))

    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer, job.backend_job_id) == ("cancelled", False, "")
    assert backend_for(printer).job_state(handle) is JobState.CANCELED
    assert printer_cancels_settle() == {"cancelled_at_printer": 0, "unreachable": 0, "waiting_for_worker": 0}


@pytest.mark.parametrize(
    ("event_type", "payment_status"),
    [("charge.refunded", "refunded"), ("charge.dispute.created", "disputed")],
)
def test_money_taken_back_during_production_holds_the_order_and_its_unsent_jobs(
    client, event_type, payment_status
):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = _mark_captured(released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-GLOSSY", 1)]))
    printed, unsent = PrintJob.objects.filter(order=order).order_by("pk")
    _ready(printed)
    assert submission.print_job_submit(job_id=printed.pk, worker=WORKER) == "submitted"
    process_pending(folder=printer_folder(printer), delay_seconds=0)
    tracking.printer_poll()
    _ready(unsent)
    payload, header = signed_event(
        event_type=event_type,
        data_object={"id": "ch_or_dp_1", "payment_intent": order.payment_intent_id},
        secret=settings.STRIPE_WEBHOOK_SECRET,
        event_id=f"evt_{payment_status}",
    )

    response = client.post(
        "/api/v1/webhooks/stripe", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )

    assert (response.status_code, response.json()["outcome"]) == (200, "held_for_payment")
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", payment_status)
    assert "supervisor decides" in order.hold_message
    assert submission.print_job_submit(job_id=unsent.pk, worker=WORKER) == "waiting"
    printed.refresh_from_db()
    unsent.refresh_from_db()
    assert (printed.status, unsent.status) == ("printed", "ready")  # nothing thrown away, nothing sent

    # Only a supervisor decides to go on with an order whose money went back: a technician's release of the
    # hold is refused and changes nothing (before, it sent the unsent copies to print and the box shipped).
    with pytest.raises(PermissionDenied, match="only a supervisor"):
        order_release_hold(order_ref=order.ref, actor=person("technician"))
    order.refresh_from_db()
    assert (order.status, "supervisor decides" in order.hold_message) == ("on_hold", True)
    assert submission.print_job_submit(job_id=unsent.pk, worker=WORKER) == "waiting"
    assert order_release_hold(order_ref=order.ref, actor=person("supervisor")).status == "in_production"


def test_a_partial_refund_at_stripe_holds_the_order_and_a_later_cancel_refunds_the_rest(client, settings):
    """Stripe sends `charge.refunded` for a partial refund too. Before, 100 of 1,000 refunded in Stripe's
    dashboard made the order `refunded`, and the supervisor's cancel that followed refunded nothing more: the
    customer lost the other 900."""
    settings.STRIPE_API_BASE = (
        "http://127.0.0.1:9"  # Stripe unreachable: the refund of the rest stays decided
    )
    hotfolder_printer("minilab", sizes=["4x6"])
    order = _mark_captured(released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    payload, header = signed_event(
        event_type="charge.refunded",
        data_object={
            "id": "ch_partial",
            "payment_intent": order.payment_intent_id,
            "amount": order.total_minor,
            "amount_refunded": 10,
            "refunded": False,
        },
        secret=settings.STRIPE_WEBHOOK_SECRET,
        event_id="evt_partial_refund",
    )

    response = client.post(
        "/api/v1/webhooks/stripe", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )

    assert response.json()["outcome"] == "held_for_payment"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "succeeded")
    assert (
        OrderEvent.objects.get(order=order, kind="partly_refunded").note
        == f"10 of {order.total_minor} refunded at Stripe"
    )
    with pytest.raises(PermissionDenied):  # money went back: a supervisor decides
        order_release_hold(order_ref=order.ref, actor=person("technician"))
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))  # Stripe does not answer
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refund_pending")
    assert OrderEvent.objects.filter(order=order, kind="refund_decided").count() == 1


def test_an_unknown_payment_intent_never_finds_an_order_by_its_metadata(client):
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    Order.objects.filter(pk=order.pk).update(status="awaiting_payment", payment_intent_id="pi_real")
    payload, header = signed_event(
        event_type="payment_intent.succeeded",
        data_object={"id": "pi_someone_elses", "amount": 0, "metadata": {"order_ref": order.ref}},
        secret=settings.STRIPE_WEBHOOK_SECRET,
        event_id="evt_foreign",
    )

    response = client.post(
        "/api/v1/webhooks/stripe", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )

    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == "awaiting_payment"


# --- Submits -------------------------------------------------------------------------------------------


def test_a_size_with_no_printer_media_is_refused_when_the_product_is_created():
    with pytest.raises(DomainError) as refused:
        product_save(
            sku="PRINT-6X8-LUSTRE",
            width_in=Decimal(6),
            height_in=Decimal(8),
            name="6x8",
            paper="lustre",
            price_minor=100,
        )
    assert refused.value.code == "product_size_unprintable"
    assert not Product.objects.filter(sku="PRINT-6X8-LUSTRE").exists()


def test_a_job_of_a_size_without_media_fails_with_its_reason_before_anything_is_sent():
    printer = hotfolder_printer("minilab", sizes=["4x6", "6x8"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    # A product saved before the check existed.
    Product.objects.filter(sku="PRINT-4X6-LUSTRE").update(width_in=6, height_in=8)
    routing.order_release(order_id=order.pk)
    job = _ready(PrintJob.objects.get(order=order))

    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "failed"

    job.refresh_from_db()
    assert (job.status, job.failure_code, job.failure_is_permanent) == ("failed", "media_unknown", True)
    assert backend_for(printer).find_jobs(title_prefix=job.title) == []


def test_a_retry_adopts_the_copy_an_earlier_attempt_left_at_the_printer():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = _ready(PrintJob.objects.get(order=order))
    # The first attempt reached the printer, then its connection broke: the lab saw a transient error.
    PrintJob.objects.filter(pk=job.pk).update(submit_attempts=1)
    raster = Path(settings.MEDIA_ROOT) / "raster.jpg"
    raster.write_bytes(b"\xff\xd8\xff\xd9")
    earlier = backend_for(printer).submit(path=raster, title=job.title, media="na_index-4x6_4x6in", copies=1)

    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "adopted"

    job.refresh_from_db()
    assert (job.status, job.backend_job_id) == ("submitted", earlier)
    assert [j.handle for j in backend_for(printer).find_jobs(title_prefix=job.title)] == [earlier]


def _first_commit_answer_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL applies the next COMMIT and goes away before its answer reaches the worker."""
    database = connections[DEFAULT_DB_ALIAS]
    real_commit = database.commit
    lost: list[bool] = []

    def commit_then_answer_lost() -> None:
        real_commit()
        if not lost:
            lost.append(True)
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(database, "commit", commit_then_answer_lost)


@pytest.mark.django_db(transaction=True)
def test_a_submit_claim_committed_whose_answer_was_lost_is_taken_back_and_sent_once(monkeypatch):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = _ready(PrintJob.objects.get(order=order))
    _first_commit_answer_lost(monkeypatch)

    with pytest.raises(OperationalError):
        submission.print_job_submit(job_id=job.pk, worker=WORKER)

    job.refresh_from_db()
    assert (job.status, job.claimed_by, job.submit_attempts) == ("ready", "", 1)
    assert list(JobEvent.objects.filter(job=job).values_list("kind", flat=True))[-2:] == [
        "claimed",
        "claim_released",
    ]
    assert _device_files(printer.name) == []  # nothing was sent
    # sent again (its message, or the poll): once, and the reconciler has nothing to call unknown
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert reconcile.production_reconcile().get("unknown", 0) == 0
    assert len(_device_files(printer.name)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_raster_claim_committed_whose_answer_was_lost_is_taken_back_not_left_to_its_lease(monkeypatch):
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.get(order=order)
    _first_commit_answer_lost(monkeypatch)

    with pytest.raises(OperationalError):
        rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)

    job.refresh_from_db()
    assert (job.status, job.claimed_by, job.raster_blob) == ("queued", "", "")
    assert list(JobEvent.objects.filter(job=job).values_list("kind", flat=True))[-2:] == [
        "claimed",
        "claim_released",
    ]
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"  # at once, no lease wait


def test_the_raster_and_submit_claims_write_their_events_with_them():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = _ready(PrintJob.objects.get(order=order))
    submission.print_job_submit(job_id=job.pk, worker=WORKER)

    moves = list(
        JobEvent.objects.filter(job=job).exclude(from_status="").values_list("from_status", "to_status")
    )
    assert moves == [
        ("no_printer", "queued"),
        ("queued", "rasterizing"),
        ("rasterizing", "ready"),
        ("ready", "submitting"),
        ("submitting", "submitted"),
    ]


def test_a_supervisor_cancels_from_the_order_page_and_a_technician_cannot():
    from tests.builders import client_as

    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    technician, _ = client_as("technician")
    supervisor, _ = client_as("supervisor")

    assert technician.post(f"/lab/orders/{order.ref}/cancel/").status_code == 403
    assert "Cancel order and refund" not in technician.get(f"/lab/orders/{order.ref}/").content.decode()
    assert "Cancel order and refund" in supervisor.get(f"/lab/orders/{order.ref}/").content.decode()
    response = supervisor.post(f"/lab/orders/{order.ref}/cancel/")

    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == "cancelled"
    assert set(PrintJob.objects.filter(order=order).values_list("status", flat=True)) == {"cancelled"}


def test_a_suspect_job_is_on_the_board_and_a_technician_confirms_it():
    from lab.production.resolutions import job_resolve_unknown
    from tests.builders import client_as

    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = job_walk(PrintJob.objects.get(order=order), J.SUBMITTED)
    assert jobs.job_move(job_id=job.pk, from_statuses={J.SUBMITTED}, to_status=J.SUSPECT, kind="restarted")
    technician, user = client_as("technician")

    board = technician.get("/lab/board/").content.decode()
    assert "May have printed twice" in board and f"/lab/jobs/{job.pk}/" in board
    job_resolve_unknown(job_id=job.pk, actor=user, was_printed=True)

    job.refresh_from_db()
    order.refresh_from_db()
    assert (job.status, order.status) == ("printed", "ready_to_pack")


# --- Races, for real: concurrent transactions on PostgreSQL ---------------------------------------------


def _race(*calls: Callable[[], object]) -> list[object]:
    """Run the calls at the same moment in threads (each its own DB connection); return results/exceptions."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except Exception as error:
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(6))
def test_a_customer_cancel_racing_the_release_is_one_decision(settings, round_):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the refund stays decided, so the decision is visible
    hotfolder_printer(f"minilab-{round_}", sizes=["4x6"])
    order = _mark_captured(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]))

    cancel, release = _race(
        lambda: order_cancel(order=order, actor=order.customer, actor_kind="customer"),
        lambda: routing.order_release(order_id=order.pk),
    )

    order.refresh_from_db()
    jobs = PrintJob.objects.filter(order=order).count()
    if order.status == "cancelled":
        assert (order.payment_status, jobs, release) == ("refund_pending", 0, 0)
    else:
        assert isinstance(cancel, DomainError) and cancel.code == "order_not_cancellable"
        assert (order.status, order.payment_status, jobs, release) == ("in_production", "succeeded", 1, 1)
        assert not OrderEvent.objects.filter(order=order, kind="refund_decided").exists()


@pytest.mark.django_db(transaction=True)
def test_a_refund_racing_the_packer_leaves_the_box_on_hold_never_shipped_unseen(client):
    from lab.packing.station import item_confirm, order_pack
    from tests.builders import ready_to_pack_order

    hotfolder_printer("minilab", sizes=["4x6"])
    order = _mark_captured(ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    packer = person("packer")
    item_confirm(
        code=order.ref,
        position=1,
        copies_counted=1,
        actor=packer,
        seen=station_token(order, packer=packer, position=1),
    )
    seen = station_token(order, packer=packer, step="pack")
    payload, header = signed_event(
        event_type="charge.refunded",
        data_object={"id": "ch_race", "payment_intent": order.payment_intent_id},
        secret=settings.STRIPE_WEBHOOK_SECRET,
        event_id="evt_race_refund",
    )

    _race(
        lambda: order_pack(code=order.ref, actor=packer, seen=seen),
        lambda: client.post(
            "/api/v1/webhooks/stripe", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
        ),
    )

    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "refunded")


def test_a_refund_while_the_order_is_held_for_a_question_is_written_on_the_hold(client):
    from lab.production.holds import order_hold

    hotfolder_printer("minilab", sizes=["4x6"])
    order = _mark_captured(released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    order_hold(order_ref=order.ref, actor=person("technician"), message="Which crop do you want?")
    payload, header = signed_event(
        event_type="charge.refunded",
        data_object={"id": "ch_held", "payment_intent": order.payment_intent_id},
        secret=settings.STRIPE_WEBHOOK_SECRET,
        event_id="evt_refund_while_held",
    )

    response = client.post(
        "/api/v1/webhooks/stripe", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )

    assert response.json()["outcome"] == "held_for_payment"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "refunded")
    assert order.hold_message.startswith("The payment was refunded at Stripe: a supervisor decides.")
    assert "Which crop do you want?" in order.hold_message


def test_a_slow_submit_overtaken_by_the_reconciler_keeps_the_job_it_sent(monkeypatch):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = _ready(PrintJob.objects.get(order=order))
    real_submit = HotFolderBackend.submit

    def submit_then_reconciler_adopts(self, **kwargs):
        handle = real_submit(self, **kwargs)
        # The worker's lease ran out mid-send; the reconciler found the job at the printer by its title.
        assert jobs.job_move(
            job_id=job.pk, from_statuses={J.SUBMITTING}, to_status=J.SUBMITTED, backend_job_id=handle
        )
        return handle

    monkeypatch.setattr(HotFolderBackend, "submit", submit_then_reconciler_adopts)

    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "superseded"

    job.refresh_from_db()
    assert job.status == "submitted"
    assert backend_for(printer).job_state(job.backend_job_id) is not JobState.CANCELED


def test_the_reconciler_adopts_the_live_send_not_an_earlier_cancelled_one(monkeypatch, settings):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = _ready(PrintJob.objects.get(order=order))
    # An earlier copy with the job's title is over at the printer, cancelled (on CUPS: the empty job an
    # attempt cut off between Create-Job and Send-Document left, cancelled by the retry that sent again).
    raster = Path(settings.MEDIA_ROOT) / "raster.jpg"
    raster.parent.mkdir(parents=True, exist_ok=True)
    raster.write_bytes(b"\xff\xd8\xff\xd9")
    backend = backend_for(printer)
    cancelled = backend.submit(path=raster, title=job.title, media="na_index-4x6_4x6in", copies=1)
    backend.cancel(cancelled)

    # The worker sends, then is lost before the job is saved as submitted.
    def lost(**kwargs: object) -> str:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(submission, "submitted", lost)
    with pytest.raises(OperationalError):
        submission.print_job_submit(job_id=job.pk, worker=WORKER)
    monkeypatch.undo()
    (sent,) = [j.handle for j in backend.find_jobs(title_prefix=job.title) if j.state is JobState.PENDING]
    settings.PRODUCTION_CLAIM_LEASE_SECONDS = 0

    reconcile.production_reconcile()

    # The send that will print is the job's: it prints once and the job follows it. Before, the cancelled copy
    # was adopted, the job `failed` while the send printed, and it could be neither moved nor cancelled.
    job.refresh_from_db()
    assert (job.status, job.backend_job_id) == ("submitted", sent)
    assert len(process_pending(folder=printer_folder(printer), delay_seconds=0)) == 1
    tracking.jobs_track(PrintJob.objects.filter(pk=job.pk))
    job.refresh_from_db()
    assert job.status == "printed"


class _WorkerKilled(BaseException):
    """The worker process dies here (SIGKILL, the OOM killer): no handler of the lab's catches it."""


def test_a_claim_lost_before_its_send_is_sent_again_though_a_cancelled_copy_has_its_title(
    monkeypatch, settings
):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = _ready(PrintJob.objects.get(order=order))
    raster = Path(settings.MEDIA_ROOT) / "raster.jpg"
    raster.parent.mkdir(parents=True, exist_ok=True)
    raster.write_bytes(b"\xff\xd8\xff\xd9")
    backend = backend_for(printer)
    backend.cancel(backend.submit(path=raster, title=job.title, media="na_index-4x6_4x6in", copies=1))

    # The worker claims the job and is lost before it begins to send (killed: no handler of the lab's runs).
    def lost(**kwargs: object) -> bool:
        raise _WorkerKilled

    monkeypatch.setattr(submission, "_send_begin", lost)
    with pytest.raises(_WorkerKilled):
        submission.print_job_submit(job_id=job.pk, worker=WORKER)
    monkeypatch.undo()
    settings.PRODUCTION_CLAIM_LEASE_SECONDS = 0

    reconcile.production_reconcile()

    # The cancelled copy is no send of the job: nothing of the claim is at the printer, so it is sent again
    # (before, the cancelled copy was adopted and the job `failed`).
    job.refresh_from_db()
    assert (job.status, job.backend_job_id) == ("ready", "")
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(process_pending(folder=printer_folder(printer), delay_seconds=0)) == 1
