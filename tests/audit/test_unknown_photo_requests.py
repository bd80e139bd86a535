"""Every refused or unknown request under /lab/photos/ is a recorded denial: an unknown variant, a bad id,
a path the gate does not serve, another method, a wrong purpose. None returns image bytes."""

from __future__ import annotations

import time
import uuid

import pytest
from django.utils.http import urlencode

from lab.audit.models import AccessGrant, AuditRecord
from lab.production.models import PrintJob
from lab.staff.middleware import LAST_ACTIVITY_KEY
from tests.builders import PASSWORD, client_as, hotfolder_printer, person, released_order

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(settings) -> PrintJob:
    hotfolder_printer("minilab", sizes=["4x6"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    return PrintJob.objects.select_related("order", "item").get()


def printing(job: PrintJob) -> dict[str, str | int]:
    return {"purpose": "printing", "context_type": "print_job", "context_id": job.pk, "justification": "crop"}


def test_an_unknown_variant_is_a_recorded_404(job):
    client, technician = client_as("technician")

    response = client.get(f"/lab/photos/{job.item.asset_id}/thumbnail", printing(job))

    assert (response.status_code, response.json()["code"], response.json()["rule"]) == (
        404,
        "image_not_found",
        "unknown_variant",
    )
    record = AuditRecord.objects.get()
    assert (record.action, record.outcome, record.rule, record.actor_id, record.asset_id) == (
        "image.access.denied",
        "denied",
        "unknown_variant",
        str(technician.public_id),
        str(job.item.asset_id),
    )


# No photo has this id (a fixed one: both of the test command's xdist workers must collect the same tests).
UNKNOWN_ASSET = uuid.UUID("00000000-0000-4000-8000-00000000dead")


@pytest.mark.parametrize(
    ("path", "query", "status", "code", "rule"),
    [
        ("/lab/photos/not-a-uuid/preview", True, 403, "image_access_denied", "asset_unavailable"),
        (f"/lab/photos/{UNKNOWN_ASSET}/preview", True, 403, "image_access_denied", "asset_unavailable"),
        ("/lab/photos/{asset}/preview/", True, 404, "image_not_found", "unknown_path"),
        ("/lab/photos/{asset}/../../etc/passwd", False, 404, "image_not_found", "unknown_path"),
        ("/lab/photos/{asset}", False, 404, "image_not_found", "unknown_path"),
        ("/lab/photos/", False, 404, "image_not_found", "unknown_path"),
    ],
)
def test_bad_ids_and_unknown_paths_are_recorded_denials(job, path, query, status, code, rule):
    client, technician = client_as("technician")

    response = client.get(path.format(asset=job.item.asset_id), printing(job) if query else {})

    assert (response.status_code, response.json()["code"], response.json()["rule"]) == (status, code, rule)
    assert not response.content.startswith(b"\xff\xd8")
    record = AuditRecord.objects.get()
    assert (record.action, record.rule, record.actor_id) == (
        "image.access.denied",
        rule,
        str(technician.public_id),
    )


@pytest.mark.parametrize("method", ["post", "put", "delete", "head"])
def test_other_methods_are_recorded_denials(job, method):
    client, _ = client_as("technician")

    response = getattr(client, method)(f"/lab/photos/{job.item.asset_id}/preview?purpose=printing")

    assert (response.status_code, response["Allow"]) == (405, "GET")
    if method != "head":  # a HEAD answer has no body
        assert (response.json()["code"], response.json()["rule"]) == (
            "image_method_not_allowed",
            "method_not_allowed",
        )
    record = AuditRecord.objects.get()
    assert (record.action, record.rule, record.context_type) == (
        "image.access.denied",
        "method_not_allowed",
        "path",
    )


@pytest.mark.parametrize(
    ("purpose", "context_type", "rule"),
    [
        ("packaging", "order", "purpose_not_allowed_for_role"),
        ("marketing", "print_job", "purpose_not_allowed_for_role"),
        ("printing", "order", "context_not_found"),
    ],
)
def test_a_wrong_purpose_or_context_is_a_recorded_denial(job, purpose, context_type, rule):
    client, _ = client_as("technician")

    response = client.get(
        f"/lab/photos/{job.item.asset_id}/preview",
        {"purpose": purpose, "context_type": context_type, "context_id": job.pk},
    )

    assert (response.status_code, response.json()["rule"]) == (403, rule)
    assert AuditRecord.objects.get().rule == rule


def test_anonymous_requests_go_to_the_login_page_and_write_nothing(job, client):
    """Nobody to name: recording them would let anyone on the network write to the chain."""
    response = client.get(f"/lab/photos/{job.item.asset_id}/thumbnail")

    assert response.status_code == 302 and response["Location"].startswith("/lab/login/")
    assert AuditRecord.objects.count() == 0


@pytest.mark.parametrize("site", ["cross-site", "same-site", "none"])
@pytest.mark.parametrize("path", ["/lab/photos/{asset}/preview", "/lab/photos/{asset}/nothing-here"])
def test_a_request_another_site_started_opens_no_grant_and_writes_nothing_in_their_name(job, site, path):
    """A link posted in a chat, or an <img> on another page, that a signed-in technician's browser follows:
    before, it opened a grant and recorded a view "for personal curiosity" in their name (or a flagged
    refusal, for any path under /lab/photos/), all words of whoever wrote the link."""
    client, _ = client_as("technician")
    url = path.format(asset=job.item.asset_id)
    forged = {**printing(job), "justification": "personal curiosity"}

    response = client.get(url, forged, HTTP_SEC_FETCH_SITE=site)

    assert (response.status_code, response.json()["code"]) == (403, "request_from_another_site")
    assert (AccessGrant.objects.count(), AuditRecord.objects.count()) == (0, 0)
    # from the lab's own page (`none` is a link a desktop app handed to the browser, or a URL typed in, which
    # no task of the lab needs): the gate decides, and records, as before
    own = client.get(url, printing(job), HTTP_SEC_FETCH_SITE="same-origin")
    acted = (own.status_code, AccessGrant.objects.count(), AuditRecord.objects.count())
    assert acted == ((303, 1, 0) if path.endswith("preview") else (404, 0, 1))  # a grant, or a denial


def forged_link(job: PrintJob) -> str:
    """A link someone else wrote, to be opened by a technician: a view "for personal curiosity"."""
    query = urlencode({**printing(job), "justification": "personal curiosity"})
    return f"/lab/photos/{job.item.asset_id}/preview?{query}"


def views_in_their_name() -> tuple[int, int]:
    return AccessGrant.objects.count(), AuditRecord.objects.filter(action__startswith="image.").count()


@pytest.mark.parametrize("site", ["cross-site", "same-site", "same-origin", "none"])
def test_a_forged_photo_link_does_not_survive_the_sign_in(job, client, site):
    """A signed-out technician opening the link was sent to the login page with the gate as `next`; after
    the sign-in the lab's own login page sent them on to it (same-origin, so not refused as another site's),
    which opened a grant and recorded a view with the link writer's purpose and words in their name."""
    technician = person("technician")
    link = forged_link(job)

    opened = client.get(link, HTTP_SEC_FETCH_SITE=site)

    if site in ("cross-site", "same-site"):  # refused as when signed in, not sent to sign in first
        assert (opened.status_code, opened.json()["code"]) == (403, "request_from_another_site")
    else:  # to the login page, but not back here afterwards
        assert (opened.status_code, opened["Location"]) == (302, "/lab/login/")
    page = client.get("/lab/login/", {"next": link}, HTTP_SEC_FETCH_SITE=site)
    assert page.status_code == 200 and "/lab/photos/" not in page.content.decode()
    signed_in = client.post(
        "/lab/login/",
        {"email": technician.email, "password": PASSWORD, "next": link},
        HTTP_SEC_FETCH_SITE="same-origin",
    )
    assert (signed_in.status_code, signed_in["Location"]) == (302, "/lab/")
    client.get(signed_in["Location"], HTTP_SEC_FETCH_SITE="same-origin")  # the browser follows it
    assert client.get("/lab/login/", {"next": link}, HTTP_SEC_FETCH_SITE=site)["Location"] == "/lab/"
    assert views_in_their_name() == (0, 0)


@pytest.mark.parametrize("site", ["cross-site", "none"])
def test_a_forged_photo_link_opened_after_the_idle_timeout_does_not_survive_the_sign_in(job, settings, site):
    """The idle timeout signed the technician out and sent them to the login page with the whole link as
    `next`: signing in again opened the grant and recorded the view in their name."""
    client, technician = client_as("technician")
    assert client.get("/lab/").status_code == 200
    session = client.session
    session[LAST_ACTIVITY_KEY] = time.time() - settings.SESSION_COOKIE_AGE - 1
    session.save()

    opened = client.get(forged_link(job), HTTP_SEC_FETCH_SITE=site)

    assert (opened.status_code, opened["Location"]) == (302, "/lab/login/")
    assert "_auth_user_id" not in client.session
    signed_in = client.post(
        "/lab/login/",
        {"email": technician.email, "password": PASSWORD, "next": forged_link(job)},
        HTTP_SEC_FETCH_SITE="same-origin",
    )
    assert (signed_in.status_code, signed_in["Location"]) == (302, "/lab/")
    client.get(signed_in["Location"], HTTP_SEC_FETCH_SITE="same-origin")  # the browser follows it
    assert views_in_their_name() == (0, 0)


@pytest.mark.parametrize("field", ["justification", "purpose", "context_type", "context_id"])
def test_a_nul_byte_in_a_request_is_a_recorded_refusal_not_an_outage(job, field):
    """PostgreSQL's text holds no NUL: the facts query or the record's insert failed (500, or 503 'audit
    unavailable'), the attempt went unrecorded, and 503 or 500 told a prober what the gate would decide."""
    client, technician = client_as("technician")
    client.raise_request_exception = False
    query = {**printing(job), field: f"{printing(job)[field]}\x00"}

    response = client.get(f"/lab/photos/{job.item.asset_id}/preview", query)

    if field == "justification":  # an odd character in the person's words: the request is granted, recorded
        assert response.status_code == 303
        assert client.get(response["Location"]).status_code == 200
        records = AuditRecord.objects.filter(actor_id=str(technician.public_id), outcome="granted")
        assert [record.justification for record in records] == ["crop\ufffd"]
    else:
        assert response.status_code in (403, 404)
        assert AuditRecord.objects.filter(actor_id=str(technician.public_id), outcome="denied").count() == 1


def test_a_nul_byte_in_the_path_is_a_recorded_refusal(job):
    client, technician = client_as("technician")
    client.raise_request_exception = False

    response = client.get("/lab/photos/%00/preview", printing(job))

    assert response.status_code in (403, 404)
    assert AuditRecord.objects.filter(actor_id=str(technician.public_id), outcome="denied").count() == 1


def test_a_refused_request_records_the_photo_s_id_as_stored_however_it_was_spelled(job):
    """The id as typed (upper case) was recorded: an auditor's filter by the photo missed the attempt."""
    client, _ = client_as("packer")
    spelled = str(job.item.asset_id).upper()

    response = client.get(f"/lab/photos/{spelled}/preview", printing(job))

    assert (response.status_code, response.json()["rule"]) == (403, "purpose_not_allowed_for_role")
    assert AuditRecord.objects.get().asset_id == str(job.item.asset_id)
