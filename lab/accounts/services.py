"""Writes for people: registration with the age gate and consent, My Account updates, staff seeding."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from lab.accounts.email_change import (
    EMAIL_CHANGED,
    PASSWORD_CHANGED,
    change_notice_send_after_commit,
    confirmation_send_after_commit,
    email_change_tokens,
)
from lab.accounts.errors import AccountError
from lab.accounts.models import Consent, PolicyVersion, SecurityEvent, User
from lab.accounts.roles import Role, is_staff_member, user_roles
from lab.accounts.seal import account_seal_of, account_seal_required, account_seal_set
from lab.accounts.signin import PREVIOUS_EMAIL_DIGEST, email_digest, password_confirm
from lab.accounts.tokens import api_tokens_revoke_all
from lab.lib.errors import Conflict, DomainError, PermissionDenied

MINIMUM_AGE = 13
SHIPPED_POLICY_VERSION = "1.0"
SHIPPED_POLICY = Path(__file__).resolve().parent / "policy" / "privacy-policy-1.0.txt"


class UnderAge(DomainError):
    """COPPA: raised before anything about the person is stored or logged."""

    def __init__(self) -> None:
        super().__init__(
            AccountError.UNDER_MINIMUM_AGE, "We cannot take an account or order from anyone under 13."
        )


def age_on(*, birth_date: date, today: date) -> int:
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


def age_gate_check(*, birth_date: date) -> None:
    if age_on(birth_date=birth_date, today=timezone.now().date()) < MINIMUM_AGE:
        raise UnderAge()


def policy_publish(*, version: str, text: str) -> PolicyVersion:
    policy, _ = PolicyVersion.objects.get_or_create(
        version=version, defaults={"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    )
    return policy


def policy_current() -> PolicyVersion:
    policy = PolicyVersion.objects.order_by("-published_at", "-pk").first()
    if policy is None:
        # Migrations publish the shipped version; a database emptied since (a restore, a test flush) gets it
        # back instead of refusing every registration.
        policy = policy_publish(version=SHIPPED_POLICY_VERSION, text=SHIPPED_POLICY.read_text())
    return policy


def policy_agreement_check(*, version: str) -> PolicyVersion:
    current = policy_current()
    if version != current.version:
        raise DomainError(
            AccountError.POLICY_VERSION_MISMATCH,
            f"Please read and agree to the current privacy policy (version {current.version}).",
            current_version=current.version,
        )
    return current


def customer_register(
    *,
    email: str,
    password: str,
    full_name: str,
    address: dict[str, Any],
    birth_date: date,
    policy_version: str,
    marketing_opt_in: bool = False,
) -> User:
    age_gate_check(birth_date=birth_date)  # first: an under-13 refusal must leave nothing behind
    policy = policy_agreement_check(version=policy_version)
    try:
        validate_password(password, user=User(email=email, full_name=full_name))
    except ValidationError as error:
        raise DomainError(AccountError.WEAK_PASSWORD, " ".join(error.messages)) from error
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email, password, full_name=full_name, address=address, marketing_opt_in=marketing_opt_in
            )
            user.groups.add(Group.objects.get_or_create(name=Role.CUSTOMER)[0])
            Consent.objects.create(user=user, kind=Consent.Kind.PRIVACY_POLICY, policy_version=policy)
            if marketing_opt_in:
                Consent.objects.create(user=user, kind=Consent.Kind.MARKETING, policy_version=policy)
    except IntegrityError as error:
        raise Conflict(
            AccountError.EMAIL_TAKEN, "An account with this e-mail address already exists."
        ) from error
    return user


def customer_update(
    *,
    user: User,
    full_name: str | None = None,
    email: str | None = None,
    address: dict[str, Any] | None = None,
    marketing_opt_in: bool | None = None,
    current_password: str | None = None,
    new_password: str | None = None,
    client_ip: str | None = None,
) -> User:
    """My Account's change. A password or an e-mail change asks for the current password, counted and
    limited as a sign-in (`lab.accounts.signin.password_confirm`, under the e-mail the account had): a token
    alone changed the e-mail, and with it who can sign in (the owner no longer could, to change the password
    and end the token), unrecorded, and the account's count of failed passwords started again under the new
    address. A new e-mail waits (`pending_email`) until the token mailed to it comes back
    (`customer_email_confirm`): before, it was the account's at once, a typo or a thief's address taking the
    account's mail and sign-in without a word to the owner. A password change is mailed to the account's
    address once committed. Each change is a `SecurityEvent`. A password change seals the account again
    (`lab.accounts.seal`) only if its seal held: one changed in the database alone (a role, a password hash
    written there) is refused on the record, not made the lab's own by the customer's (or a token thief's)
    change. The address is the one for orders to come: an order keeps the address it was placed with
    (lab.orders.address), and the API's answer names the open orders that keep theirs."""
    if is_staff_member(user):
        # A lab admin keeps staff accounts (lab/staff/admin/); here a staff session could seal a role a
        # database administrator granted (the API accepts the /lab/ session for the auditors' console).
        raise PermissionDenied(
            AccountError.STAFF_ACCOUNT_NOT_A_CUSTOMER,
            "My Account is for customers; a lab admin changes staff accounts in the lab admin.",
        )
    fields: list[str] = []
    password_read: str | None = None  # the hash the current password was checked against
    previous_email = user.email
    changes_email = email is not None and email.lower() != user.email
    if new_password is not None or changes_email:
        # Before the e-mail is looked up: whether another account has it (409) is no answer to a token alone.
        confirms = "password_change" if new_password is not None else "email_change"
        if not current_password or not password_confirm(
            user=user, password=current_password, client_ip=client_ip, confirms=confirms
        ):
            raise PermissionDenied(AccountError.WRONG_PASSWORD, "The current password is not correct.")
        password_read = user.password
    if new_password is not None:
        # The roles read once: the seal is checked and made again on the same ones, so a role written in
        # the database meanwhile is never sealed (the new seal then fails, and the account is refused).
        roles = set(user_roles(user))
        account_seal_required(
            user, client_ip=client_ip, refused="its password is not changed here", roles=roles
        )
        # Against the account as this change leaves it (its new name, its new address) and as it is: before,
        # the old ones only, so a password like the address sent with it passed.
        as_it_will_be = User(
            email=email.lower() if email is not None and changes_email else user.email,
            full_name=full_name if full_name is not None else user.full_name,
        )
        try:
            for candidate in (as_it_will_be, user):
                validate_password(new_password, user=candidate)
        except ValidationError as error:
            raise DomainError(AccountError.WEAK_PASSWORD, " ".join(error.messages)) from error
        user.set_password(new_password)
        user.account_seal = account_seal_of(user, roles=roles)
        fields += ["password", "account_seal"]
    if full_name is not None:
        user.full_name = full_name
        fields.append("full_name")
    if email is not None and changes_email:
        if User.objects.filter(email=email.lower()).exclude(pk=user.pk).exists():
            raise Conflict(AccountError.EMAIL_TAKEN, "An account with this e-mail address already exists.")
        # Waits for the token mailed to it (lab/accounts/email_change.py); one asked for before is replaced.
        user.pending_email = email.lower()
        fields.append("pending_email")
    elif new_password is not None and user.pending_email:
        # The password changed (perhaps to shut out whoever asked for it): the address waiting goes, and its
        # token no longer works anyway.
        user.pending_email = ""
        fields.append("pending_email")
    if address is not None:
        user.address = address
        fields.append("address")
    # No unique column is written here: the new address waits in `pending_email` (not unique), and is taken
    # up by customer_email_confirm, which answers a race to it with email_taken.
    return _customer_save(
        user=user,
        fields=fields,
        marketing_opt_in=marketing_opt_in,
        password_read=password_read,
        client_ip=client_ip,
        previous_email=previous_email,
    )


def _customer_save(
    *,
    user: User,
    fields: list[str],
    marketing_opt_in: bool | None,
    password_read: str | None,
    client_ip: str | None = None,
    previous_email: str = "",
) -> User:
    with transaction.atomic():
        # The row's lock first, FOR UPDATE: what the UPDATE below takes anyway. A weaker lock taken first
        # (FOR KEY SHARE) and upgraded would let two changes at once each hold it and wait for the other: a
        # deadlock (test_two_password_changes_that_wait_on_one_lock_end_one_changed_one_refused_no_deadlock).
        locked = (
            User.objects.select_for_update()
            .only("pk", "password", "erased_at", "marketing_opt_in", "pending_email")
            .get(pk=user.pk)
        )
        if locked.erased_at is not None:
            # Sent while the account was being erased: it waited for the erasure, and would write the name,
            # address and e-mail back over the erased row (tests/privacy/test_erasure_races.py).
            raise Conflict(AccountError.ACCOUNT_ERASED, "This account was erased.")
        if password_read is not None and locked.password != password_read:
            # The current password was checked against the row read when the request came in: it must still be
            # the account's under the row's lock, or two changes at once would both pass with the old password
            # and the last to commit would win over the other, which was told it succeeded.
            raise PermissionDenied(AccountError.WRONG_PASSWORD, "The current password is not correct.")
        # Compared with the row under its lock, not the one read when the request came in: a change committed
        # since (another request's opt-in) made a withdrawal look like no change, told saved and not stored.
        if marketing_opt_in is not None and marketing_opt_in != locked.marketing_opt_in:
            user.marketing_opt_in = marketing_opt_in
            fields.append("marketing_opt_in")
            Consent.objects.create(
                user=user,
                kind=Consent.Kind.MARKETING,
                granted=marketing_opt_in,
                policy_version=policy_current(),
            )
        # A password change drops the address waiting as the row holds it under the lock: one asked for and
        # committed after this request read the account (a thief with the old password) was kept, and its
        # token, made when mailed, from the new password, confirmed it
        # (test_a_password_change_racing_a_new_address_leaves_no_token_for_it_made_from_the_new_password).
        if "password" in fields and "pending_email" not in fields and locked.pending_email:
            user.pending_email = ""
            fields.append("pending_email")
        if fields:
            user.save(update_fields=fields)
        if "password" in fields:
            # Whoever held a token may be the reason for the change: every token ends with the old password,
            # and the webhook endpoints any token registered stop (the owner turns on those they know).
            ended = account_access_end(user=user)
            event = SecurityEvent.objects.create(
                kind=SecurityEvent.Kind.PASSWORD_CHANGED,
                channel=SecurityEvent.Channel.API,
                user=user,
                client_ip=client_ip,  # as every event of the account's log: who changed it, from where
                detail=ended.detail(),
            )
            change_notice_send_after_commit(
                user=user, recipient=previous_email, change=PASSWORD_CHANGED, security_event=event
            )
        if "pending_email" in fields and user.pending_email:
            confirmation_send_after_commit(user=user)
    return user


def customer_email_confirm(*, user: User, token: str, client_ip: str | None = None) -> User:
    """The new address asked for in My Account (`pending_email`) becomes the account's e-mail: `token` is the
    one mailed to it, so whoever asked reads its mail. Refused (400) when the token is wrong, was used, or was
    made before a later password or e-mail change (`email_confirmation_invalid`), or is older than
    LAB_EMAIL_CONFIRM_HOURS (`email_confirmation_expired`); 409 `email_taken` when another account took the
    address meanwhile. The address the account had is told, once committed."""
    if is_staff_member(user):
        raise PermissionDenied(
            AccountError.STAFF_ACCOUNT_NOT_A_CUSTOMER,
            "My Account is for customers; a lab admin changes staff accounts in the lab admin.",
        )
    try:
        with transaction.atomic():
            # Checked against the row under its lock: a password change or another new address committed
            # since the request came in voids the token.
            locked = User.objects.select_for_update().get(pk=user.pk)
            if locked.erased_at is not None:
                raise Conflict(AccountError.ACCOUNT_ERASED, "This account was erased.")
            refusal = email_change_tokens.refusal(locked, token)
            if refusal is AccountError.EMAIL_CONFIRMATION_EXPIRED:
                raise DomainError(
                    refusal, "This confirmation has expired: change the e-mail in My Account again."
                )
            if refusal is not None:
                raise DomainError(
                    refusal,
                    "This confirmation is not valid: it was used, or the account's password or e-mail changed"
                    " since it was sent.",
                )
            if User.objects.filter(email=locked.pending_email).exclude(pk=locked.pk).exists():
                raise Conflict(
                    AccountError.EMAIL_TAKEN, "An account with this e-mail address already exists."
                )
            previous_email = locked.email
            locked.email, locked.pending_email = locked.pending_email, ""
            locked.save(update_fields=["email", "pending_email"])
            # Neither address, but the earlier one's digest, as a failed sign-in with no account records it:
            # those typed with the earlier address stay the account's to export and erase
            # (signin.sign_ins_with_addresses_of); without it they dropped out of the export and outlived the
            # erasure. The log names the account, and an erasure deletes it with the account.
            event = SecurityEvent.objects.create(
                kind=SecurityEvent.Kind.EMAIL_CHANGED,
                channel=SecurityEvent.Channel.API,
                user=locked,
                client_ip=client_ip,
                detail={PREVIOUS_EMAIL_DIGEST: email_digest(previous_email)},
            )
            change_notice_send_after_commit(
                user=locked, recipient=previous_email, change=EMAIL_CHANGED, security_event=event
            )
    except IntegrityError as error:
        # Taken between the check and the save (another request, another process): the same answer.
        raise Conflict(
            AccountError.EMAIL_TAKEN, "An account with this e-mail address already exists."
        ) from error
    return locked


@dataclass(frozen=True)
class AccessEnded:
    tokens_revoked: int
    webhook_endpoints_deactivated: int

    def detail(self) -> dict[str, int]:
        """For the event's detail; the endpoints' count only when there were any (as it was before)."""
        detail = {"tokens_revoked": self.tokens_revoked}
        if self.webhook_endpoints_deactivated:
            detail["webhook_endpoints_deactivated"] = self.webhook_endpoints_deactivated
        return detail


def account_access_end(*, user: User, webhooks: bool = True) -> AccessEnded:
    """End what anyone holding one of the account's API tokens set up: every token is revoked and (`webhooks`)
    every active webhook endpoint of the account is deactivated, for a password change or an operator's
    reset (`manage.py staff_account_seal`). Any token could register an endpoint, and an endpoint goes on
    receiving the account's tracking numbers and hold questions after the token that made it ends; the owner
    turns on again the ones they recognise (PATCH `webhook-endpoints/{id}` `is_active`). Call it in the
    change's transaction; the caller records it.

    lab.notify sits above lab.accounts (the layers contract): its endpoints are reached through the
    account's reverse relation, with no import of it."""
    revoked = api_tokens_revoke_all(user=user)
    deactivated = 0
    if webhooks:
        deactivated = user.webhook_endpoints.filter(is_active=True).update(
            is_active=False, updated_at=timezone.now()
        )
    return AccessEnded(tokens_revoked=revoked, webhook_endpoints_deactivated=deactivated)


def staff_user_create(*, email: str, password: str, full_name: str, roles: list[str]) -> User:
    user, created = User.objects.get_or_create(email=email.lower(), defaults={"full_name": full_name})
    if created:
        user.set_password(password)
        user.save(update_fields=["password"])
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    user._lab_roles = None  # type: ignore[attr-defined]
    account_seal_set(user)
    return user


def roles_ensure() -> None:
    for role in Role:
        Group.objects.get_or_create(name=role)
