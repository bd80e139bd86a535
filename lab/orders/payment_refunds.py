"""Refunds at Stripe: decided under the order's lock, made after the commit, confirmed or made again by the
sweep, left to a person when they keep failing; and what a payment's refunds, anyone's, leave of it.

We store Stripe ids and statuses only; card data goes from the customer's browser to Stripe, never here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import stripe
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from lab.lib.errors import UpstreamError
from lab.lib.tasks import enqueue
from lab.orders.errors import OrderError
from lab.orders.models import Order, OrderEvent
from lab.orders.payment_client import ONE_TRY, stripe_client

if TYPE_CHECKING:
    from stripe import RequestOptions
    from stripe.params import RefundCreateParams

logger = logging.getLogger(__name__)


# The metadata key that marks a refund at Stripe as the one this lab decided for an order.
REFUND_TAG = "lab_refund"
# The order event of a partial refund made at Stripe (the payment stays `succeeded`).
PARTLY_REFUNDED = "partly_refunded"
# A refund in one of these states moved no money, and never will.
REFUND_UNDONE = frozenset({"failed", "canceled"})
# Our refunds of one order that may fail before a person is asked: a card closed since the payment fails
# every refund, and a new one each minute would only fill Stripe with failures.
REFUND_ATTEMPTS_MAX = 3
# Pending refunds one sweep asks Stripe about (up to three calls each), after the intent cancels.
REFUND_BATCH = 50
# How long a refund left to a person (`refund_needs_person`) waits before the sweep asks Stripe again.
REFUND_NEEDS_PERSON_RECHECK = timedelta(hours=6)


def refund_tag(order: Order) -> str:
    """The tag (metadata `lab_refund`) of every refund this lab makes for the order."""
    return f"order-{order.ref}-refund"


def refund_decide(*, order: Order) -> bool:
    """Under the order's lock: a captured payment becomes `refund_pending`; True when a refund is due.

    The decision commits with the state change that caused it (a cancel); the money moves afterwards in
    `refund_issue`, from the request, a retried task or the reconciler, so a failed call to Stripe never
    leaves a cancelled order with the money kept, nor a refund for an order that went on printing.
    """
    if order.payment_status not in (Order.PaymentStatus.SUCCEEDED, Order.PaymentStatus.REFUND_PENDING):
        return False
    order.payment_status = Order.PaymentStatus.REFUND_PENDING
    order.save(update_fields=["payment_status", "updated_at"])
    OrderEvent.objects.create(order=order, kind="refund_decided", actor_kind="system")
    return True


def refund_issue(*, order_id: int) -> bool:
    """Ask Stripe for the decided refund; True once Stripe says the money captured is all refunded.

    Accepted is not done: Stripe answers a refund `pending` (or `requires_action`) and may fail it later, so
    the order stays `refund_pending` until the refund has succeeded, and `refunds_reconcile` asks again. A
    refund of ours that failed or was cancelled is made again, under a key of its own (the tag and the count
    of our earlier refunds: two workers that both saw the failure still make one). Safe to call any number
    of times: the status moves only from `refund_pending`, and a refund of ours that Stripe already made
    (the process died before it committed the answer) is found at Stripe, tagged with the order, and not
    made again. The idempotency key alone would not do: Stripe forgets it after 24 hours.

    Done means the succeeded refunds add up to what was captured, not that one of ours succeeded. When the
    payment has refunds not ours (a person in Stripe's dashboard), ours is made for what they leave, and the
    order waits while one of them is still pending: it may fail, and its money then comes back to the charge.
    Before, a dashboard partial refund pending when ours was made (Stripe refunds what is left after it) that
    failed later left the order `refunded` with the customer short by its amount; now the shortfall is
    refunded by one more refund of ours (`_refund_owed`)."""
    order = Order.objects.get(pk=order_id)
    if order.payment_status != Order.PaymentStatus.REFUND_PENDING:
        return order.payment_status == Order.PaymentStatus.REFUNDED
    tag = refund_tag(order)
    try:
        client = stripe_client()
        made = client.v1.refunds.list(params={"payment_intent": order.payment_intent_id, "limit": 100}).data
        ours = [refund for refund in made if _refund_metadata(refund).get(REFUND_TAG) == tag]
        live = [refund for refund in ours if refund.status not in REFUND_UNDONE]
        if any(refund.status != "succeeded" for refund in live):
            logger.info("refund not yet confirmed order=%s", order.ref)
            return False
        others = [refund for refund in made if _refund_metadata(refund).get(REFUND_TAG) != tag]
        others_moving = any(refund.status not in REFUND_UNDONE | {"succeeded"} for refund in others)
        if live and others_moving:
            # Ours succeeded, but a refund not ours is still pending: should it fail, its amount is owed.
            logger.info("refund waits for another refund at stripe order=%s", order.ref)
            return False
        amount = None
        if others:
            amount = _refund_owed(client=client, order=order, made=made)
            if amount <= 0:
                if others_moving:
                    return False  # all of it is being refunded by refunds not ours: wait for them
                if live:
                    return _refunded(order=order, kind="refunded", actor_kind="system")
                # All of it went back by refunds we did not make (a person in Stripe's dashboard, say after
                # our refunds kept failing): the order is refunded, not asked for again for ever (Stripe
                # refuses a refund of a refunded charge, which read as "Stripe not answering").
                return _refunded(order=order, kind="refunded_at_stripe", actor_kind="stripe")
        elif live:
            # Every refund of the payment is ours, made for all that was left: it is all refunded.
            return _refunded(order=order, kind="refunded", actor_kind="system")
        failed = len(ours) - len(live)
        refused = _refund_refusals(order)
        if failed + len(refused) >= REFUND_ATTEMPTS_MAX:
            _refund_needs_person(order=order, failed=failed, refused=refused)
            return False
        params: RefundCreateParams = {
            "payment_intent": order.payment_intent_id,
            "metadata": {REFUND_TAG: tag},
        }
        if amount is not None:
            params["amount"] = amount
        # A refusal made no refund at Stripe, and Stripe keeps its answer under the key: the next attempt
        # takes a key of its own, as after a refund that failed.
        made_before = len(ours) + len(refused)
        key = f"{tag}-{made_before}" if made_before else tag
        try:
            refund = client.v1.refunds.create(params=params, options={"idempotency_key": key})
        except stripe.InvalidRequestError as refusal:
            # Refused for good (400: a disputed charge, say): no retry of this request can succeed. An
            # idempotency clash is no refusal (IdempotencyError, not this class: raised below, retried).
            refused = _refund_refused(order=order, key=key, error=refusal)
            if failed + len(refused) >= REFUND_ATTEMPTS_MAX:
                _refund_needs_person(order=order, failed=failed, refused=refused)
            return False
    except stripe.StripeError as error:
        logger.warning("refund failed, left pending order=%s error=%s", order.ref, type(error).__name__)
        raise UpstreamError(OrderError.REFUND_FAILED, "The refund is decided and will be retried.") from error
    if refund.status != "succeeded" or others_moving:
        logger.info("refund not yet confirmed order=%s status=%s", order.ref, refund.status)
        return False
    return _refunded(order=order, kind="refunded", actor_kind="system")


def _refund_owed(
    *,
    client: stripe.StripeClient,
    order: Order,
    made: list[stripe.Refund],
    options: RequestOptions | None = None,
) -> int:
    """What of the captured payment no refund has taken back yet: the amount the PaymentIntent received,
    less every refund that succeeded or may still (pending). A refund that failed or was cancelled moved
    nothing, so its amount is owed again."""
    intent = client.v1.payment_intents.retrieve(order.payment_intent_id, options=options).to_dict()
    received = intent.get("amount_received")
    captured = int(received if received is not None else intent.get("amount") or order.total_minor)
    return captured - sum(int(refund.amount or 0) for refund in made if refund.status not in REFUND_UNDONE)


@dataclass(frozen=True)
class RefundsAtStripe:
    """What Stripe says now of a captured payment: `captured` (what the PaymentIntent received) and `left`
    (what no refund, succeeded or pending, has taken back: `_refund_owed`)."""

    captured: int
    left: int

    @property
    def taken(self) -> int:
        return self.captured - self.left


def refunds_at_stripe(*, order: Order) -> RefundsAtStripe | None:
    """Re-read at Stripe what the order's payment has left after every refund of it, whoever made it; None
    when that cannot be known now (Stripe not answering, no such intent, nothing captured).

    For the webhook handler (lab/orders/stripe_events.py), which takes a refund event not of the lab's making
    as a nudge: the event may be older than another, and only Stripe's refunds say what the payment is now.
    It reads before it takes the order's row lock (a stalled Stripe held the lock, and the web worker, for
    the SDK's three tries of two calls); each call is tried once (`ONE_TRY`)."""
    try:
        client = stripe_client()
        made = client.v1.refunds.list(
            params={"payment_intent": order.payment_intent_id, "limit": 100}, options=ONE_TRY
        ).data
        left = _refund_owed(client=client, order=order, made=made, options=ONE_TRY)
    except (stripe.StripeError, UpstreamError) as error:
        logger.warning("refunds not read at stripe order=%s error=%s", order.ref, type(error).__name__)
        return None
    taken = sum(int(refund.amount or 0) for refund in made if refund.status not in REFUND_UNDONE)
    if left + taken <= 0:
        return None  # nothing captured at Stripe: not a payment whose refunds can be judged
    return RefundsAtStripe(captured=left + taken, left=max(left, 0))


def _refunded(*, order: Order, kind: str, actor_kind: str) -> bool:
    """A decided refund Stripe has made: `refund_pending` → `refunded`, on the timeline as `kind`."""
    with transaction.atomic():
        updated = Order.objects.filter(pk=order.pk, payment_status=Order.PaymentStatus.REFUND_PENDING).update(
            payment_status=Order.PaymentStatus.REFUNDED, updated_at=timezone.now()
        )
        if updated:
            OrderEvent.objects.create(order=order, kind=kind, actor_kind=actor_kind)
    logger.info("refund succeeded order=%s event=%s", order.ref, kind)
    return True


def _refund_metadata(refund: stripe.Refund) -> dict[str, Any]:
    return refund.metadata.to_dict() if refund.metadata is not None else {}


# The order event of a refund Stripe refused (a 4xx answer, no refund made): one per idempotency key.
REFUND_REFUSED = "refund_refused"


def _refund_refusals(order: Order) -> list[str]:
    """The idempotency keys of our refund requests for the order that Stripe refused (REFUND_REFUSED)."""
    notes = OrderEvent.objects.filter(order=order, kind=REFUND_REFUSED).values_list("note", flat=True)
    return sorted({note.split(" ", 1)[0] for note in notes})


def _refund_refused(*, order: Order, key: str, error: stripe.InvalidRequestError) -> list[str]:
    """Record Stripe's refusal of the refund asked for under `key` as an attempt; the refusals so far.

    Before, a refusal read as "Stripe not answering": the refund was asked for again every minute, for
    ever, no refund object was ever made for `refund_needs_person` to count, and nobody was told."""
    code = error.code or f"http_{error.http_status}"
    if not OrderEvent.objects.filter(order=order, kind=REFUND_REFUSED, note__startswith=f"{key} ").exists():
        OrderEvent.objects.create(order=order, kind=REFUND_REFUSED, actor_kind="stripe", note=f"{key} {code}")
    logger.warning("refund refused at stripe order=%s code=%s", order.ref, code)
    return _refund_refusals(order)


def _refund_needs_person(*, order: Order, failed: int, refused: list[str]) -> None:
    """Every refund we asked for failed or was refused: the order stays `refund_pending`, on its timeline and
    the supervisor's board for a person (the customer's card may be closed, the charge disputed), once; the
    reconciler makes no more."""
    note = f"{failed} refunds failed at Stripe"
    if refused:
        note = f"{failed + len(refused)} refunds failed at Stripe ({len(refused)} refused)"
    if not OrderEvent.objects.filter(order=order, kind="refund_needs_person").exists():
        OrderEvent.objects.create(order=order, kind="refund_needs_person", actor_kind="system", note=note)
    logger.warning("refund failed every time order=%s attempts=%d", order.ref, failed + len(refused))


def refund_issue_soon(*, order_id: int) -> None:
    """After the commit that decided it: try the refund now; when Stripe is not answering, a task retries
    it, and `refunds_reconcile` on beat finds any decided refund that is still pending."""
    try:
        refund_issue(order_id=order_id)
    except UpstreamError:
        enqueue("payments.refund_issue", order_id=order_id, countdown=30)


def refunds_reconcile() -> int:
    """Decided refunds not yet confirmed by Stripe are asked for again (idempotently), a batch a run.

    The batch is the orders touched longest ago, and each is touched as it is asked about, so the work
    rotates through every pending refund however many there are. An order whose refunds all failed
    (`refund_needs_person`) waits for a person: it is asked about again only once in
    REFUND_NEEDS_PERSON_RECHECK (a person may have refunded it in Stripe's dashboard). Before, every run
    asked about every pending order, those for ever, and with enough of them the task reached its hard time
    limit every run."""
    now = timezone.now()
    waiting_for_person = OrderEvent.objects.filter(order=OuterRef("pk"), kind="refund_needs_person")
    due = (
        Order.objects.filter(payment_status=Order.PaymentStatus.REFUND_PENDING)
        .filter(~Exists(waiting_for_person) | Q(updated_at__lt=now - REFUND_NEEDS_PERSON_RECHECK))
        .order_by("updated_at", "pk")
        .values_list("pk", flat=True)
    )
    done = 0
    for order_id in list(due[:REFUND_BATCH]):
        Order.objects.filter(pk=order_id, payment_status=Order.PaymentStatus.REFUND_PENDING).update(
            updated_at=timezone.now()
        )
        try:
            done += int(refund_issue(order_id=order_id))
        except UpstreamError:
            continue
    return done
