"""Transactional e-mail for orders: which events mail the customer, the message, carrier tracking links; and
the message carrying a signed privacy receipt's link (the receipts themselves are lab.customer_data's).

Messages are rendered from templates under notify/email/; sending and bookkeeping live in lab.notify.services.
"""

from __future__ import annotations

from email.utils import parseaddr
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db.models import Q
from django.template.loader import render_to_string

from lab.lib.currency import money_format as money_format  # (re-exported: the e-mails' amounts)
from lab.orders.models import Order, OrderEvent
from lab.orders.states import OrderStatus

RECEIVED = "received"
# A cancelled order's payment, found only after the cancel (its Stripe event late or lost), was refunded: the
# cancellation e-mail knew of no payment, so this one tells the customer their money went back.
REFUNDED = "refunded"

# Public tracking pages; the tracking number is the only thing we put in the URL.
TRACKING_URLS = {
    "ups": "https://www.ups.com/track?tracknum={number}",
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={number}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={number}",
    "dhl": "https://www.dhl.com/global-en/home/tracking/tracking-express.html?submit=1&tracking-id={number}",
}

# A pickup order's packing and hand-over (email_kind_for).
READY_TO_COLLECT, COLLECTED = "ready_to_collect", "collected"
# E-mail kind → (template name, subject). Statuses missing here (in production, packed, ...) send no e-mail:
# the customer hears about them by webhook or by looking at the order.
EMAILS: dict[str, tuple[str, str]] = {
    RECEIVED: ("order_received", "We received your order {ref}"),
    OrderStatus.PAID: ("order_paid", "Payment confirmed for order {ref}"),
    OrderStatus.ON_HOLD: ("order_on_hold", "Order {ref} is on hold: we need something from you"),
    OrderStatus.SHIPPED: ("order_shipped", "Order {ref} has shipped"),
    OrderStatus.CANCELLED: ("order_cancelled", "Order {ref} is cancelled"),
    READY_TO_COLLECT: ("order_ready_to_collect", "Order {ref} is ready to collect"),
    COLLECTED: ("order_collected", "Order {ref} was collected"),
    REFUNDED: ("order_refunded", "Your payment for order {ref} is refunded"),
}


def email_kind_for(*, order: Order, kind: str) -> str:
    """The e-mail for an order's event: a pickup order is told when it waits at the counter (packed) and when
    it was collected (handed over), never "on its way" with a blank carrier and tracking number."""
    if order.shipping_method == Order.ShippingMethod.PICKUP:
        by_status: dict[str, str] = {OrderStatus.PACKED: READY_TO_COLLECT, OrderStatus.SHIPPED: COLLECTED}
        return by_status.get(kind, kind)
    return kind


def tracking_url(*, carrier: str, tracking_number: str) -> str:
    """The carrier's public tracking page for a parcel, or "" for a carrier we do not know."""
    template = TRACKING_URLS.get(carrier.strip().lower())
    number = tracking_number.strip()
    if template is None or not number:
        return ""
    return template.format(number=quote(number, safe=""))


def order_recipient(*, order: Order) -> str:
    """The registered customer's address, else the guest's; "" once the person or the order was erased."""
    if order.is_anonymized:
        return ""
    if order.customer is not None:
        customer = order.customer
        return customer.email if customer.erased_at is None and customer.is_active else ""
    return order.guest_email


def reply_to() -> list[str]:
    """Where a customer's reply goes: LAB_CONTACT, which every e-mail asks them to reply to (the messages come
    from DEFAULT_FROM_EMAIL, often an address nobody reads). Nothing when LAB_CONTACT is not an e-mail
    address (a phone number, a web page): a reply then goes to the sender, as before."""
    contact = settings.LAB_CONTACT.strip()
    try:
        validate_email(parseaddr(contact)[1])
    except ValidationError:
        return []
    return [contact]


def has_email(*, kind: str) -> bool:
    return kind in EMAILS


def order_email(*, order: Order, kind: str) -> EmailMessage:
    """Render the message for `kind` ("received" or an order status listed in EMAILS)."""
    template, subject = EMAILS[kind]
    context = {
        "order": order,
        "lab_name": settings.LAB_NAME,
        "lab_contact": settings.LAB_CONTACT,
        "total": money_format(amount_minor=order.total_minor, currency=order.currency),
        "items": list(order.items.select_related("product")),
        "tracking_url": tracking_url(carrier=order.carrier, tracking_number=order.tracking_number),
        # What the cancellation e-mail may say of the money: "we refunded" only once Stripe says the refund
        # succeeded; while it is decided but not yet made (`refund_pending`: Stripe answered `pending`, or
        # refused it and a person is asked) "we are refunding". Before, both said "We refunded", and a
        # refund Stripe then refused was never made although the customer had been told it was.
        "is_refunded": _is_refunded(order),
        "is_refunding": order.payment_status == Order.PaymentStatus.REFUND_PENDING,
        # The refund e-mail of a refund the cancellation e-mail said was under way (decided with the cancel),
        # not of a payment found after it.
        "refund_was_announced": kind == REFUNDED and _refund_decided_with_cancel(order),
    }
    return EmailMessage(
        subject=subject.format(ref=order.ref),
        body=render_to_string(f"notify/email/{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[order_recipient(order=order)],
        reply_to=reply_to(),
        headers={"Auto-Submitted": "auto-generated"},
    )


def tells_refund_made(*, order: Order, kind: str) -> bool:
    """The message for `kind`, rendered from `order` as it is, tells the customer their refund is made: a
    cancellation e-mail saying "We refunded ..." (lab.notify.services records it with the sent e-mail, and
    mails no refund e-mail after it). One saying "we are refunding", or that no payment reached us, promised
    word when the refund is made."""
    return kind == OrderStatus.CANCELLED and _is_refunded(order)


def _is_refunded(order: Order) -> bool:
    return order.payment_status == Order.PaymentStatus.REFUNDED


def _refund_decided_with_cancel(order: Order) -> bool:
    """The order's refund was decided before or with its latest cancel (a paid order cancelled): its
    cancellation e-mail told of it."""
    cancelled = (
        OrderEvent.objects.filter(order=order, kind="status_changed", to_status=OrderStatus.CANCELLED)
        .order_by("-created_at", "-pk")
        .first()
    )
    return (
        cancelled is not None
        and OrderEvent.objects.filter(order=order, kind="refund_decided")
        .filter(
            Q(created_at__lt=cancelled.created_at) | Q(created_at=cancelled.created_at, pk__lt=cancelled.pk)
        )
        .exists()
    )


# Receipt reason → subject; the body (notify/email/privacy_receipt.txt) says what happened for each.
RECEIPT_SUBJECTS = {
    "shipped": "Your privacy receipt for order {ref}",
    "purged": "Your photos of order {ref} are deleted: your privacy receipt",
    "erased": "Your data is erased: your privacy receipt for {ref}",
}


def receipt_email(*, recipient: str, order_ref: str, reason: str, url: str, key_id: str) -> EmailMessage:
    """The message with the link to a signed privacy receipt (order_ref "": photos that were in no order)."""
    reference = order_ref or "your photos"
    context = {
        "order_ref": order_ref,
        "reason": reason,
        "url": url,
        "key_id": key_id,
        "lab_name": settings.LAB_NAME,
        "lab_contact": settings.LAB_CONTACT,
    }
    return EmailMessage(
        subject=RECEIPT_SUBJECTS[reason].format(ref=reference),
        body=render_to_string("notify/email/privacy_receipt.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient],
        reply_to=reply_to(),
        headers={"Auto-Submitted": "auto-generated"},
    )


ERASURE_RECEIPTS_SUBJECT = "Your data is erased: your privacy receipts"


def erasure_receipts_email(*, recipient: str, links: list[tuple[str, str]], key_id: str) -> EmailMessage:
    """One message with the links of all of an erasure's privacy receipts: (order ref, url) each, ref "" for
    the photos that were in no order."""
    context = {
        "links": [{"order_ref": order_ref, "url": url} for order_ref, url in links],
        "key_id": key_id,
        "lab_name": settings.LAB_NAME,
        "lab_contact": settings.LAB_CONTACT,
    }
    return EmailMessage(
        subject=ERASURE_RECEIPTS_SUBJECT,
        body=render_to_string("notify/email/privacy_receipts_erased.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient],
        reply_to=reply_to(),
        headers={"Auto-Submitted": "auto-generated"},
    )
