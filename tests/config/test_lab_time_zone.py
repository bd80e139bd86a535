"""LAB_TIME_ZONE: the lab's own time zone, which people's shifts and the auditors' review days are in. Before,
the lab was fixed to UTC: a lab anywhere else had its shifts judged, and its review days cut, at UTC hours.
A name that is not an IANA zone stops the process naming the variable; the shift admin names the zone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.builders import client_as
from tests.support.settings_import import settings_imported

READ_BACK = "import lab.settings as s; print(s.LAB_TIME_ZONE, s.TIME_ZONE)"


def import_settings(var_dir: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """`import lab.settings` in a new process, with LAB_TIME_ZONE as given (or unset)."""
    return settings_imported(var_dir, READ_BACK, environment, unset=("LAB_TIME_ZONE",))


def test_the_lab_time_zone_defaults_to_utc_and_takes_an_iana_name(tmp_path):
    unset = import_settings(tmp_path / "var")
    chicago = import_settings(tmp_path / "var", LAB_TIME_ZONE=" America/Chicago ")

    assert (unset.returncode, unset.stdout.split()) == (0, ["UTC", "UTC"]), unset.stderr[-2000:]
    # Django's own TIME_ZONE stays UTC: the pages label their times UTC
    assert (chicago.returncode, chicago.stdout.split()) == (0, ["America/Chicago", "UTC"]), chicago.stderr[
        -2000:
    ]


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "america/chicago", "CST-6", "../etc/passwd", ""])
def test_a_name_that_is_not_an_iana_time_zone_stops_the_process_naming_the_variable(tmp_path, name):
    completed = import_settings(tmp_path / "var", LAB_TIME_ZONE=name)

    assert completed.returncode != 0
    assert "ImproperlyConfigured: LAB_TIME_ZONE=" in completed.stderr
    assert "is not an IANA time zone name" in completed.stderr


@pytest.mark.django_db
def test_the_shift_admin_says_which_time_zone_shifts_are_in(settings):
    settings.LAB_TIME_ZONE = "America/Chicago"
    client, _ = client_as("admin")

    listed = client.get("/lab/admin/audit/staffshift/").content.decode()
    offered = client.get("/lab/admin/audit/staffshift/add/").content.decode()

    for page in (listed, offered):
        assert "in America/Chicago (LAB_TIME_ZONE)" in page
