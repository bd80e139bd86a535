"""Signed privacy receipts: what the lab tells a customer it did with their photos
(issued by lab/customer_data/receipts.py); and the erasures' entries still owed to the erasure log.

A receipt outlives the account it was issued to: an erased customer still fetches theirs with its link.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone


class PrivacyReceipt(models.Model):
    """One signed receipt per order and event (shipped, photos purged, account erased).

    `document` is the exact canonical JSON that `signature` signs (text, not jsonb: jsonb would reorder keys
    and drop the bytes the customer verifies). Only the SHA-256 of the link's token is stored.
    """

    class Reason(models.TextChoices):
        SHIPPED = "shipped"
        PURGED = "purged"
        ERASED = "erased"

    class EmailStatus(models.TextChoices):
        PENDING = "pending"  # to be sent (or being sent: see email_claimed_at)
        SENT = "sent"
        FAILED = "failed"  # the mail server refused or was unreachable; the sweep retries
        SKIPPED = "skipped"  # nobody to send it to (a guest order without address, an erased account)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The order stays (anonymised) after an erasure; the ref is kept on its own so a receipt never depends on
    # it. "" only for the erasure receipt of photos that were in no order.
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    order_ref = models.CharField(max_length=20, blank=True)
    # Whose receipts `GET me/receipts` lists; kept (as an id) after the account is erased.
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=16, choices=Reason.choices)
    document = models.TextField()
    signature = models.CharField(max_length=128)
    key_id = models.CharField(max_length=64)
    audit_seq = models.BigIntegerField()  # the "receipt.issued" record that anchors it
    token_hash = models.CharField(max_length=64)
    email_status = models.CharField(max_length=10, choices=EmailStatus.choices, default=EmailStatus.PENDING)
    email_claimed_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar[list[str]] = ["-created_at", "pk"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["order_ref", "reason"],
                condition=~models.Q(order_ref=""),
                name="privacy_receipt_once_per_order_and_reason",
            ),
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["customer", "created_at"]),
            models.Index(fields=["email_status", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"privacy-receipt:{self.pk}"


class ErasureLogPending(models.Model):
    """An erasure's entry still owed to the erasure log outside the database
    (lab/customer_data/erasure_log.py): written in the erasure's own transaction, deleted once the entry is
    on the log's disk. A row left (the log could not be written, the process died after the commit) is
    appended by the beat sweep `privacy.erasure_log_sweep`. No personal data: the kind and the pseudonymous
    id the log holds. `seal`: the entry's HMAC under a key the database never holds, made by the erasure on
    the app host; a row without one that verifies is never appended (a forged row would otherwise erase a
    customer who never asked, for good)."""

    kind = models.CharField(max_length=16)
    subject = models.CharField(max_length=64)
    erased_at = models.DateTimeField()
    seal = models.CharField(max_length=64, blank=True, db_default="")
    created_at = models.DateTimeField(db_default=Now())
    attempts = models.PositiveSmallIntegerField(db_default=0)
    last_failed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"erasure-log-pending:{self.pk}"
