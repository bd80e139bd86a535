"""The customer-webhook delivery state machine: the one table every delivery status change is checked against.

A delivery retries while pending; a customer's redelivery request moves a finished delivery back to pending.
"""

from __future__ import annotations

from django.db.models import TextChoices

from lab.lib.states import StateMachine


class DeliveryStatus(TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


D = DeliveryStatus
DELIVERY_MACHINE = StateMachine(
    "webhook delivery",
    {
        D.PENDING: frozenset({D.SUCCEEDED, D.FAILED}),
        D.SUCCEEDED: frozenset({D.PENDING}),
        D.FAILED: frozenset({D.PENDING}),
    },
)
