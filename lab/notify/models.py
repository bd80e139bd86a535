"""What the lab told customers: e-mail notifications (once per order event) and signed webhook deliveries.

Rows hold ids, statuses and times only; an e-mail address is read from the order when a message is sent.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from lab.notify.states import DeliveryStatus
from lab.orders.states import OrderStatus


class Notification(models.Model):
    """One per order event: the claim that makes a redelivered task send its e-mail (and webhooks) once."""

    class Kind(models.TextChoices):
        ORDER_RECEIVED = "order_received"
        STATUS_CHANGED = "status_changed"
        ORDER_REFUNDED = "order_refunded"  # a refund recorded after the cancellation e-mail (services.py)

    class Status(models.TextChoices):
        PENDING = "pending"  # claimed by a worker that is sending now
        SENT = "sent"
        FAILED = "failed"  # the mail server refused or was unreachable; the next task run retries
        SKIPPED = "skipped"  # nothing to send: no e-mail for this status, or no recipient left

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="notifications")
    # Keyed by the order's timeline entry, not only by status: an order put on hold twice (with two different
    # questions) gets two e-mails, while a redelivered task for one transition finds the row and stops.
    order_event = models.ForeignKey("orders.OrderEvent", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    order_status = models.CharField(max_length=20, choices=OrderStatus.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    skip_reason = models.CharField(max_length=40, blank=True)
    send_attempts = models.PositiveSmallIntegerField(default=0)
    # What a sent cancellation e-mail said of the money, recorded from the order it was rendered from: "We
    # refunded ..." (the refund is told; services.py `_refund_skip_reason` mails no refund e-mail after it).
    # False for every other e-mail, and for a cancellation e-mail that said "we are refunding" or that no
    # payment had reached us: both promised word when a refund is made. (Before, that was guessed by
    # comparing the claim's time, on the database's clock, with the refund event's, on a web host's.)
    told_refund_made = models.BooleanField(default=False, db_default=False)
    claimed_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["order_event"], name="notification_once_per_order_event"),
        ]
        indexes: ClassVar[list[models.Index]] = [models.Index(fields=["order", "order_status"])]

    def __str__(self) -> str:
        return f"notification:{self.pk}"


class EventType(models.TextChoices):
    ORDER_STATUS_CHANGED = "order.status_changed"
    ORDER_SHIPPED = "order.shipped"
    ITEM_REPRINTED = "item.reprinted"


class WebhookEndpoint(models.Model):
    """A customer's callback URL and the events it subscribes to; the secret signs every delivery."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=100)
    event_types = models.JSONField(default=list)
    description = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    # The public id of the API token that last set `url` (on registration, and on every change of it):
    # revoking that token turns the endpoint off (lab/accounts/tokens.py), so a stolen token's endpoint, or
    # an endpoint it pointed at its own URL, stops with it. Empty when a session set the URL, and for the
    # endpoints registered before it was recorded. A string, not a foreign key: it outlives the token's row.
    set_by_token = models.CharField(max_length=36, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["created_at", "pk"]
        indexes: ClassVar[list[models.Index]] = [models.Index(fields=["owner", "created_at"])]

    def __str__(self) -> str:
        return f"webhook-endpoint:{self.pk}"


class WebhookEndpointIdempotencyKey(models.Model):
    """An Idempotency-Key a registration was sent with: its retry, or a double submit, gets the same endpoint
    (and its secret, which the lost answer carried) instead of a second one signing with a secret never seen.

    Holds no customer text: the URL and description are the endpoint's, the body only as a hash; it goes
    with its endpoint (deleted, or erased with the account)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_sha256 = models.CharField(max_length=64)  # of the canonical body (lab.notify.webhooks)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["owner", "key"], name="webhook_endpoint_idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return f"webhook-endpoint-idempotency-key:{self.pk}"


class WebhookEvent(models.Model):
    """One event about one order; `body` is the exact JSON every delivery of it sends and signs."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="webhook_events")
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    sequence = models.PositiveBigIntegerField()
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["order", "sequence"], name="webhook_event_sequence_unique"),
        ]

    def __str__(self) -> str:
        return f"webhook-event:{self.pk}"


class WebhookDelivery(models.Model):
    """One event to one endpoint, retried with backoff until it succeeds or its retry window closes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    give_up_at = models.DateTimeField()
    # A worker that claimed the delivery owns it until then; a crashed worker's claim simply runs out.
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error_code = models.CharField(max_length=40, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar[list[str]] = ["-created_at", "pk"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once_per_endpoint"),
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["endpoint", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"webhook-delivery:{self.pk}"


class WebhookAttempt(models.Model):
    """Every POST we made (or refused to make) for a delivery, as the customer sees it in the delivery log."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    is_success = models.BooleanField(default=False)

    class Meta:
        ordering: ClassVar[list[str]] = ["number"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_unique"),
        ]

    def __str__(self) -> str:
        return f"webhook-attempt:{self.delivery_id}:{self.number}"
