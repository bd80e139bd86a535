"""Supervisor alerts go only to accounts the lab's own tools made supervisors (lab/accounts/seal.py): one
given the role by a write in the database alone, which every staff page refuses, was mailed every alert
too."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.utils import timezone

from lab.accounts.roles import Role
from lab.production.alerts import alerts_check
from lab.production.models import Alert, Printer
from tests.builders import hotfolder_printer, person
from tests.support.dba import dba

pytestmark = pytest.mark.django_db


def _down(printer: Printer) -> None:
    Printer.objects.filter(pk=printer.pk).update(
        state="error", state_changed_at=timezone.now() - timedelta(minutes=20)
    )


def test_an_account_given_the_supervisor_role_in_the_database_alone_gets_no_alert_mail(
    settings, caplog: pytest.LogCaptureFixture
) -> None:
    # given a supervisor, a technician a DBA added to the supervisors by SQL, and a printer down
    settings.ALERT_PRINTER_ERROR_MINUTES = 15
    settings.ALERT_QUEUE_DEPTH = 1000
    person("supervisor", email="sup@lab.example")
    technician = person("technician", email="tech@lab.example")
    Group.objects.get_or_create(name=Role.SUPERVISOR)  # the role exists (a flushing test may have emptied it)
    dba(
        "INSERT INTO accounts_user_groups (user_id, group_id) SELECT %s, id FROM auth_group WHERE name = %s",
        technician.pk,
        Role.SUPERVISOR,
    )
    _down(hotfolder_printer("alpha", sizes=["4x6"]))
    caplog.set_level(logging.INFO, logger="lab.production.alerts")

    # when the alerts are checked
    sent = alerts_check()

    # then only the supervisor is mailed (before, the technician got the alert too); the one left out is
    # logged by public id, not address
    assert sent == 1
    assert [message.to for message in mail.outbox] == [["sup@lab.example"]]
    assert Alert.objects.get().emailed_at is not None
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"user={technician.public_id}" in logged
    assert "tech@lab.example" not in logged
