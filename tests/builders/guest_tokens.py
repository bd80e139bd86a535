"""Guest orders' tokens as the lab issues them: stored sealed to their order (lab/orders/guest_tokens.py),
for tests that give a built order a token without placing it through the API."""

from __future__ import annotations

from lab.orders.guest_tokens import guest_token_seal
from lab.orders.models import Order


def guest_token_grant(order: Order, token: str) -> Order:
    """The order opened by `token`, as the intake stores it (a seal of the order's ref and its hash)."""
    stored = guest_token_seal(order_id=order.pk, ref=order.ref, token=token)
    Order.objects.filter(pk=order.pk).update(guest_token_hash=stored)
    order.refresh_from_db()
    return order
