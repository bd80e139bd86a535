"""Erasure of a customer's personal data on request (DELETE /api/v1/me): photos crypto-shredded, personal
fields cleared, orders kept anonymised for accounting, consents kept (they hold no personal data). The
customer gets a signed privacy receipt per order (and one for photos in no order): in the answer, and by
e-mail to the address read before it was wiped.

Refused while an order still has to be printed or shipped (paid, in production, on hold, ready to pack,
packed), and while an order's money is unsettled: its payment disputed with the customer's bank (the address,
carrier and tracking number are the delivery evidence the lab answers the dispute with) or a refund to the
customer still to be made (a failed one needs a person to reach them). Unpaid orders are cancelled as part of
the erasure. Once committed, the messages to the customer's address, and those to each address the account
had before written while it had it, in demo mode's mail files are deleted (lab/customer_data/mail_files.py:
mail_files_erase). The notes of disputes' closes are kept: Stripe's ids and outcomes, which stop a late
`charge.dispute.created` from disputing a settled payment again.

Every erasure is also appended, once committed, to the erasure log outside the database
(lab/customer_data/erasure_log.py): after a restore from an earlier backup, `manage.py erasures_reapply` runs
it again (account_erase_again, guest_order_erase) for each subject the restored database holds un-erased.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import CharField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from lab.accounts.errors import AccountError
from lab.accounts.models import Consent, SecurityEvent, User
from lab.accounts.roles import is_staff_member
from lab.accounts.services import policy_current
from lab.accounts.signin import (
    EmailPeriod,
    account_earlier_email_periods,
    password_confirm,
    sign_ins_with_addresses_of,
)
from lab.accounts.tokens import api_tokens_revoke_all
from lab.audit.models import AccessGrant
from lab.audit.records import Entry, RequestMeta, audit_append
from lab.customer_data.erasure_log import KIND_ACCOUNT, KIND_GUEST_ORDER, erasure_log_owed
from lab.customer_data.errors import CustomerDataError
from lab.customer_data.mail_files import mail_files_erase
from lab.customer_data.models import PrivacyReceipt
from lab.customer_data.photo_purge import asset_purge
from lab.customer_data.receipts import (
    ReceiptLink,
    receipt_issue,
    receipt_link,
    receipts_email_after_erasure,
    receipts_issue_for_erasure,
)
from lab.customer_data.retention_rules import PHOTO_NEEDED_STATUSES, RULE_ERASURE
from lab.lib.errors import Conflict, PermissionDenied, Unavailable, UpstreamError
from lab.notify.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from lab.orders.cancellation import order_cancel
from lab.orders.models import Asset, ClarificationCase, IdempotencyKey, Order, OrderEvent, OrderItem
from lab.orders.payments import ONE_TRY, UNPAID_PAYMENT_STATUSES, stripe_client
from lab.orders.selectors import guest_order_photos
from lab.orders.states import OrderStatus
from lab.orders.stripe_dispute_events import DISPUTE_CLOSED_KINDS
from lab.packing.models import PackingSlip
from lab.production.models import (
    JOB_CANCELLED,
    JOB_CANCELLED_NOTE,
    JOB_REPRINT_REQUESTED,
    JobEvent,
    PrintJob,
)

logger = logging.getLogger(__name__)

# An erased order's items' colour note: what preflight says of a photo's embedded profile, without its
# description (lab/orders/pricing.py: preflight).
ERASED_COLOR_NOTE = "embedded profile will be converted to the printer profile"


@dataclass(frozen=True)
class ErasureResult:
    erased_at: datetime
    photos_purged: int
    orders_anonymized: int
    orders_cancelled: int
    receipts: tuple[ReceiptLink, ...] = field(default=())


def erased_email(user: User) -> str:
    """A unique, non-personal login name: the e-mail column stays unique and non-empty."""
    return f"erased-{user.public_id}@invalid"


def _is_open(order: Order) -> bool:
    # An unpaid order whose money has arrived is about to be paid: it counts as open.
    return order.status in PHOTO_NEEDED_STATUSES or (
        order.status == OrderStatus.AWAITING_PAYMENT and order.payment_status == Order.PaymentStatus.SUCCEEDED
    )


# Money still moving on an order: its data is kept until it settles. Disputed: the order's address, carrier
# and tracking number are the evidence Stripe asks for to contest the chargeback (the privacy policy keeps
# data that protects the lab's rights); charge.dispute.closed settles it
# (lab/orders/stripe_dispute_events.py).
# Refund pending: a refund that fails needs a person to reach the customer, by the e-mail the erasure wipes.
UNSETTLED_PAYMENTS: dict[str, str] = {
    Order.PaymentStatus.DISPUTED: "its payment is disputed with your bank, until the dispute is closed",
    Order.PaymentStatus.REFUND_PENDING: "a refund to you is still being made",
}


# What a PaymentIntent's status at Stripe says of the customer's money: taken (succeeded), on its way
# (processing: a bank debit, a delayed method), or authorised and waiting to be captured.
MONEY_AT_STRIPE = frozenset({"succeeded", "processing", "requires_capture"})
PAID_AT_STRIPE_REASON = "your payment for it has reached us and is still being recorded"


def _payment_unread(order: Order) -> bool:
    """Whether the order's money may be at Stripe while the lab does not know it yet: awaiting payment (or
    cancelled with its intent's cancel still owed) with an intent, and no payment recorded. The webhook that
    records a payment comes after it, seconds or (Stripe retrying a failing endpoint) hours later."""
    return (
        bool(order.payment_intent_id)
        and order.payment_status in UNPAID_PAYMENT_STATUSES
        and (order.status == OrderStatus.AWAITING_PAYMENT or order.payment_intent_cancel_due)
    )


# The reads of an erasure's unpaid orders at Stripe go this many at a time, all within one
# STRIPE_TIMEOUT_SECONDS (`_paid_at_stripe`). The SDK's HTTP client keeps one session per thread.
PAYMENT_READ_THREADS = 8


def _paid_at_stripe(orders: Iterable[Order]) -> frozenset[str]:
    """The refs of the orders (not yet anonymised) whose PaymentIntent Stripe says was paid though the lab has
    not recorded it (`_payment_unread`). Read before the erasure takes any lock, one try per intent, up to
    PAYMENT_READ_THREADS at a time, and all within one STRIPE_TIMEOUT_SECONDS for the whole check: 503
    `erasure_payment_check_unavailable`, naming the orders not read, when Stripe cannot tell of one (an
    error, or no answer by then). Reads still under way then are not waited for; each ends by its own
    STRIPE_TIMEOUT_SECONDS, and nothing is erased. Before, the intents were read one after another, each
    up to STRIPE_TIMEOUT_SECONDS: a customer with many unpaid orders, or a slow Stripe, took the answer
    past gunicorn's 60 s, a 502 with nothing erased, on every retry
    (`test_an_erasure_reads_its_unpaid_orders_at_stripe_within_one_stripe_timeout`).
    Before that, the erasure cancelled such an order on its stale local status, the intent's cancel found
    it succeeded and decided a refund for an account with nobody left to reach."""
    unread = [order for order in orders if not order.is_anonymized and _payment_unread(order)]
    if not unread:
        return frozenset()
    try:
        client = stripe_client()
    except UpstreamError as error:
        raise _payment_unchecked(unread, error) from error
    pool = ThreadPoolExecutor(
        max_workers=min(PAYMENT_READ_THREADS, len(unread)), thread_name_prefix="erasure-stripe"
    )
    reads = {
        pool.submit(client.v1.payment_intents.retrieve, order.payment_intent_id, options=ONE_TRY): order
        for order in unread
    }
    paid: set[str] = set()
    try:
        for read in as_completed(reads, timeout=float(settings.STRIPE_TIMEOUT_SECONDS)):
            order = reads[read]
            try:
                intent = read.result()
            except stripe.InvalidRequestError as error:
                if error.http_status == 404:
                    continue  # no such intent: no money can have moved through it
                raise _payment_unchecked(_not_read(reads, failed=order), error) from error
            except (stripe.StripeError, UpstreamError) as error:
                raise _payment_unchecked(_not_read(reads, failed=order), error) from error
            if str(intent.status) in MONEY_AT_STRIPE:
                paid.add(order.ref)
    except TimeoutError as error:
        raise _payment_unchecked(_not_read(reads), error) from error
    finally:
        # Reads not begun are dropped; one under way is not waited for: it ends by its own timeout.
        pool.shutdown(wait=False, cancel_futures=True)
    return frozenset(paid)


def _not_read(reads: dict[Future[Any], Order], *, failed: Order | None = None) -> list[Order]:
    """The orders whose intent Stripe has not answered for (yet), and the one whose read failed."""
    return [order for read, order in reads.items() if order is failed or not read.done()]


def _payment_unchecked(orders: list[Order], error: Exception) -> Unavailable:
    refs = sorted(order.ref for order in orders)
    logger.warning(
        "erasure: payment not read at stripe orders=%s error=%s", ",".join(refs), type(error).__name__
    )
    return Unavailable(
        CustomerDataError.ERASURE_PAYMENT_CHECK_UNAVAILABLE,
        "Your data cannot be erased right now: we could not check whether your payment for "
        f"{'order' if len(refs) == 1 else 'orders'} {', '.join(refs)} has reached us. Nothing was erased; "
        "please try again in a few minutes.",
        orders=refs,
    )


# A cancelled job the printer may still hold (PrintJob.cancel_at_printer: a supervisor's cancel while the
# printer was unreachable, or while a worker's send was still landing): its decrypted raster lies in the
# printer's spool (cupsd's, a hot folder's inbox) and may print when the printer comes back. Erased then, the
# key went and the receipt said so while that plain copy stayed. The flag is cleared once the printer agrees,
# or at once for a job left with no printer (lab/production/cancellation.py: printer_cancel), by the poll.
WITHDRAWING_FROM_PRINTER_REASON = "a copy of your photo is still being withdrawn from a printer"


def _why_kept(
    order: Order, paid_at_stripe: frozenset[str] = frozenset(), withdrawing: frozenset[int] = frozenset()
) -> str | None:
    """Why the order's data cannot be erased yet, in the customer's words; None when it can. `withdrawing`:
    the orders with a job still being cancelled at its printer (_withdrawing_from_printers)."""
    if _is_open(order):
        return "still to be printed or shipped"
    if order.pk in withdrawing:
        return WITHDRAWING_FROM_PRINTER_REASON
    if order.ref in paid_at_stripe and order.payment_status in UNPAID_PAYMENT_STATUSES:
        return PAID_AT_STRIPE_REASON
    return UNSETTLED_PAYMENTS.get(order.payment_status)


def _withdrawing_from_printers(orders: list[Order]) -> frozenset[int]:
    """The orders among `orders` with a job still being cancelled at its printer (one query)."""
    if not orders:
        return frozenset()
    flagged = PrintJob.objects.filter(order_id__in=[order.pk for order in orders], cancel_at_printer=True)
    return frozenset(flagged.values_list("order_id", flat=True).distinct())


def _blocked(
    orders: Iterable[Order], *, one: bool = False, paid_at_stripe: frozenset[str] = frozenset()
) -> Conflict | None:
    """The 409 for the orders whose data cannot be erased yet, naming each and why; None if there is none."""
    orders = list(orders)
    withdrawing = _withdrawing_from_printers(orders)
    reasons = {
        order.ref: why
        for order in orders
        if (why := _why_kept(order, paid_at_stripe, withdrawing)) is not None
    }
    if not reasons:
        return None
    listed = "; ".join(f"{ref} ({reasons[ref]})" for ref in sorted(reasons))
    return Conflict(
        CustomerDataError.ERASURE_BLOCKED_BY_OPEN_ORDERS,
        f"Your data cannot be erased yet, because of {'this order' if one else 'these orders'}: {listed}. "
        "It can be once each has shipped or been cancelled, its payment is settled and no printer still "
        "holds a copy of its photos.",
        orders=sorted(reasons),
    )


def _refuse_open_orders(user: User) -> None:
    """Lock every order of the customer, so none moves on while it is anonymised, and refuse while one is
    open or its money unsettled."""
    orders = list(Order.objects.select_for_update().filter(customer=user).order_by("pk"))
    refusal = _blocked(orders)
    if refusal is not None:
        raise refusal


def _refuse_paid_at_stripe(user: User, *, paid_at_stripe: frozenset[str]) -> None:
    """Once the orders are locked: refuse while one's payment has reached Stripe and is not yet recorded
    (`paid_at_stripe`, read before the locks)."""
    if not paid_at_stripe:
        return
    refusal = _blocked(Order.objects.filter(customer=user).order_by("pk"), paid_at_stripe=paid_at_stripe)
    if refusal is not None:
        raise refusal


def _lock_webhooks(user: User) -> None:
    """Lock the customer's webhook endpoints, then their deliveries, before any of them is deleted: the order
    in which a worker recording an attempt takes them (lab/notify/delivery.py: _record), and an event being
    emitted takes the order and then the endpoints. The deletes below go the other way (an order's events
    cascade to deliveries, then the endpoints go): an attempt that held its endpoint waited for a delivery
    the erasure had deleted while the erasure waited for that endpoint, a deadlock; and one committed
    between the cascade's DELETE of attempts and of deliveries failed the erasure's COMMIT on its foreign
    key (a 500).
    Now an attempt being recorded commits first, its row deleted with the rest, or waits and finds its
    endpoint gone (tests/privacy/test_erasure_races.py)."""
    endpoint_ids = list(
        WebhookEndpoint.objects.select_for_update()
        .filter(owner=user)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if endpoint_ids:
        list(
            WebhookDelivery.objects.select_for_update()
            .filter(endpoint_id__in=endpoint_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )


def _cancel_unpaid(user: User) -> int:

    unpaid = list(Order.objects.filter(customer=user, status=OrderStatus.AWAITING_PAYMENT))
    for order in unpaid:
        # No money has moved (checked above, at Stripe too), so this cancels the PaymentIntent after commit.
        order_cancel(order=order, actor=user, actor_kind="customer")
    return len(unpaid)


def _purge_photos(user: User) -> int:
    asset_ids = set(
        Asset.objects.filter(owner=user).exclude(status=Asset.Status.PURGED).values_list("pk", flat=True)
    ) | set(
        Asset.objects.filter(items__order__customer=user)
        .exclude(status=Asset.Status.PURGED)
        .values_list("pk", flat=True)
    )
    return _purge(asset_ids)


def _purge(asset_ids: Iterable[uuid.UUID]) -> int:
    return sum(
        asset_purge(asset_id=asset_id, rule=RULE_ERASURE, cutoffs=None, purpose="erasure")
        for asset_id in sorted(asset_ids, key=str)
    )


def _clear_floor_notes(order_ids: list[int]) -> None:
    """The floor's own words on the orders' print jobs (a reprint's or a cancel's note, which may name the
    customer) give way to what the lab writes itself. Only these kinds: the other job events hold the lab's
    machine-written notes, and some are still read (a superseded title names copies the spool sweep
    erases)."""
    jobs_events = JobEvent.objects.filter(job__order_id__in=order_ids)
    jobs_events.filter(kind=JOB_CANCELLED).exclude(note=JOB_CANCELLED_NOTE).update(note=JOB_CANCELLED_NOTE)
    reprints = jobs_events.filter(kind=JOB_REPRINT_REQUESTED).values_list(
        "pk", "job__reprint_of_id", "job__reprint_reason"
    )
    for event_id, original_id, reason in reprints:
        # As job_reprint writes it without a note: the reprinted job and the reason chosen from a list.
        JobEvent.objects.filter(pk=event_id).update(note=f"reprint of job {original_id}: {reason}")


def _anonymize_orders(orders: QuerySet[Order]) -> int:
    order_ids = list(orders.values_list("pk", flat=True))
    # The slip PDF prints the address; webhook bodies may quote hold questions and tracking numbers.
    PackingSlip.objects.filter(order_id__in=order_ids).delete()
    WebhookEvent.objects.filter(order_id__in=order_ids).delete()
    # Free text written to or about the customer: a hold question, a staff note on the timeline or a job.
    # Not a dispute's close: its note is Stripe's dispute id and final status (`dp_… won`, written by
    # lab/orders/stripe_dispute_events.py), no personal data, and what tells a `charge.dispute.created` that
    # comes after its own close (Stripe retries a failed delivery for days) that the dispute is over. Blanked,
    # the late creation marked the settled payment `disputed` for good, with no close to come
    # (tests/privacy/test_erasure_keeps_dispute_ids.py).
    OrderEvent.objects.filter(order_id__in=order_ids).exclude(note="").exclude(
        kind__in=DISPUTE_CLOSED_KINDS
    ).update(note="")
    ClarificationCase.objects.filter(order_id__in=order_ids).exclude(question="").update(question="")
    _clear_floor_notes(order_ids)
    # The orders' idempotency keys: the request hash covers the shipping address (and a guest's e-mail), a
    # guest's scope is a hash of the e-mail, and the key is text the client chose. Anyone holding an address
    # could find the order from the hash, and a guest's replay would still answer the order and its token.
    # Each key row then names only its order (its id as the key keeps the pair unique); nothing replays it,
    # as no request is ever in an `erased:` scope.
    IdempotencyKey.objects.filter(order_id__in=order_ids).update(
        scope=Concat(Value("erased:"), Subquery(Order.objects.filter(pk=OuterRef("order_id")).values("ref"))),
        key=Cast("pk", output_field=CharField()),
        request_sha256="",
    )
    # An ICC profile's description is the customer's own text from their photo's file (a name, at times):
    # the items' preflight quoted it. A note without it stays (lab/orders/pricing.py: preflight).
    items = OrderItem.objects.filter(order_id__in=order_ids, preflight__color_note__startswith="embedded")
    for item_id, preflight in items.values_list("pk", "preflight"):
        OrderItem.objects.filter(pk=item_id).update(preflight={**preflight, "color_note": ERASED_COLOR_NOTE})
    # The carrier and tracking number too: with the carrier's tracking page they give the parcel's route and
    # the town it went to (and the webhook bodies that quoted them are deleted above for that reason). Empty
    # numbers are outside order_tracking_number_unique, so any number of erased orders can share "".
    # The address's seal goes with it: an HMAC of the ref, the customer's id and the full address, which
    # anyone holding SECRET_KEY and a backup could test guessed addresses against, offline. An empty
    # address counts as sealed (Order.address_is_sealed): it sends nothing anywhere.
    return orders.update(
        shipping_address={},
        address_sealed="",
        guest_email="",
        hold_message="",
        carrier="",
        tracking_number="",
        payment_client_secret="",
        is_anonymized=True,
        updated_at=timezone.now(),
    )


def _clear_person(user: User, *, now: datetime) -> None:
    if user.marketing_opt_in:
        # The withdrawal is recorded like any other: consents are kept as proof of what was agreed.
        Consent.objects.create(
            user=user, kind=Consent.Kind.MARKETING, granted=False, policy_version=policy_current()
        )
    # Failed sign-ins with their address that found no account (before they registered): its hash and the IP
    # of whoever typed it. Read before the address is wiped.
    sign_ins_with_addresses_of(user=user).delete()
    user.email = erased_email(user)
    user.pending_email = ""
    user.full_name = ""
    user.address = {}
    user.marketing_opt_in = False
    user.is_active = False
    user.last_login = None
    user.erased_at = now
    user.set_unusable_password()
    user.save(
        update_fields=[
            "email",
            "pending_email",
            "full_name",
            "address",
            "marketing_opt_in",
            "is_active",
            "last_login",
            "erased_at",
            "password",
        ]
    )
    api_tokens_revoke_all(user=user)
    SecurityEvent.objects.filter(user=user).delete()  # addresses of their sign-ins go too
    # Endpoint URLs and descriptions are the customer's own text; deliveries and attempts go with them.
    WebhookEndpoint.objects.filter(owner=user).delete()
    AccessGrant.objects.filter(asset__owner=user).exclude(justification="").update(justification="")


def _mail_files_erase_after_commit(
    recipient: str, *, earlier_email_digests: Mapping[str, Sequence[EmailPeriod]] | None = None
) -> None:
    """Once the erasure is committed (and its receipts mailed: callbacks run in the order they were added),
    the messages addressed to the customer in demo mode's mail files go (lab/customer_data/mail_files.py): the
    file backend's plaintext copies of what the lab sent them, the shipping address, carrier, tracking number
    and receipt links among it. Before, they stayed for good. An account's earlier addresses' messages go too,
    by their digests, those written while the account had the address (`earlier_email_digests`, each
    digest's periods): before, what was mailed to the address it had before an e-mail change was kept, and
    then every message to it, its next holder's too. Robust: the erasure is done, and its answer carries the
    receipts' links, whatever the disk says.

    A named function, not a `partial`: Django's robust hook logs a failure by the callable's `__qualname__`,
    which a partial lacks (the AttributeError then escaped after the commit: a 500, and the hooks after it
    never ran). The failure is logged here, by its type only: an OSError's text names the mail file, and the
    address is in its name or its contents."""
    if not recipient and not earlier_email_digests:
        return
    earlier = dict(earlier_email_digests or {})

    def mail_files_erase_logged() -> None:
        try:
            mail_files_erase(email=recipient, earlier_email_digests=earlier)
        except Exception as error:
            logger.error("mail files not erased after an erasure error=%s", type(error).__name__)

    transaction.on_commit(mail_files_erase_logged, robust=True)


def account_erase(
    *, user: User, password: str, request_id: str = "", client_ip: str | None = None
) -> ErasureResult:
    """Erase the customer's personal data; the password confirms it is really them (a token alone is not
    enough for something that cannot be undone). The password is counted and limited as a sign-in from
    `client_ip` (429 `sign_in_locked`): checked on its own, a stolen token could guess it without end."""
    _refuse_staff(user)
    if not password or not password_confirm(
        user=user, password=password, client_ip=client_ip, confirms="erasure"
    ):
        raise PermissionDenied(AccountError.WRONG_PASSWORD, "The password is not correct.")
    return _account_erase(user=user, request_id=request_id, confirmed_password=user.password)


def account_erase_again(*, user: User, request_id: str = "") -> ErasureResult:
    """The erasure of an account the erasure log says was erased, found un-erased in the database after a
    restore from a backup (`manage.py erasures_reapply`): the same erasure as DELETE me, the log standing for
    the password the customer confirmed it with then. Refused, as DELETE me is, while the restored database
    shows one of its orders open or its money unsettled."""
    _refuse_staff(user)
    return _account_erase(user=user, request_id=request_id, confirmed_password=None)


def _refuse_staff(user: User) -> None:
    if is_staff_member(user):
        raise PermissionDenied(
            CustomerDataError.STAFF_ACCOUNT_NOT_ERASABLE,
            "Staff accounts are closed by an administrator, not erased here.",
        )


def _account_erase(*, user: User, request_id: str, confirmed_password: str | None) -> ErasureResult:
    """The erasure itself. `confirmed_password`: the password hash the customer's password was checked
    against, which must still be the account's (None: no password was asked, see account_erase_again)."""
    # Stripe is asked before any lock is taken: a slow answer holds no row the customer's orders need.
    paid_at_stripe = _paid_at_stripe(Order.objects.filter(customer=user).order_by("pk"))
    with transaction.atomic():
        # The customer's photos first, then the account: the order a new order takes them in (its quote locks
        # its photos in key order; its foreign key takes the account's row at COMMIT, Django's constraints
        # being deferred). Account first, an order on its way and this erasure each held what the other
        # waited for, and PostgreSQL killed one as a deadlock (tests/privacy/test_erasure_races.py). Now they
        # queue: an order that holds a photo commits first and is cancelled here with the other unpaid ones;
        # one that comes later finds its photo purged.
        list(Asset.objects.select_for_update().filter(owner=user).order_by("pk").values_list("pk", flat=True))
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.erased_at is not None:
            raise Conflict(CustomerDataError.ALREADY_ERASED, "This account was erased already.")
        if confirmed_password is not None and locked.password != confirmed_password:
            # The password was checked against the row read when the request came in: a password change
            # committed since (the owner's, after a token was stolen) ends what the old password opened.
            raise PermissionDenied(AccountError.WRONG_PASSWORD, "The password is not correct.")
        _refuse_open_orders(locked)
        _refuse_paid_at_stripe(locked, paid_at_stripe=paid_at_stripe)
        _lock_webhooks(locked)
        cancelled = _cancel_unpaid(locked)
        purged = _purge_photos(locked)
        anonymized = _anonymize_orders(Order.objects.filter(customer=locked))
        now = timezone.now()
        # Read before it is wiped: the receipts' e-mail goes there once the erasure is committed. The digests
        # of the addresses the account had before, and when it had them, read before _clear_person deletes
        # the events that record them: the mail files' messages written to those then go too.
        recipient = locked.email
        earlier_email_digests = account_earlier_email_periods(user=locked)
        _clear_person(locked, now=now)
        audit_append(
            Entry(
                action="account.erase",
                actor_id=str(locked.public_id),
                actor_role="customer",
                outcome="done",
                rule=RULE_ERASURE,
                purpose="erasure",
                # Only the request id: an IP address in the append-only log would outlive the erasure.
                meta=RequestMeta(request_id=request_id),
            )
        )
        # Outside the database too, once committed, so a restore from an earlier backup cannot bring the
        # customer back for good (lab/customer_data/erasure_log.py): owed by a row of this transaction, which
        # the beat sweep appends if the hook fails or never runs.
        erasure_log_owed(kind=KIND_ACCOUNT, subject=str(locked.public_id), erased_at=now)
        receipts = receipts_issue_for_erasure(user=locked)
        transaction.on_commit(
            partial(
                receipts_email_after_erasure,
                receipt_ids=[receipt.pk for receipt in receipts],
                recipient=recipient,
            )
        )
        _mail_files_erase_after_commit(recipient, earlier_email_digests=earlier_email_digests)
    logger.info(
        "account erased user=%s photos=%d orders=%d cancelled=%d",
        locked.public_id,
        purged,
        anonymized,
        cancelled,
    )
    return ErasureResult(
        erased_at=now,
        photos_purged=purged,
        orders_anonymized=anonymized,
        orders_cancelled=cancelled,
        receipts=tuple(receipt_link(receipt) for receipt in receipts),
    )


@dataclass(frozen=True)
class GuestErasureResult:
    erased_at: datetime
    photos_purged: int
    order_cancelled: bool
    receipt: ReceiptLink | None


def guest_order_erase(*, order: Order, request_id: str = "") -> GuestErasureResult:
    """A guest's erasure of their order (DELETE orders/{ref}/personal-data with its X-Order-Token, the
    guest's only credential): photos destroyed, e-mail, address and messages removed, the order kept
    anonymised for accounting, a signed receipt in the answer and mailed to the address read before it was
    wiped. Refused while the order still has to be printed or shipped, or while its payment is disputed or
    waiting for a refund; unpaid, it is cancelled. An account's order is erased with the account (DELETE
    me)."""
    if not order.is_guest:
        raise Conflict(
            CustomerDataError.ERASE_THE_ACCOUNT,
            "This order belongs to an account: erasing the account (DELETE /api/v1/me) erases it.",
        )
    paid_at_stripe = _paid_at_stripe([order])  # before any lock, as for an account
    with transaction.atomic():
        # Its photos first, then the order: the order in which an order's quote and the account erasure take
        # them (see account_erase).
        photos = guest_order_photos(order=order)
        asset_ids = list(
            Asset.objects.select_for_update()
            .filter(pk__in=photos.values("pk"))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        locked = Order.objects.select_for_update().get(pk=order.pk)
        if locked.is_anonymized:
            raise Conflict(CustomerDataError.ALREADY_ERASED, "This order's personal data was erased already.")
        refusal = _blocked([locked], one=True, paid_at_stripe=paid_at_stripe)
        if refusal is not None:
            raise refusal
        cancelled = locked.status == OrderStatus.AWAITING_PAYMENT
        if cancelled:
            # No money has moved (checked above, at Stripe too): the PaymentIntent is cancelled after commit.
            order_cancel(order=locked, actor=None, actor_kind="guest")
        purged = _purge(asset_ids)
        recipient = locked.guest_email  # read before it is wiped: the receipt's e-mail goes there
        _anonymize_orders(Order.objects.filter(pk=locked.pk))  # its idempotency keys too
        # The staff's words on their grants for these photos, as for an account's (the audit log keeps ids).
        AccessGrant.objects.filter(asset_id__in=asset_ids).exclude(justification="").update(justification="")
        # The guest's consents name the order and the policy version only: kept, as proof of what was agreed.
        audit_append(
            Entry(
                action="order.erase",
                actor_id=None,
                actor_role="guest",
                outcome="done",
                rule=RULE_ERASURE,
                purpose="erasure",
                order_ref=locked.ref,
                meta=RequestMeta(request_id=request_id),
            )
        )
        now = timezone.now()
        erasure_log_owed(kind=KIND_GUEST_ORDER, subject=locked.ref, erased_at=now)  # as for an account
        receipt = receipt_issue(order=locked, reason=PrivacyReceipt.Reason.ERASED, mail=False)
        if receipt is not None and recipient:
            transaction.on_commit(
                partial(receipts_email_after_erasure, receipt_ids=[receipt.pk], recipient=recipient)
            )
        _mail_files_erase_after_commit(recipient)
    logger.info("guest order erased order=%s photos=%d cancelled=%s", locked.ref, purged, cancelled)
    return GuestErasureResult(
        erased_at=now,
        photos_purged=purged,
        order_cancelled=cancelled,
        receipt=receipt_link(receipt) if receipt is not None else None,
    )
