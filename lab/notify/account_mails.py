"""Sending the mails a change of an account owes its holder (lab.accounts' `AccountMail` rows): the token to
an address waiting for confirmation, the notice of a password or e-mail change to the address the account had.

A row is claimed before its mail goes, so a redelivered task or a sweep beside it sends it once; the task
("notify.account_mail_send") is the nudge, `account_mails_sweep` on beat finds what a lost message or a mail
server down left unsent, and finishes what is owed past its window (never sent, the address blanked). Logs
name the row, the account's id and the mail's kind, never an address.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone

from lab.accounts.email_change import email_change_tokens
from lab.accounts.models import AccountMail, User
from lab.lib.clock import database_now
from lab.lib.mail import MailNotSent, MailRefused, mail_send
from lab.notify.emails import reply_to

logger = logging.getLogger(__name__)

CONFIRM_PATH = "/api/v1/me/email/confirm"
SUBJECTS = {
    AccountMail.Kind.EMAIL_CONFIRMATION: "Confirm the new e-mail address of your account",
    AccountMail.Kind.PASSWORD_CHANGED_NOTICE: "The password of your account was changed",
    AccountMail.Kind.EMAIL_CHANGED_NOTICE: "The e-mail address of your account was changed",
}
# The change a notice's template tells of (accounts/email/account_changed.txt).
NOTICE_CHANGES = {
    AccountMail.Kind.PASSWORD_CHANGED_NOTICE: "password_changed",
    AccountMail.Kind.EMAIL_CHANGED_NOTICE: "email_changed",
}

# A worker that claimed a mail and died is replaced after this long; sending takes seconds.
CLAIM_LEASE = timedelta(minutes=10)
# The sweep leaves a mail this long to its task (sent on commit) before it sends it itself.
SWEEP_GRACE = timedelta(minutes=2)
# Mails owed longer than this are not sent (a week-old notice misleads): the sweep finishes them, `failed`
# with `window_passed`, so a notice keeps the address the account had no longer than this.
SWEEP_WINDOW = timedelta(days=7)
WINDOW_PASSED = "window_passed"
# After this many sends in a row failed for want of a mail server, the sweep leaves the rest for the next.
SWEEP_FAILURES_IN_A_ROW = 3
SWEEP_TIME_BUDGET_SECONDS = 120.0  # well inside the sweep task's time limit (workers/notify_tasks.py)


def account_mail_send(*, account_mail_id: int) -> bool:
    """Send one owed mail once (True when this call sent it): claimed first, so a redelivered task finds it
    taken or done. A mail server unreachable raises MailNotSent (the task retries with backoff, the sweep
    after it); one that refuses the message records it `refused`, never retried."""
    mail = _claim(account_mail_id=account_mail_id)
    if mail is None:
        logger.info("account mail already handled account_mail=%s", account_mail_id)
        return False
    user = User.objects.get(pk=mail.user_id)
    if (skip := _skip_reason(mail=mail, user=user)) is not None:
        _finish(mail, status=AccountMail.Status.SKIPPED, skip_reason=skip)
        logger.info("account mail skipped account_mail=%s user=%s reason=%s", mail.pk, user.pk, skip)
        return False
    message = _message(mail=mail, user=user)
    try:
        mail_send(message)
    except MailRefused as error:
        _finish(mail, status=AccountMail.Status.REFUSED, attempted=True)
        logger.warning(
            "account mail refused account_mail=%s user=%s mail=%s error=%s",
            mail.pk,
            user.pk,
            mail.kind,
            error,
        )
        return False
    except MailNotSent as error:  # an OSError: the task retries, the sweep takes up the failed row
        AccountMail.objects.filter(pk=mail.pk).update(
            status=AccountMail.Status.FAILED, send_attempts=F("send_attempts") + 1
        )
        logger.warning(
            "account mail not sent account_mail=%s user=%s mail=%s error=%s",
            mail.pk,
            user.pk,
            mail.kind,
            error,
        )
        raise
    _finish(mail, status=AccountMail.Status.SENT, attempted=True)
    logger.info("account mail sent account_mail=%s user=%s mail=%s", mail.pk, user.pk, mail.kind)
    return True


def account_mails_sweep() -> int:
    """Send the account mails whose task message was lost, whose sending failed after the task's retries (a
    mail server down), or whose worker died holding the claim; the number sent."""
    now = database_now()  # claims are judged on the clock every host shares (lab/lib/clock.py)
    _past_window_finish(now=now)
    owed = (
        AccountMail.objects.filter(created_at__gte=now - SWEEP_WINDOW, created_at__lt=now - SWEEP_GRACE)
        .filter(
            Q(status__in=(AccountMail.Status.PENDING, AccountMail.Status.FAILED))
            | Q(status=AccountMail.Status.SENDING, claimed_at__lt=now - CLAIM_LEASE)
        )
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )
    sent = failures_in_a_row = 0
    started = time.monotonic()
    for index, account_mail_id in enumerate(list(owed[:500])):
        if index and time.monotonic() - started > SWEEP_TIME_BUDGET_SECONDS:
            logger.info("account mails sweep out of time sent=%s: the rest is for the next sweep", sent)
            break
        try:
            was_sent = account_mail_send(account_mail_id=account_mail_id)
        except MailNotSent:
            failures_in_a_row += 1
            if failures_in_a_row == SWEEP_FAILURES_IN_A_ROW:
                logger.warning("account mails sweep: the mail server is down; the rest waits")
                break
            continue
        failures_in_a_row = 0
        sent += was_sent
    return sent


def _past_window_finish(*, now: datetime) -> None:
    """Finish the mails still owed past SWEEP_WINDOW: never to be sent, so the address a notice held goes.
    Before, such a row stayed `failed` with the account's earlier address for good."""
    finished = (
        AccountMail.objects.filter(created_at__lt=now - SWEEP_WINDOW)
        .filter(
            Q(status__in=(AccountMail.Status.PENDING, AccountMail.Status.FAILED), skip_reason="")
            | Q(status=AccountMail.Status.SENDING, claimed_at__lt=now - CLAIM_LEASE)
        )
        .update(status=AccountMail.Status.FAILED, skip_reason=WINDOW_PASSED, recipient="")
    )
    if finished:
        logger.info("account mails past the sweep's window finished count=%s", finished)


def _claim(*, account_mail_id: int) -> AccountMail | None:
    now = database_now()
    # A mail past the window is not sent, by a late task either: the sweep finishes it.
    claimable = (
        Q(status__in=(AccountMail.Status.PENDING, AccountMail.Status.FAILED))
        | Q(status=AccountMail.Status.SENDING, claimed_at__lt=now - CLAIM_LEASE)
    ) & Q(created_at__gte=now - SWEEP_WINDOW)
    taken = AccountMail.objects.filter(claimable, pk=account_mail_id).update(
        status=AccountMail.Status.SENDING, claimed_at=now
    )
    return AccountMail.objects.select_related("security_event").get(pk=account_mail_id) if taken else None


def _skip_reason(*, mail: AccountMail, user: User) -> str | None:
    """Why the mail is no longer to be sent (None: it is): an erased account gets none; a confirmation only
    while an address waits, no later one was asked for (whose own row mails it) and the password did not
    change since it was asked for."""
    if user.erased_at is not None:
        return "account_erased"
    if mail.kind != AccountMail.Kind.EMAIL_CONFIRMATION:
        return None if mail.recipient else "no_recipient"
    # Its token is made now, from the password as it is: after a change (perhaps the owner's, to shut out
    # whoever asked for the address) it would be valid, whatever the change left in `pending_email`. "After"
    # in the order the changes were made, not by their hosts' clocks (a web host running ahead dated a
    # password change after the address asked for next, and its token never went): each change writes its
    # mails under the account's row lock, so a later change's rows have the higher ids.
    if AccountMail.objects.filter(
        user_id=user.pk, kind=AccountMail.Kind.PASSWORD_CHANGED_NOTICE, pk__gt=mail.pk
    ).exists():
        return "password_changed_since"
    if not user.pending_email:
        return "no_address_waiting"  # confirmed, or dropped by a password change, since it was asked for
    later = AccountMail.objects.filter(user_id=user.pk, kind=mail.kind, pk__gt=mail.pk)
    return "later_address_asked" if later.exists() else None


def _message(*, mail: AccountMail, user: User) -> EmailMessage:
    if mail.kind == AccountMail.Kind.EMAIL_CONFIRMATION:
        # Made now, from the account as it is: valid until a later password or e-mail change voids it.
        template, recipient = "email_confirm", user.pending_email
        context: dict[str, object] = {
            "token": email_change_tokens.make_token(user),
            "confirm_url": f"{settings.SITE_URL.rstrip('/')}{CONFIRM_PATH}",
            "hours": settings.LAB_EMAIL_CONFIRM_HOURS,
        }
    else:
        changed_at = mail.security_event.created_at if mail.security_event else mail.created_at
        template, recipient = "account_changed", mail.recipient
        context = {
            "change": NOTICE_CHANGES[AccountMail.Kind(mail.kind)],
            "changed_at": changed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
    return EmailMessage(
        subject=SUBJECTS[AccountMail.Kind(mail.kind)],
        body=render_to_string(
            f"accounts/email/{template}.txt",
            {**context, "lab_name": settings.LAB_NAME, "lab_contact": settings.LAB_CONTACT},
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient],
        reply_to=reply_to(),
        headers={"Auto-Submitted": "auto-generated"},
    )


def _finish(mail: AccountMail, *, status: str, skip_reason: str = "", attempted: bool = False) -> None:
    # Done: the address a notice held is not kept past its mail.
    AccountMail.objects.filter(pk=mail.pk).update(
        status=status,
        skip_reason=skip_reason,
        recipient="",
        sent_at=timezone.now() if status == AccountMail.Status.SENT else None,
        send_attempts=F("send_attempts") + (1 if attempted else 0),
    )
