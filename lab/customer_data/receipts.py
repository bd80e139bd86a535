"""Signed privacy receipts: issued when an order ships, when retention has purged its photos and on erasure;
the link that fetches one, the e-mail carrying it, and the sweep that redoes what a lost message left undone.

A receipt is signed with the audit signing key and anchored in the audit log: issuing it appends a
"receipt.issued" record whose content_sha256 is the digest of the receipt's body, and the receipt names that
record (seq, lane, position, hash) and the latest checkpoint before it; the next scheduled checkpoint covers
the record. Format and offline check: lab/audit/receipt.py (`python -m lab.audit.verify --receipt`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac

from lab.accounts.models import User
from lab.audit import configured
from lab.audit.canonical import utc_timestamp
from lab.audit.checkpoints import Checkpoint
from lab.audit.lane_heads import lanes_from_json
from lab.audit.models import AuditCheckpoint
from lab.audit.receipt import RECEIPT_FORMAT, body_sha256, canonical_bytes, receipt_sign
from lab.audit.records import Entry, audit_append
from lab.customer_data.errors import CustomerDataError
from lab.customer_data.export import employee_view_records
from lab.customer_data.models import PrivacyReceipt
from lab.customer_data.retention_rules import SHIPPED_STATUSES
from lab.lib.clock import database_now
from lab.lib.errors import NotFound
from lab.lib.mail import MailNotSent, MailRefused, mail_send
from lab.lib.tasks import enqueue
from lab.notify import emails
from lab.orders.models import Asset, Order
from lab.orders.transitions import order_locked

logger = logging.getLogger(__name__)

Reason = PrivacyReceipt.Reason
EmailStatus = PrivacyReceipt.EmailStatus
# The sweep issues and mails receipts owed for events this recent: a lost message is redone, while the
# orders shipped or purged long before receipts existed are not mailed out of the blue.
SWEEP_WINDOW = timedelta(days=7)
SWEEP_BATCH = 200
# A worker that claimed a receipt's e-mail and died is replaced after this long; sending takes seconds.
EMAIL_CLAIM_LEASE = timedelta(minutes=10)
RECEIPT_PATH = "/api/v1/receipts/"
# After this many e-mails failed one after another for want of a mail server, a sweep judges it down and sends
# no more: the rest wait for the next sweep (as lab/notify/services.py SWEEP_FAILURES_IN_A_ROW). A refusal of
# one message (MailRefused) is not counted: the server answered.
SWEEP_FAILURES_IN_A_ROW = 3
# A sweep sends no new e-mail after this long from its start, well inside its task's soft time limit (280 s,
# workers/privacy_tasks.py), one send (EMAIL_TIMEOUT per connect and answer) past it included. Before, a
# stalled mail server cost EMAIL_TIMEOUT per owed receipt (200 a sweep): every run hit the limit.
SWEEP_TIME_BUDGET_SECONDS = 120.0


@dataclass(frozen=True)
class ReceiptLink:
    """A receipt as its owner is told of it: the link holds the token that lets anyone holding it read it."""

    id: uuid.UUID
    order_ref: str
    reason: str
    url: str


# --- the link's token -----------------------------------------------------------------------------------


def receipt_token(receipt_id: uuid.UUID | str) -> str:
    """HMAC-SHA256 of the receipt id under SECRET_KEY: a retried e-mail carries the same working link; only
    its SHA-256 is stored, so links already sent keep working after a SECRET_KEY rotation."""
    digest = salted_hmac("lab.customer_data.receipt_token", str(receipt_id), algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def receipt_url(receipt: PrivacyReceipt) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{RECEIPT_PATH}{receipt.pk}?token={receipt_token(receipt.pk)}"


def receipt_link(receipt: PrivacyReceipt) -> ReceiptLink:
    return ReceiptLink(
        id=receipt.pk, order_ref=receipt.order_ref, reason=receipt.reason, url=receipt_url(receipt)
    )


# --- issuing --------------------------------------------------------------------------------------------


def _assets_of(order: Order) -> list[Asset]:
    assets = Asset.objects.filter(items__order=order).distinct().select_related("data_key")
    return sorted(assets, key=lambda asset: str(asset.pk))


def _is_due(order: Order, assets: list[Asset], reason: str) -> bool:
    """Whether the event the receipt is about has happened to the order."""
    if reason == Reason.SHIPPED:
        return order.status in SHIPPED_STATUSES
    if reason == Reason.PURGED:
        return bool(assets) and all(asset.status == Asset.Status.PURGED for asset in assets)
    return order.is_anonymized


def receipt_issue(*, order: Order, reason: str, mail: bool = True) -> PrivacyReceipt | None:
    """The order's receipt for `reason` (shipped, purged, erased), issued once: a later call returns the same
    receipt. None while the event has not happened (not shipped; a photo not yet purged; not erased). With
    `mail`, the e-mail with its link is sent by a task after the commit."""
    reason = Reason(reason)
    with transaction.atomic():
        locked = order_locked(order_id=order.pk)  # two issuers of one receipt take turns
        existing = PrivacyReceipt.objects.filter(order_ref=locked.ref, reason=reason).first()
        if existing is not None:
            return existing
        assets = _assets_of(locked)
        if not _is_due(locked, assets, reason):
            return None
        receipt = _issue(
            order=locked, order_ref=locked.ref, customer_id=locked.customer_id, assets=assets, reason=reason
        )
        if mail:
            transaction.on_commit(partial(enqueue, "privacy.receipt_email", receipt_id=str(receipt.pk)))
    return receipt


def _issue(
    *, order: Order | None, order_ref: str, customer_id: int | None, assets: list[Asset], reason: str
) -> PrivacyReceipt:
    """Build, anchor, sign and store one receipt; runs in the caller's transaction."""
    receipt_id = uuid.uuid4()
    issued_at = timezone.now()
    key_id = configured.key_id()
    # Read before the record is appended, so it certainly precedes (and does not cover) the record.
    checkpoint = _latest_checkpoint(key_id=key_id)
    asset_ids = [str(asset.pk) for asset in assets]
    body: dict[str, Any] = {
        "format": RECEIPT_FORMAT,
        "receipt_id": str(receipt_id),
        "issued_at": utc_timestamp(issued_at),
        "key_id": key_id,
        "issuer": settings.LAB_NAME,
        "order_ref": order_ref or None,
        "reason": str(reason),
        "photos": [_photo(asset) for asset in assets],
        "employee_views": [_view(record) for record in employee_view_records(asset_ids=asset_ids)],
    }
    digest = body_sha256(body)
    record = audit_append(
        Entry(
            action="receipt.issued",
            actor_id=None,
            actor_role="system",
            outcome="done",
            rule=str(reason),
            purpose="receipt",
            order_ref=order_ref or None,
            context_type="privacy_receipt",
            context_id=str(receipt_id),
            content_sha256=digest,
        )
    )
    anchor = {
        "record": {
            "seq": record.seq,
            "lane": record.lane,
            # A record from before lanes is lane 1's record at position seq; a new one has its position.
            "lane_seq": record.lane_seq if record.lane_seq is not None else record.seq,
            "hash": record.hash,
        },
        "body_sha256": digest,
        "checkpoint": checkpoint,
    }
    document = {**body, "anchor": anchor}
    receipt = PrivacyReceipt.objects.create(
        id=receipt_id,
        order=order,
        order_ref=order_ref,
        customer_id=customer_id,
        reason=reason,
        document=canonical_bytes(document).decode("utf-8"),
        signature=receipt_sign(private_key=configured.signing_key(), document=document),
        key_id=key_id,
        audit_seq=record.seq,
        token_hash=_token_hash(receipt_token(receipt_id)),
        created_at=issued_at,
    )
    logger.info(
        "privacy receipt issued receipt=%s order=%s reason=%s seq=%s",
        receipt_id,
        order_ref,
        reason,
        record.seq,
    )
    return receipt


def _photo(asset: Asset) -> dict[str, Any]:
    destroyed_at = asset.data_key.destroyed_at if asset.data_key is not None else None
    return {
        "asset_id": str(asset.pk),
        "sha256": asset.sha256,
        "data_key_destroyed_at": utc_timestamp(destroyed_at) if destroyed_at is not None else None,
    }


def _view(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": record["seq"],
        "occurred_at": utc_timestamp(record["occurred_at"]),
        "action": record["action"],
        "purpose": record["purpose"],
        "role": record["actor_role"],
        "asset_id": record["asset_id"],
        "order_ref": record["order_ref"],
    }


def _latest_checkpoint(*, key_id: str) -> dict[str, Any] | None:
    """The newest signed checkpoint, as a line of the witness log holds it; None when there is none yet or it
    was signed by an earlier key (the customer verifies with the current one)."""
    row = AuditCheckpoint.objects.order_by("-pk").first()
    if row is None or row.key_id != key_id:
        return None
    try:
        lanes = lanes_from_json(json.loads(row.lanes)) if row.lanes else ()
    except (ValueError, RecursionError):
        # Not a row the signer stored (the app's role may insert one); audit_verify names it. The receipt is
        # anchored to no checkpoint rather than never issued.
        logger.warning("privacy receipt anchored to no checkpoint: checkpoint row %s unreadable", row.pk)
        return None
    checkpoint = Checkpoint(
        seq=row.seq,
        head_hash=row.head_hash,
        signed_at=row.signed_at,
        key_id=row.key_id,
        signature=row.signature,
        lanes=lanes,
    )
    parsed: dict[str, Any] = json.loads(checkpoint.to_line())
    return parsed


def receipt_issue_for_order(*, order_id: int, reason: str) -> None:
    """Task entry ("privacy.receipt_issue", sent after an order ships and after each retention purge of one of
    its photos): the order's receipt once its event has happened; a message for an order whose other photos
    are still kept issues nothing (the purge of the last one sends another)."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        logger.warning("privacy receipt for a missing order order_id=%s", order_id)
        return
    receipt_issue(order=order, reason=reason)


def receipts_issue_for_erasure(*, user: User) -> list[PrivacyReceipt]:
    """Inside the erasure's transaction, once its photos are purged and its orders anonymised: one receipt per
    order, and one for the photos that were in no order. Not mailed here: the address is about to go, so the
    erasure sends them to the address it read before."""
    receipts = [
        receipt
        for order in Order.objects.filter(customer=user).order_by("created_at", "pk")
        if (receipt := receipt_issue(order=order, reason=Reason.ERASED, mail=False)) is not None
    ]
    loose = sorted(
        Asset.objects.filter(owner=user, items__isnull=True).select_related("data_key"),
        key=lambda asset: str(asset.pk),
    )
    already = PrivacyReceipt.objects.filter(customer=user, order_ref="", reason=Reason.ERASED).first()
    if already is not None:
        receipts.append(already)
    elif loose:
        receipts.append(
            _issue(order=None, order_ref="", customer_id=user.pk, assets=loose, reason=Reason.ERASED)
        )
    return receipts


# --- the e-mail -----------------------------------------------------------------------------------------


def _email_claim(receipt_id: uuid.UUID | str) -> PrivacyReceipt | None:
    """Take the receipt's e-mail (pending and unclaimed, a claim past its lease, or failed); None when it is
    sent, skipped, or being sent by someone else."""
    now = database_now()  # the lease is judged on the clock every host shares (lab/lib/clock.py)
    claimable = (
        Q(email_status=EmailStatus.PENDING, email_claimed_at__isnull=True)
        | Q(email_status=EmailStatus.PENDING, email_claimed_at__lt=now - EMAIL_CLAIM_LEASE)
        | Q(email_status=EmailStatus.FAILED)
    )
    taken = PrivacyReceipt.objects.filter(claimable, pk=receipt_id).update(
        email_status=EmailStatus.PENDING, email_claimed_at=now
    )
    return PrivacyReceipt.objects.select_related("order__customer").get(pk=receipt_id) if taken == 1 else None


def receipt_email_send(*, receipt_id: uuid.UUID | str, recipient: str | None = None) -> bool:
    """Send the receipt's link once, to `recipient` (the erasure's, read before the address was wiped) or to
    the order's customer or guest; True when sent. Nobody to send to: skipped. Raises OSError when the mail
    server fails (the row is marked failed; a task retry or the sweep sends it again)."""
    receipt = _email_claim(receipt_id)
    if receipt is None:
        logger.info("privacy receipt e-mail already handled receipt=%s", receipt_id)
        return False
    address = recipient or (emails.order_recipient(order=receipt.order) if receipt.order is not None else "")
    if not address:
        PrivacyReceipt.objects.filter(pk=receipt.pk).update(email_status=EmailStatus.SKIPPED)
        logger.info("privacy receipt e-mail skipped receipt=%s reason=no_recipient", receipt.pk)
        return False
    message = emails.receipt_email(
        recipient=address,
        order_ref=receipt.order_ref,
        reason=receipt.reason,
        url=receipt_url(receipt),
        key_id=receipt.key_id,
    )
    attempts = receipt.email_attempts + 1
    try:
        mail_send(message)
    except MailNotSent:  # an OSError: the task retries
        PrivacyReceipt.objects.filter(pk=receipt.pk).update(
            email_status=EmailStatus.FAILED, email_attempts=attempts
        )
        logger.warning("privacy receipt e-mail failed receipt=%s", receipt.pk)
        raise
    PrivacyReceipt.objects.filter(pk=receipt.pk).update(
        email_status=EmailStatus.SENT, emailed_at=timezone.now(), email_attempts=attempts
    )
    logger.info("privacy receipt e-mail sent receipt=%s", receipt.pk)
    return True


def receipts_email_after_erasure(*, receipt_ids: list[uuid.UUID], recipient: str) -> None:
    """After the erasure's commit, inside its request: the only chance, as the address is gone from the
    database. One message carries every receipt's link (one receipt: the message of that receipt), sent over
    one connection: the answer waits for one send whatever the number of orders. Before, each receipt had its
    own message and connection, and with enough orders or a slow mail server the sends passed the web
    server's timeout (the worker killed after the erasure committed: a 502, the links lost, the rest never
    sent). The customer also has the links in the erasure's answer: a failed send is not retried here."""
    claimed = [receipt for receipt_id in receipt_ids if (receipt := _email_claim(receipt_id)) is not None]
    if not claimed:
        return
    claimed_ids = [receipt.pk for receipt in claimed]
    if not recipient:
        PrivacyReceipt.objects.filter(pk__in=claimed_ids).update(email_status=EmailStatus.SKIPPED)
        return
    if len(claimed) == 1:
        (receipt,) = claimed
        message = emails.receipt_email(
            recipient=recipient,
            order_ref=receipt.order_ref,
            reason=receipt.reason,
            url=receipt_url(receipt),
            key_id=receipt.key_id,
        )
    else:
        # Orders first, in the order they were issued; the photos in no order last.
        ordered = sorted(claimed, key=lambda receipt: (receipt.order_ref == "", receipt.created_at))
        message = emails.erasure_receipts_email(
            recipient=recipient,
            links=[(receipt.order_ref, receipt_url(receipt)) for receipt in ordered],
            key_id=claimed[0].key_id,
        )
    try:
        mail_send(message)
    except MailNotSent:
        PrivacyReceipt.objects.filter(pk__in=claimed_ids).update(
            email_status=EmailStatus.FAILED, email_attempts=F("email_attempts") + 1
        )
        logger.warning("erasure receipts e-mail not sent receipts=%d", len(claimed_ids))
        return
    PrivacyReceipt.objects.filter(pk__in=claimed_ids).update(
        email_status=EmailStatus.SENT, emailed_at=timezone.now(), email_attempts=F("email_attempts") + 1
    )
    logger.info("erasure receipts e-mail sent receipts=%d", len(claimed_ids))


# --- reads ----------------------------------------------------------------------------------------------


def receipt_for_reader(
    *, receipt_id: uuid.UUID | str, user: User | None, token: str | None
) -> PrivacyReceipt:
    """The holder of the link's token, or the signed-in customer it was issued to; anyone else is told it does
    not exist."""
    receipt = PrivacyReceipt.objects.filter(pk=receipt_id).first()
    if receipt is not None:
        if token and secrets.compare_digest(receipt.token_hash, _token_hash(token)):
            return receipt
        if user is not None and user.is_authenticated and receipt.customer_id == user.pk:
            return receipt
    raise NotFound(CustomerDataError.RECEIPT_NOT_FOUND, "No such receipt.")


def receipts_of(*, user: User) -> QuerySet[PrivacyReceipt]:
    return PrivacyReceipt.objects.filter(customer=user).order_by("-created_at", "pk")


def receipt_body(receipt: PrivacyReceipt) -> dict[str, Any]:
    """What the customer saves and verifies: the signed document, its signature and the key's id."""
    return {
        "document": json.loads(receipt.document),
        "signature": receipt.signature,
        "key_id": receipt.key_id,
    }


# --- the sweep (beat task "privacy.receipts_sweep") -----------------------------------------------------


def receipts_sweep() -> dict[str, int]:
    """Issue the receipts a lost message left unissued (orders shipped, or whose photos were all purged,
    within SWEEP_WINDOW) and send the e-mails still owed, as many as SWEEP_TIME_BUDGET_SECONDS allows and
    until SWEEP_FAILURES_IN_A_ROW sends fail in a row (the mail server is down): the rest wait."""
    # The windows compare timestamps this lab's hosts wrote; whether an e-mail's claim is live, _email_claim
    # judges on the database's clock.
    started = time.monotonic()
    now = timezone.now()
    since = now - SWEEP_WINDOW
    grace = now - timedelta(seconds=settings.NOTIFY_SWEEP_SECONDS)
    shipped = (
        Order.objects.filter(status__in=SHIPPED_STATUSES, shipped_at__gte=since, shipped_at__lt=grace)
        .exclude(ref__in=PrivacyReceipt.objects.filter(reason=Reason.SHIPPED).values("order_ref"))
        .order_by("shipped_at")[:SWEEP_BATCH]
    )
    counts = {"shipped": 0, "purged": 0, "emails_sent": 0}
    for order in shipped:
        counts["shipped"] += receipt_issue(order=order, reason=Reason.SHIPPED) is not None
    purged = (
        Order.objects.filter(is_anonymized=False, items__asset__purged_at__gte=since)
        .exclude(items__asset__purged_at__isnull=True)
        .exclude(ref__in=PrivacyReceipt.objects.filter(reason=Reason.PURGED).values("order_ref"))
        .distinct()
        .order_by("pk")[:SWEEP_BATCH]
    )
    for order in purged:
        counts["purged"] += receipt_issue(order=order, reason=Reason.PURGED) is not None
    owed = PrivacyReceipt.objects.filter(
        email_status__in=[EmailStatus.PENDING, EmailStatus.FAILED],
        created_at__gte=since,
        created_at__lt=grace,
    ).exclude(email_claimed_at__gte=now - EMAIL_CLAIM_LEASE)
    failures_in_a_row = 0
    owed_ids = list(owed.order_by("created_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    for index, receipt_id in enumerate(owed_ids):
        if index and time.monotonic() - started > SWEEP_TIME_BUDGET_SECONDS:  # (one e-mail at least)
            logger.info("privacy receipts sweep out of time not_tried=%d", len(owed_ids) - index)
            break
        try:
            counts["emails_sent"] += receipt_email_send(receipt_id=receipt_id)
        except MailRefused:
            continue  # this message only (marked failed, tried again next time): never holds up the others
        except OSError:
            # Marked failed; the next sweep tries again. After a few in a row the mail server is down: the
            # rest wait for the next sweep, each unclaimed.
            failures_in_a_row += 1
            if failures_in_a_row == SWEEP_FAILURES_IN_A_ROW:
                logger.warning(
                    "privacy receipts sweep: the mail server is down not_tried=%d", len(owed_ids) - index - 1
                )
                break
            continue
        failures_in_a_row = 0
    logger.info("privacy receipts sweep %s", " ".join(f"{key}={value}" for key, value in counts.items()))
    return counts
