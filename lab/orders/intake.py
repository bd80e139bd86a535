"""Order intake: a quote becomes an order once per Idempotency-Key, with its PaymentIntent and promised
date."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

from django.db import IntegrityError, transaction
from django.db.models import Case, Value, When
from django.dispatch import Signal
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from lab.accounts.models import Consent, User
from lab.accounts.services import UnderAge, age_gate_check, policy_agreement_check
from lab.lib.errors import Conflict, DomainError, NotFound, UpstreamError
from lab.lib.seals import seal_holds, seal_of
from lab.lib.tasks import enqueue
from lab.orders import payments
from lab.orders.errors import OrderError
from lab.orders.guest_tokens import guest_token_derive, guest_token_holds
from lab.orders.models import Asset, IdempotencyKey, Order, OrderEvent, OrderItem, asset_seal, new_order_ref
from lab.orders.pricing import min_order_total_minor
from lab.orders.quotes import ItemRequest, Quote, QuoteLine, quote_compute
from lab.orders.states import OrderStatus

logger = logging.getLogger(__name__)


PRODUCTION_DAYS = {
    Order.ShippingMethod.STANDARD: 3,
    Order.ShippingMethod.EXPRESS: 1,
    Order.ShippingMethod.PICKUP: 2,
}

# A guest's replay hands back the order's token only while the order awaits payment and is younger than
# this: the retry of a lost answer comes within minutes. Past it (paid, or a day old) a replay answers the
# order without its token, so the key row alone can never reopen a paid order to re-addressing.
REPLAY_TOKEN_WINDOW = timedelta(hours=24)
IDEMPOTENCY_REQUEST_SALT = "lab.orders.idempotency.request"

# COPPA: a guest was refused as under 13. Sent with `asset_ids` (the photos the request named), outside any
# transaction, once the refusal is decided and before it is answered; lab.customer_data.photo_purge listens
# and purges those of the photos that are still unbound guest uploads (lab.orders may not import it).
guest_refused_under_age = Signal()


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


class Admission(Protocol):
    """A limit the caller puts on the orders it creates (the API's per signed-in customer, and per e-mail
    address on guest orders), told only of an order that is created: not of a replayed key, nor of a request
    refused before its order was stored."""

    def admit(self) -> None:
        """Count the order being created, in its transaction; raising refuses it (rolled back)."""

    def release(self) -> None:
        """Give back what `admit` counted: the order was not created after all (rolled back, withdrawn)."""


def idempotency_scope(*, customer: User | None, guest: GuestDetails | None) -> str:
    """Keys are scoped per customer, and per guest by a hash of the normalised e-mail (never the address)."""
    if customer is not None:
        return f"user:{customer.public_id}"
    assert guest is not None
    return guest_scope(email=guest.email)


def guest_scope(*, email: str) -> str:
    """The scope of a guest's keys: a hash of the normalised e-mail (the API's is `email_canonical`'s)."""
    return "guest:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def order_create(
    *,
    customer: User | None,
    guest: GuestDetails | None,
    items: list[ItemRequest],
    shipping_address: dict[str, Any],
    shipping_method: str,
    idempotency_key: str,
    request_fingerprint: str,
    admission: Admission | None = None,
) -> OrderCreated:
    """Create the order once per Idempotency-Key, then make sure it has a PaymentIntent.

    The key row is inserted first, and the quote computed after it, in the transaction that inserts the
    order: a concurrent request with the same key blocks on the unique index and, once the first commits,
    finds and returns the same order. (Quoting before the key would let a retry see the guest photos that
    the first request's commit just bound to its order, and answer `asset_not_found`.)

    `admission` is told of the order last in that transaction, once it is sure to be created (a replay, a
    refusal, a key another request holds never reach it), and told again (`release`) if the order is rolled
    back or withdrawn after all; an order kept without its payment (the 502 a retry completes) stays counted.

    `request_fingerprint` is the request's body in a canonical form (the API's: sorted JSON): a retry with
    the key must send the same. It is stored only as a keyed hash (`request_seal`).
    """
    if customer is None:
        if guest is None:
            raise DomainError(
                OrderError.GUEST_DETAILS_REQUIRED, "Guests give an e-mail, birth date and policy version."
            )
        try:
            age_gate_check(birth_date=guest.birth_date)
        except UnderAge:
            _refused_photos_discard(items)
            raise
    scope = idempotency_scope(customer=customer, guest=guest)
    existing = _idempotent_replay(scope=scope, key=idempotency_key, body=request_fingerprint)
    if existing is not None:
        return _replayed(replay=existing, scope=scope, idempotency_key=idempotency_key)
    policy = policy_agreement_check(version=guest.policy_version) if guest and not customer else None
    ref = new_order_ref()
    guest_token = (
        guest_token_derive(scope=scope, idempotency_key=idempotency_key, ref=ref)
        if customer is None
        else None
    )
    admitted: Admission | None = None
    try:
        with transaction.atomic():
            # Its request hash once the order is made: it names the order's row (`request_seal`).
            record = IdempotencyKey.objects.create(scope=scope, key=idempotency_key, request_sha256="")
            quote = quote_compute(
                customer=customer, items=items, shipping_method=shipping_method, lock_photos=True
            )
            _payable_check(quote)  # raising here rolls the key back: nothing is stored
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
            record.request_sha256 = request_seal(
                scope=scope, idempotency_key=idempotency_key, order_id=order.pk, body=request_fingerprint
            )
            record.save(update_fields=["order", "request_sha256"])
            if admission is not None:
                admission.admit()  # last: raising here rolls back the order and its key
                admitted = admission
    except BaseException as error:
        if admitted is not None:  # counted, then not committed
            admitted.release()
        if not isinstance(error, IntegrityError):
            raise
        existing = _idempotent_replay(scope=scope, key=idempotency_key, body=request_fingerprint)
        if existing is None:
            raise
        return _replayed(replay=existing, scope=scope, idempotency_key=idempotency_key)
    logger.info("order created order=%s items=%d total=%d", order.ref, len(quote.lines), quote.total_minor)
    try:
        order = _payable_order(order=order)
    except payments.ChargeTooSmall:
        if admitted is not None:  # withdrawn: as if it had never been stored
            admitted.release()
        raise
    except UpstreamError:
        _received_notify(order=order)  # the order is kept: its retry gets the payment
        raise
    _received_notify(order=order)
    return OrderCreated(order=order, created=True, guest_token=guest_token)


def _refused_photos_discard(items: list[ItemRequest]) -> None:
    """A refused child's photos go now, not a week later with the never-ordered ones (the policy collects
    nothing from anyone under 13); the listener purges only photos no account owns and no order holds, so a
    request naming someone else's photo changes nothing of it. A purge that fails is logged, and the refusal
    answered all the same (the retention sweep purges the photo later)."""
    asset_ids = list(dict.fromkeys(str(item.asset_id) for item in items))
    if not asset_ids:
        return
    if not guest_refused_under_age.has_listeners(sender=Order):
        logger.error("under-age refusal: no listener purges its photos count=%d", len(asset_ids))
        return
    for _receiver, outcome in guest_refused_under_age.send_robust(sender=Order, asset_ids=asset_ids):
        if isinstance(outcome, Exception):
            logger.error(
                "under-age refusal: photos not purged error=%s",
                type(outcome).__name__,
                exc_info=(type(outcome), outcome, outcome.__traceback__),
            )


def _received_notify(*, order: Order) -> None:
    """E-mail "order received" once the order is sure to stay: after Stripe was asked for its payment, not
    when it committed, for an order Stripe refuses as too small is withdrawn (`_order_withdraw`). A message
    lost here is sent by the notifications sweep."""
    order_id = order.pk
    transaction.on_commit(lambda: enqueue("notify.order_created", order_id=order_id))


def _payable_check(quote: Quote) -> None:
    """A total under the card payment's minimum could never be paid: Stripe refuses the PaymentIntent, and
    the order was stored and answered 502 "retry", for ever. A quote of it is still answered (more may be
    added)."""
    least = min_order_total_minor(quote.currency)
    if quote.total_minor < least:
        raise DomainError(
            OrderError.ORDER_TOTAL_TOO_SMALL,
            f"The order total is under the {least} minor units a card payment must reach; add copies or "
            "choose another shipping method.",
            total_minor=quote.total_minor,
            min_total_minor=least,
        )


def _replayed(*, replay: Replay, scope: str, idempotency_key: str) -> OrderCreated:
    """The first answer again. A guest gets the same token (see guest_token_derive) only while the order
    awaits payment and is younger than REPLAY_TOKEN_WINDOW (or never had its first answer: kept without its
    payment, the 502 a retry completes), and only when the key row's request hash is the
    lab's keyed one (`request_seal`): a row stored before it (a plain SHA-256 of the body, which anyone with
    the database could rewrite or reverse) answers the order without its token."""
    order, guest_token = replay.order, None
    # An order kept without its payment (the 502 a retry completes) never had its first answer: the retry
    # that makes it payable gets the token however late it comes, or the guest paid for an order they could
    # never open.
    is_first_answer = not order.payment_intent_id
    if order.is_guest and replay.is_sealed and (is_first_answer or _token_may_be_replayed(order)):
        candidate = guest_token_derive(scope=scope, idempotency_key=idempotency_key, ref=order.ref)
        stored = order.guest_token_hash
        if guest_token_holds(order_id=order.pk, ref=order.ref, stored=stored, token=candidate):
            guest_token = candidate
    return OrderCreated(order=_payable_order(order=order), created=False, guest_token=guest_token)


def _token_may_be_replayed(order: Order) -> bool:
    # Before, any replay handed the token back for good: a database administrator who rewrote the key row's
    # hash to one of a body of their own got the token of a paid order and re-addressed its prints.
    return (
        order.status == OrderStatus.AWAITING_PAYMENT
        and order.created_at > timezone.now() - REPLAY_TOKEN_WINDOW
    )


def _payable_order(*, order: Order) -> Order:
    """The order with its PaymentIntent. One whose amount Stripe refuses as under its minimum charge (in a
    currency the lab's table lets through: a settlement currency's minimum after conversion) is withdrawn and
    refused as `_payable_check` refuses it: before, it was kept, answered 502 "retry" at every retry, and
    held the guest's photos."""
    try:
        return payments.payment_intent_ensure(order=order)
    except payments.ChargeTooSmall:
        _order_withdraw(order=order)
        raise


def _order_withdraw(*, order: Order) -> None:
    """Undo an order's intake, as if it had been refused before it was stored: the order goes with its items,
    timeline, consent and idempotency key (a retry with the key starts afresh), and a guest's photos are
    unbound, sealed as they were, free for another order. Only while nothing can have acted on it: still
    awaiting payment, with no PaymentIntent (nobody was offered a payment)."""
    with transaction.atomic():
        # The photos first, in primary-key order, as an order's intake locks them; then the order.
        photos = list(Asset.objects.select_for_update().filter(guest_order_id=order.pk).order_by("pk"))
        locked = (
            Order.objects.select_for_update()
            .filter(pk=order.pk, status=OrderStatus.AWAITING_PAYMENT, payment_intent_id="")
            .first()
        )
        if locked is None:
            return  # acted on meanwhile (a cancel, an erasure): it stays as they left it
        for photo in photos:
            photo.guest_order = None
            photo.save(update_fields=["guest_order"])  # resealed by Asset.save
        locked.delete()
    logger.info("order withdrawn, under the card payment's minimum order=%s", order.ref)


def request_seal(*, scope: str, idempotency_key: str, order_id: int, body: str) -> str:
    """What a key row stores of its request (`IdempotencyKey.request_sha256`): an HMAC under SECRET_KEY of its
    scope, key, order and body. Before, it was the body's plain SHA-256: a database administrator could write
    the hash of a body of their own and replay it, and anyone with a backup could recover the one field of
    the body the database does not hold (a guest's birth date, some 40,000 guesses) offline. Keyed, neither
    can be made nor tested without the key; naming the order, the row cannot be moved to another one."""
    return seal_of(IDEMPOTENCY_REQUEST_SALT, _request_message(scope, idempotency_key, order_id, body))


def _request_message(scope: str, idempotency_key: str, order_id: int, body: str) -> str:
    return f"{scope}|{idempotency_key}|{order_id}|{body}"


@dataclass(frozen=True)
class Replay:
    order: Order
    is_sealed: bool  # the row's hash is `request_seal`'s, not the plain SHA-256 stored before


def _idempotent_replay(*, scope: str, key: str, body: str) -> Replay | None:
    # The key alone, not joined to its order: most keys are new, and the join's wider query cost them twice
    # the CPU of this one; a replay reads its order with a second query.
    record = IdempotencyKey.objects.filter(scope=scope, key=key).first()
    if record is None:
        return None
    assert record.order_id is not None  # set in the transaction that created the key
    # Under SECRET_KEY or a fallback (lab/lib/seals.py): after a key rotation the retry of a lost answer
    # still replays its order (a 409 told the client its body differed, and a new key made a second order).
    message = _request_message(scope, key, record.order_id, body)
    is_sealed = seal_holds(record.request_sha256, IDEMPOTENCY_REQUEST_SALT, message)
    # A row stored before the keyed hash still replays its order (a retry across the upgrade), without the
    # guest's token (`_replayed`).
    if not is_sealed and not constant_time_compare(
        record.request_sha256, hashlib.sha256(body.encode()).hexdigest()
    ):
        raise Conflict(
            OrderError.IDEMPOTENCY_KEY_REUSED,
            "This Idempotency-Key was already used with a different request body.",
        )
    assert record.order is not None
    return Replay(order=record.order, is_sealed=is_sealed)


def _placement_fields(line: QuoteLine) -> dict[str, Any]:
    """The item's placement options as the customer gave them, and what they gave on this photo."""
    crop, focal_point = line.options.crop, line.options.focal_point
    return {
        "crop_x": crop.x if crop else None,
        "crop_y": crop.y if crop else None,
        "crop_width": crop.width if crop else None,
        "crop_height": crop.height if crop else None,
        "focal_x": focal_point.x if focal_point else None,
        "focal_y": focal_point.y if focal_point else None,
        "orientation": line.options.orientation,
        "border_mm": line.options.border_mm,
        "print_orientation": line.placement.print_orientation,
        "crop_box_px": line.placement.crop_box.as_dict(),
        "effective_dpi": line.placement.effective_dpi,
    }


def _order_insert(
    *,
    ref: str,
    customer: User | None,
    guest: GuestDetails | None,
    guest_token: str | None,
    quote: Quote,
    shipping_address: dict[str, Any],
) -> Order:
    # The quote read the photos locked and ready (quote_compute's lock_photos), in this transaction.
    asset_ids = {line.asset.pk for line in quote.lines}
    now = timezone.now()
    order = Order(
        ref=ref,
        customer=customer,
        guest_email=guest.email.lower() if guest and not customer else "",
        shipping_address=shipping_address,
        shipping_method=quote.shipping_method,
        subtotal_minor=quote.subtotal_minor,
        shipping_minor=quote.shipping_minor,
        total_minor=quote.total_minor,
        currency=quote.currency,
        promised_by=now + timedelta(days=PRODUCTION_DAYS[Order.ShippingMethod(quote.shipping_method)]),
    )
    # Its token is sealed with the row's key, which the insert makes: written with the address's seal, in
    # the UPDATE Order.save makes after the insert (no query more).
    order.issued_guest_token = guest_token or ""
    order.save(force_insert=True)
    items = OrderItem.objects.bulk_create(
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
            **_placement_fields(line),
        )
        for line in quote.lines
    )
    if customer is None:
        # Each photo sealed with the order it now belongs to (Asset.save's seal, from the photo as the quote
        # read it locked), in the same statement.
        seals = {
            line.asset.pk: asset_seal(
                asset_id=line.asset.pk,
                owner_id=None,
                guest_order_id=order.pk,
                data_key_id=line.asset.data_key_id,
                blob_name=line.asset.blob_name,
            )
            for line in quote.lines
        }
        bound = Asset.objects.filter(pk__in=asset_ids, owner__isnull=True, guest_order__isnull=True).update(
            guest_order=order, sealed=Case(*(When(pk=pk, then=Value(seal)) for pk, seal in seals.items()))
        )
        if bound != len(asset_ids):
            # Another guest order (another key) took one of these photos: the quote's lock keeps that from
            # happening, and this count keeps it from going unnoticed.
            raise NotFound(OrderError.ASSET_NOT_FOUND, "No such photo.")
    event = OrderEvent.objects.create(
        order=order,
        kind="created",
        to_status=order.status,
        actor=customer,
        actor_kind="customer" if customer else "guest",
    )
    # The answer shows what was just written (lab.orders.selectors.order_with_lines reads nothing back).
    order.loaded_items, order.loaded_events = items, [event]
    return order
