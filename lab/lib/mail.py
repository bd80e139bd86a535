"""Sending one e-mail, with failures that carry no personal data.

smtplib's errors name the recipients (`SMTPRecipientsRefused` is a dict of addresses to the server's answers,
which quote the address again), and Celery logs the exception of every retry and of the last failure, with
its traceback. So a send that fails raises `MailNotSent` (an OSError, as the tasks retry on those) naming only
the kind of failure and the server's reply code, and without the original as its cause or context.
"""

from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import sanitize_address

from lab.lib.email_address import email_canonical

# The mail server answered, and refused this one message (its recipients, sender or content).
_REFUSALS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


class MailNotSent(OSError):
    """The message was not sent: the mail server could not be reached or did not finish the exchange."""


class MailRefused(MailNotSent):
    """The mail server answered and refused this message; others may still go."""


def address_has_mail_form(address: str) -> bool:
    """Whether a message can be written to `address`: it has the form its mail goes to (`email_canonical`)
    and Django can put it in a message's headers and envelope (`sanitize_address`, what every send does).
    "x@" + 60 * "ä" + ".com" has neither (its domain's IDNA label is over 63 characters once encoded): every
    message naming it raises UnicodeError before anything is sent, whoever else it is to. The API's
    StoredEmailField refuses such an address with this same pair of checks."""
    try:
        email_canonical(address)
        sanitize_address(address, settings.DEFAULT_CHARSET)
    except ValueError:  # UnicodeError is one
        return False
    return True


def _reply_code(error: OSError) -> str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = sorted({str(code) for code, _ in error.recipients.values()})
        return ",".join(codes)
    code = getattr(error, "smtp_code", None)
    return str(code) if code is not None else ""


def mail_send(message: EmailMessage) -> None:
    """Send one message; raises MailRefused (this message can never go: others may) or MailNotSent (the mail
    server failed: a retry may send it)."""
    try:
        message.send()
    except OSError as error:
        kind = MailRefused if isinstance(error, _REFUSALS) else MailNotSent
        code = _reply_code(error)
        reason = f"{type(error).__name__}{f' {code}' if code else ''}"
    except ValueError as error:
        # Django could not write the message: an address it cannot encode (sanitize_address raises
        # UnicodeError for a domain whose IDNA label is over 63 characters, ValueError for one it cannot
        # parse) or a header with a line break. No retry can change that, so it is this message's refusal;
        # before, the ValueError escaped every caller's `except OSError`: an erasure answered 500 after it had
        # committed, and each sweep stopped at the first such row. Its text can quote the address: not kept.
        kind = MailRefused
        reason = f"message not encodable {type(error).__name__}"
    else:
        return
    # Raised outside the except block, so the original (and the addresses in it) is not its context either.
    raise kind(reason)
