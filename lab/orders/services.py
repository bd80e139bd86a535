"""Writes for intake: photos in, quotes, orders (idempotent), status transitions, cancellation.

Every status change goes through `order_transition`, which checks the state machine and records an event.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from lab.accounts.models import Consent, User
from lab.accounts.services import age_gate_check, policy_agreement_check
from lab.catalog.models import Product
from lab.lib import safe_http
from lab.lib.errors import Conflict, DomainError, NotFound
from lab.lib.tasks import enqueue
from lab.orders import imaging, payments
from lab.orders.models import Asset, IdempotencyKey, Order, OrderEvent, OrderItem, is_order_ref, new_order_ref
from lab.orders.pricing import MAX_ORDER_TOTAL_MINOR, SHIPPING_PRICE_MINOR, line_price, preflight
from lab.orders.states import CUSTOMER_CANCELLABLE, OrderStatus
from lab.orders.transitions import order_locked, order_transition
from lab.privacy.vault import data_key_create, vault_write

logger = logging.getLogger(__name__)

PRODUCTION_DAYS = {
    Order.ShippingMethod.STANDARD: 3,
    Order.ShippingMethod.EXPRESS: 1,
    Order.ShippingMethod.PICKUP: 2,
}


# --- Photos ------------------------------------------------------------------------------------


def asset_store(*, asset: Asset, facts: imaging.ImageFacts) -> None:
    key = data_key_create()
    asset.blob_name = vault_write(data_key=key, plaintext=facts.data, purpose="original")
    asset.data_key = key
    asset.sha256 = facts.sha256
    asset.size_bytes = facts.size_bytes
    asset.width_px = facts.width_px
    asset.height_px = facts.height_px
    asset.image_format = facts.image_format
    asset.color_mode = facts.color_mode
    asset.has_icc_profile = facts.has_icc_profile
    asset.icc_description = facts.icc_description
    asset.exif_orientation = facts.exif_orientation
    asset.gps_stripped = facts.gps_stripped
    asset.status = Asset.Status.READY


def asset_create_from_upload(
    *, owner: User | None, data: bytes, md5: str | None = None, sha256: str | None = None
) -> Asset:
    """Validate by decoding, then encrypt and store; a refused photo leaves nothing behind."""
    imaging.check_client_checksums(data=data, md5=md5, sha256=sha256)
    facts = imaging.inspect_image(
        data=data, max_bytes=settings.ASSET_MAX_BYTES, max_pixels=settings.ASSET_MAX_PIXELS
    )
    asset = Asset(owner=owner)
    asset_store(asset=asset, facts=facts)
    asset.save()
    logger.info("asset stored asset=%s format=%s bytes=%d", asset.pk, asset.image_format, asset.size_bytes)
    return asset


def asset_create_from_url(*, owner: User | None, url: str) -> Asset:
    safe_http.check_url(
        url, allow_private=settings.ASSET_FETCH_ALLOW_PRIVATE, allow_http=settings.ASSET_FETCH_ALLOW_HTTP
    )
    with transaction.atomic():
        asset = Asset.objects.create(owner=owner, source_url=url, status=Asset.Status.PENDING)
        transaction.on_commit(lambda: enqueue("intake.asset_fetch", asset_id=str(asset.pk)))
    return asset


def asset_fetch(*, asset_id: str) -> None:
    """Worker side of a URL upload: fetch with size/time limits and the SSRF guard, then validate."""
    asset = Asset.objects.get(pk=asset_id)
    if asset.status != Asset.Status.PENDING:
        return  # a redelivered task finds the work done
    try:
        data = safe_http.fetch(
            asset.source_url,
            max_bytes=settings.ASSET_MAX_BYTES,
            timeout=settings.ASSET_FETCH_TIMEOUT_SECONDS,
            allow_private=settings.ASSET_FETCH_ALLOW_PRIVATE,
            allow_http=settings.ASSET_FETCH_ALLOW_HTTP,
        )
        facts = imaging.inspect_image(
            data=data, max_bytes=settings.ASSET_MAX_BYTES, max_pixels=settings.ASSET_MAX_PIXELS
        )
    except DomainError as error:
        Asset.objects.filter(pk=asset.pk, status=Asset.Status.PENDING).update(
            status=Asset.Status.FAILED, failure_code=error.code, failure_message=error.message[:300]
        )
        logger.info("asset fetch failed asset=%s code=%s", asset.pk, error.code)
        return
    with transaction.atomic():
        locked = Asset.objects.select_for_update().get(pk=asset.pk)
        if locked.status != Asset.Status.PENDING:
            return
        asset_store(asset=locked, facts=facts)
        locked.save()
    logger.info("asset fetched asset=%s bytes=%d", asset.pk, facts.size_bytes)


# --- Quotes and orders --------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemRequest:
    sku: str
    asset_id: str
    copies: int
    sizing: str


@dataclass(frozen=True)
class QuoteLine:
    position: int
    product: Product
    asset: Asset
    copies: int
    sizing: str
    unit_price_minor: int
    line_total_minor: int
    preflight: dict[str, object]


@dataclass(frozen=True)
class Quote:
    lines: list[QuoteLine]
    shipping_method: str
    subtotal_minor: int
    shipping_minor: int
    total_minor: int
    currency: str


def _assets_by_id(asset_ids: list[str]) -> dict[str, Asset]:
    """The basket's photos in one query, keyed by the id as sent; ids that are not UUIDs are left out (and
    answer asset_not_found where the item is checked), so junk never reaches the database."""
    parsed: dict[str, Any] = {}
    for asset_id in asset_ids:
        try:
            parsed[asset_id] = Asset._meta.pk.to_python(asset_id)
        except (ValidationError, ValueError):
            continue
    found = {asset.pk: asset for asset in Asset.objects.filter(pk__in=set(parsed.values()))}
    return {asset_id: found[pk] for asset_id, pk in parsed.items() if pk in found}


def _usable_asset(*, asset_id: str, customer: User | None, assets: dict[str, Asset]) -> Asset:
    """The access rule for photos in an order: yours, or an unused guest photo when you are a guest."""
    asset = assets.get(asset_id)
    if asset is None:
        raise NotFound("asset_not_found", "No such photo.", asset=asset_id)
    if customer is not None and asset.owner_id != customer.pk:
        raise NotFound("asset_not_found", "No such photo.", asset=asset_id)
    if customer is None and (asset.owner_id is not None or asset.guest_order_id is not None):
        raise NotFound("asset_not_found", "No such photo.", asset=asset_id)
    if asset.status != Asset.Status.READY:
        raise DomainError("asset_not_ready", "This photo is not ready to print.", asset=asset_id, status=409)
    return asset


def quote_compute(*, customer: User | None, items: list[ItemRequest], shipping_method: str) -> Quote:
    if not items:
        raise DomainError("empty_order", "An order needs at least one item.")
    products = {p.sku: p for p in Product.objects.filter(sku__in={i.sku for i in items}, is_active=True)}
    # One query for every photo of the basket, then the same checks item by item, in the basket's order.
    assets = _assets_by_id([item.asset_id for item in items])
    lines: list[QuoteLine] = []
    for position, item in enumerate(items, start=1):
        product = products.get(item.sku)
        if product is None:
            raise DomainError("unknown_sku", f"There is no product {item.sku}.", sku=item.sku)
        asset = _usable_asset(asset_id=item.asset_id, customer=customer, assets=assets)
        price = line_price(product=product, copies=item.copies)
        lines.append(
            QuoteLine(
                position=position,
                product=product,
                asset=asset,
                copies=item.copies,
                sizing=item.sizing,
                unit_price_minor=price.unit_price_minor,
                line_total_minor=price.line_total_minor,
                preflight=preflight(product=product, asset=asset, sizing=item.sizing),
            )
        )
    currencies = {line.product.currency for line in lines}
    if len(currencies) != 1:
        raise DomainError("mixed_currency", "All products in one order must share a currency.")
    subtotal = sum(line.line_total_minor for line in lines)
    shipping = SHIPPING_PRICE_MINOR[Order.ShippingMethod(shipping_method)]
    if subtotal + shipping > MAX_ORDER_TOTAL_MINOR:
        raise DomainError(
            "order_total_too_large",
            f"The order total is over the {MAX_ORDER_TOTAL_MINOR} minor units a card payment can take; "
            "split it into several orders.",
            total_minor=subtotal + shipping,
            max_total_minor=MAX_ORDER_TOTAL_MINOR,
        )
    return Quote(
        lines=lines,
        shipping_method=shipping_method,
        subtotal_minor=subtotal,
        shipping_minor=shipping,
        total_minor=subtotal + shipping,
        currency=currencies.pop(),
    )


@dataclass(frozen=True)
class GuestDetails:
    email: str
    birth_date: date
    policy_version: str


@dataclass(frozen=True)
class OrderCreated:
    order: Order
    created: bool
    guest_token: str | None  # shown once, to the guest who created the order


def guest_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def guest_token_derive(*, scope: str, idempotency_key: str, ref: str) -> str:
    """A guest's order token: HMAC-SHA256 under settings.SECRET_KEY of (scope, Idempotency-Key, order ref).

    Deterministic, so a retry whose first answer was lost gets the same working token back; only its SHA-256
    is stored, as for any token. A replay already requires the same scope (the guest's e-mail), key and
    byte-identical body (photo UUIDs, birth date, address), and already answers with the order itself, so
    handing back the token gives away nothing new. Rotating SECRET_KEY leaves issued tokens valid (the hash
    is stored) but replays of older orders then answer `guest_token: null`.
    """
    message = json.dumps([scope, idempotency_key, ref], separators=(",", ":"))
    digest = salted_hmac("lab.orders.guest_token", message, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def idempotency_scope(*, customer: User | None, guest: GuestDetails | None) -> str:
    """Keys are scoped per customer, and per guest by a hash of the normalised e-mail (never the address)."""
    if customer is not None:
        return f"user:{customer.public_id}"
    assert guest is not None
    return "guest:" + hashlib.sha256(guest.email.strip().lower().encode()).hexdigest()


def order_create(
    *,
    customer: User | None,
    guest: GuestDetails | None,
    items: list[ItemRequest],
    shipping_address: dict[str, Any],
    shipping_method: str,
    idempotency_key: str,
    request_fingerprint: str,
) -> OrderCreated:
    """Create the order once per Idempotency-Key, then make sure it has a PaymentIntent.

    The key row is inserted first, and the quote computed after it, in the transaction that inserts the
    order: a concurrent request with the same key blocks on the unique index and, once the first commits,
    finds and returns the same order. (Quoting before the key would let a retry see the guest photos that
    the first request's commit just bound to its order, and answer `asset_not_found`.)
    """
    if customer is None:
        if guest is None:
            raise DomainError(
                "guest_details_required", "Guests give an e-mail, birth date and policy version."
            )
        age_gate_check(birth_date=guest.birth_date)
    scope = idempotency_scope(customer=customer, guest=guest)
    existing = _idempotent_replay(scope=scope, key=idempotency_key, fingerprint=request_fingerprint)
    if existing is not None:
        return _replayed(order=existing, scope=scope, idempotency_key=idempotency_key)
    policy = policy_agreement_check(version=guest.policy_version) if guest and not customer else None
    ref = new_order_ref()
    guest_token = (
        guest_token_derive(scope=scope, idempotency_key=idempotency_key, ref=ref)
        if customer is None
        else None
    )
    try:
        with transaction.atomic():
            record = IdempotencyKey.objects.create(
                scope=scope, key=idempotency_key, request_sha256=request_fingerprint
            )
            quote = quote_compute(customer=customer, items=items, shipping_method=shipping_method)
            order = _order_insert(
                ref=ref,
                customer=customer,
                guest=guest,
                guest_token=guest_token,
                quote=quote,
                shipping_address=shipping_address,
            )
            if policy is not None:
                Consent.objects.create(order=order, kind=Consent.Kind.PRIVACY_POLICY, policy_version=policy)
            record.order = order
            record.save(update_fields=["order"])
            transaction.on_commit(lambda: enqueue("notify.order_created", order_id=order.pk))
    except IntegrityError:
        existing = _idempotent_replay(scope=scope, key=idempotency_key, fingerprint=request_fingerprint)
        if existing is None:
            raise
        return _replayed(order=existing, scope=scope, idempotency_key=idempotency_key)
    logger.info("order created order=%s items=%d total=%d", order.ref, len(quote.lines), quote.total_minor)
    return OrderCreated(
        order=payments.payment_intent_ensure(order=order), created=True, guest_token=guest_token
    )


def _replayed(*, order: Order, scope: str, idempotency_key: str) -> OrderCreated:
    """The first answer again; a guest gets the same token (see guest_token_derive) when it still matches."""
    guest_token = None
    if order.is_guest:
        candidate = guest_token_derive(scope=scope, idempotency_key=idempotency_key, ref=order.ref)
        if secrets.compare_digest(order.guest_token_hash, guest_token_hash(candidate)):
            guest_token = candidate
    return OrderCreated(
        order=payments.payment_intent_ensure(order=order), created=False, guest_token=guest_token
    )


def _idempotent_replay(*, scope: str, key: str, fingerprint: str) -> Order | None:
    record = IdempotencyKey.objects.select_related("order").filter(scope=scope, key=key).first()
    if record is None:
        return None
    if record.request_sha256 != fingerprint:
        raise Conflict(
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request body.",
        )
    assert record.order is not None  # set in the transaction that created the key
    return record.order


def _order_insert(
    *,
    ref: str,
    customer: User | None,
    guest: GuestDetails | None,
    guest_token: str | None,
    quote: Quote,
    shipping_address: dict[str, Any],
) -> Order:
    asset_ids = {line.asset.pk for line in quote.lines}
    # Lock the photos: the retention sweep must not purge one between the quote and this insert.
    if Asset.objects.select_for_update().filter(pk__in=asset_ids, status=Asset.Status.READY).count() != len(
        asset_ids
    ):
        raise DomainError("asset_not_ready", "A photo of this order is no longer available.", status=409)
    now = timezone.now()
    order = Order.objects.create(
        ref=ref,
        customer=customer,
        guest_email=guest.email.lower() if guest and not customer else "",
        guest_token_hash=guest_token_hash(guest_token) if guest_token else "",
        shipping_address=shipping_address,
        shipping_method=quote.shipping_method,
        subtotal_minor=quote.subtotal_minor,
        shipping_minor=quote.shipping_minor,
        total_minor=quote.total_minor,
        currency=quote.currency,
        promised_by=now + timedelta(days=PRODUCTION_DAYS[Order.ShippingMethod(quote.shipping_method)]),
    )
    OrderItem.objects.bulk_create(
        OrderItem(
            order=order,
            position=line.position,
            product=line.product,
            asset=line.asset,
            copies=line.copies,
            sizing=line.sizing,
            unit_price_minor=line.unit_price_minor,
            line_total_minor=line.line_total_minor,
            preflight=line.preflight,
        )
        for line in quote.lines
    )
    if customer is None:
        bound = Asset.objects.filter(pk__in=asset_ids, owner__isnull=True, guest_order__isnull=True).update(
            guest_order=order
        )
        if bound != len(asset_ids):
            # Another guest order (another key) took one of these photos between our quote and our lock.
            raise NotFound("asset_not_found", "No such photo.")
    OrderEvent.objects.create(
        order=order,
        kind="created",
        to_status=order.status,
        actor=customer,
        actor_kind="customer" if customer else "guest",
    )
    return order


def order_cancel(*, order: Order, actor: User | None, actor_kind: str) -> Order:
    """A customer's cancel, before production starts; a captured payment is refunded after the commit.

    Decided under the order's lock: a cancel that loses the race with the release to production answers
    409 and refunds nothing. The refund itself is asked for after the commit (`refund_issue_soon`), so the
    money moves only for an order that is cancelled for good. Supervisors cancel orders in production with
    lab.production.cancellation.order_cancel_in_production, which also stops the jobs.
    """
    with transaction.atomic():
        locked = order_locked(order_id=order.pk)
        if locked.status not in CUSTOMER_CANCELLABLE:
            raise DomainError(
                "order_not_cancellable", f"An order that is {locked.status} cannot be cancelled.", status=409
            )
        refund_due = payments.refund_decide(order=locked)
        if (
            not refund_due
            and locked.payment_intent_id
            and locked.payment_status != Order.PaymentStatus.REFUNDED
        ):
            transaction.on_commit(lambda: enqueue("payments.payment_intent_cancel", order_id=locked.pk))
        order_transition(
            order=locked,
            to_status=OrderStatus.CANCELLED,
            actor=actor,
            actor_kind=actor_kind,
            note="cancelled",
        )
    if refund_due:
        payments.refund_issue_soon(order_id=locked.pk)
        locked.refresh_from_db()
    return locked


def order_access_check(*, order: Order, user: User | None, guest_token: str | None) -> None:
    """Owner or guest-token holder only; anyone else is told the order does not exist."""
    if user is not None and user.is_authenticated and order.customer_id == user.pk:
        return
    if (
        order.is_guest
        and guest_token
        and secrets.compare_digest(order.guest_token_hash, guest_token_hash(guest_token))
    ):
        return
    raise NotFound("order_not_found", "No such order.")


def order_for_reader(*, ref: str, user: User | None, guest_token: str | None) -> Order:
    if not is_order_ref(ref):  # checked before any query: a NUL byte or junk must not reach the database
        raise NotFound("order_not_found", "No such order.")
    order = Order.objects.filter(ref=ref).first()
    if order is None:
        raise NotFound("order_not_found", "No such order.")
    order_access_check(order=order, user=user, guest_token=guest_token)
    return order


def asset_for_owner(*, asset_id: str, user: User | None) -> Asset:
    try:
        asset = Asset.objects.get(pk=asset_id)
    except (Asset.DoesNotExist, ValidationError, ValueError) as error:
        raise NotFound("asset_not_found", "No such photo.") from error
    if user is None or asset.owner_id != user.pk:
        raise NotFound("asset_not_found", "No such photo.")
    return asset
