"""Technician actions through the staff pages: each works, names its actor; a refusal changes nothing."""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection
from django.urls import reverse

from lab.lib.errors import PermissionDenied
from lab.orders.models import Order, OrderEvent
from lab.production import actions, jobs, rasterizing, reprints, resolutions, submission
from lab.production.models import Batch, JobEvent, MaintenanceTicket, Printer, PrintJob
from printers.hotfolder_device import pending_tickets
from tests.builders import (
    broker_tasks,
    client_as,
    floor_state,
    hotfolder_printer,
    job_walk,
    messages_of,
    person,
    printer_folder,
    ready_to_pack_order,
    released_order,
)
from tests.builders.packing_station import station_pack, station_token

pytestmark = pytest.mark.django_db
WORKER = "staff-test:1"


def post(client, url: str, data: dict[str, str] | None = None):
    """POST and follow the redirect, so the flash message can be read."""
    return client.post(url, data or {}, follow=True)


# --- Printers -----------------------------------------------------------------------------------


def test_pause_then_resume_a_printer_records_the_actor(django_capture_on_commit_callbacks):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    client, technician = client_as("technician")

    paused = post(client, reverse("staff:printer_pause", args=[printer.pk]))
    printer.refresh_from_db()
    assert printer.is_paused_by_lab is True
    assert messages_of(paused) == ["Printer minilab paused."]
    polls_before = broker_tasks("default").count(("production.printer_poll", {}))

    with django_capture_on_commit_callbacks(execute=True):
        resumed = post(client, reverse("staff:printer_resume", args=[printer.pk]))

    printer.refresh_from_db()
    assert printer.is_paused_by_lab is False
    assert messages_of(resumed) == ["Printer minilab resumed."]
    assert list(JobEvent.objects.filter(printer=printer).values_list("kind", "actor")) == [
        ("printer_paused", technician.pk),
        ("printer_resumed", technician.pk),
    ]
    # The poll that kicks the printer's ready jobs is on the broker.
    assert broker_tasks("default").count(("production.printer_poll", {})) == polls_before + 1


def test_resuming_a_printer_costs_the_same_queries_for_2_waiting_jobs_or_12():
    # jobs of a size no printer holds wait: routing them on resume read the printers and loads again per job
    # (one query or more each, in the technician's request), and routed none
    from django.test.utils import CaptureQueriesContext

    printer = hotfolder_printer("minilab", sizes=["4x6"])
    technician = person("technician")
    counts = []
    for waiting in (2, 12):
        released_order(lines=[("PRINT-8X10-LUSTRE", 1)] * (waiting - PrintJob.objects.count()))
        actions.printer_pause(printer_id=printer.pk, actor=technician)
        with CaptureQueriesContext(connection) as queries:
            actions.printer_resume(printer_id=printer.pk, actor=technician)
        counts.append(len(queries))

    assert PrintJob.objects.filter(status="no_printer").count() == 12
    assert counts[0] == counts[1], counts


def test_resume_routes_jobs_that_waited_for_the_paused_printer():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    technician = person("technician")
    actions.printer_pause(printer_id=printer.pk, actor=technician)
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    assert PrintJob.objects.get(order=order).status == "no_printer"

    actions.printer_resume(printer_id=printer.pk, actor=technician)

    job = PrintJob.objects.get(order=order)
    assert (job.status, job.printer_id) == ("queued", printer.pk)


def test_pausing_a_paused_printer_is_refused_and_changes_nothing():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    client, technician = client_as("technician")
    actions.printer_pause(printer_id=printer.pk, actor=technician)
    before = floor_state()

    response = post(client, reverse("staff:printer_pause", args=[printer.pk]))

    assert messages_of(response) == ["Printer minilab is already paused."]
    assert floor_state() == before


def test_resuming_a_printer_that_is_not_paused_is_refused_and_changes_nothing():
    hotfolder_printer("minilab", sizes=["4x6"])
    client, _ = client_as("technician")
    before = floor_state()

    response = post(client, reverse("staff:printer_resume", args=[Printer.objects.get().pk]))

    assert messages_of(response) == ["Printer minilab is not paused."]
    assert floor_state() == before


# --- Batches ------------------------------------------------------------------------------------


def test_hold_and_release_a_batch(django_capture_on_commit_callbacks):
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    batch = Batch.objects.get()
    client, technician = client_as("technician")

    held = post(client, reverse("staff:batch_hold", args=[batch.pk]))
    batch.refresh_from_db()
    assert batch.is_held is True
    assert messages_of(held) == [f"Batch {batch.pk} (4x6 lustre) held."]
    job = job_walk(PrintJob.objects.get(order=order), "ready")
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "waiting"  # held: not sent

    with django_capture_on_commit_callbacks(execute=True):
        post(client, reverse("staff:batch_release", args=[batch.pk]))

    batch.refresh_from_db()
    assert batch.is_held is False
    assert list(JobEvent.objects.filter(kind__startswith="batch_").values_list("kind", "actor")) == [
        ("batch_held", technician.pk),
        ("batch_released", technician.pk),
    ]


def test_releasing_a_batch_that_is_not_held_is_refused():
    hotfolder_printer("minilab", sizes=["4x6"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    batch = Batch.objects.get()
    client, _ = client_as("technician")
    before = floor_state()

    response = post(client, reverse("staff:batch_release", args=[batch.pk]))

    assert messages_of(response) == ["The batch is not held."]
    assert floor_state() == before


# --- Reroute and cancel -------------------------------------------------------------------------


def test_reroute_a_queued_job_to_a_named_printer():
    first = hotfolder_printer("first", sizes=["4x6"])
    second = hotfolder_printer("second", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.get(order=order)
    assert job.printer_id == first.pk
    client, technician = client_as("technician")

    response = post(client, reverse("staff:job_reroute", args=[job.pk]), {"printer": str(second.pk)})

    job.refresh_from_db()
    assert (job.status, job.printer_id) == ("queued", second.pk)
    assert messages_of(response) == [f"Job {job.pk} rerouted to second."]
    assert JobEvent.objects.get(job=job, kind="rerouted").actor_id == technician.pk


def test_reroute_without_another_capable_printer_is_refused_and_changes_nothing():
    hotfolder_printer("only", sizes=["4x6"])
    hotfolder_printer("large", sizes=["8x10"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.get(order=order)
    client, _ = client_as("technician")
    before = floor_state()

    response = post(client, reverse("staff:job_reroute", args=[job.pk]))

    assert messages_of(response) == ["No other online printer holds 4x6 media."]
    assert floor_state() == before


def test_reroute_of_a_printed_job_is_refused_and_changes_nothing():
    hotfolder_printer("first", sizes=["4x6"])
    hotfolder_printer("second", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = job_walk(PrintJob.objects.get(order=order), "printed")
    client, _ = client_as("technician")
    before = floor_state()

    response = post(client, reverse("staff:job_reroute", args=[job.pk]))

    assert messages_of(response) == [f"Job {job.pk} is printed; only queued, ready or failed jobs move."]
    assert floor_state() == before


def test_a_failed_jobs_page_offers_to_send_it_again_on_its_own_printer_and_it_is_sent_there():
    # the only printer that holds 4x6 media held the job's send past the limit: the job failed for a person
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    hotfolder_printer("large", sizes=["8x10"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = job_walk(PrintJob.objects.get(order=order), "ready")
    assert jobs.job_fail(
        job_id=job.pk, from_statuses={"ready"}, kind="backend_failed", code="printer_held_job", message="held"
    )
    client, technician = client_as("technician")

    # the page offers its own printer (before: only the other printers, none here, so only a cancel of the
    # whole order was left)
    page = client.get(reverse("staff:job", args=[job.pk])).content.decode()
    options = re.findall(r'<option value="(\d*)">([^<]*)</option>', page)
    assert options == [("", "least loaded capable printer"), (str(printer.pk), "send again on minilab")]

    response = post(client, reverse("staff:job_reroute", args=[job.pk]), {"printer": str(printer.pk)})

    job.refresh_from_db()
    assert messages_of(response) == [f"Job {job.pk} rerouted to minilab."]
    assert (job.status, job.printer_id, job.failure_code) == ("queued", printer.pk, "")
    assert JobEvent.objects.get(job=job, kind="rerouted").actor_id == technician.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(pending_tickets(folder=printer_folder(printer))) == 1


def test_a_queued_jobs_page_does_not_offer_its_own_printer():
    hotfolder_printer("first", sizes=["4x6"])
    second = hotfolder_printer("second", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.get(order=order)
    client, _ = client_as("technician")

    page = client.get(reverse("staff:job", args=[job.pk])).content.decode()

    options = re.findall(r'<option value="(\d*)">([^<]*)</option>', page)
    assert options == [("", "least loaded capable printer"), (str(second.pk), "second")]


def _a_reprint_not_needed_after_all(order: Order) -> PrintJob:
    original = job_walk(PrintJob.objects.get(order=order), "printed")
    return reprints.job_reprint(job_id=original.pk, actor=person("technician"), reason="damaged", copies=1)


def test_cancel_a_queued_job():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = _a_reprint_not_needed_after_all(order)
    assert job.status == "queued"
    client, technician = client_as("technician")

    response = post(client, reverse("staff:job_cancel", args=[job.pk]))

    job.refresh_from_db()
    assert job.status == "cancelled"
    assert messages_of(response) == [f"Job {job.pk} cancelled."]
    event = JobEvent.objects.get(job=job, kind="cancelled")
    assert (event.from_status, event.actor_id) == ("queued", technician.pk)
    order.refresh_from_db()
    assert order.status == "ready_to_pack"  # everything else of it printed


@pytest.mark.parametrize("status", ["queued", "failed"])
def test_cancel_of_an_items_only_print_is_refused_and_changes_nothing(status):
    # Cancelled, it left the order ready to pack without the item, where nothing could move it: not packable
    # (too few copies), not reprintable (nothing printed), neither holdable nor cancellable.
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)])
    printed, only = PrintJob.objects.filter(order=order).order_by("pk")
    job_walk(printed, "printed")
    if status == "failed":
        assert jobs.job_move(job_id=only.pk, from_statuses={"queued"}, to_status="failed")
    client, _ = client_as("technician")
    before = floor_state()

    response = post(client, reverse("staff:job_cancel", args=[only.pk]))

    assert messages_of(response) == [
        f"Job {only.pk} is the only print of its item: cancelling it would leave the item unmade. "
        "Send it to another printer, or have a supervisor cancel the whole order."
    ]
    assert floor_state() == before
    order.refresh_from_db()
    assert order.status == "in_production"


def test_cancel_a_submitted_job_cancels_it_at_the_printer_first():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = _a_reprint_not_needed_after_all(order)
    assert job.status == "queued"
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(pending_tickets(folder=printer_folder(printer))) == 1
    client, _ = client_as("technician")

    post(client, reverse("staff:job_cancel", args=[job.pk]))

    job.refresh_from_db()
    assert job.status == "cancelled"
    assert pending_tickets(folder=printer_folder(printer)) == []  # the device will not print it


def test_cancel_of_a_printed_job_is_refused_and_changes_nothing():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = job_walk(PrintJob.objects.get(order=order), "printed")
    client, _ = client_as("technician")
    before = floor_state()

    response = post(client, reverse("staff:job_cancel", args=[job.pk]))

    assert messages_of(response) == [f"Job {job.pk} is printed and cannot be cancelled."]
    assert floor_state() == before


# --- Reprint ------------------------------------------------------------------------------------


def test_reprint_creates_a_routed_job_and_sends_the_order_back_to_production():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    original = PrintJob.objects.get(order=order)
    client, technician = client_as("technician")

    response = post(
        client,
        reverse("staff:job_reprint", args=[original.pk]),
        {"reason": "damaged", "copies": "1", "note": "corner bent"},
    )

    reprint = PrintJob.objects.get(reprint_of=original)
    order.refresh_from_db()
    assert messages_of(response) == [f"Reprint requested: job {reprint.pk}, 1 copies, sent to minilab."]
    assert (reprint.status, reprint.copies, reprint.reprint_reason, reprint.printer_id, reprint.item_id) == (
        "queued",
        1,
        "damaged",
        printer.pk,
        original.item_id,
    )
    assert order.status == "in_production"
    event = OrderEvent.objects.filter(order=order).last()
    assert event is not None
    assert (event.from_status, event.to_status, event.actor_id) == (
        "ready_to_pack",
        "in_production",
        technician.pk,
    )
    requested = JobEvent.objects.get(job=reprint, kind="reprint_requested")
    assert (requested.actor_id, requested.note) == (
        technician.pk,
        f"reprint of job {original.pk}: damaged corner bent",
    )


def test_the_reprint_form_sent_twice_reprints_once():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    original = PrintJob.objects.get(order=order)
    client, _ = client_as("technician")
    page = client.get(reverse("staff:job", args=[original.pk])).content.decode()
    key = re.search(r'name="request_key" value="([0-9a-f]{32})"', page)
    assert key is not None
    form = {"reason": "damaged", "copies": "1", "request_key": key.group(1)}

    # a double click, or the browser sending the form again after a slow answer
    first = post(client, reverse("staff:job_reprint", args=[original.pk]), form)
    again = post(client, reverse("staff:job_reprint", args=[original.pk]), form)

    reprint = PrintJob.objects.get(reprint_of=original)  # one reprint, not two
    assert (
        messages_of(first)
        == messages_of(again)
        == [f"Reprint requested: job {reprint.pk}, 1 copies, sent to minilab."]
    )
    assert JobEvent.objects.filter(kind="reprint_requested").count() == 1
    # a new visit of the page is a new request
    fresh = client.get(reverse("staff:job", args=[original.pk])).content.decode()
    assert key.group(1) not in fresh


def test_two_tabs_asking_for_the_same_damaged_prints_reprint_them_once():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    original = PrintJob.objects.get(order=order)
    client, _ = client_as("technician")
    keys = []
    for _tab in range(2):  # two technicians, or two tabs: each page has its own one-time key
        page = client.get(reverse("staff:job", args=[original.pk])).content.decode()
        key = re.search(r'name="request_key" value="([0-9a-f]{32})"', page)
        assert key is not None
        keys.append(key.group(1))

    answers = [
        post(client, reverse("staff:job_reprint", args=[original.pk]), {**form, "request_key": key})
        for key, form in zip(keys, [{"reason": "damaged", "copies": "3"}] * 2, strict=True)
    ]

    # then the three damaged prints are reprinted once (before: six prints, two reprints)
    [reprint] = PrintJob.objects.filter(reprint_of=original)
    assert messages_of(answers[1]) == [
        f"3 of job {original.pk}'s 3 copies are already being reprinted; at most 0 more. "
        "A damaged reprint is reprinted from its job."
    ]
    assert reprint.copies == 3


def test_a_check_of_copies_sent_after_a_reprint_does_not_count_the_replaced_prints_good():
    from lab.production.tracking import order_check_printed

    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    original = PrintJob.objects.get(order=order)
    reprint = reprints.job_reprint(job_id=original.pk, actor=person("technician"), reason="damaged", copies=1)
    client, _ = client_as("technician")

    # a check form opened before the reprint says all three prints are good
    refused = post(client, reverse("staff:job_verify", args=[original.pk]), {"copies": "3"})

    assert messages_of(refused) == [
        f"1 of job {original.pk}'s 3 copies are replaced by reprints; at most 2 of its prints are good."
    ]
    original.refresh_from_db()
    assert original.copies_rejected == 1
    # and the order is packed only once the replacement is counted (before: packed without it)
    job_walk(reprint, "printed")
    assert order_check_printed(order_id=order.pk)
    packer, _ = client_as("packer")
    assert messages_of(station_pack(packer, order)) == ["Confirm every item before packing: item 1 (0 of 3)."]
    assert Order.objects.get(pk=order.pk).status == "ready_to_pack"


@pytest.mark.django_db(transaction=True)
def test_one_reprint_request_sent_twice_at_once_reprints_once():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    original = PrintJob.objects.get(order=order)
    technician = person("technician")
    start = threading.Barrier(2)
    made: list[int] = []

    def send() -> None:
        start.wait()
        try:
            reprint = reprints.job_reprint(
                job_id=original.pk, actor=technician, reason="damaged", copies=1, request_key="a" * 32
            )
            made.append(reprint.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(made) == 2 and len(set(made)) == 1
    assert PrintJob.objects.filter(reprint_of=original).count() == 1


def test_reprint_waits_for_a_printer_when_none_holds_the_media():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)])
    first = job_walk(PrintJob.objects.filter(order=order).order_by("pk")[0], "printed")
    technician = person("technician")
    actions.printer_pause(printer_id=printer.pk, actor=technician)

    reprint = reprints.job_reprint(job_id=first.pk, actor=technician, reason="colour", copies=1)

    assert (reprint.status, reprint.printer_id) == ("no_printer", None)
    order.refresh_from_db()
    assert order.status == "in_production"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reason": "bored", "copies": "1"}, "Please check the form. reason: Select a valid choice."),
        ({"reason": "damaged", "copies": "4"}, "Reprint between 1 and 3 copies of job {job}."),
        ({"reason": "damaged", "copies": "0"}, "Please check the form. copies: Ensure this value"),
    ],
)
def test_reprint_with_bad_input_is_refused_and_changes_nothing(data, message):
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    job = PrintJob.objects.get(order=order)
    client, _ = client_as("technician")
    before = floor_state()

    response = post(client, reverse("staff:job_reprint", args=[job.pk]), data)

    assert messages_of(response)[0].startswith(message.format(job=job.pk))
    assert floor_state() == before


def test_reprint_of_an_unprinted_job_or_a_packed_order_is_refused():
    hotfolder_printer("minilab", sizes=["4x6"])
    queued_order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    queued = PrintJob.objects.get(order=queued_order)
    packed_order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    printed = PrintJob.objects.get(order=packed_order)
    from lab.orders.transitions import order_transition

    order_transition(order=packed_order, to_status="packed")
    client, _ = client_as("technician")
    before = floor_state()

    first = post(client, reverse("staff:job_reprint", args=[queued.pk]), {"reason": "crop", "copies": "1"})
    second = post(client, reverse("staff:job_reprint", args=[printed.pk]), {"reason": "crop", "copies": "1"})

    assert messages_of(first) == [f"Job {queued.pk} is queued; only printed jobs are reprinted."]
    assert messages_of(second) == [
        f"Order {packed_order.ref} is packed; reprints are for orders still on the floor."
    ]
    assert floor_state() == before


# --- Unknown jobs and QC ------------------------------------------------------------------------


def unknown_job() -> PrintJob:
    """A job with a real raster whose submit outcome was lost (the reconciler's verdict)."""
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    job = PrintJob.objects.get(order=order)
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    job_walk(job, "submitting")
    assert jobs.job_move(job_id=job.pk, from_statuses={"submitting"}, to_status="unknown")
    job.refresh_from_db()
    return job


def test_resolve_unknown_as_printed_makes_the_order_ready_to_pack():
    hotfolder_printer("minilab", sizes=["4x6"])
    job = unknown_job()
    client, technician = client_as("technician")

    response = post(client, reverse("staff:job_resolve", args=[job.pk]), {"outcome": "printed"})

    job.refresh_from_db()
    job.order.refresh_from_db()
    assert messages_of(response) == [f"Job {job.pk} marked printed."]
    assert (job.status, job.printed_at is not None, job.order.status) == ("printed", True, "ready_to_pack")
    assert JobEvent.objects.get(job=job, kind="resolved_printed").actor_id == technician.pk


def test_resolve_unknown_as_not_printed_sends_it_again(django_capture_on_commit_callbacks):
    hotfolder_printer("minilab", sizes=["4x6"])
    job = unknown_job()
    client, _ = client_as("technician")
    submits_before = broker_tasks("print").count(("production.print_job_submit", {"job_id": job.pk}))

    with django_capture_on_commit_callbacks(execute=True):
        post(client, reverse("staff:job_resolve", args=[job.pk]), {"outcome": "not_printed"})

    job.refresh_from_db()
    assert job.status == "ready"
    assert (
        broker_tasks("print").count(("production.print_job_submit", {"job_id": job.pk})) == submits_before + 1
    )
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"


def test_resolving_a_job_that_is_not_unknown_is_refused():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.get(order=order)
    client, _ = client_as("technician")
    before = floor_state()

    response = post(client, reverse("staff:job_resolve", args=[job.pk]), {"outcome": "printed"})

    assert messages_of(response) == [f"Job {job.pk} is queued; only unknown or suspect jobs are resolved."]
    assert floor_state() == before


def test_packer_and_technician_verify_copies_of_a_printed_job():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    job = job_walk(PrintJob.objects.get(order=order), "printed")
    packer_client, packer = client_as("packer")

    response = post(packer_client, reverse("staff:job_verify", args=[job.pk]), {"copies": "2"})

    job.refresh_from_db()
    assert job.copies_verified == 2
    assert messages_of(response) == [f"Job {job.pk}: 2 of 3 copies checked."]
    event = JobEvent.objects.get(job=job, kind="copies_verified")
    assert (event.actor_id, event.note) == (packer.pk, "2 of 3 copies good")


def test_verifying_more_copies_than_printed_is_refused():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    job = job_walk(PrintJob.objects.get(order=order), "printed")
    client, _ = client_as("technician")
    before = floor_state()

    response = post(client, reverse("staff:job_verify", args=[job.pk]), {"copies": "4"})

    assert messages_of(response) == [f"Job {job.pk} has 3 copies; you entered 4."]
    assert floor_state() == before


def test_services_refuse_a_packer_even_without_the_pages():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    packer = person("packer")
    before = floor_state()

    with pytest.raises(PermissionDenied):
        actions.printer_pause(printer_id=printer.pk, actor=packer)

    assert floor_state() == before
    assert Printer.objects.get().is_paused_by_lab is False


def test_a_maintenance_ticket_naming_a_job_in_other_digits_is_refused_not_a_500():
    # '²'.isdigit() is true, int('²') raises: a 500 for the technician
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    job_walk(job, "submitted")
    client, _ = client_as("technician")
    client.raise_request_exception = False

    form = {"description": "jam", "job_ids": "²"}
    response = post(client, reverse("staff:ticket_open", args=[job.pk]), form)

    assert response.status_code == 200
    assert messages_of(response) == ["Choose jobs from the list."]


def test_a_maintenance_ticket_whose_description_holds_a_nul_is_refused_not_a_500():
    # Every other note here goes through a Django form, which refuses a NUL; PostgreSQL's text cannot hold one
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    job_walk(job, "submitted")
    client, _ = client_as("technician")
    client.raise_request_exception = False

    form = {"description": "jam\x00", "job_ids": str(job.pk)}
    response = post(client, reverse("staff:ticket_open", args=[job.pk]), form)

    assert response.status_code == 200
    assert messages_of(response) == ["The description holds a character that cannot be saved."]
    assert not MaintenanceTicket.objects.exists()


# --- Forms opened before another person acted ---------------------------------------------------


def _hidden_inputs(page: str, form_action: str) -> dict[str, str]:
    """The hidden fields of the page's first form posting to `form_action`, as the browser sends them."""
    start = page.index(f'action="{form_action}"')
    form = page[start : page.index("</form>", start)]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form))


def test_two_tabs_asking_for_one_damaged_print_reprint_it_once():
    # Part of a job's prints: within its copies, two tabs (each with its own one-time key) made two reprints,
    # two of three prints counted rejected, a spare print and the reprint's webhooks twice.
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    original = PrintJob.objects.get(order=order)
    client, _ = client_as("technician")
    url = reverse("staff:job_reprint", args=[original.pk])
    tabs = [  # two technicians, or two tabs, open the job's page before either reprints
        _hidden_inputs(client.get(reverse("staff:job", args=[original.pk])).content.decode(), url)
        for _tab in range(2)
    ]
    assert tabs[0]["request_key"] != tabs[1]["request_key"]

    answers = [post(client, url, {**tab, "reason": "damaged", "copies": "1"}) for tab in tabs]

    [reprint] = PrintJob.objects.filter(reprint_of=original)
    assert messages_of(answers[0]) == [f"Reprint requested: job {reprint.pk}, 1 copies, sent to minilab."]
    assert messages_of(answers[1]) == [
        f"Another reprint of job {original.pk} was made since you opened this page (job {reprint.pk}, 1 "
        "copies); nothing was reprinted. Look again before reprinting."
    ]
    original.refresh_from_db()
    assert original.copies_rejected == 1
    assert JobEvent.objects.filter(kind="reprint_requested").count() == 1
    # a page opened after the reprint may reprint another print
    fresh = _hidden_inputs(client.get(reverse("staff:job", args=[original.pk])).content.decode(), url)
    post(client, url, {**fresh, "reason": "colour", "copies": "1"})
    assert PrintJob.objects.filter(reprint_of=original).count() == 2


def test_a_check_after_a_partial_reprint_does_not_keep_the_reprints_rejection_once_it_is_cancelled():
    # The check (at most the prints not replaced) recorded the replaced print as its own rejection: the
    # reprint cancelled as not needed gave nothing back, and the station refused the item's full count.
    from lab.packing.station import item_confirm

    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    original = PrintJob.objects.get(order=order)
    technician = person("technician")
    reprint = reprints.job_reprint(job_id=original.pk, actor=technician, reason="damaged", copies=1)
    reprints.job_verify_copies(job_id=original.pk, actor=technician, copies=1)  # the one print not replaced
    actions.job_cancel(job_id=reprint.pk, actor=technician, note="not needed after all")

    original.refresh_from_db()
    assert (original.copies_rejected, original.copies_rejected_at_check) == (0, 0)
    packer = person("packer")
    seen = station_token(order, packer=packer, position=1)
    line = item_confirm(code=order.ref, position=1, copies_counted=2, actor=packer, seen=seen)
    assert line.copies_confirmed == 2


@pytest.mark.parametrize("outcome", ["printed", "not_printed"])
def test_a_resolve_form_opened_before_the_job_was_sent_again_is_refused(outcome):
    # A and B open the unknown job; B answers "not printed", and the new send is unknown in turn. A's form
    # "it printed" marked it printed while the new send could print unseen; "send again" made a third send.
    hotfolder_printer("minilab", sizes=["4x6"])
    job = unknown_job()
    client, _ = client_as("technician")
    url = reverse("staff:job_resolve", args=[job.pk])
    stale = _hidden_inputs(client.get(reverse("staff:job", args=[job.pk])).content.decode(), url)
    assert stale["title_token"] == job.title_token
    resolutions.job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)
    job_walk(job, "submitting")
    assert jobs.job_move(job_id=job.pk, from_statuses={"submitting"}, to_status="unknown")
    before = floor_state()

    response = post(client, url, {**stale, "outcome": outcome})

    assert messages_of(response) == [
        f"Job {job.pk} changed since you opened this page: it was sent again since. Nothing was changed; "
        "look again and count its prints."
    ]
    assert floor_state() == before
    assert PrintJob.objects.get(pk=job.pk).status == "unknown"
    # the page as it is now resolves it
    fresh = _hidden_inputs(client.get(reverse("staff:job", args=[job.pk])).content.decode(), url)
    post(client, url, {**fresh, "outcome": "printed"})
    assert PrintJob.objects.get(pk=job.pk).status == "printed"


def test_a_printer_cancel_is_recorded_under_the_technician_even_when_the_job_moved_meanwhile(monkeypatch):
    # The printer cancelled the job for the technician, then the listener moved it to failed before the
    # cancel's own move: nothing recorded the cancel made at the printer, nor who asked for it.
    from printers.hotfolder import HotFolderBackend

    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = _a_reprint_not_needed_after_all(order)
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    cancel_of = HotFolderBackend.cancel_of

    def cancel_then_the_listener_fails_it(self, handle: str, *, title: str) -> None:
        cancel_of(self, handle, title=title)
        assert jobs.job_move(job_id=job.pk, from_statuses={"submitted"}, to_status="failed")

    monkeypatch.setattr(HotFolderBackend, "cancel_of", cancel_then_the_listener_fails_it)
    client, technician = client_as("technician")

    response = post(client, reverse("staff:job_cancel", args=[job.pk]))

    assert messages_of(response) == [f"Job {job.pk} changed meanwhile; look again and retry."]
    assert PrintJob.objects.get(pk=job.pk).status == "failed"
    event = JobEvent.objects.get(job=job, actor_id=technician.pk)
    assert (event.kind, event.printer_id) == ("printer_cancel_requested", job.printer_id)


def test_earlier_sends_withdrawn_for_a_person_are_recorded_under_that_person():
    hotfolder_printer("minilab", sizes=["4x6"])
    job = unknown_job()
    client, technician = client_as("technician")

    post(client, reverse("staff:job_resolve", args=[job.pk]), {"outcome": "not_printed"})

    assert JobEvent.objects.get(job=job, kind="earlier_sends_withdrawn").actor_id == technician.pk
