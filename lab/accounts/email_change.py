"""An e-mail change's confirmation token, and the mails that tell an account's holder of its changes: the
token to the new address, a notice to the address the account had.

The token is Django's password-reset token with its own salt and the account's state in its hash: its
password hash, e-mail and the address waiting for confirmation (`User.pending_email`). Confirming changes
the e-mail (and clears the waiting address), a password change changes the hash, another new address
the waiting one: each voids every token made before. It expires after `LAB_EMAIL_CONFIRM_HOURS`.

lab.notify sits above lab.accounts (the layers contract): these mails are built here, from this app's
templates, and sent through lab.lib.mail after the change commits (a failure is logged by the account's id,
never an address: the holder asks again, or hears of the change by the next mail).
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.utils import parseaddr

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import transaction
from django.template.loader import render_to_string
from django.utils.crypto import constant_time_compare
from django.utils.http import base36_to_int

from lab.accounts.errors import AccountError
from lab.accounts.models import User
from lab.lib.mail import MailNotSent, mail_send

logger = logging.getLogger(__name__)

CONFIRM_PATH = "/api/v1/me/email/confirm"
PASSWORD_CHANGED, EMAIL_CHANGED = "password_changed", "email_changed"
NOTICE_SUBJECTS = {
    PASSWORD_CHANGED: "The password of your account was changed",
    EMAIL_CHANGED: "The e-mail address of your account was changed",
}
CONFIRMATION_SUBJECT = "Confirm the new e-mail address of your account"


class EmailChangeTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "lab.accounts.email_change.EmailChangeTokenGenerator"

    def _make_hash_value(self, user: User, timestamp: int) -> str:
        # Not the last sign-in (the password reset's): signing in to confirm must not void the token.
        return f"{user.pk}|{user.password}|{timestamp}|{user.email}|{user.pending_email}"

    def refusal(self, user: User, token: str) -> AccountError | None:
        """Why `token` does not confirm `user`'s waiting address, or None when it does. Django's check_token
        tells no expired token from a wrong one, and reads PASSWORD_RESET_TIMEOUT: so this one."""
        if not user.pending_email or not token or token.count("-") != 1:
            return AccountError.EMAIL_CONFIRMATION_INVALID
        try:
            made_at = base36_to_int(token.split("-")[0])
        except ValueError:
            return AccountError.EMAIL_CONFIRMATION_INVALID
        if not any(
            # Django's own comparison, over the current secret and its fallbacks (a key rotation).
            constant_time_compare(self._make_token_with_timestamp(user, made_at, secret), token)
            for secret in [self.secret, *self.secret_fallbacks]
        ):
            return AccountError.EMAIL_CONFIRMATION_INVALID
        if self._num_seconds(self._now()) - made_at > settings.LAB_EMAIL_CONFIRM_HOURS * 3600:
            return AccountError.EMAIL_CONFIRMATION_EXPIRED
        return None


email_change_tokens = EmailChangeTokenGenerator()


def _reply_to() -> list[str]:
    # As lab.notify.emails.reply_to (a layer above this one): LAB_CONTACT when it is an e-mail address.
    contact = settings.LAB_CONTACT.strip()
    try:
        validate_email(parseaddr(contact)[1])
    except ValidationError:
        return []
    return [contact]


def _message(*, subject: str, template: str, recipient: str, context: dict[str, object]) -> EmailMessage:
    return EmailMessage(
        subject=subject,
        body=render_to_string(
            f"accounts/email/{template}.txt",
            {**context, "lab_name": settings.LAB_NAME, "lab_contact": settings.LAB_CONTACT},
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient],
        reply_to=_reply_to(),
        headers={"Auto-Submitted": "auto-generated"},
    )


def _send_after_commit(*, message: EmailMessage, user_id: int, kind: str) -> None:
    def account_mail_send() -> None:
        try:
            mail_send(message)
        except MailNotSent as error:
            logger.warning("account mail not sent user=%s mail=%s error=%s", user_id, kind, error)
        else:
            logger.info("account mail sent user=%s mail=%s", user_id, kind)

    transaction.on_commit(account_mail_send, robust=True)


def change_notice_send_after_commit(*, user: User, recipient: str, change: str, changed_at: datetime) -> None:
    """Tell the address the account had (`recipient`) that its password or e-mail changed: when, and what to
    do if it was not them. Neither the new address nor anything secret: the mailbox may be the thief's to
    read no longer, or the owner's."""
    if not recipient or user.erased_at is not None:
        return
    message = _message(
        subject=NOTICE_SUBJECTS[change],
        template="account_changed",
        recipient=recipient,
        context={"change": change, "changed_at": changed_at.strftime("%Y-%m-%d %H:%M UTC")},
    )
    _send_after_commit(message=message, user_id=user.pk, kind=f"{change}_notice")


def confirmation_send_after_commit(*, user: User) -> None:
    """Mail the address waiting for confirmation (`user.pending_email`, as saved) its token. Made from the
    account as this change leaves it: its new password hash too, when the same change set one."""
    message = _message(
        subject=CONFIRMATION_SUBJECT,
        template="email_confirm",
        recipient=user.pending_email,
        context={
            "token": email_change_tokens.make_token(user),
            "confirm_url": f"{settings.SITE_URL.rstrip('/')}{CONFIRM_PATH}",
            "hours": settings.LAB_EMAIL_CONFIRM_HOURS,
        },
    )
    _send_after_commit(message=message, user_id=user.pk, kind="email_confirmation")
