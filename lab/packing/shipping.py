"""A packed box leaves the packing station: shipped with a carrier and its tracking number, or handed over at
the counter. `shipped` is the order's end at the lab either way; either is taken only with the token of the
page it was made from, while the box is still as that page showed it.
"""

from __future__ import annotations

import logging
import re

from django.db import IntegrityError, models

from lab.accounts.models import User
from lab.lib.clock import database_now
from lab.lib.errors import Conflict, DomainError
from lab.orders.models import Order, tracking_key, tracking_key_of
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_transition
from lab.packing.checklist import order_page_check, page_token_required
from lab.packing.errors import PackingError
from lab.packing.scanning import ORDER_CODE, order_code_normalize, packing_access_check, station_step
from lab.packing.services import order_shipping_check

logger = logging.getLogger(__name__)

_TRACKING = re.compile(r"^[A-Z0-9][A-Z0-9 -]{3,62}[A-Z0-9]$")


class Carrier(models.TextChoices):
    UPS = "ups", "UPS"
    USPS = "usps", "USPS"
    FEDEX = "fedex", "FedEx"
    DHL = "dhl", "DHL"
    OTHER = "other", "Other"


def is_collected_at_the_counter(order: Order) -> bool:
    return order.shipping_method == Order.ShippingMethod.PICKUP


def _tracking_number_checked(*, carrier: str, tracking_number: str) -> str:
    if carrier not in Carrier.values:
        raise DomainError(PackingError.INVALID_CARRIER, f"Choose a carrier: {', '.join(Carrier.labels)}.")
    tracking = tracking_number.strip().upper()
    if not _TRACKING.match(tracking):
        raise DomainError(
            PackingError.INVALID_TRACKING_NUMBER,
            "A tracking number is 5 to 64 letters, digits, spaces or dashes.",
        )
    if ORDER_CODE.match(tracking.replace(" ", "")):
        # The station asks for slips' barcodes too: the next box's slip scanned into this field would ship
        # this order for good under another customer's ref.
        raise DomainError(
            PackingError.INVALID_TRACKING_NUMBER,
            f"{tracking} is an order's code, not a tracking number: scan the carrier's label.",
        )
    return tracking


def order_ship(*, code: str, actor: User, carrier: str, tracking_number: str, seen: str | None) -> Order:
    """packed → shipped with the carrier and its tracking number; a pickup is handed over instead.

    `seen` is the page token of the whole order the ship was made from (required): a page opened before the
    box was unpacked (a reprint since, other counts) and packed again ships nothing; it showed another box."""
    packing_access_check(actor)
    seen = page_token_required(seen, step="ship")
    order_code_normalize(code)
    tracking = _tracking_number_checked(carrier=carrier, tracking_number=tracking_number)
    try:
        with station_step(
            code=code,
            actor=actor,
            status=OrderStatus.PACKED,
            why="; pack it before shipping",
            refused=PackingError.ORDER_NOT_PACKED,
        ) as order:
            order_page_check(order, seen=seen, step="ship")
            # Its method or address written in the database alone: it is not posted, nor handed over.
            order_shipping_check(order, refused="it is not shipped")
            if is_collected_at_the_counter(order):
                # Shipped under an invented number, the customer was e-mailed it as their parcel's.
                raise Conflict(
                    PackingError.COLLECTED_AT_THE_COUNTER,
                    f"Order {order.ref} is collected at the counter: hand it over, "
                    "with no carrier or tracking number.",
                )
            _tracking_number_free(tracking, order=order)
            order.carrier = carrier
            order.tracking_number = tracking
            order.shipped_at = database_now()  # the slip's window is judged on it, on the same clock
            order_transition(
                order=order,
                to_status=OrderStatus.SHIPPED,
                actor=actor,
                actor_kind="staff",
                # The carrier only: every floor role reads the timeline for as long as the order is kept, and
                # the tracking number is personal data kept on the order row, which an erasure blanks (the
                # orders migration shipped_event_notes_without_tracking_numbers took it out of older notes).
                note=carrier,
                extra_fields=("carrier", "tracking_number", "shipped_at"),
            )
    except IntegrityError as error:
        # Taken by another packer's box between the check and this commit: the same answer, nothing kept.
        _tracking_number_free(tracking, order=None)
        raise error
    logger.info("order shipped order=%s carrier=%s actor=%s", order.ref, carrier, actor.pk)
    return order


def order_hand_over(*, code: str, actor: User, seen: str | None) -> Order:
    """packed → shipped for an order the customer collects at the counter: no carrier, no tracking number (the
    empty number is outside order_tracking_number_unique, so every pickup may have it). `shipped` is the
    order's end at the lab either way; its time starts the slip's window and the privacy receipt as a
    parcel's does. `seen` is the page token of the whole order, required as for a ship."""
    packing_access_check(actor)
    seen = page_token_required(seen, step="hand_over")
    with station_step(
        code=code,
        actor=actor,
        status=OrderStatus.PACKED,
        why="; pack it before handing it over",
        refused=PackingError.ORDER_NOT_PACKED,
    ) as order:
        order_page_check(order, seen=seen, step="hand_over")
        # "pickup" written in the database alone on a parcel's order: the box would go to whoever gives the
        # name on its slip.
        order_shipping_check(order, refused="it is not handed over")
        if not is_collected_at_the_counter(order):
            raise Conflict(
                PackingError.SHIPS_BY_CARRIER,
                f"Order {order.ref} ships {order.shipping_method}: "
                "enter the carrier and tracking number to ship it.",
            )
        order.shipped_at = database_now()
        order_transition(
            order=order,
            to_status=OrderStatus.SHIPPED,
            actor=actor,
            actor_kind="staff",
            note="picked up at the counter",
            extra_fields=("shipped_at",),
        )
    logger.info("order handed over order=%s actor=%s", order.ref, actor.pk)
    return order


def _tracking_number_free(tracking: str, *, order: Order | None) -> None:
    # (the empty number excluded as the unique index's condition does, so the index answers it)
    others = (
        Order.objects.exclude(tracking_number="")
        .annotate(parcel=tracking_key())
        .filter(parcel=tracking_key_of(tracking))
    )
    other = (others.exclude(pk=order.pk) if order is not None else others).first()
    if other is not None:
        raise Conflict(
            PackingError.TRACKING_NUMBER_IN_USE,
            f"Tracking number {tracking} is already order {other.ref}'s: scan this box's own label.",
        )
