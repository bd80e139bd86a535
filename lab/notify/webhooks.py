"""Customer webhooks: endpoint registration, event emission with per-order sequence numbers, redelivery.

Sending, signing and the retry schedule live in lab.notify.delivery; this module only writes rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils.crypto import constant_time_compare

from lab.accounts.erased import account_not_erased
from lab.accounts.models import ApiToken, User
from lab.lib import safe_http
from lab.lib.clock import database_now
from lab.lib.errors import CommonError, Conflict, DomainError, NotFound, PermissionDenied
from lab.notify.delivery import FIRST_RETRY_DELAY, RETRY_WINDOW, delivery_enqueue
from lab.notify.errors import NotifyError
from lab.notify.models import (
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointIdempotencyKey,
    WebhookEvent,
)
from lab.notify.states import DELIVERY_MACHINE, DeliveryStatus
from lab.orders.errors import OrderError
from lab.orders.models import Order
from lab.production.models import PrintJob

logger = logging.getLogger(__name__)

MAX_ENDPOINTS_PER_CUSTOMER = 10
URL_MAX_LENGTH = 2000  # WebhookEndpoint.url's column


def webhook_url_clean(*, url: str) -> str:
    """The URL as it is stored and sent: percent-encoded as a browser sends it (the customer typed "/ü", the
    request line carries "/%C3%BC"), and through the SSRF guard. Encoded, a character can take up to twelve,
    so the column's limit is checked again on what is stored (a 422, not a database error)."""
    encoded = safe_http.url_percent_encoded(url)
    if len(encoded) > URL_MAX_LENGTH:
        raise DomainError(
            CommonError.URL_INVALID,
            f"The URL is longer than {URL_MAX_LENGTH} characters once percent-encoded.",
            max_length=URL_MAX_LENGTH,
        )
    webhook_url_check(url=encoded)
    return encoded


def webhook_url_check(*, url: str) -> None:
    """The SSRF guard at registration (each POST checks again, within its own deadline: DNS may change in
    between). A web request waits on the lookup: given URL_CHECK_TIMEOUT_SECONDS, then refused as
    unresolvable; without a limit a resolver that never answered held a web worker per request."""
    safe_http.check_url(
        url,
        allow_private=getattr(settings, "WEBHOOK_ALLOW_PRIVATE", False),
        allow_http=getattr(settings, "WEBHOOK_ALLOW_HTTP", False),
        timeout=settings.URL_CHECK_TIMEOUT_SECONDS,
    )


def _event_types_clean(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(EventType.values))
    if unknown:
        raise DomainError(
            NotifyError.UNKNOWN_EVENT_TYPE,
            "Unknown event type.",
            unknown=unknown,
            allowed=list(EventType.values),
        )
    if not event_types:
        raise DomainError(NotifyError.EVENT_TYPES_REQUIRED, "Subscribe to at least one event type.")
    return [value for value in EventType.values if value in event_types]


@dataclass(frozen=True)
class EndpointCreated:
    endpoint: WebhookEndpoint
    created: bool  # False: a replay of its Idempotency-Key, the endpoint registered before


def webhook_endpoint_create(
    *,
    owner: User,
    url: str,
    event_types: list[str],
    description: str = "",
    by_token: ApiToken | None = None,
) -> WebhookEndpoint:
    """Register a callback URL; the returned endpoint's secret is shown to the customer this once.

    `by_token`: the API token the request was made with (None for a session); revoking it turns the
    endpoint off (WebhookEndpoint.set_by_token)."""
    return webhook_endpoint_register(
        owner=owner, url=url, event_types=event_types, description=description, by_token=by_token
    ).endpoint


def webhook_endpoint_register(
    *,
    owner: User,
    url: str,
    event_types: list[str],
    description: str = "",
    by_token: ApiToken | None = None,
    idempotency_key: str | None = None,
) -> EndpointCreated:
    """`webhook_endpoint_create`, once per `idempotency_key` (None: no key, every call registers one).

    A retry of a registration whose answer was lost (a 503 after a COMMIT that applied it), or a double
    submit, with the same key and body gets the same endpoint and its secret (`created` False): before, each
    made an endpoint with a secret of its own, every event was sent twice, one copy signed with a secret the
    client never had. The same key with another body is refused 409 `idempotency_key_reused`. The key row is
    written with the endpoint, under the owner's row lock, so of two at once the second waits for the first
    and then finds its key; it goes with its endpoint (CASCADE)."""
    types = _event_types_clean(event_types)
    request_sha256 = _registration_sha256(url=url, event_types=types, description=description)
    # A replay before the limit and the URL's lookup: the endpoint it made counts towards the limit.
    replayed = _registration_replay(owner=owner, key=idempotency_key, request_sha256=request_sha256)
    if replayed is not None:
        return EndpointCreated(endpoint=replayed, created=False)
    # The limit first, then the URL's lookup (slow, a web worker waiting on it): a customer at the limit
    # could make lookups without end. Checked again under the owner's lock.
    _endpoint_limit_check(owner=owner)
    url = webhook_url_clean(url=url)
    with transaction.atomic():
        # Lock the owner so two concurrent registrations cannot both pass the limit; an account erased
        # meanwhile (the lock waited for its erasure) gets no endpoint: its URL is the customer's own text.
        User.objects.select_for_update().filter(pk=owner.pk).first()
        account_not_erased(owner.pk)
        _token_live_check(owner_id=owner.pk, by_token=by_token)
        # The same key sent at once: the other request held this lock, and has committed its endpoint.
        replayed = _registration_replay(owner=owner, key=idempotency_key, request_sha256=request_sha256)
        if replayed is not None:
            return EndpointCreated(endpoint=replayed, created=False)
        _endpoint_limit_check(owner=owner)
        endpoint = WebhookEndpoint.objects.create(
            owner=owner,
            url=url,
            secret="whsec_" + secrets.token_urlsafe(32),
            event_types=types,
            description=description,
            set_by_token=_token_mark(by_token),
        )
        if idempotency_key is not None:
            WebhookEndpointIdempotencyKey.objects.create(
                owner=owner, key=idempotency_key, request_sha256=request_sha256, endpoint=endpoint
            )
    logger.info("webhook endpoint created endpoint=%s owner=%s", endpoint.pk, owner.public_id)
    return EndpointCreated(endpoint=endpoint, created=True)


def _registration_sha256(*, url: str, event_types: list[str], description: str) -> str:
    """The registration's body in a canonical form (the URL as sent, the event types in their own order):
    a retry must send the same. Its plain hash holds nothing the endpoint does not: the URL and description
    are stored there."""
    body = json.dumps(
        {"url": url, "event_types": event_types, "description": description},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _registration_replay(*, owner: User, key: str | None, request_sha256: str) -> WebhookEndpoint | None:
    """The endpoint registered with the owner's key, or None (no key, or a new one); another body with the
    key is a 409."""
    if key is None:
        return None
    record = (
        WebhookEndpointIdempotencyKey.objects.select_related("endpoint").filter(owner=owner, key=key).first()
    )
    if record is None:
        return None
    if not constant_time_compare(record.request_sha256, request_sha256):
        raise Conflict(
            OrderError.IDEMPOTENCY_KEY_REUSED,
            "This Idempotency-Key was already used with a different request body.",
        )
    logger.info(
        "webhook endpoint registration replayed endpoint=%s owner=%s", record.endpoint_id, owner.public_id
    )
    return record.endpoint


def _token_mark(by_token: ApiToken | None) -> str:
    return "" if by_token is None else str(by_token.public_id)


def _token_live_check(*, owner_id: int, by_token: ApiToken | None) -> None:
    """Refuse a change made with a token revoked while the request was on its way. Call it under the owner's
    row lock (FOR UPDATE): a revocation takes that row first (FOR KEY SHARE, lab/accounts/erased.py), so
    either it waited for this change and then turns off what the change recorded, or it committed first and
    the token is gone here. Without it, a request that authenticated before the revocation recorded a token
    that no longer existed, and the endpoint it set stayed on."""
    if by_token is not None and not ApiToken.objects.filter(pk=by_token.pk, user_id=owner_id).exists():
        raise PermissionDenied(
            CommonError.NOT_ALLOWED, "The API token this request was made with has been revoked."
        )


def _endpoint_limit_check(*, owner: User) -> None:
    if WebhookEndpoint.objects.filter(owner=owner).count() >= MAX_ENDPOINTS_PER_CUSTOMER:
        raise Conflict(
            NotifyError.TOO_MANY_WEBHOOK_ENDPOINTS,
            f"A customer may register at most {MAX_ENDPOINTS_PER_CUSTOMER} webhook endpoints.",
        )


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
    by_token: ApiToken | None = None,
) -> WebhookEndpoint:
    """Change an endpoint. `by_token` is the API token the request was made with (None for a session): a
    new URL, or turning the endpoint on, records it, so revoking that token turns the endpoint off, whoever
    registered it."""
    fields: list[str] = []
    if url is not None:
        endpoint.url = webhook_url_clean(url=url)
        endpoint.set_by_token = _token_mark(by_token)
        fields.extend(["url", "set_by_token"])
    if event_types is not None:
        endpoint.event_types = _event_types_clean(event_types)
        fields.append("event_types")
    if description is not None:
        endpoint.description = description
        fields.append("description")
    if is_active is not None:
        endpoint.is_active = is_active
        fields.append("is_active")
        if is_active and url is None:
            # Turned on: by whoever turns it on, as a new URL is (a second stolen token turned on again what
            # revoking the first had turned off, and revoking it left the endpoint on).
            endpoint.set_by_token = _token_mark(by_token)
            fields.append("set_by_token")
    if fields:
        with transaction.atomic():
            if by_token is not None:
                # The owner's row before the endpoint's, the order an erasure and a revocation take them in.
                User.objects.select_for_update().filter(pk=endpoint.owner_id).first()
                _token_live_check(owner_id=endpoint.owner_id, by_token=by_token)
            # Deleted since it was read (its owner's erasure, or another request): not found, not a 500.
            if not WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).exists():
                raise NotFound(NotifyError.WEBHOOK_ENDPOINT_NOT_FOUND, "No such webhook endpoint.")
            endpoint.save(update_fields=[*fields, "updated_at"])
        logger.info("webhook endpoint updated endpoint=%s fields=%s", endpoint.pk, ",".join(fields))
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its delivery log; deliveries still pending die with it.

    Decision: delete under the endpoint's row lock, not deactivate. An attempt being recorded and an event
    being emitted lock the endpoint first too, so the delete waits for them and then also removes the rows
    they wrote; without the lock those rows were invisible to the delete and failed it at commit.
    """
    endpoint_id = endpoint.pk
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id).first()
        if locked is not None:
            locked.delete()
    logger.info("webhook endpoint deleted endpoint=%s", endpoint_id)


def webhook_event_emit(*, order_id: int, event_type: str, data: dict[str, Any]) -> int:
    """Record one event for the order and one delivery per subscribed endpoint of its customer.

    The order row is locked while the sequence number is taken and the status read, so a higher sequence
    always carries a status at least as recent: receivers keep the highest sequence and drop the rest.
    Returns the number of deliveries; each is enqueued when the surrounding transaction commits.
    """
    if event_type not in EventType.values:
        raise DomainError(NotifyError.UNKNOWN_EVENT_TYPE, "Unknown event type.", event_type=event_type)
    with transaction.atomic():
        order = Order.objects.select_for_update().only("id", "ref", "status", "customer_id").get(pk=order_id)
        if order.customer_id is None:
            return 0
        endpoints = [
            endpoint
            # Locked so a concurrent delete waits and removes the deliveries made here (see the delete).
            for endpoint in WebhookEndpoint.objects.select_for_update().filter(
                owner_id=order.customer_id, is_active=True
            )
            if event_type in endpoint.event_types
        ]
        if not endpoints:
            return 0
        last = WebhookEvent.objects.filter(order=order).aggregate(last=Max("sequence"))["last"] or 0
        # The deliveries are due from now, as lab.notify.delivery judges it: on the database's clock.
        now = database_now()
        event = WebhookEvent(order=order, event_type=event_type, sequence=last + 1, created_at=now)
        event.body = json.dumps(
            {
                "id": str(event.pk),
                "type": event_type,
                "created": now.isoformat().replace("+00:00", "Z"),
                "sequence": event.sequence,
                "data": {**data, "order": order.ref, "status": order.status},
            },
            separators=(",", ":"),
            sort_keys=True,
        )
        event.save(force_insert=True)
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                event=event,
                endpoint=endpoint,
                next_attempt_at=now,
                give_up_at=now + RETRY_WINDOW,
                created_at=now,
            )
            for endpoint in endpoints
        )
        for delivery in deliveries:
            transaction.on_commit(partial(delivery_enqueue, delivery_id=str(delivery.pk)))
    logger.info(
        "webhook event emitted event=%s order=%s type=%s sequence=%d deliveries=%d",
        event.pk,
        order.ref,
        event_type,
        event.sequence,
        len(deliveries),
    )
    return len(deliveries)


# A delivery is attempted again on request at most this often: each attempt may hold a webhooks worker for its
# whole timeout, so a loop of redeliveries to an endpoint that never answers would keep the workers busy.
REDELIVERY_INTERVAL = FIRST_RETRY_DELAY


def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send the same event (same id and sequence) again now, with a fresh 24-hour retry window; not within
    REDELIVERY_INTERVAL of its last attempt, and not while it already waits to be sent.

    A pending delivery that is due and not being attempted waits in the webhooks queue (or for the sweep,
    had its message been lost): asked for again, it is refused and nothing is enqueued. Before, each request
    enqueued another message for it (no attempt logged, no claim taken yet, so neither check above it held):
    a customer's loop filled every webhooks worker with POSTs to one endpoint, and the duplicates counted in
    the queue's depth hid other customers' lost deliveries from the sweep.

    Whether an attempt's claim is still live, and whether the delivery is due, are judged on the database's
    clock, the one they were written on (lab/lib/clock.py), not on the web host's."""
    now = database_now()
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        if locked.claimed_until is not None and locked.claimed_until > now:
            raise Conflict(NotifyError.DELIVERY_IN_PROGRESS, "This delivery is being attempted right now.")
        if (
            locked.status == DeliveryStatus.PENDING
            and locked.next_attempt_at is not None
            and locked.next_attempt_at <= now
        ):
            raise Conflict(
                NotifyError.DELIVERY_ALREADY_QUEUED,
                "This delivery is already waiting to be sent; it is attempted as soon as a worker is free.",
            )
        last = (
            WebhookAttempt.objects.filter(delivery=locked)
            .order_by("-attempted_at")
            .values_list("attempted_at", flat=True)
        ).first()
        if last is not None and now - last < REDELIVERY_INTERVAL:
            wait = int((REDELIVERY_INTERVAL - (now - last)).total_seconds()) + 1
            raise Conflict(
                NotifyError.REDELIVERY_TOO_SOON,
                f"This delivery was attempted less than {int(REDELIVERY_INTERVAL.total_seconds())} s ago; "
                f"ask again in {wait} s.",
                retry_after_seconds=wait,
            )
        if locked.status != DeliveryStatus.PENDING:
            DELIVERY_MACHINE.check(locked.status, DeliveryStatus.PENDING)
            locked.status = DeliveryStatus.PENDING
        locked.next_attempt_at = now
        locked.give_up_at = now + RETRY_WINDOW
        locked.save(update_fields=["status", "next_attempt_at", "give_up_at"])
        transaction.on_commit(partial(delivery_enqueue, delivery_id=str(locked.pk)))
    logger.info("webhook redelivery requested delivery=%s", locked.pk)
    return locked


def item_reprinted_emit(*, reprint: PrintJob, reason: str, **_: object) -> None:
    """`item.reprinted` for the customer's endpoints: which item, how many copies, why (no photo, no address).
    Receives lab.production.signals.reprint_made inside the reprint's transaction."""
    webhook_event_emit(
        order_id=reprint.order_id,
        event_type=EventType.ITEM_REPRINTED,
        data={"item": reprint.item.position, "copies": reprint.copies, "reason": reason},
    )
