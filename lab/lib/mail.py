"""Sending one e-mail, with failures that carry no personal data.

smtplib's errors name the recipients (`SMTPRecipientsRefused` is a dict of addresses to the server's answers,
which quote the address again), and Celery logs the exception of every retry and of the last failure, with
its traceback. So a send that fails raises `MailNotSent` (an OSError, as the tasks retry on those) naming only
the kind of failure and the server's reply code, and without the original as its cause or context.
"""

from __future__ import annotations

import smtplib

from django.core.mail import EmailMessage

# The mail server answered, and refused this one message (its recipients, sender or content).
_REFUSALS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


class MailNotSent(OSError):
    """The message was not sent: the mail server could not be reached or did not finish the exchange."""


class MailRefused(MailNotSent):
    """The mail server answered and refused this message; others may still go."""


def _reply_code(error: OSError) -> str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = sorted({str(code) for code, _ in error.recipients.values()})
        return ",".join(codes)
    code = getattr(error, "smtp_code", None)
    return str(code) if code is not None else ""


def mail_send(message: EmailMessage) -> None:
    try:
        message.send()
    except OSError as error:
        kind = MailRefused if isinstance(error, _REFUSALS) else MailNotSent
        code = _reply_code(error)
        reason = f"{type(error).__name__}{f' {code}' if code else ''}"
    else:
        return
    # Raised outside the except block, so the original (and the addresses in it) is not its context either.
    raise kind(reason)
