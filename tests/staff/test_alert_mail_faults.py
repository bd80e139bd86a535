"""Supervisor alerts that could not be written into a message. One supervisor's address with no mail form (the
lab admin stored it as typed) made every alert message raise UnicodeError before it was sent, to anyone; a
printer's state message with a line break made the subject a header Django refuses. Either escaped
`except OSError`, rolled the alert back and stopped the check at the oldest unsent alert: from then on no
supervisor got any alert. Now the address is left out (logged by public id), the subject is one line, and a
mail that fails stays unsent without holding up the alerts after it. The lab admin refuses such an address."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from lab.accounts.models import User
from lab.production import tracking
from lab.production.alerts import alerts_check
from lab.production.models import Alert, Printer
from tests.builders import client_as, hotfolder_printer, person, printer_folder

pytestmark = pytest.mark.django_db
ADMIN = "/lab/admin/"
NO_MAIL_FORM = "sup@" + "ä" * 60 + ".com"  # its domain's IDNA label is over 63 characters once encoded


def _down(printer: Printer, *, minutes: int = 20) -> None:
    Printer.objects.filter(pk=printer.pk).update(
        state="error", state_changed_at=timezone.now() - timedelta(minutes=minutes)
    )


def test_a_supervisor_address_with_no_mail_form_leaves_them_out_and_the_others_are_alerted(
    settings, caplog: pytest.LogCaptureFixture
) -> None:
    # given two supervisors, one stored with an address no message can be written to, and a printer down
    settings.ALERT_PRINTER_ERROR_MINUTES = 15
    settings.ALERT_QUEUE_DEPTH = 1000
    person("supervisor", email="sup@lab.example")
    unmailable = person("supervisor", email=NO_MAIL_FORM)
    assert User.objects.get(pk=unmailable.pk).email == NO_MAIL_FORM
    _down(hotfolder_printer("alpha", sizes=["4x6"]))
    caplog.set_level(logging.INFO, logger="lab.production.alerts")

    # when the alerts are checked twice
    first, second = alerts_check(), alerts_check()

    # then the other supervisor is alerted, once; the one left out is logged by public id, not address
    assert (first, second) == (1, 0)
    assert [message.to for message in mail.outbox] == [["sup@lab.example"]]
    assert Alert.objects.get().emailed_at is not None
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"user={unmailable.public_id}" in logged
    assert "ä" not in logged


def test_a_paused_printer_whose_message_has_line_breaks_is_alerted_on_one_subject_line_and_later_too(
    settings,
) -> None:
    # given a hot-folder printer paused at its device 20 minutes ago with a two-line PAUSED note
    settings.ALERT_PRINTER_ERROR_MINUTES = 15
    settings.ALERT_QUEUE_DEPTH = 1000
    person("supervisor", email="sup@lab.example")
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    (printer_folder(alpha) / "PAUSED").write_text("Paper jam in tray 2\nopen the side door\n")
    tracking.printer_poll()
    alpha.refresh_from_db()
    assert (alpha.state, alpha.state_message) == ("paused", "Paper jam in tray 2\nopen the side door")
    Printer.objects.filter(pk=alpha.pk).update(state_changed_at=timezone.now() - timedelta(minutes=20))

    # when the alerts are checked, and again after another printer has been down long enough
    first = alerts_check()
    _down(hotfolder_printer("beta", sizes=["4x6"]))
    later, again = alerts_check(), alerts_check()

    # then both are mailed once, the paused printer's subject on one line and its note readable in the body
    assert (first, later, again) == (1, 1, 0)
    assert Alert.objects.filter(emailed_at__isnull=True).count() == 0
    paused, down = mail.outbox
    subject = str(paused.subject)
    assert "\n" not in subject and "\r" not in subject
    assert "(Paper jam in tray 2 open the side door)" in subject
    assert "Paper jam in tray 2\nopen the side door" in str(paused.body)
    assert str(down.subject).startswith(f"[{settings.LAB_NAME}] Printer beta is error")


def test_the_lab_admin_refuses_a_staff_address_with_no_mail_form() -> None:
    client, _ = client_as("admin")
    technician = person("technician", email="tech@lab.example")
    secret = "a long enough secret 42"

    created = client.post(
        f"{ADMIN}accounts/user/add/",
        {
            "email": NO_MAIL_FORM,
            "full_name": "New",
            "password1": secret,
            "password2": secret,
            "roles": ["supervisor"],
        },
    )
    changed = client.post(
        f"{ADMIN}accounts/user/{technician.pk}/change/",
        {
            "email": NO_MAIL_FORM,
            "full_name": technician.full_name,
            "is_active": "on",
            "roles": ["supervisor"],
        },
    )

    for response in (created, changed):
        assert response.status_code == 200
        assert "No e-mail can be sent to this address" in response.content.decode()
    assert not User.objects.filter(email=NO_MAIL_FORM).exists()
    technician.refresh_from_db()
    assert technician.email == "tech@lab.example"
    assert sorted(technician.groups.values_list("name", flat=True)) == ["technician"]


def test_the_lab_admin_still_edits_an_account_already_stored_with_such_an_address() -> None:
    # an address stored before the check came is kept as it is: the account can still be deactivated
    client, _ = client_as("admin")
    supervisor = person("supervisor", email=NO_MAIL_FORM)

    response = client.post(
        f"{ADMIN}accounts/user/{supervisor.pk}/change/",
        {"email": NO_MAIL_FORM, "full_name": supervisor.full_name, "roles": ["supervisor"]},
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    supervisor.refresh_from_db()
    assert (supervisor.email, supervisor.is_active) == (NO_MAIL_FORM, False)
