"""Reads for notifications: marketing recipients, and a customer's own webhook endpoints and deliveries.

Every read of a webhook row by a customer goes through the `*_for_owner` helpers: another's row is a 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Q, QuerySet

from lab.accounts.models import User
from lab.lib.errors import NotFound
from lab.notify.errors import NotifyError
from lab.notify.models import WebhookDelivery, WebhookEndpoint
from lab.notify.states import DeliveryStatus


def marketing_recipients() -> QuerySet[User]:
    """People who opted in to company news and are still here; transactional mail never reads this."""
    return User.objects.filter(marketing_opt_in=True, erased_at__isnull=True, is_active=True).order_by("pk")


def webhook_endpoints_for_owner(*, owner: User) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(owner=owner).order_by("created_at", "pk")


def webhook_endpoint_for_owner(*, endpoint_id: uuid.UUID, owner: User) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, owner=owner).first()
    if endpoint is None:
        raise NotFound(NotifyError.WEBHOOK_ENDPOINT_NOT_FOUND, "No such webhook endpoint.")
    return endpoint


def webhook_deliveries_for_endpoint(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related("attempts")
        .order_by("-created_at", "pk")
    )


def webhook_delivery_for_owner(*, delivery_id: uuid.UUID, owner: User) -> WebhookDelivery:
    delivery = (
        WebhookDelivery.objects.select_related("event", "endpoint")
        .filter(pk=delivery_id, endpoint__owner=owner)
        .first()
    )
    if delivery is None:
        raise NotFound(NotifyError.WEBHOOK_DELIVERY_NOT_FOUND, "No such webhook delivery.")
    return delivery


def webhook_deliveries_due(*, due_before: datetime, limit: int = 500) -> list[str]:
    """Pending deliveries that were due before `due_before` and that nobody holds.

    The sweeper re-enqueues these when a delayed task message was lost (a restarted worker, a broker without
    durable countdowns); a duplicate message is harmless because each attempt claims its row first.
    """
    due = (
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=due_before)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=due_before))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    return [str(pk) for pk in due]
