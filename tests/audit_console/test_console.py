"""The auditor console over HTTP: who may open it, what each page shows, and that every read is recorded."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.utils import timezone

from lab.audit.canonical import EXPORT_FIELDS
from lab.audit.configured import public_key
from lab.audit.keys import public_key_b64
from lab.audit.models import AuditRecord, ReviewItem
from tests.builders import attempt, denied, minutes, person

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "/lab/audit/",
    "/lab/audit/records/1/",
    "/lab/audit/summary/",
    "/lab/audit/anomalies/",
    "/lab/audit/review/",
    "/lab/audit/export/",
]
POSTS = [
    ("/lab/audit/review/1/sign-off/", {"note": "fine by me"}),
    ("/lab/audit/review/build/", {"day": "2026-03-02"}),
    ("/lab/audit/export/records.csv", {}),
    ("/lab/audit/export/chain.zip", {}),
]


def reads() -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(action__in=["audit.read", "audit.export"]).order_by("seq"))


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/lab/login/?next={url}"
    assert response["Cache-Control"] == "no-store"
    assert AuditRecord.objects.count() == 0


@pytest.mark.parametrize("role", ["technician", "packer", "supervisor", "customer"])
def test_other_roles_get_403_on_every_page_and_action_and_nothing_changes(client, technician, role):
    denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    ReviewItem.objects.create(record_id=1, reason="denied_attempt")
    client.force_login(person(role))

    pages = [client.get(url) for url in PAGES]
    posts = [client.post(url, data) for url, data in POSTS]

    assert [r.status_code for r in pages + posts] == [403] * (len(PAGES) + len(POSTS))
    assert {r["Cache-Control"] for r in pages + posts} == {"no-store"}
    assert AuditRecord.objects.count() == 1
    assert list(ReviewItem.objects.values_list("reviewed_at", "note")) == [(None, "")]


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_auditors_and_admins_open_every_page_which_is_html_without_scripts_or_images(
    client, technician, role
):
    attempt(technician, at=minutes(1))
    client.force_login(person(role))

    responses = [client.get(url) for url in PAGES]

    assert [r.status_code for r in responses] == [200] * len(PAGES)
    for response in responses:
        body = response.content.decode()
        assert response["Content-Type"] == "text/html; charset=utf-8"
        assert response["Cache-Control"] == "no-store"
        assert "<script" not in body
        assert "style=" not in body
        assert "<img" not in body
        assert "http://" not in body and "https://" not in body


def test_records_page_filters_and_the_read_itself_is_recorded(client, technician, packer, auditor):
    mine = attempt(technician, at=minutes(1), order_ref="PL-AAA")
    attempt(packer, at=minutes(2), order_ref="PL-BBB", role="packer")
    client.force_login(auditor)

    response = client.get("/lab/audit/", {"employee": "tech@lab.example", "since": "2026-03-02T08:00"})

    body = response.content.decode()
    assert response.status_code == 200
    assert "PL-AAA" in body
    assert "PL-BBB" not in body
    assert f'href="/lab/audit/records/{mine.seq}/"' in body
    [read] = reads()
    assert (read.action, read.actor_id, read.actor_role, read.outcome, read.purpose, read.rule) == (
        "audit.read",
        str(auditor.public_id),
        "auditor",
        "done",
        "audit",
        "auditor_read",
    )
    assert (read.context_type, read.context_id) == ("audit_console", "records")
    assert read.justification == f"actor_id={technician.public_id}&since=2026-03-02T08%3A00%3A00%2B00%3A00"


def test_record_summary_anomaly_and_review_pages_are_each_recorded_as_reads(client, technician, auditor):
    view = attempt(technician, at=minutes(1))
    denied(technician, at=minutes(2), rule="print_job_not_active")
    client.force_login(auditor)

    record_page = client.get(f"/lab/audit/records/{view.seq}/")
    summary = client.get("/lab/audit/summary/", {"since": "2026-03-02T00:00", "until": "2026-03-03T00:00"})
    anomalies = client.get(
        "/lab/audit/anomalies/", {"since": "2026-03-02T00:00", "until": "2026-03-03T00:00"}
    )
    review = client.get("/lab/audit/review/")

    assert view.hash in record_page.content.decode()
    assert "tech@lab.example" in summary.content.decode()
    assert "outside_production_step" in anomalies.content.decode()
    assert review.status_code == 200
    assert [(r.context_id, r.action) for r in reads()] == [
        (f"record:{view.seq}", "audit.read"),
        ("summary", "audit.read"),
        ("anomalies", "audit.read"),
        ("review", "audit.read"),
    ]
    assert reads()[1].justification == "since=2026-03-02T00:00:00+00:00&until=2026-03-03T00:00:00+00:00"


FORGED = {"order_ref": "PL-AAA", "action": "checked at the customer's request"}


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_console_request_another_site_started_is_refused_and_writes_nothing_in_their_name(
    client, technician, auditor, site
):
    """A link in a chat (`/lab/audit/?order_ref=…&action=<text>`) opened in the auditor's session wrote an
    `audit.read` record in their name, with the link writer's text in it."""
    view = attempt(technician, at=minutes(1), order_ref="PL-AAA")
    ReviewItem.objects.create(record_id=view.seq, reason="denied_attempt")
    client.force_login(auditor)
    pages = [(url, FORGED) for url in PAGES] + [(f"/lab/audit/records/{view.seq}/", {})]

    responses = [client.get(url, data, HTTP_SEC_FETCH_SITE=site) for url, data in pages]
    posts = [client.post(url, data, HTTP_SEC_FETCH_SITE=site) for url, data in POSTS]

    assert [r.status_code for r in responses + posts] == [403] * (len(pages) + len(POSTS))
    assert {r["Cache-Control"] for r in responses} == {"no-store"}
    assert "request_from_another_site" in responses[0].content.decode()
    assert reads() == []
    assert list(ReviewItem.objects.values_list("reviewed_at", "note")) == [(None, "")]
    client.logout()
    signed_out = client.get("/lab/audit/", FORGED, HTTP_SEC_FETCH_SITE=site)
    assert signed_out.status_code == 403  # refused as when signed in, not sent to sign in first


@pytest.mark.parametrize("site", ["same-origin", "none", None])
def test_the_consoles_own_links_and_typed_urls_are_still_read_and_recorded(client, technician, auditor, site):
    attempt(technician, at=minutes(1), order_ref="PL-AAA")
    client.force_login(auditor)
    headers = {"HTTP_SEC_FETCH_SITE": site} if site else {}

    responses = [client.get(url, **headers) for url in PAGES]

    assert [r.status_code for r in responses] == [200] * len(PAGES)
    assert [r.context_id for r in reads()] == ["records", "record:1", "summary", "anomalies", "review"]


def test_review_queue_is_built_and_signed_off_through_the_console(client, technician, auditor):
    refused = denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    client.force_login(auditor)

    built = client.post("/lab/audit/review/build/", {"day": "2026-03-02"})
    item = ReviewItem.objects.get(reason="denied_attempt")
    queue = client.get("/lab/audit/review/")
    signed = client.post(f"/lab/audit/review/{item.pk}/sign-off/", {"note": "training account, confirmed"})
    done = client.get("/lab/audit/review/", {"state": "done"})

    assert (built.status_code, built["Location"]) == (302, "/lab/audit/review/")
    assert item.record_id == refused.seq
    assert f'action="/lab/audit/review/{item.pk}/sign-off/"' in queue.content.decode()
    assert signed.status_code == 302
    item.refresh_from_db()
    assert (item.reviewed_by, item.note) == (auditor, "training account, confirmed")
    assert "training account, confirmed" in done.content.decode()


def test_a_day_still_going_on_is_not_sampled_by_hand_and_each_build_is_recorded(client, technician, auditor):
    """An auditor who queued today's review at ten in the morning filled its random sample from the morning's
    views, and the nightly run, which tops the sample up to its size, could draw none of the afternoon's;
    and the build left no trace in the chain."""
    from lab.lib.clock import database_now

    client.force_login(auditor)
    today = timezone.localdate(database_now())

    early = client.post("/lab/audit/review/build/", {"day": today.isoformat()}, follow=True)
    late = client.post("/lab/audit/review/build/", {"day": "2026-03-02"})

    assert [str(m) for m in early.context["messages"]] == [
        f"{today} is not over yet: its review is queued once it is."
    ]
    assert late.status_code == 302
    assert list(
        AuditRecord.objects.filter(action="audit.review.build").values_list("actor_id", "context_id")
    ) == [(str(auditor.public_id), "2026-03-02")]
    assert not ReviewItem.objects.filter(record__occurred_at__date=today).exists()


def test_csv_export_streams_the_filtered_metadata_and_is_recorded(client, technician, packer, auditor):
    mine = attempt(technician, at=minutes(1), order_ref="PL-AAA")
    attempt(packer, at=minutes(2), order_ref="PL-BBB", role="packer")
    client.force_login(auditor)

    response = client.post("/lab/audit/export/records.csv", {"order_ref": "PL-AAA"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == list(EXPORT_FIELDS)
    assert [row[0] for row in rows[1:]] == [str(mine.seq)]
    [export] = reads()
    assert (export.action, export.rule, export.context_id, export.justification, export.actor_role) == (
        "audit.export",
        "auditor_export",
        "export.csv",
        "order_ref=PL-AAA",
        "auditor",
    )
    assert response["Content-Disposition"] == f'attachment; filename="audit-records-{export.seq}.csv"'


def test_jsonl_export_is_a_zip_that_verifies_offline_with_the_pinned_key(
    client, technician, auditor, tmp_path
):
    for i in range(3):
        attempt(technician, at=minutes(i))
    client.force_login(auditor)

    response = client.post("/lab/audit/export/chain.zip")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Cache-Control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        names = sorted(archive.namelist())
        archive.extractall(tmp_path)
    [records_name] = [name for name in names if name.endswith(".jsonl") and ".checkpoints." not in name]
    assert names == sorted([records_name, records_name.replace(".jsonl", ".checkpoints.jsonl"), "README.txt"])
    key = tmp_path / "pinned.key"
    key.write_text(public_key_b64(public_key()))
    verified = subprocess.run(
        [sys.executable, "-m", "lab.audit.verify", str(tmp_path / records_name), "--public-key", str(key)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK: 4 records (seq 1..4)")
    [export] = reads()
    assert (export.seq, export.action, export.actor_id, export.actor_role, export.purpose) == (
        4,
        "audit.export",
        str(auditor.public_id),
        "auditor",
        "audit",
    )


def test_the_stylesheet_is_served_from_the_console_itself(client):
    response = client.get("/lab/audit/console.css")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    ("method", "url", "data"),
    [
        ("get", "/lab/audit/anomalies/", {"until": "0001-01-01T00:00"}),
        ("get", "/lab/audit/summary/", {"until": "0001-01-01T00:00"}),
        ("get", "/lab/audit/summary/", {"since": "0001-01-01T00:00", "until": "0001-01-05T00:00"}),
        ("get", "/lab/audit/anomalies/", {"since": "0001-01-01T00:00", "until": "0001-01-05T00:00"}),
        ("get", "/lab/audit/review/", {"after": "²"}),
        ("get", "/lab/audit/review/", {"after": "9" * 5000}),
        ("post", "/lab/audit/review/build/", {"day": "9999-12-31"}),
        ("post", "/lab/audit/review/build/", {"day": "0001-01-01"}),
        ("get", "/lab/audit/records/" + "9" * 60 + "/", {}),
    ],
)
def test_odd_parameters_are_refused_never_a_server_error(client, auditor, method, url, data):
    # each was a 500 (a date's arithmetic overflowing at the calendar's ends, int() of '²'), or a 503 "audit
    # unavailable" (a seq too long for the read's own record)
    client.force_login(auditor)
    client.raise_request_exception = False

    response = getattr(client, method)(url, data)

    assert response.status_code in (200, 302, 400, 404), response.status_code
    assert not ReviewItem.objects.exists()
