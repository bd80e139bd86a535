"""The login's `next` never leads to the photo gate, however it is spelled: a request there opens a grant and
records a view in the person's name, and a `next` can be written by anyone who sends a link. Nor does it keep
an auditor-console page's query, which each page writes into an `audit.read` record in the auditor's name."""

from __future__ import annotations

import pytest
from django.urls import reverse

from lab.audit.models import AuditRecord
from tests.builders import PASSWORD, client_as, person

pytestmark = pytest.mark.django_db

ASSET = "0b7f6c1e-2f7a-4d59-9a51-3f1f0c6d2a10"
QUERY = "purpose=printing&context_type=print_job&context_id=1&justification=personal+curiosity"

# Each reaches the gate from a browser: the server decodes %-escapes, a browser makes a backslash a slash
# and resolves dot segments, a proxy merges slashes; /lab/photos is sent on to /lab/photos/ (APPEND_SLASH).
GATE_SPELLINGS = [
    f"/lab/photos/{ASSET}/preview?{QUERY}",
    f"/lab/photos/{ASSET}/nothing-here",
    "/lab/photos/",
    "/lab/photos",
    f"/lab/%70hotos/{ASSET}/preview?{QUERY}",
    f"/lab/photos%2F{ASSET}%2Fpreview?{QUERY}",
    f"/lab//photos/{ASSET}/preview?{QUERY}",
    f"/lab/./photos/{ASSET}/preview?{QUERY}",
    f"/lab/board/../photos/{ASSET}/preview?{QUERY}",
    f"/lab/board/%2e%2e/photos/{ASSET}/preview?{QUERY}",
    f"/lab/\\photos/{ASSET}/preview?{QUERY}",
]


@pytest.mark.parametrize("next_", GATE_SPELLINGS)
def test_signing_in_never_goes_on_to_the_photo_gate(client, next_):
    technician = person("technician")

    page = client.get(reverse("staff:login"), {"next": next_})
    signed_in = client.post(
        reverse("staff:login"), {"email": technician.email, "password": PASSWORD, "next": next_}
    )

    assert 'name="next"' not in page.content.decode()  # the form does not carry it on
    assert (signed_in.status_code, signed_in["Location"]) == (302, "/lab/")


@pytest.mark.parametrize("next_", GATE_SPELLINGS)
def test_a_signed_in_person_at_the_login_page_is_not_sent_on_to_the_photo_gate(next_):
    client, _ = client_as("technician")

    response = client.get(reverse("staff:login"), {"next": next_})

    assert (response.status_code, response["Location"]) == (302, "/lab/")


@pytest.mark.parametrize("next_", ["/lab/board/", "/lab/board/?printer=3", "/lab/photosets/"])
def test_other_staff_pages_are_still_a_next(client, next_):
    technician = person("technician")

    signed_in = client.post(
        reverse("staff:login"), {"email": technician.email, "password": PASSWORD, "next": next_}
    )

    assert signed_in["Location"] == next_


# Each reaches the auditor console with the link writer's filters; after the sign-in, the console without.
CONSOLE_SPELLINGS = [
    ("/lab/audit/?order_ref=PL-AAA&action=forged", "/lab/audit/"),
    ("/lab/audit/summary/?employee=forged#top", "/lab/audit/summary/"),
    ("/lab/audit?action=forged", "/lab/audit"),  # APPEND_SLASH keeps the query: not it either
    ("/lab/%61udit/?action=forged", "/lab/audit/"),
    ("/lab//audit/?action=forged", "/lab/audit/"),
    ("/lab/board/../audit/?action=forged", "/lab/audit/"),
    ("/lab/\\audit/?action=forged", "/lab/audit/"),
    ("/lab/audit/%3Faction=forged", "/lab/audit/%3Faction%3Dforged"),  # a path, not a query: 404
]


def forged_reads() -> list[AuditRecord]:
    return [r for r in AuditRecord.objects.filter(action="audit.read") if "forged" in r.justification]


@pytest.mark.parametrize(("next_", "lands"), CONSOLE_SPELLINGS)
def test_signing_in_goes_on_to_the_audit_console_without_the_links_query(client, next_, lands):
    auditor = person("auditor")

    signed_in = client.post(
        reverse("staff:login"), {"email": auditor.email, "password": PASSWORD, "next": next_}
    )

    assert (signed_in.status_code, signed_in["Location"]) == (302, lands)
    assert AuditRecord.objects.filter(action="audit.read").count() == 0
    client.get(signed_in["Location"], follow=True, HTTP_SEC_FETCH_SITE="same-origin")  # the browser goes on
    assert forged_reads() == []


def test_a_signed_in_auditor_at_the_login_page_is_sent_on_without_the_query():
    client, _ = client_as("auditor")

    response = client.get(reverse("staff:login"), {"next": "/lab/audit/records/7/?action=forged"})

    assert (response.status_code, response["Location"]) == (302, "/lab/audit/records/7/")
