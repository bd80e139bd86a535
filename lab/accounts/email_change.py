"""An e-mail change's confirmation token, and the mails that tell an account's holder of its changes: the
token to the new address, a notice to the address the account had.

The token is Django's password-reset token with its own salt and the account's state in its hash: its
password hash, e-mail and the address waiting for confirmation (`User.pending_email`). Confirming changes
the e-mail (and clears the waiting address), a password change changes the hash, another new address
the waiting one: each voids every token made before. It expires after `LAB_EMAIL_CONFIRM_HOURS`.

Each mail owed is an `AccountMail` row written in the change's transaction; lab.notify.account_mails (a
layer above this one) builds and sends it from a task nudged on commit, and its beat sweep sends what a lost
message or a mail server down left unsent: no mail server is waited for inside a request.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.db import transaction
from django.utils.crypto import constant_time_compare
from django.utils.http import base36_to_int

from lab.accounts.errors import AccountError
from lab.accounts.models import AccountMail, SecurityEvent, User
from lab.lib.tasks import enqueue

PASSWORD_CHANGED, EMAIL_CHANGED = "password_changed", "email_changed"
NOTICE_KINDS = {
    PASSWORD_CHANGED: AccountMail.Kind.PASSWORD_CHANGED_NOTICE,
    EMAIL_CHANGED: AccountMail.Kind.EMAIL_CHANGED_NOTICE,
}
# Sent by name (workers/notify_tasks.py), as lab/ never imports workers/.
ACCOUNT_MAIL_TASK = "notify.account_mail_send"


class EmailChangeTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "lab.accounts.email_change.EmailChangeTokenGenerator"

    def _make_hash_value(self, user: User, timestamp: int) -> str:
        # Not the last sign-in (the password reset's): signing in to confirm must not void the token.
        # And the latest request for a new address (its confirmation mail's id): asking for X, then Y, then X
        # again made the first X token valid again (the same password, e-mail and waiting address).
        request = (
            AccountMail.objects.filter(user_id=user.pk, kind=AccountMail.Kind.EMAIL_CONFIRMATION)
            .order_by("-pk")
            .values_list("pk", flat=True)
            .first()
        )
        return f"{user.pk}|{user.password}|{timestamp}|{user.email}|{user.pending_email}|{request}"

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


def _owed(*, user: User, kind: str, security_event: SecurityEvent | None = None, recipient: str = "") -> None:
    mail = AccountMail.objects.create(
        user=user, kind=kind, security_event=security_event, recipient=recipient
    )

    def nudge() -> None:
        enqueue(ACCOUNT_MAIL_TASK, account_mail_id=mail.pk)

    transaction.on_commit(nudge, robust=True)


def change_notice_send_after_commit(
    *, user: User, recipient: str, change: str, security_event: SecurityEvent
) -> None:
    """Owe the address the account had (`recipient`) the notice that its password or e-mail changed (the
    `security_event` of the change): recorded in the change's transaction, sent by a task after commit."""
    if not recipient or user.erased_at is not None:
        return
    _owed(user=user, kind=NOTICE_KINDS[change], security_event=security_event, recipient=recipient)


def confirmation_send_after_commit(*, user: User) -> None:
    """Owe the address waiting for confirmation (`user.pending_email`) its token: recorded in the change's
    transaction, sent by a task after commit, the token made then from the account as it is."""
    _owed(user=user, kind=AccountMail.Kind.EMAIL_CONFIRMATION)
