"""The anomaly rules' inputs against the database's insiders (README, "Threat model of the audit log").

The `outside_shift` rule reads people's shifts from a table the app's role may change with no trace; the lab
admin records every change of a shift in the chain. A person whose shifts in the table are not what those
records give is shown on the console as "shifts changed outside the lab". Before, deleting a technician's
shifts in the table removed the `outside_shift` flag from their views, and nothing noticed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import RequestFactory

from lab.accounts.models import User
from lab.audit.models import StaffShift
from lab.gate.anomalies import shifts_changed_outside_the_lab
from lab.staff.admin.site import site
from tests.builders import client_as, person
from tests.support.audit_insiders import as_app_role

pytestmark = pytest.mark.django_db
ADMIN = "/lab/admin/"
SHIFTS_CHANGED = "shifts changed outside the lab"
CHANGES = {
    "delete the technician's shifts": "DELETE FROM audit_staffshift WHERE user_id = %s",
    "widen a shift to the whole day": "UPDATE audit_staffshift SET start_time = '00:00', end_time = '23:59'"
    " WHERE user_id = %s",
    "add a shift of their own": "INSERT INTO audit_staffshift (user_id, weekday, start_time, end_time)"
    " VALUES (%s, 2, '00:00', '23:59')",
}


def shifts_entered_in_the_admin() -> User:
    """A technician with two shifts the lab admin entered (and so recorded), one of them changed once."""
    client, _ = client_as("admin")
    technician = person("technician", email="shift-tech@lab.example")
    for weekday in ("0", "1"):
        form = {"user": str(technician.pk), "weekday": weekday, "start_time": "08:00", "end_time": "16:00"}
        assert client.post(f"{ADMIN}audit/staffshift/add/", form).status_code == 302
    shift = StaffShift.objects.filter(user=technician, weekday=1).get()
    changed = {"user": str(technician.pk), "weekday": "1", "start_time": "09:00", "end_time": "17:00"}
    assert client.post(f"{ADMIN}audit/staffshift/{shift.pk}/change/", changed).status_code == 302
    return technician


def test_shifts_changed_only_in_the_admin_are_not_reported() -> None:
    # given shifts entered and changed in the admin, and another person's shift entered before changes
    # were recorded (in the table alone)
    shifts_entered_in_the_admin()
    StaffShift.objects.create(user=person("technician"), weekday=3, start_time="06:00", end_time="14:00")

    # then nobody's shifts are reported
    assert shifts_changed_outside_the_lab() == []


@pytest.mark.parametrize("name", CHANGES)
def test_shifts_the_app_s_role_changes_are_reported_on_the_console(name: str) -> None:
    # given a technician's shifts entered in the admin, and an auditor
    technician = shifts_entered_in_the_admin()
    auditor_client, _ = client_as("auditor")

    # when the app's role changes them in the table
    with as_app_role(), connection.cursor() as cursor:
        cursor.execute(CHANGES[name], [technician.pk])

    # then the console says so, naming the technician, on the review queue and the anomalies page (before:
    # the outside_shift rule read the table, and nothing noticed)
    assert shifts_changed_outside_the_lab() == [str(technician.public_id)]
    warning = f"shift-tech@lab.example: {SHIFTS_CHANGED}"
    assert warning in auditor_client.get("/lab/audit/review/").content.decode()
    anomalies = auditor_client.get(
        "/lab/audit/anomalies/", {"since": "2026-01-01T00:00", "until": "2026-01-02T00:00"}
    ).content.decode()
    assert warning in anomalies


def test_a_shift_deleted_from_a_page_read_before_another_admin_changed_it_is_recorded_as_it_was() -> None:
    # given a technician's shifts entered in the admin, and a second admin's delete page read of one of them
    technician = shifts_entered_in_the_admin()
    shift = StaffShift.objects.filter(user=technician, weekday=1).get()
    stale = StaffShift.objects.get(pk=shift.pk)
    second_admin = person("admin")
    request = RequestFactory().post(f"{ADMIN}audit/staffshift/{shift.pk}/delete/")
    request.user = second_admin

    # when the first admin changes the shift, and the second confirms the delete of what their page read
    client, _ = client_as("admin")
    changed = {"user": str(technician.pk), "weekday": "1", "start_time": "10:00", "end_time": "18:00"}
    assert client.post(f"{ADMIN}audit/staffshift/{shift.pk}/change/", changed).status_code == 302
    site._registry[StaffShift].delete_model(request, stale)

    # then the chain records the shift that was removed, and the shifts are not reported as changed outside
    # the lab (before: "removed" named the stale window, and the person was reported for good)
    assert not StaffShift.objects.filter(pk=shift.pk).exists()
    assert shifts_changed_outside_the_lab() == []
