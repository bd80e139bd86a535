"""The append-only, hash-chained audit log and the objects access decisions rest on.

AuditRecord mirrors lab.audit.canonical.RECORD_FIELDS_LANED; rows are only ever inserted by lab.audit.records.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone


class Purpose(models.TextChoices):
    PRINTING = "printing"
    HANDLING = "handling"
    PACKAGING = "packaging"
    MAINTENANCE = "maintenance"
    ORDER_CLARIFICATION = "order_clarification"
    PRODUCTION = "production"  # workers' machine access
    OWNER = "owner"  # a customer looking at their own photo
    AUDIT = "audit"  # auditors reading the log


class Outcome(models.TextChoices):
    GRANTED = "granted"
    DENIED = "denied"
    DONE = "done"


class AuditRecord(models.Model):
    seq = models.BigIntegerField(primary_key=True)
    occurred_at = models.DateTimeField()
    actor_id = models.CharField(max_length=64, null=True)  # noqa: DJ001 - the chain distinguishes null
    actor_role = models.CharField(max_length=32)
    action = models.CharField(max_length=64)
    asset_id = models.CharField(max_length=64, null=True)  # noqa: DJ001 - the chain distinguishes null
    order_ref = models.CharField(max_length=32, null=True)  # noqa: DJ001 - the chain distinguishes null
    purpose = models.CharField(max_length=32)
    justification = models.CharField(max_length=500)
    context_type = models.CharField(max_length=32)
    context_id = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    rule = models.CharField(max_length=64)
    client_ip = models.CharField(max_length=64, null=True)  # noqa: DJ001 - the chain distinguishes null
    user_agent = models.CharField(max_length=300)
    request_id = models.CharField(max_length=64)
    content_sha256 = models.CharField(max_length=64)
    policy_version = models.CharField(max_length=32)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # HMAC-SHA256 of the hashed fields with AUDIT_RECORD_KEY, which the database never holds.
    mac = models.CharField(max_length=64)
    # The chain ("lane") the record is in and its position there (lane_seq 1, 2, 3...): both hashed. A record
    # from before lanes has no lane_seq (NULL); it is in lane 1 at position seq and is hashed without them.
    lane = models.PositiveSmallIntegerField(default=1)
    lane_seq = models.BigIntegerField(null=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["seq"]
        # Also, on PostgreSQL only and outside the model's state (NOT VALID, so the rows from before lanes
        # stay): seq > 0 and a lane position on every row inserted since migration audit/0009.
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["lane", "lane_seq"], name="audit_record_one_per_lane_position"),
            models.CheckConstraint(
                condition=models.Q(lane__gte=1, lane__lte=16), name="audit_record_lane_1_to_16"
            ),
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["occurred_at"]),
            models.Index(fields=["actor_id", "occurred_at"]),
            models.Index(fields=["asset_id", "occurred_at"]),
            models.Index(fields=["order_ref", "occurred_at"]),
            models.Index(fields=["action", "occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"audit:{self.seq}"


class AuditHead(models.Model):
    """The head of one lane (id 1..LANES): the number of records in it (seq, i.e. its last lane_seq) and the
    last one's hash. A writer locks a free lane's row, so every lane stays linear under concurrency while
    writers in different lanes do not wait for each other. On PostgreSQL a trigger lets a row only move
    forward one position at a time and never be deleted or truncated."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(condition=models.Q(id__gte=1, id__lte=16), name="audit_head_lane_1_to_16")
        ]


class AuditCheckpoint(models.Model):
    seq = models.BigIntegerField()
    head_hash = models.CharField(max_length=64)
    signed_at = models.CharField(max_length=32)
    key_id = models.CharField(max_length=64)
    signature = models.CharField(max_length=128)
    reason = models.CharField(max_length=16, default="schedule")  # schedule | export | restore
    # The lane heads signed, canonical JSON [[lane, lane_seq, seq, hash], ...] ("" before lanes).
    lanes = models.TextField(blank=True, default="")
    # A restore marker's mark (checkpoints.RestoreMark), canonical JSON ("" for every other checkpoint).
    restore = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering: ClassVar[list[str]] = ["pk"]


class AccessGrant(models.Model):
    """Permission for one person to see one photo for one purpose in one context, for a short time."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    asset = models.ForeignKey("orders.Asset", on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    context_type = models.CharField(max_length=32)
    context_id = models.CharField(max_length=64)
    justification = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=64, blank=True)
    # A preview grant never covers the original; full resolution is asked for (and justified) explicitly.
    is_full_resolution = models.BooleanField(default=False)
    # The same person's grant for the same photo and context that expired shortly before this one was
    # opened: a renewal, which the auditors' anomaly rules flag.
    renews = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The audit record of the first delivery under this grant (the record a renewal flag points at).
    first_seq = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["actor", "asset", "expires_at"]),
            models.Index(fields=["first_seq"]),
        ]


class ReviewItem(models.Model):
    """The auditors' review queue: a daily sample of views plus every flagged one, each signed off."""

    record = models.ForeignKey(AuditRecord, on_delete=models.PROTECT, related_name="reviews")
    reason = models.CharField(max_length=64)  # "sample" or an anomaly flag
    # On the database's clock, which the chain's records are stamped by (clock_timestamp()), not the worker
    # host's: the items of a run from before queued records named their seqs are vouched for by comparing
    # the two (lab.gate.review.review_samples_logged), and a row inserted without a time is dated too.
    created_at = models.DateTimeField(db_default=Now())
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=1000, blank=True)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["record", "reason"], name="one_review_per_reason")
        ]


class StaffShift(models.Model):
    """One weekly working window of a person, in wall-clock times of the lab's time zone
    (settings.LAB_TIME_ZONE, not Django's TIME_ZONE, which stays UTC): it keeps its hours when the clocks
    change.

    A window whose end is not after its start runs past midnight into the next weekday. The auditors'
    anomaly rules flag a person's views that fall outside every one of their shifts.
    """

    class Weekday(models.IntegerChoices):
        MONDAY = 0
        TUESDAY = 1
        WEDNESDAY = 2
        THURSDAY = 3
        FRIDAY = 4
        SATURDAY = 5
        SUNDAY = 6

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shifts")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    start_time = models.TimeField()
    end_time = models.TimeField()

    class Meta:
        ordering: ClassVar[list[str]] = ["user", "weekday", "start_time"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(condition=models.Q(weekday__lte=6), name="shift_weekday_valid"),
            models.CheckConstraint(
                condition=~models.Q(start_time=models.F("end_time")), name="shift_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"shift:{self.user_id}:{self.weekday}:{self.start_time}-{self.end_time}"
