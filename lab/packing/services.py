"""Packing: render and store the slip when an order is ready to pack."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from lab.accounts.models import User
from lab.lib.errors import Conflict
from lab.lib.seals import seal_holds, seal_of
from lab.orders.address import order_address_change
from lab.orders.models import Order, shipping_seal
from lab.orders.states import OrderStatus
from lab.packing.errors import PackingError
from lab.packing.models import PackingSlip
from lab.packing.slip import SlipData, SlipItem, plan_pages, render_slip

logger = logging.getLogger(__name__)

SLIP_RENDER_ATTEMPTS = 3


class SlipOutdated(RuntimeError):
    """The order kept changing while its slip was rendered; nothing was stored."""


PICKUP_AT_THE_COUNTER = "Pickup at the counter"


def order_shipping_check(order: Order, *, refused: str = "no slip is made for it") -> None:
    """Refuses (409 `address_changed_outside_the_lab`) an order whose shipping address or method was written
    in the database alone (its seal does not hold): its box would be labelled for someone else's address, or
    handed over at the counter to whoever gives the name on its slip instead of posted.

    An empty address passes the seal (Order.address_is_sealed: an erasure leaves it, and no seal), and with it
    any method: SQL that emptied a paid parcel's address and made it a pickup had its box handed over. Only a
    shipped order is left so by the lab (an erasure is refused from paid through packed, and every order is
    placed with an address), so an empty one on any other order was written in the database alone."""
    if not order.address_is_sealed or _emptied_before_it_shipped(order):
        logger.error("shipping address or method changed outside the lab refused order=%s", order.ref)
        raise Conflict(
            PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB,
            f"Order {order.ref}'s shipping address was changed outside the lab; {refused}. Ask a supervisor.",
        )


def _emptied_before_it_shipped(order: Order) -> bool:
    return not order.shipping_address and order.status != OrderStatus.SHIPPED


def slip_data_for(order: Order) -> SlipData:
    order_shipping_check(order)
    address = order.shipping_address or {}
    if order.shipping_method == Order.ShippingMethod.PICKUP:
        # Collected at the counter: the name is what the box is handed over by, and a postal address on a
        # parcel that is never posted is only a customer's address lying on the counter.
        lines = [address.get("name", ""), PICKUP_AT_THE_COUNTER]
    else:
        lines = [address.get(k, "") for k in ("name", "line1", "line2")]
        lines.append(" ".join(p for p in (address.get("postal_code", ""), address.get("city", "")) if p))
        lines.append(" ".join(p for p in (address.get("region", ""), address.get("country", "")) if p))
    items = [
        SlipItem(
            product=item.product.name,
            size=f"{item.product.size_label} in",
            paper=item.product.paper,
            copies=item.copies,
            sizing=item.sizing,
        )
        for item in order.items.select_related("product")
    ]
    return SlipData(
        lab_name=settings.LAB_NAME,
        lab_contact=settings.LAB_CONTACT,
        order_ref=order.ref,
        ship_to=[line for line in lines if line] or ["-"],
        shipping_method=order.shipping_method,
        items=items,
        printed_on=timezone.now().date(),
    )


SLIP_SEAL_SALT = "lab.packing.slip"


def _slip_sealed_text(*, order: Order, pdf: bytes, address_sealed: str | None = None) -> str:
    # The order's address seal as it is now (or `address_sealed`): a slip the lab rendered for the address
    # (and method) the order had before, written back in the database after the customer changed it, no
    # longer holds.
    sealed = order.address_sealed if address_sealed is None else address_sealed
    return f"{order.pk}:{sealed}:{hashlib.sha256(pdf).hexdigest()}"


def slip_seal_of(*, order: Order, pdf: bytes) -> str:
    return seal_of(SLIP_SEAL_SALT, _slip_sealed_text(order=order, pdf=pdf))


def slip_is_sealed(slip: PackingSlip) -> bool:
    """Whether the stored PDF is the one the lab rendered for this order as it is addressed now."""
    return seal_holds(slip.seal, SLIP_SEAL_SALT, _slip_sealed_text(order=slip.order, pdf=bytes(slip.pdf)))


def _sealed_before_its_address(slip: PackingSlip) -> bool:
    """A slip stored before its seal covered the order's address seal (its order's id and PDF only)."""
    return seal_holds(
        slip.seal, SLIP_SEAL_SALT, f"{slip.order_id}:{hashlib.sha256(bytes(slip.pdf)).hexdigest()}"
    )


def _sealed_before_its_row(slip: PackingSlip) -> bool:
    """A slip stored while its order's seal did not name the order's row yet (before migration orders/0016,
    or by a web process of the previous version): 0016 and `order_seals_upgrade` seal the order again, with
    its row, and the slip's seal, which covers the order's seal, no longer holds."""
    order = slip.order
    previous = shipping_seal(
        ref=order.ref,
        customer_id=order.customer_id,
        address=order.shipping_address,
        shipping_method=order.shipping_method,
    )
    sealed_text = _slip_sealed_text(order=order, pdf=bytes(slip.pdf), address_sealed=previous)
    return order.address_is_sealed and seal_holds(slip.seal, SLIP_SEAL_SALT, sealed_text)


def packing_slip_render(*, order_id: int) -> PackingSlip:
    """Render the order's slip and store it. Rendering is slow-ish, so it runs outside the transaction, and
    the slip is stored only if the order still is as it was read (under the order's lock, which an erasure
    takes too): an erasure that committed meanwhile removed the slip and the address it prints, and a slip
    rendered from before must not bring them back. The slip is then rendered again from the order as it is."""
    for _ in range(SLIP_RENDER_ATTEMPTS):
        order = Order.objects.get(pk=order_id)
        data = slip_data_for(order)
        pdf = render_slip(slip=data)
        pages = len(plan_pages(slip=data))
        with transaction.atomic():
            locked = Order.objects.select_for_update().get(pk=order_id)
            if slip_data_for(locked) != data:
                logger.info("packing slip outdated while rendered, rendered again order=%s", order.ref)
                continue
            slip, _ = PackingSlip.objects.update_or_create(
                order=locked,
                defaults={
                    "pdf": pdf,
                    "pages": pages,
                    "rendered_at": timezone.now(),
                    "seal": slip_seal_of(order=locked, pdf=pdf),
                },
            )
        logger.info("packing slip rendered order=%s bytes=%d", order.ref, len(pdf))
        return slip
    # The order changed during every render: the next request (the reconciler asks again for a `ready_to_pack`
    # order without its slip) renders it from where it has settled.
    raise SlipOutdated(f"order {order_id} changed during each of {SLIP_RENDER_ATTEMPTS} renders of its slip")


def packing_slip_get_or_render(*, order_id: int) -> PackingSlip:
    """The stored slip, rendered now when the worker has not made it yet, or when the stored one is not the
    lab's: written in the database alone (another order's slip moved onto this one would label this box for
    that address), rendered for an address the order no longer has (an earlier slip written back after the
    customer's change), or stored before slips were sealed so. The new one is made from the order, whose
    address seal is checked (slip_data_for)."""
    slip = PackingSlip.objects.select_related("order").filter(order_id=order_id).first()
    if slip is not None and slip_is_sealed(slip):
        return slip
    if slip is not None and _sealed_before_its_address(slip):
        logger.info(
            "packing slip sealed before slips covered the address, rendered again order_id=%s", order_id
        )
    elif slip is not None and _sealed_before_its_row(slip):
        # Not a tamper alarm: the upgrade itself sealed the order again (each slip stored then logged one).
        logger.info(
            "packing slip sealed before orders' seals named their row, rendered again order_id=%s", order_id
        )
    elif slip is not None and slip.seal:
        logger.error("packing slip changed outside the lab, rendered again order_id=%s", order_id)
    return packing_slip_render(order_id=order_id)


def shipping_address_change(
    *, order: Order, address: dict[str, Any], actor: User | None, actor_kind: str
) -> Order:
    """A customer's change of an order's shipping address (lab.orders.address.order_address_change), and its
    stored slip dropped under the same lock: an order back from ready to pack (a reprint, a hold) keeps the
    slip rendered then, which would label the box for the old address. The slip is rendered again when the
    order is ready to pack (and by packing_slip_get_or_render when one is asked for without it)."""
    with transaction.atomic():
        change = order_address_change(order=order, address=address, actor=actor, actor_kind=actor_kind)
        if change.changed:
            dropped, _ = PackingSlip.objects.filter(order_id=change.order.pk).delete()
            if dropped:
                logger.info("packing slip dropped, address changed order=%s", change.order.ref)
    return change.order
