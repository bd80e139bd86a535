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

The orders that hold up an erasure, and the 409 that names them, are found in
lab/customer_data/erasure_refusals.py (the unpaid orders' payments read at Stripe before any lock, in
lab/customer_data/erasure_payments.py); what it blanks in the orders it keeps, in
lab/customer_data/erasure_orders.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from django.db import transaction
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
from lab.customer_data.erasure_orders import _anonymize_orders
from lab.customer_data.erasure_payments import _paid_at_stripe
from lab.customer_data.erasure_refusals import _blocked, _refuse_open_orders, _refuse_paid_at_stripe
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
from lab.customer_data.retention_rules import RULE_ERASURE
from lab.lib.errors import Conflict, PermissionDenied
from lab.notify.models import WebhookDelivery, WebhookEndpoint
from lab.orders.cancellation import order_cancel
from lab.orders.models import Asset, Order
from lab.orders.selectors import guest_order_photos
from lab.orders.states import OrderStatus

logger = logging.getLogger(__name__)


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
