"""The job page offers only the photo requests the gate grants: an offer it refuses got an honest person a
flagged denial and ended their live grant on the photo. And every other path under /lab/photos/ is a recorded
denial, a newline in it too."""

from __future__ import annotations

import re

import pytest

from lab.audit.models import AuditRecord
from lab.orders.models import ClarificationCase
from lab.production.holds import order_hold
from lab.production.models import PrintJob
from lab.production.states import JobStatus
from tests.builders import client_as, hotfolder_printer, job_walk, ready_to_pack_order, released_order

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(settings) -> PrintJob:
    hotfolder_printer("minilab", sizes=["4x6"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    return PrintJob.objects.select_related("order", "item").get()


def photo_forms(page: str) -> dict[str, str]:
    """Each photo request form on a job page, by the purpose it names."""
    forms = re.findall(r'<form [^>]*class="inline photo-request">.*?</form>', page, flags=re.DOTALL)
    return {re.findall(r'name="purpose" value="([a-z_]+)"', form)[0]: form for form in forms}


def test_whoever_held_the_order_is_offered_no_full_resolution_of_its_clarification_and_a_colleague_is(job):
    """The opener was shown "Full resolution" under the case; the gate refuses it to them
    (clarification_full_resolution_not_by_its_opener, flagged) and ends their live preview grant."""
    # given an order a technician put on hold (its case open)
    opener_client, opener = client_as("technician")
    order_hold(order_ref=job.order.ref, actor=opener, message="Which way should we crop?")
    case = ClarificationCase.objects.get()
    colleague_client, _ = client_as("technician")

    # when each opens the job's page
    own = photo_forms(opener_client.get(f"/lab/jobs/{job.pk}/").content.decode())
    other = photo_forms(colleague_client.get(f"/lab/jobs/{job.pk}/").content.decode())

    # then both may ask for the case's preview, only the colleague for its full resolution
    assert (sorted(own), sorted(other)) == (["order_clarification"], ["order_clarification"])
    assert f'name="context_id" value="{case.pk}"' in own["order_clarification"]
    assert "Full resolution" not in own["order_clarification"]
    assert "Full resolution" in other["order_clarification"]


def test_a_printed_job_is_offered_neither_printing_nor_handling(job):
    """The gate refuses both for a printed job (print_job_not_active, flagged outside_production_step)."""
    # given an order of two jobs, one printed, the order still in production
    released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)])
    printed, waiting = PrintJob.objects.exclude(pk=job.pk).order_by("pk")
    job_walk(printed, JobStatus.PRINTED)
    client, _ = client_as("technician")

    # when a technician opens each job's page and asks for the printed one's photo as it was offered
    printed_page = client.get(f"/lab/jobs/{printed.pk}/").content.decode()
    waiting_page = client.get(f"/lab/jobs/{waiting.pk}/").content.decode()

    # then only the job still to print offers them
    assert printed.order.status == "in_production"
    assert sorted(photo_forms(printed_page)) == []
    assert sorted(photo_forms(waiting_page)) == ["handling", "printing"]


def test_packaging_is_offered_only_for_an_order_being_packed(job):
    """The gate refuses packaging for an order not ready to pack or packed (order_not_being_packed)."""
    # given a job still to print and a printed order waiting at the packing station
    ready = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    packed_job = PrintJob.objects.get(order=ready)
    client, _ = client_as("supervisor")

    # when a supervisor opens both jobs' pages
    in_production = photo_forms(client.get(f"/lab/jobs/{job.pk}/").content.decode())
    being_packed = photo_forms(client.get(f"/lab/jobs/{packed_job.pk}/").content.decode())

    # then packaging is offered for the order being packed only, and printing and handling for the job still
    # to print only
    assert sorted(in_production) == ["handling", "printing"]
    assert sorted(being_packed) == ["packaging"]


def test_every_offer_on_the_page_is_granted_by_the_gate(job):
    """What the page offers, asked as offered, is shown: no refusal recorded, no flag."""
    # given an order a supervisor put on hold, its job failed at the printer (still handled)
    PrintJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
    holder_client, holder = client_as("supervisor")
    order_hold(order_ref=job.order.ref, actor=holder, message="Which way should we crop?")

    # when whoever held it asks for every photo the page offers, preview and (where offered) full resolution
    page = holder_client.get(f"/lab/jobs/{job.pk}/").content.decode()
    answers = []
    for purpose, form in sorted(photo_forms(page).items()):
        params = dict(re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]+)"', form))
        params["justification"] = "checking the crop of the photo"
        variants = ["preview", "full"] if "Full resolution" in form else ["preview"]
        for variant in variants:
            response = holder_client.get(f"/lab/photos/{job.item.asset_id}/{variant}", params, follow=True)
            answers.append((purpose, variant, response.status_code))

    # then each is shown and none is refused
    assert answers == [
        ("handling", "preview", 200),
        ("order_clarification", "preview", 200),
        ("printing", "preview", 200),
        ("printing", "full", 200),
    ]
    assert not AuditRecord.objects.filter(action="image.access.denied").exists()


def test_a_path_with_a_newline_under_the_gate_is_a_recorded_unknown_path(job):
    """`.` does not match a newline: `/lab/photos/x%0Ay` fell past the gate's catch-all to a plain 404 with no
    record, while every other path under /lab/photos/ is a recorded `unknown_path` denial."""
    client, technician = client_as("technician")

    response = client.get("/lab/photos/x%0Ay")

    assert (response.status_code, response.json()["code"], response.json()["rule"]) == (
        404,
        "image_not_found",
        "unknown_path",
    )
    record = AuditRecord.objects.get()
    assert (record.action, record.outcome, record.rule, record.actor_id) == (
        "image.access.denied",
        "denied",
        "unknown_path",
        str(technician.public_id),
    )


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.UNKNOWN, JobStatus.SUSPECT])
def test_a_job_that_ended_at_the_printer_unconfirmed_is_offered_and_shown_for_handling(job, status):
    """Its prints are still to count: a `suspect` job (a cancel at the console mid-print, a print sent twice)
    was offered nothing, and asked for directly was refused (print_job_not_active, flagged
    outside_production_step), ending the person's grants on the photo."""
    # given a job that left the printer failed, unknown or suspect
    PrintJob.objects.filter(pk=job.pk).update(status=status)
    client, _ = client_as("technician")

    # when a technician opens its page and asks for the photo under handling as offered
    forms = photo_forms(client.get(f"/lab/jobs/{job.pk}/").content.decode())
    params = {"purpose": "handling", "context_type": "print_job", "context_id": job.pk, "justification": ""}
    response = client.get(f"/lab/photos/{job.item.asset_id}/preview", params, follow=True)

    # then handling and printing are offered, and the preview is shown, nothing refused
    assert sorted(forms) == ["handling", "printing"]
    assert response.status_code == 200
    assert list(AuditRecord.objects.values_list("action", "rule")) == [
        ("image.view.preview", "active_print_job")
    ]
