"""An erased customer's orders, kept anonymised for accounting: what an erasure blanks in them and in what
hangs off them (packing slips, webhook events, notes, idempotency keys, preflight, the floor's job notes).
"""

from __future__ import annotations

from django.db.models import CharField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from lab.notify.models import WebhookEvent
from lab.orders.models import ClarificationCase, IdempotencyKey, Order, OrderEvent, OrderItem
from lab.orders.stripe_dispute_events import DISPUTE_CLOSED_KINDS
from lab.packing.models import PackingSlip
from lab.production.models import JOB_CANCELLED, JOB_CANCELLED_NOTE, JOB_REPRINT_REQUESTED, JobEvent

# An erased order's items' colour note: what preflight says of a photo's embedded profile, without its
# description (lab/orders/pricing.py: preflight).
ERASED_COLOR_NOTE = "embedded profile will be converted to the printer profile"


def _clear_floor_notes(order_ids: list[int]) -> None:
    """The floor's own words on the orders' print jobs (a reprint's or a cancel's note, which may name the
    customer) give way to what the lab writes itself. Only these kinds: the other job events hold the lab's
    machine-written notes, and some are still read (a superseded title names copies the spool sweep
    erases)."""
    jobs_events = JobEvent.objects.filter(job__order_id__in=order_ids)
    jobs_events.filter(kind=JOB_CANCELLED).exclude(note=JOB_CANCELLED_NOTE).update(note=JOB_CANCELLED_NOTE)
    reprints = jobs_events.filter(kind=JOB_REPRINT_REQUESTED).values_list(
        "pk", "job__reprint_of_id", "job__reprint_reason"
    )
    for event_id, original_id, reason in reprints:
        # As job_reprint writes it without a note: the reprinted job and the reason chosen from a list.
        JobEvent.objects.filter(pk=event_id).update(note=f"reprint of job {original_id}: {reason}")


def _anonymize_orders(orders: QuerySet[Order]) -> int:
    order_ids = list(orders.values_list("pk", flat=True))
    # The slip PDF prints the address; webhook bodies may quote hold questions and tracking numbers.
    PackingSlip.objects.filter(order_id__in=order_ids).delete()
    WebhookEvent.objects.filter(order_id__in=order_ids).delete()
    # Free text written to or about the customer: a hold question, a staff note on the timeline or a job.
    # Not a dispute's close: its note is Stripe's dispute id and final status (`dp_… won`, written by
    # lab/orders/stripe_dispute_events.py), no personal data, and what tells a `charge.dispute.created` that
    # comes after its own close (Stripe retries a failed delivery for days) that the dispute is over. Blanked,
    # the late creation marked the settled payment `disputed` for good, with no close to come
    # (tests/privacy/test_erasure_keeps_dispute_ids.py).
    OrderEvent.objects.filter(order_id__in=order_ids).exclude(note="").exclude(
        kind__in=DISPUTE_CLOSED_KINDS
    ).update(note="")
    ClarificationCase.objects.filter(order_id__in=order_ids).exclude(question="").update(question="")
    _clear_floor_notes(order_ids)
    # The orders' idempotency keys: the request hash covers the shipping address (and a guest's e-mail), a
    # guest's scope is a hash of the e-mail, and the key is text the client chose. Anyone holding an address
    # could find the order from the hash, and a guest's replay would still answer the order and its token.
    # Each key row then names only its order (its id as the key keeps the pair unique); nothing replays it,
    # as no request is ever in an `erased:` scope.
    IdempotencyKey.objects.filter(order_id__in=order_ids).update(
        scope=Concat(Value("erased:"), Subquery(Order.objects.filter(pk=OuterRef("order_id")).values("ref"))),
        key=Cast("pk", output_field=CharField()),
        request_sha256="",
    )
    # An ICC profile's description is the customer's own text from their photo's file (a name, at times):
    # the items' preflight quoted it. A note without it stays (lab/orders/pricing.py: preflight).
    items = OrderItem.objects.filter(order_id__in=order_ids, preflight__color_note__startswith="embedded")
    for item_id, preflight in items.values_list("pk", "preflight"):
        OrderItem.objects.filter(pk=item_id).update(preflight={**preflight, "color_note": ERASED_COLOR_NOTE})
    # The carrier and tracking number too: with the carrier's tracking page they give the parcel's route and
    # the town it went to (and the webhook bodies that quoted them are deleted above for that reason). Empty
    # numbers are outside order_tracking_number_unique, so any number of erased orders can share "".
    # The address's seal goes with it: an HMAC of the ref, the customer's id and the full address, which
    # anyone holding SECRET_KEY and a backup could test guessed addresses against, offline. An empty
    # address counts as sealed (Order.address_is_sealed): it sends nothing anywhere.
    return orders.update(
        shipping_address={},
        address_sealed="",
        guest_email="",
        hold_message="",
        carrier="",
        tracking_number="",
        payment_client_secret="",
        is_anonymized=True,
        updated_at=timezone.now(),
    )
