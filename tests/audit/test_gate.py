"""The access gate: purpose fits state, roles, grants revoked when the task closes, fail closed, records."""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone
from PIL import Image

from lab.audit.database_verify import audit_verify_database
from lab.audit.models import AccessGrant, AuditRecord, ReviewItem
from lab.audit.records import RequestMeta
from lab.gate import access as gate
from lab.gate.anomalies import Flag, anomalies_find
from lab.gate.refusals import AccessDenied, AuditUnavailable
from lab.gate.review import review_sample_daily
from lab.gate.rules import AccessRequest
from lab.orders.models import ClarificationCase
from lab.orders.transitions import order_transition
from lab.production import jobs, rasterizing, routing
from lab.production.maintenance import maintenance_ticket_open
from lab.production.models import PrintJob
from tests.builders import WORKER, UserFactory, client_as, hotfolder_printer, paid_order
from tests.support.concurrency import at_once

pytestmark = pytest.mark.django_db
META = RequestMeta(client_ip="10.1.2.3", user_agent="pytest", request_id="req-1")


@pytest.fixture
def job(settings) -> PrintJob:
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    return PrintJob.objects.select_related("order", "item__asset").get()


def ask(
    user,
    job: PrintJob,
    *,
    purpose="printing",
    context_type="print_job",
    context_id=None,
    variant="preview",
    justification="check the crop on the print",
):
    return gate.image_access(
        user=user,
        request=AccessRequest(
            asset_id=str(job.item.asset_id),
            purpose=purpose,
            justification=justification,
            context_type=context_type,
            context_id=str(context_id if context_id is not None else job.pk),
            variant=variant,
        ),
        meta=META,
    )


def test_technician_gets_a_watermarked_preview_for_an_active_job_and_it_is_recorded(job):
    technician = UserFactory.create(roles=["technician"])

    delivery = ask(technician, job)

    with Image.open(io.BytesIO(delivery.data)) as image:
        assert max(image.size) == 512
        assert image.format == "JPEG"
    record = AuditRecord.objects.get(seq=delivery.audit_seq)
    assert (record.action, record.outcome, record.rule, record.purpose) == (
        "image.view.preview",
        "granted",
        "active_print_job",
        "printing",
    )
    assert (record.actor_id, record.actor_role, record.order_ref) == (
        str(technician.public_id),
        "technician",
        job.order.ref,
    )
    assert (record.client_ip, record.user_agent, record.request_id) == ("10.1.2.3", "pytest", "req-1")
    assert record.content_sha256 == delivery.sha256
    assert AccessGrant.objects.filter(actor=technician, asset=job.item.asset).count() == 1
    assert audit_verify_database().problem is None


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_auditors_and_admins_never_see_photos(job, role):
    person = UserFactory.create(roles=[role])

    with pytest.raises(AccessDenied):
        ask(person, job)

    record = AuditRecord.objects.get()
    assert (record.action, record.outcome, record.rule) == (
        "image.access.denied",
        "denied",
        "role_never_views_photos",
    )


def test_packer_cannot_ask_for_printing_and_packaging_needs_an_order_being_packed(job):
    packer = UserFactory.create(roles=["packer"])

    with pytest.raises(AccessDenied):
        ask(packer, job)
    with pytest.raises(AccessDenied):
        ask(packer, job, purpose="packaging", context_type="order", context_id=job.order.ref)

    assert list(AuditRecord.objects.values_list("rule", flat=True)) == [
        "purpose_not_allowed_for_role",
        "order_not_being_packed",
    ]


def test_grant_ends_as_soon_as_the_job_is_closed(job, settings):
    technician = UserFactory.create(roles=["technician"])
    ask(technician, job)
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)

    jobs.job_move(job_id=job.pk, from_statuses={"ready"}, to_status="cancelled")

    grant = AccessGrant.objects.get()
    assert (grant.revoked_at is not None, grant.revoked_reason) == (True, "job_cancelled")
    with pytest.raises(AccessDenied) as denied:
        ask(technician, job)
    assert denied.value.details["rule"] == "print_job_not_active"


def test_full_resolution_needs_a_fitting_purpose_and_a_justification(job):
    technician = UserFactory.create(roles=["technician"])

    with pytest.raises(AccessDenied) as short:
        ask(technician, job, variant="full", justification="hm")
    full = ask(technician, job, variant="full", justification="colour cast on test print")

    assert short.value.details["rule"] == "justification_required_for_full_resolution"
    assert full.data.startswith(b"\xff\xd8")
    assert AuditRecord.objects.latest("seq").action == "image.view.full"


@pytest.mark.parametrize(
    "blank",
    [
        " " * 12,
        "\t\n" * 6,
        "\u00a0" * 10,
        "\u200b" * 10,
        "\u200b\u00a0\u2060\ufeff\u3000\u200d \t\u202f\u2009\u200b\u2060",
    ],
    ids=["spaces", "tabs", "no-break-spaces", "zero-width-spaces", "mix"],
)
def test_a_full_resolution_justification_of_invisible_characters_only_is_refused(job, blank):
    """Ten zero-width spaces were a justification of ten characters: one the auditors read as empty. Only
    characters that are neither whitespace nor of Unicode categories Cf, Cc or Zs count towards the ten."""
    technician = UserFactory.create(roles=["technician"])

    with pytest.raises(AccessDenied) as refused:
        ask(technician, job, variant="full", justification=blank)

    assert refused.value.details["rule"] == "justification_required_for_full_resolution"
    assert AuditRecord.objects.latest("seq").action == "image.access.denied"


def test_a_full_resolution_justification_of_ten_letters_among_invisible_ones_is_accepted(job):
    technician = UserFactory.create(roles=["technician"])

    full = ask(technician, job, variant="full", justification="\u200b colourcast\u00a0")

    assert full.data.startswith(b"\xff\xd8")
    assert AuditRecord.objects.latest("seq").action == "image.view.full"


def test_maintenance_needs_an_open_ticket_naming_the_job(job):
    technician = UserFactory.create(roles=["technician"])
    ticket = maintenance_ticket_open(
        printer_id=job.printer_id, actor=technician, description="banding", job_ids=[job.pk]
    )

    ask(technician, job, purpose="maintenance", context_type="maintenance_ticket", context_id=ticket.pk)
    ticket.closed_at = ticket.opened_at
    ticket.save()
    with pytest.raises(AccessDenied) as closed:
        ask(technician, job, purpose="maintenance", context_type="maintenance_ticket", context_id=ticket.pk)

    assert closed.value.details["rule"] == "maintenance_ticket_closed"


def test_clarification_needs_the_order_on_hold_with_an_open_case(job):
    supervisor = UserFactory.create(roles=["supervisor"])
    case = ClarificationCase.objects.create(order=job.order, opened_by=supervisor, question="which crop?")

    with pytest.raises(AccessDenied) as not_on_hold:
        ask(
            supervisor,
            job,
            purpose="order_clarification",
            context_type="clarification_case",
            context_id=case.pk,
        )
    from lab.orders.transitions import order_transition

    order = job.order
    order_transition(order=order, to_status="on_hold")
    delivered = ask(
        supervisor, job, purpose="order_clarification", context_type="clarification_case", context_id=case.pk
    )

    assert not_on_hold.value.details["rule"] == "clarification_not_open"
    assert delivered.audit_seq == AuditRecord.objects.latest("seq").seq


def test_every_clarification_view_is_queued_as_flagged_and_never_sampled(job):
    # given an order on hold with a question, put by one technician, and a colleague who views it
    opener, colleague = (UserFactory.create(roles=["technician"]) for _ in range(2))
    printing = ask(colleague, job)  # before the hold: a held order's photo is not shown under printing
    case = ClarificationCase.objects.create(order=job.order, opened_by=opener, question="which crop?")
    order_transition(order=job.order, to_status="on_hold")

    # when the colleague opens the photo under the case, as a preview and at full resolution
    views = [
        ask(
            colleague,
            job,
            purpose="order_clarification",
            context_type="clarification_case",
            context_id=case.pk,
            variant=variant,
        ).audit_seq
        for variant in ("preview", "full")
    ]
    queued_at_once = sorted(ReviewItem.objects.values_list("record_id", "reason"))
    run = review_sample_daily(day=timezone.localdate(), sample_size=50)

    # then both views were queued as flagged with the view, and the day's sample drew only the other view
    assert queued_at_once == [(seq, "clarification_view") for seq in views]
    assert sorted(ReviewItem.objects.values_list("record_id", "reason")) == sorted(
        [(seq, "clarification_view") for seq in views] + [(printing.audit_seq, "sample")]
    )
    assert (run.sampled, run.flagged) == (1, 0)
    now = timezone.now()
    flagged = {(a.seq, a.flag) for a in anomalies_find(since=now - timedelta(hours=1), until=now)}
    assert {(seq, Flag.CLARIFICATION_VIEW) for seq in views} <= flagged


def test_fail_closed_when_the_audit_record_cannot_be_written(job, monkeypatch):
    technician = UserFactory.create(roles=["technician"])

    def broken(entry, **options):
        raise DatabaseError("disk full")

    monkeypatch.setattr(gate, "audit_append", broken)

    with pytest.raises(AuditUnavailable):
        ask(technician, job)

    assert AuditRecord.objects.count() == 0
    assert AccessGrant.objects.count() == 0


def test_staff_photo_request_redirects_to_its_grant_no_store_and_denials_are_403(client, job):
    technician = UserFactory.create(roles=["technician"])
    client.force_login(technician)
    url = f"/lab/photos/{job.item.asset_id}/preview"

    asked = client.get(url, {"purpose": "printing", "context_type": "print_job", "context_id": job.pk})
    ok = client.get(asked["Location"])
    denied = client.get(url, {"purpose": "packaging", "context_type": "order", "context_id": job.order.ref})

    grant = AccessGrant.objects.get()
    assert (asked.status_code, asked["Location"]) == (303, f"{url}?grant={grant.pk}")
    assert asked["Cache-Control"] == "no-store, private"
    assert ok.status_code == 200
    assert ok["Content-Type"] == "image/jpeg"
    assert ok["Cache-Control"] == "no-store, private"
    assert denied.status_code == 403
    assert denied["Cache-Control"] == "no-store, private"
    assert not denied.content.startswith(b"\xff\xd8")
    assert list(AuditRecord.objects.values_list("action", "rule")) == [
        ("image.view.preview", "active_print_job"),
        ("image.access.denied", "purpose_not_allowed_for_role"),
    ]


def test_owner_reads_own_photo_through_the_api_recorded_as_owner_access(api, job):
    owner = job.order.customer
    api.force_authenticate(owner)

    response = api.get(f"/api/v1/assets/{job.item.asset_id}/content")
    api.force_authenticate(UserFactory.create())
    stranger = api.get(f"/api/v1/assets/{job.item.asset_id}/content")

    assert response.status_code == 200
    assert response.content.startswith(b"\xff\xd8")
    assert stranger.status_code == 404
    record = AuditRecord.objects.get()
    assert (record.action, record.actor_role, record.purpose) == ("image.download", "customer", "owner")


def test_worker_reads_are_recorded_as_system_production_access(job):
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)

    record = AuditRecord.objects.get()
    assert (record.action, record.actor_id, record.actor_role, record.purpose, record.context_id) == (
        "image.read.system",
        None,
        "system",
        "production",
        str(job.pk),
    )


@pytest.mark.django_db(transaction=True)
def test_two_requests_at_once_for_the_same_photo_and_task_open_one_grant(job, monkeypatch):
    # given a technician who asks twice at once for the same photo and task (a double click, two tabs): both
    # requests have read the facts, and neither found a live grant
    technician = UserFactory.create(roles=["technician"])
    both_read = threading.Barrier(2, timeout=10)
    real_facts = gate.facts_gather  # type: ignore[attr-defined]  # the name the gate calls

    def facts_then_wait(**arguments):
        facts = real_facts(**arguments)
        both_read.wait()
        return facts

    monkeypatch.setattr(gate, "facts_gather", facts_then_wait)
    request = AccessRequest(
        asset_id=str(job.item.asset_id),
        purpose="printing",
        justification="check the crop on the print",
        context_type="print_job",
        context_id=str(job.pk),
    )
    opened: list[str] = []

    # when both open their grant
    at_once(lambda: opened.append(str(gate.image_grant_open(user=technician, request=request, meta=META).pk)))

    # then one grant is opened and both use it (before: two live grants for one scope)
    assert len(opened) == 2 and len(set(opened)) == 1, opened
    assert AccessGrant.objects.filter(actor=technician).count() == 1


def photo_request(job: PrintJob) -> dict[str, str | int]:
    return {"purpose": "printing", "context_type": "print_job", "context_id": job.pk, "justification": "crop"}


@pytest.mark.parametrize("site", ["none", "cross-site", "same-site"])
def test_a_signed_in_request_from_outside_the_labs_pages_opens_no_grant_and_writes_nothing(job, site):
    """`none` is a typed URL, and also a link another application (a desktop chat or mail client) handed to
    the browser: it opened a grant and recorded a view with the link writer's purpose and words in the
    signed-in technician's name. Only the lab's own pages (`same-origin`) are taken, or no header at all."""
    client, _ = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/preview"
    granted = client.get(url, photo_request(job), headers={"Sec-Fetch-Site": "same-origin"})
    records = AuditRecord.objects.count()

    asked = client.get(url, photo_request(job), headers={"Sec-Fetch-Site": site})
    viewed = client.get(granted["Location"], headers={"Sec-Fetch-Site": site})

    for response in (asked, viewed):
        assert (response.status_code, response.json()["code"]) == (403, "request_from_another_site")
        assert response["Cache-Control"] == "no-store, private"
    assert (AccessGrant.objects.count(), AuditRecord.objects.count()) == (1, records)
    # from the lab's own page, or with no header (an old browser): as before
    own = client.get(granted["Location"], headers={"Sec-Fetch-Site": "same-origin"})
    bare = client.get(url, photo_request(job))
    assert (own.status_code, bare.status_code, bare["Location"]) == (200, 303, granted["Location"])
