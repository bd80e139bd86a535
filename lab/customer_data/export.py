"""The customer's copy of everything we hold about them (GET /api/v1/me/export), including every time an
employee looked at one of their photos — by role, date and purpose, never by the employee's id or name.

Format "printlab.export.v1": profile, consents, orders (items, timeline), photos (metadata only, with a
failed photo's code and message), webhook endpoints (without secrets), API tokens, security events (a failed
or locked sign-in with its client's network only, and the failed sign-ins that found no account for their
e-mail address without even that), the mails a change of the account owed them (account_mails),
photo_views, and the rows the lab keeps about their orders: the e-mails sent about them (notifications),
their privacy receipts (with their links), the webhook events sent about them (bodies as sent) and their
delivery logs, their print jobs (with the floor's notes that erasure treats as theirs) and their order
requests' idempotency keys. Each export is itself recorded in the audit log.
Never a signing secret or a token hash.

"printlab.guest-order-export.v1" (GET orders/{ref}/export, a guest's order): the e-mail given, consents, the
order, its photos, photo_views, and the same notifications, privacy_receipts, print_jobs and
idempotency_keys, of that order only.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from lab.accounts.models import AccountMail, Consent, SecurityEvent, User
from lab.accounts.roles import NON_EMPLOYEE_ACTOR_ROLES
from lab.accounts.signin import sign_ins_with_addresses_of
from lab.audit.models import AuditRecord, Outcome
from lab.audit.records import Entry, RequestMeta, audit_append
from lab.customer_data.models import PrivacyReceipt
from lab.lib.client_ip import address_for_logs
from lab.notify.models import Notification, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from lab.orders.intake import idempotency_scope
from lab.orders.models import Asset, IdempotencyKey, Order, OrderItem
from lab.orders.selectors import guest_order_photos
from lab.production.models import PERSONAL_JOB_EVENT_KINDS, JobEvent, PrintJob

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "printlab.export.v1"
# Roles that are not "an employee looking": the customer themself, and the production pipeline.
NOT_EMPLOYEE_ROLES = NON_EMPLOYEE_ACTOR_ROLES


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _profile(user: User) -> dict[str, Any]:
    return {
        "id": str(user.public_id),
        "email": user.email,
        "pending_email": user.pending_email,  # a new address asked for and not yet confirmed
        "full_name": user.full_name,
        "address": user.address,
        "marketing_opt_in": user.marketing_opt_in,
        "date_joined": _time(user.date_joined),
        "last_login": _time(user.last_login),
    }


def _consents(user: User) -> list[dict[str, Any]]:
    return _consents_of(Consent.objects.filter(Q(user=user) | Q(order__customer=user)))


def _consents_of(selected: QuerySet[Consent]) -> list[dict[str, Any]]:
    consents = selected.select_related("policy_version", "order").order_by("recorded_at", "pk")
    return [
        {
            "kind": consent.kind,
            "granted": consent.granted,
            "recorded_at": _time(consent.recorded_at),
            "order": consent.order.ref if consent.order else None,
            "policy_version": (
                {
                    "version": consent.policy_version.version,
                    "sha256": consent.policy_version.sha256,
                    "published_at": _time(consent.policy_version.published_at),
                }
                if consent.policy_version
                else None
            ),
        }
        for consent in consents
    ]


def _orders(selected: QuerySet[Order]) -> list[dict[str, Any]]:
    orders = selected.prefetch_related("items__product", "events").order_by("created_at", "pk")
    return [
        {
            "ref": order.ref,
            "status": order.status,
            "created_at": _time(order.created_at),
            "shipping_method": order.shipping_method,
            "shipping_address": order.shipping_address,
            "subtotal_minor": order.subtotal_minor,
            "shipping_minor": order.shipping_minor,
            "total_minor": order.total_minor,
            "currency": order.currency,
            "payment_status": order.payment_status,
            "payment_intent": order.payment_intent_id,
            "promised_by": _time(order.promised_by),
            "hold_message": order.customer_question(),  # never the floor's note (Order.customer_question)
            "carrier": order.carrier,
            "tracking_number": order.tracking_number,
            "shipped_at": _time(order.shipped_at),
            "items": [
                {
                    "position": item.position,
                    "sku": item.product.sku,
                    "product": item.product.name,
                    "photo": str(item.asset_id),
                    "copies": item.copies,
                    "sizing": item.sizing,
                    "unit_price_minor": item.unit_price_minor,
                    "line_total_minor": item.line_total_minor,
                    "preflight": item.preflight,
                    "placement": _placement(item),
                }
                for item in order.items.all()
            ],
            # Who on the staff moved the order is not theirs to know; that it moved, when and how is.
            "timeline": [
                {
                    "kind": event.kind,
                    "from_status": event.from_status,
                    "to_status": event.to_status,
                    "actor_kind": event.actor_kind,
                    "note": event.note,
                    "at": _time(event.created_at),
                }
                for event in order.events.all()
            ],
        }
        for order in orders
    ]


def _placement(item: OrderItem) -> dict[str, Any]:
    """The item's placement options as given, and what they gave (null before placement options existed)."""
    options = item.placement_options
    return {
        "crop": asdict(options.crop) if options.crop else None,
        "focal_point": asdict(options.focal_point) if options.focal_point else None,
        "orientation": options.orientation,
        "border_mm": options.border_mm,
        "print_orientation": item.print_orientation or None,
        "crop_box_px": item.crop_box_px,
        "effective_dpi": item.effective_dpi,
    }


def _assets(user: User) -> list[Asset]:
    return list(
        Asset.objects.filter(Q(owner=user) | Q(items__order__customer=user)).distinct().order_by("created_at")
    )


def _photos(assets: list[Asset]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(asset.pk),
            "status": asset.status,
            "uploaded_at": _time(asset.created_at),
            "purged_at": _time(asset.purged_at),
            "source_url": asset.source_url,
            "sha256": asset.sha256,
            "size_bytes": asset.size_bytes,
            "width_px": asset.width_px,
            "height_px": asset.height_px,
            "image_format": asset.image_format,
            "color_mode": asset.color_mode,
            "exif_orientation": asset.exif_orientation,
            "gps_stripped": asset.gps_stripped,
            "has_icc_profile": asset.has_icc_profile,
            "icc_description": asset.icc_description,
            "failure_code": asset.failure_code,
            "failure_message": asset.failure_message,
        }
        for asset in assets
    ]


def _webhook_endpoints(user: User) -> list[dict[str, Any]]:
    return [
        {
            "id": str(endpoint.pk),
            "url": endpoint.url,
            "event_types": endpoint.event_types,
            "description": endpoint.description,
            "is_active": endpoint.is_active,
            "created_at": _time(endpoint.created_at),
        }
        for endpoint in WebhookEndpoint.objects.filter(owner=user).order_by("created_at", "pk")
    ]


def _notifications(selected: QuerySet[Notification]) -> list[dict[str, Any]]:
    """Every e-mail the lab sent, or decided not to send, about their orders."""
    notifications = selected.select_related("order").order_by("created_at", "pk")
    return [
        {
            "id": notification.pk,
            "order": notification.order.ref,
            "kind": notification.kind,
            "order_status": notification.order_status,
            "status": notification.status,
            "skip_reason": notification.skip_reason,
            "send_attempts": notification.send_attempts,
            "told_refund_made": notification.told_refund_made,
            "created_at": _time(notification.created_at),
            "sent_at": _time(notification.sent_at),
        }
        for notification in notifications
    ]


def _privacy_receipts(selected: QuerySet[PrivacyReceipt]) -> list[dict[str, Any]]:
    """Their signed privacy receipts, each with its link (as `GET me/receipts` and the e-mail give it); never
    the stored hash of the link's token."""
    # receipts.py imports this module (employee_view_records): imported here, when the export runs.
    from lab.customer_data.receipts import receipt_url

    return [
        {
            "id": str(receipt.pk),
            "order": receipt.order_ref or None,
            "reason": receipt.reason,
            "created_at": _time(receipt.created_at),
            "key_id": receipt.key_id,
            "audit_seq": receipt.audit_seq,
            "email_status": receipt.email_status,
            "email_attempts": receipt.email_attempts,
            "emailed_at": _time(receipt.emailed_at),
            "url": receipt_url(receipt),
        }
        for receipt in selected.order_by("created_at", "pk")
    ]


def _webhook_events(user: User) -> list[dict[str, Any]]:
    """The webhook events about their orders, with the body exactly as it was sent."""
    events = (
        WebhookEvent.objects.filter(order__customer=user)
        .select_related("order")
        .order_by("created_at", "sequence", "pk")
    )
    return [
        {
            "id": str(event.pk),
            "order": event.order.ref,
            "event_type": event.event_type,
            "sequence": event.sequence,
            "created_at": _time(event.created_at),
            "body": event.body,
        }
        for event in events
    ]


def _webhook_deliveries(user: User) -> list[dict[str, Any]]:
    """Each delivery of those events to their endpoints, with every attempt: when, the status code their URL
    answered, the error, how long it took."""
    deliveries = (
        WebhookDelivery.objects.filter(endpoint__owner=user, event__order__customer=user)
        .select_related("event")
        .prefetch_related(Prefetch("attempts", queryset=WebhookAttempt.objects.order_by("number", "pk")))
        .order_by("created_at", "pk")
    )
    return [
        {
            "id": str(delivery.pk),
            "event": str(delivery.event_id),
            "event_type": delivery.event.event_type,
            "endpoint": str(delivery.endpoint_id),
            "status": delivery.status,
            "attempt_count": delivery.attempt_count,
            "last_status_code": delivery.last_status_code,
            "last_error_code": delivery.last_error_code,
            "created_at": _time(delivery.created_at),
            "next_attempt_at": _time(delivery.next_attempt_at),
            "give_up_at": _time(delivery.give_up_at),
            "delivered_at": _time(delivery.delivered_at),
            "attempts": [
                {
                    "number": attempt.number,
                    "attempted_at": _time(attempt.attempted_at),
                    "status_code": attempt.status_code,
                    "error_code": attempt.error_code,
                    "duration_ms": attempt.duration_ms,
                    "is_success": attempt.is_success,
                }
                for attempt in delivery.attempts.all()
            ],
        }
        for delivery in deliveries
    ]


def _print_jobs(selected: QuerySet[PrintJob]) -> list[dict[str, Any]]:
    """The print jobs of their orders and each job's history; of the notes, only the floor's own words about
    them (a cancel's, a reprint's). Who on the floor acted is not theirs to know, as on the order timeline."""
    jobs = (
        selected.select_related("order", "item")
        .prefetch_related(Prefetch("events", queryset=JobEvent.objects.order_by("created_at", "pk")))
        .order_by("created_at", "pk")
    )
    return [
        {
            "id": job.pk,
            "order": job.order.ref,
            "item_position": job.item.position,
            "photo": str(job.item.asset_id),
            "status": job.status,
            "copies": job.copies,
            "reprint_of": job.reprint_of_id,
            "reprint_reason": job.reprint_reason,
            "created_at": _time(job.created_at),
            "printed_at": _time(job.printed_at),
            "events": [
                {
                    "kind": event.kind,
                    "from_status": event.from_status,
                    "to_status": event.to_status,
                    "note": event.note if event.kind in PERSONAL_JOB_EVENT_KINDS else None,
                    "at": _time(event.created_at),
                }
                for event in job.events.all()
            ],
        }
        for job in jobs
    ]


def _idempotency_keys(selected: QuerySet[IdempotencyKey]) -> list[dict[str, Any]]:
    """What is kept of their order requests so a retried submit makes one order: the key their client chose,
    the SHA-256 of the request and the order it made."""
    keys = selected.select_related("order").order_by("created_at", "pk")
    return [
        {
            "key": key.key,
            "request_sha256": key.request_sha256,
            "order": key.order.ref if key.order else None,
            "created_at": _time(key.created_at),
        }
        for key in keys
    ]


def employee_view_records(*, asset_ids: list[str]) -> list[dict[str, Any]]:
    """Every time an employee was shown one of these photos (preview, full view or download), in seq order:
    the one definition the export and the privacy receipts share."""
    records = (
        AuditRecord.objects.filter(asset_id__in=asset_ids, outcome=Outcome.GRANTED)
        .filter(Q(action__startswith="image.view.") | Q(action="image.download"))
        .exclude(actor_role__in=NOT_EMPLOYEE_ROLES)
        .order_by("seq")
        # Only what the customer may see: the employee's id, name, IP and words stay in the audit log.
        .values("seq", "occurred_at", "action", "purpose", "actor_role", "asset_id", "order_ref")
    )
    return [dict(record) for record in records]


def photo_views(*, asset_ids: list[str]) -> list[dict[str, Any]]:
    """Every time an employee was shown one of these photos: preview, full view or download."""
    records = employee_view_records(asset_ids=asset_ids)
    return [
        {
            "at": _time(record["occurred_at"]),
            "action": record["action"],
            "purpose": record["purpose"],
            "viewer_role": record["actor_role"],
            "photo": record["asset_id"],
            "order": record["order_ref"],
        }
        for record in records
    ]


def _api_tokens(user: User) -> list[dict[str, Any]]:
    return [
        {
            "id": str(token.public_id),
            "name": token.name,
            "key_prefix": token.key_prefix,
            "created_at": _time(token.created_at),
            "last_used_at": _time(token.last_used_at),
        }
        for token in user.api_tokens.order_by("created_at", "pk")
    ]


# Sign-in attempts on the account: whoever typed its address and a password, a guesser as likely as the
# customer. Their address is someone else's personal data as often as not: the export names its network only
# (the /24 or /48 the logs use). What only the holder could do (a token issued, a password or e-mail change)
# keeps its address.
ATTEMPT_KINDS = frozenset({SecurityEvent.Kind.SIGN_IN_FAILED, SecurityEvent.Kind.SIGN_IN_LOCKED})


def _security_event(event: SecurityEvent, *, client_ip: str | None) -> dict[str, Any]:
    is_attempt = event.kind in ATTEMPT_KINDS
    return {
        "kind": event.kind,
        "channel": event.channel,
        "client_ip": None if is_attempt else client_ip,
        "client_network": address_for_logs(client_ip) if client_ip else None,
        "detail": event.detail,
        "created_at": _time(event.created_at),
    }


def _security_events(user: User) -> list[dict[str, Any]]:
    """The account's own security log, and the failed sign-ins that found no account with any address it has
    had (an e-mail change keeps the earlier one's). Those are exported without their client address, not
    even its network: it is whoever typed the address, not necessarily them; the account's own sign-in
    attempts with their network only (ATTEMPT_KINDS)."""
    events: list[tuple[SecurityEvent, str | None]] = [
        *((event, event.client_ip) for event in user.security_events.all()),
        *((event, None) for event in sign_ins_with_addresses_of(user=user)),
    ]
    return [
        _security_event(event, client_ip=client_ip)
        for event, client_ip in sorted(events, key=lambda pair: (pair[0].created_at, pair[0].pk))
    ]


def _account_mails(user: User) -> list[dict[str, Any]]:
    """The mails a change of the account owed them (a new address's token, a password or e-mail change's
    notice): the address a notice is still owed to is the account's earlier one, theirs, shown while the
    row holds it (blanked once the row is done)."""
    return [
        {
            "kind": account_mail.kind,
            "status": account_mail.status,
            "skip_reason": account_mail.skip_reason,
            "recipient": account_mail.recipient or None,
            "created_at": _time(account_mail.created_at),
            "sent_at": _time(account_mail.sent_at),
        }
        for account_mail in AccountMail.objects.filter(user=user).order_by("created_at", "pk")
    ]


def account_export(*, user: User, request_id: str = "") -> dict[str, Any]:
    """Everything held about the customer, as one JSON-ready document; the export is audited."""
    assets = _assets(user)
    orders = _orders(Order.objects.filter(customer=user))
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "generated_at": _time(timezone.now()),
        "profile": _profile(user),
        "consents": _consents(user),
        "orders": orders,
        "photos": _photos(assets),
        "webhook_endpoints": _webhook_endpoints(user),
        "api_tokens": _api_tokens(user),
        "security_events": _security_events(user),
        "account_mails": _account_mails(user),
        "photo_views": photo_views(asset_ids=[str(asset.pk) for asset in assets]),
        "notifications": _notifications(Notification.objects.filter(order__customer=user)),
        "privacy_receipts": _privacy_receipts(PrivacyReceipt.objects.filter(customer=user)),
        "webhook_events": _webhook_events(user),
        "webhook_deliveries": _webhook_deliveries(user),
        "print_jobs": _print_jobs(PrintJob.objects.filter(order__customer=user)),
        "idempotency_keys": _idempotency_keys(
            IdempotencyKey.objects.filter(
                Q(scope=idempotency_scope(customer=user, guest=None)) | Q(order__customer=user)
            )
        ),
    }
    _export_record(
        action="account.export", actor_id=str(user.public_id), actor_role="customer", request_id=request_id
    )
    logger.info("account exported user=%s orders=%d photos=%d", user.public_id, len(orders), len(assets))
    return document


def _export_record(
    *, action: str, actor_id: str | None, actor_role: str, request_id: str, order_ref: str | None = None
) -> None:
    """The audit record of an export, by its owner."""
    with transaction.atomic():
        audit_append(
            Entry(
                action=action,
                actor_id=actor_id,
                actor_role=actor_role,
                outcome="done",
                rule="data_subject_access",
                purpose="owner",
                order_ref=order_ref,
                # Only the request id: the person's IP address would outlive a later erasure.
                meta=RequestMeta(request_id=request_id),
            )
        )


GUEST_EXPORT_FORMAT = "printlab.guest-order-export.v1"


def guest_order_export(*, order: Order, request_id: str = "") -> dict[str, Any]:
    """Everything held about a guest's order, for the holder of its X-Order-Token (the guest has no account):
    the e-mail they gave, consents, the order, its photos (metadata), every employee view of them by role,
    and the rows the lab keeps about the order that a guest's erasure treats as theirs, read as the account
    export reads them: the e-mails sent about it, its privacy receipts with their links (a guest has no
    `me/receipts`: without these, a lost receipt e-mail left the signed receipt out of their reach), its
    print jobs with the floor's notes and its idempotency key. A guest order has no webhook events (a guest
    has no endpoints). An account's orders are in the account's export (GET me/export)."""
    assets = list(guest_order_photos(order=order).order_by("created_at"))
    consents = _consents_of(Consent.objects.filter(order=order))
    document: dict[str, Any] = {
        "format": GUEST_EXPORT_FORMAT,
        "generated_at": _time(timezone.now()),
        "guest": {"email": order.guest_email},
        "consents": consents,
        "orders": _orders(Order.objects.filter(pk=order.pk)),
        "photos": _photos(assets),
        "photo_views": photo_views(asset_ids=[str(asset.pk) for asset in assets]),
        "notifications": _notifications(Notification.objects.filter(order=order)),
        # By the ref the receipt keeps on its own (its order link may be gone).
        "privacy_receipts": _privacy_receipts(PrivacyReceipt.objects.filter(order_ref=order.ref)),
        "print_jobs": _print_jobs(PrintJob.objects.filter(order=order)),
        # The order's own key only: the guest scope (a hash of the e-mail) holds other orders' keys too.
        "idempotency_keys": _idempotency_keys(IdempotencyKey.objects.filter(order=order)),
    }
    _export_record(
        action="order.export", actor_id=None, actor_role="guest", order_ref=order.ref, request_id=request_id
    )
    logger.info("guest order exported order=%s photos=%d", order.ref, len(assets))
    return document
