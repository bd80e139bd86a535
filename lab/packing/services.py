"""Packing: render and store the slip when an order is ready to pack."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from lab.accounts.models import User
from lab.lib.errors import Conflict
from lab.lib.seals import seal_holds, seal_of
from lab.orders.address import order_address_change
from lab.orders.models import Order
from lab.packing.errors import PackingError
from lab.packing.models import PackingSlip
from lab.packing.slip import SlipData, SlipItem, plan_pages, render_slip
from lab.production.backends import backend_for
from lab.production.models import Printer
from printers.errors import PermanentPrinterError

logger = logging.getLogger(__name__)

SLIP_RENDER_ATTEMPTS = 3


class SlipOutdated(RuntimeError):
    """The order kept changing while its slip was rendered; nothing was stored."""


PICKUP_AT_THE_COUNTER = "Pickup at the counter"


def slip_data_for(order: Order) -> SlipData:
    if not order.address_is_sealed:
        # Written in the database alone: the box would be labelled for someone else's address.
        logger.error("shipping address changed outside the lab refused order=%s", order.ref)
        raise Conflict(
            PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB,
            f"Order {order.ref}'s shipping address was changed outside the lab; no slip is made for it. "
            "Ask a supervisor.",
        )
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
        status_url=f"{settings.SITE_URL}/api/v1/orders/{order.ref}",
        ship_to=[line for line in lines if line] or ["-"],
        shipping_method=order.shipping_method,
        items=items,
        printed_on=timezone.now().date(),
    )


SLIP_SEAL_SALT = "lab.packing.slip"


def _slip_sealed_text(*, order_id: int, pdf: bytes) -> str:
    return f"{order_id}:{hashlib.sha256(pdf).hexdigest()}"


def slip_seal_of(*, order_id: int, pdf: bytes) -> str:
    return seal_of(SLIP_SEAL_SALT, _slip_sealed_text(order_id=order_id, pdf=pdf))


def slip_is_sealed(slip: PackingSlip) -> bool:
    """Whether the stored PDF is the one the lab rendered for this order."""
    return seal_holds(
        slip.seal, SLIP_SEAL_SALT, _slip_sealed_text(order_id=slip.order_id, pdf=bytes(slip.pdf))
    )


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
            if slip_data_for(Order.objects.select_for_update().get(pk=order_id)) != data:
                logger.info("packing slip outdated while rendered, rendered again order=%s", order.ref)
                continue
            slip, _ = PackingSlip.objects.update_or_create(
                order=order,
                defaults={
                    "pdf": pdf,
                    "pages": pages,
                    "rendered_at": timezone.now(),
                    "seal": slip_seal_of(order_id=order.pk, pdf=pdf),
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
    that address), or stored before slips were sealed. The new one is made from the order, whose address seal
    is checked (slip_data_for)."""
    slip = PackingSlip.objects.filter(order_id=order_id).first()
    if slip is not None and slip_is_sealed(slip):
        return slip
    if slip is not None and slip.seal:
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


def packing_slip_print(*, order_id: int, printer_name: str) -> str:
    """Send the order's slip to a (CUPS or hot-folder) slip printer; returns the backend job id."""
    slip = packing_slip_get_or_render(order_id=order_id)
    printer = Printer.objects.get(name=printer_name)
    if not printer.destination_is_sealed:
        # Written in the database, not by the lab: a slip (the customer's address) is not sent there.
        raise PermanentPrinterError(
            code="printer_changed_outside_the_lab",
            message=f"Printer {printer.name}'s destination was changed outside the lab; nothing was sent.",
        )
    with tempfile.TemporaryDirectory(prefix="lab-slip-") as folder:
        path = Path(folder) / f"slip-{slip.order_id}.pdf"
        path.write_bytes(bytes(slip.pdf))
        path.chmod(0o644)
        Path(folder).chmod(0o755)
        handle = backend_for(printer).submit(path=path, title=f"lab-slip-{slip.order_id}", copies=1)
    logger.info("packing slip printed order=%s printer=%s job=%s", slip.order_id, printer.name, handle)
    return handle
