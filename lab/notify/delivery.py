"""Sending one customer-webhook delivery: claim, sign, POST through the SSRF guard, log, reschedule.

Retries back off exponentially (30 s doubling, capped at 1 h) until 24 h after the event, then give up.
Claims, and the times they are compared with, are on the database's clock (lab/lib/clock.py).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from lab.lib import safe_http
from lab.lib.backoff import backoff_delay
from lab.lib.clock import database_now
from lab.lib.errors import DomainError
from lab.lib.tasks import enqueue
from lab.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from lab.notify.states import DELIVERY_MACHINE, DeliveryStatus

logger = logging.getLogger(__name__)

RETRY_WINDOW = timedelta(hours=24)
FIRST_RETRY_DELAY = timedelta(seconds=30)
LONGEST_RETRY_DELAY = timedelta(hours=1)
DELIVERY_TIMEOUT_SECONDS = 10  # the whole POST, connect to the answer's last byte (lab.lib.safe_http)
# Longer than one POST can take, with room for the worker's own writes around it; shorter than any retry.
CLAIM_DURATION = timedelta(seconds=4 * DELIVERY_TIMEOUT_SECONDS)
USER_AGENT = "printlab-webhooks/1"
# An attempt that raised something no one foresaw: logged as failed (so the retries and the give-up apply to
# it) rather than escaping the task before anything was recorded, which left the delivery due for ever.
UNEXPECTED_ERROR = "delivery_error"


def retry_delay(*, attempt_number: int) -> timedelta:
    """Wait after failed attempt `attempt_number` (1-based): 30 s, 1 min, 2 min, 4 min, … at most 1 h."""
    return backoff_delay(attempt=attempt_number, first=FIRST_RETRY_DELAY, cap=LONGEST_RETRY_DELAY)


def signature_header(*, secret: str, timestamp: int, body: str) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: receivers recompute it and reject old timestamps."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def delivery_enqueue(*, delivery_id: str, countdown: float = 0) -> None:
    # A broker that cannot take it leaves the delivery to webhook_deliveries_sweep.
    enqueue("notify.webhook_deliver", countdown=countdown, delivery_id=delivery_id)


@dataclass(frozen=True)
class AttemptOutcome:
    attempted_at: datetime
    status_code: int | None
    error_code: str
    duration_ms: int

    @property
    def is_success(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _claim(*, delivery_id: str) -> datetime | None:
    """Take the delivery if it is due and nobody holds it; a duplicate or early task finds 0 rows (None).

    Returns the claim's end as written, which names the claim: `_record` compares it with the row's to know
    whether this attempt still holds the delivery or another worker took it over meanwhile. Written and
    judged on the database's clock: judged on each host's own, a worker running ahead by more than the claim
    took over attempts still in flight, and the same event was POSTed twice.
    """
    now = database_now()
    claimed_until = now + CLAIM_DURATION
    claimed = (
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        )
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .update(claimed_until=claimed_until)
    )
    return claimed_until if claimed == 1 else None


def _post(*, delivery: WebhookDelivery) -> AttemptOutcome:
    event = delivery.event
    # The next attempt is due from here, judged on this clock by _claim; and the signature's time is this
    # one too: signed with the worker's own clock, a worker running 10 minutes behind sent every signature
    # 10 minutes old, and receivers that refuse stale ones (as documented) refused them all.
    attempted_at = database_now()
    timestamp = int(attempted_at.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Lab-Event-Id": str(event.pk),
        "X-Lab-Event-Type": event.event_type,
        "X-Lab-Delivery-Id": str(delivery.pk),
        "X-Lab-Signature": signature_header(
            secret=delivery.endpoint.secret, timestamp=timestamp, body=event.body
        ),
    }
    started = time.monotonic()
    status_code: int | None = None
    error_code = ""
    try:
        status_code = safe_http.post(
            delivery.endpoint.url,
            body=event.body.encode(),
            headers=headers,
            timeout=DELIVERY_TIMEOUT_SECONDS,
            allow_private=getattr(settings, "WEBHOOK_ALLOW_PRIVATE", False),
            allow_http=getattr(settings, "WEBHOOK_ALLOW_HTTP", False),
        )
        if not 200 <= status_code < 300:
            error_code = "endpoint_status"
    except DomainError as error:  # unsafe URL (DNS now points inside) or unreachable endpoint
        error_code = error.code
    except Exception as error:  # recorded as a failed attempt: see UNEXPECTED_ERROR
        # The type only: http.client's messages quote the URL or a header, which are the customer's.
        logger.warning("webhook attempt raised delivery=%s error=%s", delivery.pk, type(error).__name__)
        error_code = UNEXPECTED_ERROR
    duration_ms = int((time.monotonic() - started) * 1000)
    return AttemptOutcome(
        attempted_at=attempted_at, status_code=status_code, error_code=error_code, duration_ms=duration_ms
    )


def webhook_deliver(*, delivery_id: str) -> None:
    """Make one attempt at a due delivery and record it; schedule the next one or finish the delivery."""
    claimed_until = _claim(delivery_id=delivery_id)
    if claimed_until is None:
        logger.info("webhook delivery not due or taken delivery=%s", delivery_id)
        return
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").filter(pk=delivery_id).first()
    if delivery is None:
        return  # the endpoint (and its deliveries) was deleted after the claim
    if not delivery.endpoint.is_active:
        outcome = AttemptOutcome(
            attempted_at=database_now(), status_code=None, error_code="endpoint_disabled", duration_ms=0
        )
    else:
        outcome = _post(delivery=delivery)
    _record(
        delivery_id=delivery_id,
        outcome=outcome,
        is_final=not delivery.endpoint.is_active,
        claimed_until=claimed_until,
    )


def _record(
    *, delivery_id: str, outcome: AttemptOutcome, is_final: bool, claimed_until: datetime | None
) -> None:
    """Log the attempt, and move the delivery on as far as this attempt may.

    The attempt is always logged: the receiver saw the POST (or the endpoint refused it), whoever holds the
    delivery now. A POST that outlived its claim may find another worker's claim in its place, or that
    worker's outcome already recorded: then a success still ends a pending delivery (the event did arrive),
    but what comes next after a failure is left to the claim's holder. Before, such a late success checked
    succeeded -> succeeded, raised, and rolled back the log row of a POST the receiver had answered.
    """
    finished = database_now()
    with transaction.atomic():
        # The endpoint is locked before the delivery, as webhook_endpoint_delete locks it: a delete waits for
        # this attempt and then removes its row too, instead of failing at commit on an attempt that points
        # at a delivery it had already deleted.
        endpoint_id = (
            WebhookDelivery.objects.filter(pk=delivery_id).values_list("endpoint_id", flat=True).first()
        )
        if endpoint_id is None or not list(
            WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id).values_list("pk", flat=True)
        ):
            return  # the endpoint was deleted while we were sending
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None:
            return
        holds_claim = claimed_until is not None and delivery.claimed_until == claimed_until
        number = delivery.attempt_count + 1
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            attempted_at=outcome.attempted_at,
            status_code=outcome.status_code,
            error_code=outcome.error_code,
            duration_ms=outcome.duration_ms,
            is_success=outcome.is_success,
        )
        delivery.attempt_count = number
        fields = ["attempt_count"]
        is_pending = delivery.status == DeliveryStatus.PENDING
        if is_pending and (holds_claim or outcome.is_success):
            delivery.last_status_code = outcome.status_code
            delivery.last_error_code = outcome.error_code
            fields += ["last_status_code", "last_error_code", "status", "delivered_at", "next_attempt_at"]
            _move_on(delivery=delivery, outcome=outcome, is_final=is_final, finished=finished)
        if holds_claim:
            delivery.claimed_until = None
            fields.append("claimed_until")
        delivery.save(update_fields=fields)
    logger.info(
        "webhook attempt delivery=%s attempt=%d status_code=%s error=%s outcome=%s held=%s",
        delivery_id,
        number,
        outcome.status_code,
        outcome.error_code or "-",
        delivery.status,
        holds_claim,
    )


def _move_on(
    *, delivery: WebhookDelivery, outcome: AttemptOutcome, is_final: bool, finished: datetime
) -> None:
    """A pending delivery after this attempt: succeeded, failed for good, or due again after the backoff."""
    # Measured from the start of the attempt, so the schedule does not drift by the receiver's latency.
    next_attempt_at = outcome.attempted_at + retry_delay(attempt_number=delivery.attempt_count)
    if outcome.is_success:
        DELIVERY_MACHINE.check(delivery.status, DeliveryStatus.SUCCEEDED)
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = finished
        delivery.next_attempt_at = None
    elif is_final or next_attempt_at > delivery.give_up_at:
        DELIVERY_MACHINE.check(delivery.status, DeliveryStatus.FAILED)
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = next_attempt_at
        countdown = max((next_attempt_at - finished).total_seconds(), 0.0)
        transaction.on_commit(partial(delivery_enqueue, delivery_id=str(delivery.pk), countdown=countdown))
