"""Stripe: PaymentIntents for server-computed amounts, their cancels, and refunds (the signed webhook events
are lab/orders/stripe_events.py).

We store Stripe ids and statuses only; card data goes from the customer's browser to Stripe, never here.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from lab.lib.errors import DomainError, UpstreamError
from lab.lib.tasks import enqueue
from lab.orders.errors import OrderError
from lab.orders.models import Order, OrderEvent
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked

if TYPE_CHECKING:
    from stripe import RequestOptions
    from stripe.params import RefundCreateParams

logger = logging.getLogger(__name__)


def stripe_client() -> stripe.StripeClient:
    """This process's client for the configured account and API base.

    One per process, not one per call: its HTTP session (one per thread, in the SDK) keeps the connection to
    Stripe open, so a PaymentIntent pays the TCP and TLS handshake once per web process instead of once per
    order. A kept connection that Stripe closed is replaced by the pool, and a call that fails on it is
    retried by the SDK with the same idempotency key. The process id is part of the key: a forked worker
    never writes to a socket its parent opened.
    """
    if not settings.STRIPE_SECRET_KEY:
        raise UpstreamError(OrderError.PAYMENTS_NOT_CONFIGURED, "Payments are not configured on this lab.")
    return _stripe_client_for(
        settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS, os.getpid()
    )


@functools.lru_cache(maxsize=4)
def _stripe_client_for(
    secret_key: str, api_base: str, timeout_seconds: float, process_id: int
) -> stripe.StripeClient:
    base = {"api": api_base} if api_base else None
    return stripe.StripeClient(
        secret_key,
        base_addresses=base,  # type: ignore[arg-type]
        max_network_retries=2,
        # The SDK's default waits 80 s for an answer, three times: a Stripe that accepts and stalls would
        # outlast the web worker, which gunicorn then kills, and the customer gets no answer at all.
        http_client=stripe.RequestsClient(timeout=timeout_seconds),
    )


class ChargeTooSmall(DomainError):
    """Stripe refused the order's PaymentIntent as under its minimum charge: no retry will take it."""


# Stripe's error code for an amount under the minimum charge, in the charge's currency or, converted, in the
# account's settlement currency (https://docs.stripe.com/error-codes#amount-too-small).
AMOUNT_TOO_SMALL = "amount_too_small"


def payment_intent_ensure(*, order: Order) -> Order:
    """Give an awaiting order a PaymentIntent once; Stripe's idempotency key makes a retry reuse it.

    ChargeTooSmall (400 `order_total_too_small`) when Stripe refuses the amount as too small: the lab's table
    (lab/orders/pricing.py) cannot know a settlement currency's minimum after conversion. Before, that refusal
    answered 502 "retry", which failed the same way at every retry. The caller withdraws the order."""
    if order.payment_intent_id or order.status != OrderStatus.AWAITING_PAYMENT:
        return order
    try:
        intent = stripe_client().v1.payment_intents.create(
            params={
                "amount": order.total_minor,
                "currency": order.currency,
                "metadata": {"order_ref": order.ref},
                "payment_method_types": ["card"],  # type: ignore[typeddict-unknown-key]
            },
            options={"idempotency_key": f"order-{order.ref}-payment-intent"},
        )
    except stripe.InvalidRequestError as error:
        if error.code != AMOUNT_TOO_SMALL:
            raise _provider_unavailable(order=order, error=error) from error
        logger.info("payment intent refused as too small order=%s", order.ref)
        raise ChargeTooSmall(
            OrderError.ORDER_TOTAL_TOO_SMALL,
            "The order total is under the smallest amount the card payment can take; add copies or choose "
            "another shipping method.",
            total_minor=order.total_minor,
            min_total_minor=None,  # Stripe's message says it in words, with its exchange rate of the moment
        ) from error
    except stripe.StripeError as error:
        raise _provider_unavailable(order=order, error=error) from error
    stored = {
        "payment_intent_id": intent.id,
        "payment_client_secret": intent.client_secret or "",
        "payment_status": Order.PaymentStatus.REQUIRES_PAYMENT,
    }
    # Stored only on an order still awaiting payment: a cancel (or an erasure) that committed while Stripe
    # was asked must not get a payable intent back on a cancelled order.
    if Order.objects.filter(pk=order.pk, payment_intent_id="", status=OrderStatus.AWAITING_PAYMENT).update(
        **stored
    ):
        for field, value in stored.items():
            setattr(order, field, value)
        return order
    order.refresh_from_db()  # a concurrent retry with the same key stored it first: show what it stored
    if order.payment_intent_id == intent.id:
        return order
    # The order left `awaiting_payment` meanwhile: nobody got this intent's secret, and it is cancelled at
    # Stripe too, so it never shows as payable on the lab's account (owed when Stripe does not settle it now).
    if _intent_cancel(intent_id=intent.id, order_ref=order.ref) is None:
        _intent_cancel_owe(order=order, intent_id=intent.id)
    return order


def _intent_cancel_owe(*, order: Order, intent_id: str) -> None:
    """Record the cancel of an intent Stripe made for an order that left `awaiting_payment` meanwhile, when
    the cancel right after could not be settled: the order keeps the intent's id (never its secret, which
    only an awaiting order shows) with `payment_intent_cancel_due`, and `payment_intent_cancel` (a task now,
    the payments sweep on beat after) cancels it. Before, the order's cancel had found no intent to owe a
    cancel for and nothing recorded this one: it stayed open at Stripe for good."""
    owed = (
        Order.objects.filter(pk=order.pk, payment_intent_id="")
        .exclude(status=OrderStatus.AWAITING_PAYMENT)
        .update(payment_intent_id=intent_id, payment_intent_cancel_due=True, updated_at=timezone.now())
    )
    order.refresh_from_db()
    if not owed:
        return  # another request with the same key recorded its own (the same intent: Stripe's key)
    logger.warning("payment intent cancel owed order=%s", order.ref)
    order_id = order.pk
    transaction.on_commit(lambda: enqueue("payments.payment_intent_cancel", order_id=order_id))


def _provider_unavailable(*, order: Order, error: stripe.StripeError) -> UpstreamError:
    logger.warning("payment intent create failed order=%s error=%s", order.ref, type(error).__name__)
    return UpstreamError(
        OrderError.PAYMENT_PROVIDER_UNAVAILABLE,
        "The order is saved but payment could not be prepared; retry with the same Idempotency-Key.",
        order=order.ref,
    )


def _intent_cancel(*, intent_id: str, order_ref: str) -> str | None:
    """Cancel a PaymentIntent at Stripe: what settled it ("cancelled", or the state that made Stripe refuse:
    "canceled", "succeeded", "missing"), or None while that is unknown (no answer, an error that may pass,
    an intent still `processing`) and the cancel is still owed.

    A refusal is not taken at its word: Stripe answers the same 400 for an intent that succeeded, one already
    cancelled and one that cannot be cancelled yet, so the intent is read back. Before, every Stripe error was
    swallowed here, a timeout too, and the one task message was the only try: its intent stayed payable."""
    client = stripe_client()
    try:
        try:
            client.v1.payment_intents.cancel(intent_id)
            return "cancelled"
        except stripe.InvalidRequestError as refusal:
            if refusal.http_status == 404:
                return "missing"
            status = str(client.v1.payment_intents.retrieve(intent_id).status)
    except stripe.StripeError as error:
        logger.warning("payment intent cancel unsettled order=%s error=%s", order_ref, type(error).__name__)
        return None
    if status in ("canceled", "succeeded"):
        # Succeeded: payment_intent_cancel records the payment and refunds it (the event may never come).
        return status
    logger.info("payment intent not cancellable yet order=%s status=%s", order_ref, status)
    return None


# The metadata key that marks a refund at Stripe as the one this lab decided for an order.
REFUND_TAG = "lab_refund"
# The order event of a partial refund made at Stripe (the payment stays `succeeded`).
PARTLY_REFUNDED = "partly_refunded"
# A refund in one of these states moved no money, and never will.
REFUND_UNDONE = frozenset({"failed", "canceled"})
# Our refunds of one order that may fail before a person is asked: a card closed since the payment fails
# every refund, and a new one each minute would only fill Stripe with failures.
REFUND_ATTEMPTS_MAX = 3
# A payment status under which no money has moved: a cancel of such an order owes a cancel of its intent.
UNPAID_PAYMENT_STATUSES = frozenset(
    {Order.PaymentStatus.NONE, Order.PaymentStatus.REQUIRES_PAYMENT, Order.PaymentStatus.FAILED}
)
# Owed intent cancels one sweep asks Stripe about, within the task's time limit (the rest: next run).
INTENT_CANCEL_BATCH = 100
# Pending refunds one sweep asks Stripe about (up to three calls each), after the intent cancels.
REFUND_BATCH = 50
# How long a refund left to a person (`refund_needs_person`) waits before the sweep asks Stripe again.
REFUND_NEEDS_PERSON_RECHECK = timedelta(hours=6)


def refund_tag(order: Order) -> str:
    """The tag (metadata `lab_refund`) of every refund this lab makes for the order."""
    return f"order-{order.ref}-refund"


def payment_cancel_decide(*, order: Order) -> bool:
    """The payment side of a cancel, under the order's lock in the cancel's transaction; True when a refund is
    due (the caller issues it after the commit with `refund_issue_soon`).

    A captured payment is to be refunded (`refund_decide`). An intent nobody has paid is owed a cancel at
    Stripe, recorded on the order (`payment_intent_cancel_due`) in the same commit: the task sent after the
    commit is a nudge, and `payments_reconcile` on beat cancels it when that message is lost or Stripe did
    not answer. Both the customer's and the supervisor's cancel come here; before, the supervisor's never
    cancelled the intent, and the customer's rested on one task message."""
    if refund_decide(order=order):
        return True
    if order.payment_intent_id and order.payment_status in UNPAID_PAYMENT_STATUSES:
        order.payment_intent_cancel_due = True
        order.save(update_fields=["payment_intent_cancel_due", "updated_at"])
        order_id = order.pk
        transaction.on_commit(lambda: enqueue("payments.payment_intent_cancel", order_id=order_id))
    return False


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


# One try per call, no SDK retries: the webhook handler's read is a nudge whose fallback is the event's own
# word, so a stalled Stripe costs it at most two waits of STRIPE_TIMEOUT_SECONDS (the list, the intent), not
# six (three tries each).
ONE_TRY: RequestOptions = {"max_network_retries": 0}


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


def _intent_cancel_owed_unflagged(order: Order) -> bool:
    """An order not flagged `payment_intent_cancel_due` that is owed its intent's cancel all the same:
    cancelled unpaid, with an intent, and no settled cancel on its timeline (what orders/0010 marked owed when
    it ran; a process of the version before it may cancel such orders after that, without the flag)."""
    return (
        order.status == OrderStatus.CANCELLED
        and order.payment_status in UNPAID_PAYMENT_STATUSES
        and bool(order.payment_intent_id)
        and not OrderEvent.objects.filter(order=order, kind="payment_intent_cancelled").exists()
    )


def payment_intent_cancel(*, order_id: int) -> bool:
    """Cancel the order's intent at Stripe if a cancel is owed (`payment_cancel_decide`); True once none is.

    UpstreamError while Stripe has not settled it: the task retries with backoff, and
    `payment_intent_cancels_reconcile` on beat asks again, so a cancelled order's intent never stays payable
    because one message or one call was lost.

    Stripe refusing because the intent succeeded means the customer paid a cancelled order, whether or not
    its payment_intent.succeeded ever arrives (an endpoint down past Stripe's retries, a changed secret): the
    payment is recorded and its refund decided here, under the order's lock, and made after the commit.
    Before, the owed cancel just ended, counting on that event: without it the money was kept, unrefunded.

    A cancel the previous version made (before orders/0010) sent only this task, never the flag: such an
    order is owed one too (`_intent_cancel_owed_unflagged`), flagged here under its lock and committed before
    Stripe is asked, so the sweep retries it like any other. Before, its task found no flag and ended, and the
    sweep never saw it: its intent stayed payable for good."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        return True
    if not order.payment_intent_cancel_due:
        with transaction.atomic():
            order = order_locked(order_id=order_id)
            if not order.payment_intent_cancel_due:
                if not _intent_cancel_owed_unflagged(order):
                    return True
                order.payment_intent_cancel_due = True
                order.save(update_fields=["payment_intent_cancel_due", "updated_at"])
    settled = _intent_cancel(intent_id=order.payment_intent_id, order_ref=order.ref)
    if settled is None:
        raise UpstreamError(
            OrderError.PAYMENT_PROVIDER_UNAVAILABLE, "The payment's cancel is owed and will be retried."
        )
    with transaction.atomic():
        order = order_locked(order_id=order_id)
        if order.payment_intent_cancel_due:
            order.payment_intent_cancel_due = False
            order.save(update_fields=["payment_intent_cancel_due", "updated_at"])
            OrderEvent.objects.create(
                order=order, kind="payment_intent_cancelled", actor_kind="system", note=settled
            )
        if settled == "succeeded" and order.payment_status in UNPAID_PAYMENT_STATUSES:
            order.payment_status = Order.PaymentStatus.SUCCEEDED
            order.save(update_fields=["payment_status", "updated_at"])
            OrderEvent.objects.create(
                order=order,
                kind="payment_succeeded_at_stripe",
                actor_kind="stripe",
                note="found by the intent's cancel",
            )
            if order.status == OrderStatus.CANCELLED and refund_decide(order=order):
                transaction.on_commit(lambda: refund_issue_soon(order_id=order_id))
    logger.info("payment intent cancel settled order=%s outcome=%s", order.ref, settled)
    return True


def payment_intent_cancels_reconcile() -> int:
    """Every owed intent cancel (a cancelled order's intent not yet settled at Stripe) is tried again."""
    done = 0
    owed = Order.objects.filter(payment_intent_cancel_due=True).order_by("pk").values_list("pk", flat=True)
    for order_id in owed[:INTENT_CANCEL_BATCH]:
        try:
            done += int(payment_intent_cancel(order_id=order_id))
        except UpstreamError:
            continue
    return done


def payments_reconcile() -> dict[str, int]:
    """Beat's payments sweep (task `payments.refunds_reconcile`): owed intent cancels first (a batch of at
    most INTENT_CANCEL_BATCH), then decided refunds (REFUND_BATCH), each within the task's time limit. Before,
    the refunds came first, unbatched, and with enough of them the owed cancels were never reached."""
    intents_cancelled = payment_intent_cancels_reconcile()
    return {"intents_cancelled": intents_cancelled, "refunded": refunds_reconcile()}
