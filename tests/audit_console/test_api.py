"""The auditor API: records with filters and keyset pages, summaries, anomalies; auditors and admins only."""

from __future__ import annotations

import pytest

from lab.audit.models import AuditRecord
from tests.builders import attempt, denied, minutes, person

pytestmark = pytest.mark.django_db
ENDPOINTS = ["/api/v1/audit/records", "/api/v1/audit/summary", "/api/v1/audit/anomalies"]
DAY = {"since": "2026-03-02T00:00:00Z", "until": "2026-03-03T00:00:00Z"}


def reads() -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(action="audit.read").order_by("seq"))


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anonymous_callers_get_401_and_nothing_is_recorded(api, url):
    response = api.get(url)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["Cache-Control"] == "no-store"
    assert AuditRecord.objects.count() == 0


@pytest.mark.parametrize("role", ["technician", "packer", "supervisor", "customer"])
def test_other_roles_get_403_and_nothing_is_recorded(api, role):
    api.force_authenticate(person(role))

    responses = [api.get(url) for url in ENDPOINTS]

    assert [r.status_code for r in responses] == [403, 403, 403]
    assert {r.json()["code"] for r in responses} == {"permission_denied"}
    assert AuditRecord.objects.count() == 0


def test_records_are_filtered_and_paged_by_seq_in_a_staff_session(api, technician, packer):
    auditor = person("auditor")
    written = [attempt(technician, at=minutes(i), order_ref="PL-AAA").seq for i in range(5)]
    attempt(packer, at=minutes(6), order_ref="PL-BBB", role="packer")
    api.force_login(auditor)  # staff use the API only in their expiring /lab/ session, never with a token

    first = api.get("/api/v1/audit/records", {"order_ref": "PL-AAA", "limit": 2})
    second = api.get(first.json()["next"])
    back = api.get(second.json()["previous"])

    assert first.status_code == 200
    assert first["Cache-Control"] == "no-store"
    assert [r["seq"] for r in first.json()["results"]] == [written[4], written[3]]
    assert first.json()["previous"] is None
    assert (
        first.json()["next"]
        == f"http://testserver/api/v1/audit/records?order_ref=PL-AAA&limit=2&before={written[3]}"
    )
    assert [r["seq"] for r in second.json()["results"]] == [written[2], written[1]]
    assert [r["seq"] for r in back.json()["results"]] == [written[4], written[3]]
    row = first.json()["results"][0]
    assert (row["employee_email"], row["actor_role"], row["order_ref"], row["purpose"]) == (
        "tech@lab.example",
        "technician",
        "PL-AAA",
        "printing",
    )
    assert [(r.actor_id, r.context_type, r.context_id) for r in reads()] == [
        (str(auditor.public_id), "audit_api", "records")
    ] * 3
    assert reads()[1].justification == f"order_ref=PL-AAA&before={written[3]}"


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
@pytest.mark.parametrize("url", ENDPOINTS)
def test_a_call_another_site_started_is_refused_and_writes_nothing_in_their_name(api, technician, url, site):
    """A link in a chat opened the API in the auditor's /lab/ session and wrote an `audit.read` record in
    their name with the link writer's filters."""
    attempt(technician, at=minutes(1), order_ref="PL-AAA")
    api.force_login(person("auditor"))

    response = api.get(url, {"action": "checked at the customer's request"}, HTTP_SEC_FETCH_SITE=site)

    assert response.status_code == 403
    assert response.json()["code"] == "request_from_another_site"
    assert response["Content-Type"] == "application/problem+json"
    assert response["Cache-Control"] == "no-store"
    assert reads() == []


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_a_call_from_the_labs_own_pages_or_typed_is_still_answered_and_recorded(api, technician, site):
    attempt(technician, at=minutes(1), order_ref="PL-AAA")
    auditor = person("auditor")
    api.force_login(auditor)

    responses = [api.get(url, HTTP_SEC_FETCH_SITE=site) for url in ENDPOINTS]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [(r.actor_id, r.context_id) for r in reads()] == [
        (str(auditor.public_id), page) for page in ("records", "summary", "anomalies")
    ]


def test_records_filter_by_employee_outcome_purpose_and_time(api, technician, packer, auditor):
    attempt(technician, at=minutes(1))
    refused = denied(technician, at=minutes(2), rule="purpose_not_allowed_for_role")
    packing = attempt(packer, at=minutes(3), purpose="packaging", rule="order_being_packed", role="packer")
    api.force_authenticate(auditor)

    def seqs(**query: str) -> list[int]:
        return [r["seq"] for r in api.get("/api/v1/audit/records", query).json()["results"]]

    assert seqs(employee="tech@lab.example", outcome="denied") == [refused.seq]
    assert seqs(purpose="packaging") == [packing.seq]
    assert seqs(since="2026-03-02T09:02:00Z", until="2026-03-02T09:03:00Z") == [refused.seq]
    assert api.get("/api/v1/audit/records", {"outcome": "maybe"}).json()["code"] == "invalid_request"


def test_summary_and_anomalies_answer_per_employee_and_per_flag(api, technician, settings):
    settings.AUDIT_REPEAT_VIEWS = 2
    admin = person("admin")
    first = attempt(technician, at=minutes(1), order_ref="PL-AAA")
    second = attempt(technician, at=minutes(2), order_ref="PL-AAA")
    api.force_authenticate(admin)

    summary = api.get("/api/v1/audit/summary", DAY)
    anomalies = api.get("/api/v1/audit/anomalies", DAY)
    too_long = api.get(
        "/api/v1/audit/anomalies", {"since": "2026-01-01T00:00:00Z", "until": "2026-03-03T00:00:00Z"}
    )

    [employee] = summary.json()["employees"]
    assert (employee["email"], employee["views"], employee["distinct_orders"], employee["flags"]) == (
        "tech@lab.example",
        2,
        1,
        {"repeated_views": 1},
    )
    assert anomalies.json()["results"] == [
        {
            "seq": second.seq,
            "flag": "repeated_views",
            "actor_id": str(technician.public_id),
            "employee_email": "tech@lab.example",
            "occurred_at": "2026-03-02T09:02:00Z",
            "order_ref": "PL-AAA",
            "detail": "view 2 of this order within 24 hours",
        }
    ]
    assert first.seq < second.seq
    assert too_long.status_code == 400
    assert [(r.actor_role, r.context_id) for r in reads()] == [("admin", "summary"), ("admin", "anomalies")]


@pytest.mark.parametrize("path", ["/api/v1/audit/anomalies", "/api/v1/audit/summary"])
def test_a_date_at_the_calendars_end_is_a_400_not_a_500(api, auditor, path):
    # a day before 0001-01-01 overflowed in the range's arithmetic
    api.force_authenticate(auditor)

    response = api.get(path, {"until": "0001-01-01T00:00:00Z"})

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
