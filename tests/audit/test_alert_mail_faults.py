"""The signer's alert when it refuses to sign: a mail server's refusal was logged with its traceback
(`logger.exception`), and smtplib's refusal names every address in AUDIT_ALERT_EMAILS, the server's answer
quoting it again; and an address Django cannot encode raised a ValueError that replaced AuditChainBroken. Now
the failed alert is a warning naming no address, and the refusal stands."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from lab.audit.configured import witness_sink
from lab.audit.models import AuditCheckpoint
from lab.audit.signer import AuditChainBroken, checkpoint_write
from lab.audit.witness import FileWitness
from tests.builders import audit_write
from tests.support.mail import REFUSED_DOMAIN, SmtpSink, smtp_sink

pytestmark = pytest.mark.django_db
AUDITORS = [f"ada.quill{REFUSED_DOMAIN}", f"grace.hopper{REFUSED_DOMAIN}"]


@pytest.fixture
def torn_witness(settings) -> FileWitness:
    """20 records and two checkpoints, then a torn witness line and two more records: the next checkpoint
    is refused (witness_unreadable)."""
    for _ in range(2):
        audit_write(10)
        checkpoint_write()
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    with sink.path.open("ab") as witness_file:
        witness_file.write(b'{"seq":')
    audit_write(2)
    return sink


@pytest.fixture
def sink(settings) -> Iterator[SmtpSink]:
    with smtp_sink() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        yield server


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        record.getMessage()
        + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    )


def test_an_alert_the_mail_server_refuses_logs_no_address_and_the_refusal_stands(
    torn_witness: FileWitness, sink: SmtpSink, settings, caplog: pytest.LogCaptureFixture
) -> None:
    # given auditors whose every address the mail server refuses (550, quoting the address)
    settings.AUDIT_ALERT_EMAILS = AUDITORS
    caplog.set_level(logging.INFO)

    # when the signer refuses to sign
    with pytest.raises(AuditChainBroken, match="witness_unreadable at line 3"):
        checkpoint_write()

    # then nothing was signed or mailed, and the log says the alert failed without naming anyone
    assert AuditCheckpoint.objects.count() == 2
    assert sink.received == []
    logged = _logged(caplog)
    for auditor in AUDITORS:
        assert auditor not in logged and auditor.partition("@")[0] not in logged
    assert "audit alert e-mail could not be sent" in logged
    assert "SMTPRecipientsRefused 550" in logged
    assert not any(record.exc_info for record in caplog.records if record.name == "lab.audit.auditor_mail")


def test_an_alert_address_django_cannot_encode_does_not_replace_the_refusal(
    torn_witness: FileWitness, sink: SmtpSink, settings, caplog: pytest.LogCaptureFixture
) -> None:
    # given an alert address whose domain IDNA cannot encode
    settings.AUDIT_ALERT_EMAILS = ["auditors@" + "ä" * 60 + ".example"]
    caplog.set_level(logging.INFO)

    # when the signer refuses to sign, then the refusal is what is raised and the failed mail a warning
    with pytest.raises(AuditChainBroken, match="witness_unreadable at line 3"):
        checkpoint_write()
    assert AuditCheckpoint.objects.count() == 2
    assert "audit alert e-mail could not be sent" in _logged(caplog)
    assert "ä" not in _logged(caplog)


def test_the_alert_still_reaches_the_auditors_through_the_mail_server(
    torn_witness: FileWitness, sink: SmtpSink, settings
) -> None:
    settings.AUDIT_ALERT_EMAILS = ["auditors@printlab.example"]
    settings.LAB_NAME = "Print Lab"

    with pytest.raises(AuditChainBroken):
        checkpoint_write()

    [(recipients, data)] = sink.received
    assert recipients == ["auditors@printlab.example"]
    assert b"Subject: [Print Lab] audit checkpoint refused: witness_unreadable at line 3" in data


def test_a_witness_address_django_cannot_encode_does_not_fail_the_stored_checkpoint(
    sink: SmtpSink, settings, caplog: pytest.LogCaptureFixture
) -> None:
    # given a witness address whose domain IDNA cannot encode (AUDIT_ALERT_EMAILS defaults to the same list)
    settings.AUDIT_WITNESS_EMAILS = ["auditors@" + "ä" * 60 + ".example"]
    audit_write(3)
    caplog.set_level(logging.INFO)

    # when a checkpoint is signed, then it is witnessed, stored and returned, and the failed mail a warning
    # naming no one (before, UnicodeError escaped checkpoint_write after the checkpoint was stored)
    row = checkpoint_write()

    assert AuditCheckpoint.objects.get() == row
    last = witness_sink().last()
    assert last is not None and last.seq == row.seq
    assert sink.received == []
    logged = _logged(caplog)
    assert f"audit checkpoint e-mail could not be sent seq={row.seq}" in logged
    assert "ä" not in logged and "auditors" not in logged
