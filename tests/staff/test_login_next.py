"""The login's `next` never leads to the photo gate, however it is spelled: a request there opens a grant and
records a view in the person's name, and a `next` can be written by anyone who sends a link."""

from __future__ import annotations

import pytest
from django.urls import reverse

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
