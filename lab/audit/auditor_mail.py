"""Mail to the auditors: the signer's alert when it refuses to sign (AUDIT_ALERT_EMAILS), and each witnessed
checkpoint for their copy of the witness log (AUDIT_WITNESS_EMAILS). A mail that fails is a warning.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMessage

from lab.audit.checkpoints import Checkpoint
from lab.audit.problems import ChainProblem
from lab.lib.mail import MailNotSent, mail_send

logger = logging.getLogger(__name__)


def _alert(problem: ChainProblem) -> None:
    logger.error(
        "audit chain check failed, checkpoint NOT signed: kind=%s seq=%s line=%s",
        problem.kind,
        problem.seq,
        problem.line,
    )
    if not settings.AUDIT_ALERT_EMAILS:
        return
    subject = f"[{settings.LAB_NAME}] audit checkpoint refused: {problem.kind} {problem.place}"
    message = EmailMessage(
        subject=" ".join(subject.split()),
        body=f"The signer refused to sign the audit chain.\n\n{problem.kind} {problem.place}:"
        f" {problem.message}\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=list(settings.AUDIT_ALERT_EMAILS),
    )
    # The refusal (AuditChainBroken, the export's problem) is the outcome, whatever becomes of the mail.
    _mail_or_warn(message, what="alert", about=f"kind={problem.kind}")


def _mail_or_warn(message: EmailMessage, *, what: str, about: str) -> str | None:
    """Send an audit mail; one that fails is a warning that names no address (smtplib's refusal names every
    recipient, so neither it nor its traceback is logged), never an error of what sent it. Why it was not
    sent (None: sent)."""
    try:
        mail_send(message)
    except MailNotSent as error:  # MailRefused is one: a server's refusal, or an address it cannot encode
        logger.warning("audit %s e-mail could not be sent %s reason=%s", what, about, error)
        return str(error)
    except Exception as error:
        logger.warning("audit %s e-mail could not be sent %s error=%s", what, about, type(error).__name__)
        return type(error).__name__
    return None


def mail_checkpoint(checkpoint: Checkpoint) -> str | None:
    """Mail a witnessed checkpoint (or restore marker) to the auditors (AUDIT_WITNESS_EMAILS), for their copy
    of the witness; a mail that fails is a warning, and why is returned (None: sent, or nobody to send to)."""
    return _mail_checkpoint(checkpoint)


def _mail_checkpoint(checkpoint: Checkpoint) -> str | None:
    if not settings.AUDIT_WITNESS_EMAILS:
        return None
    message = EmailMessage(
        subject=f"[{settings.LAB_NAME}] audit {'restore marker' if checkpoint.restore else 'checkpoint'}"
        f" seq {checkpoint.seq}",
        body=checkpoint.to_line() + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=list(settings.AUDIT_WITNESS_EMAILS),
    )
    # The witness log is the durable copy and the checkpoint is already in it and stored: a lost mail is a
    # warning, not a failed checkpoint. Before, an address Django cannot encode raised UnicodeError out of
    # checkpoint_write: every export answered 500, every scheduled checkpoint failed.
    return _mail_or_warn(message, what="checkpoint", about=f"seq={checkpoint.seq}")
