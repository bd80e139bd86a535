"""The copies a `late_copy_not_cancelled` event listed for a person are rows (ListedCopy, migration
production/0022), one per copy of a job at a printer, written with the event: a later move, send again or
cancel of the job reads them (cancellation.copy_listed_already) and does not list such a copy again. Before,
a regex searched those events' notes for `handle:`: a copy named past a note's 500 characters was never
found, so listed (and alerted) again, and two writers at once could both list one copy.
"""

from __future__ import annotations

import re

import pytest

from lab.production import rasterizing, reroutes, submission, withdrawals
from lab.production.alerts import printed_after_cancel_events
from lab.production.backends import backend_for, copies_titled
from lab.production.cancellation import (
    ALREADY_PRINTED,
    MAY_HAVE_PRINTED,
    copies_listed_record,
    copy_listed_already,
    late_copies_list,
    order_cancel_in_production,
)
from lab.production.models import JobEvent, ListedCopy, Printer, PrintJob
from printers.base import JobInfo, JobState, PrinterBackend
from tests.builders import WORKER, cups_printer, person
from tests.builders.production import hotfolder_printer, ready_with_a_send_that_began, released_order
from tests.support.cups import PrivateCups
from tests.support.database_locks import committed_right_after_the_check
from tests.support.migrations import leaf_migrations, migrate_to

LATE = "late_copy_not_cancelled"
BEFORE = [("production", "0021_printjob_copies_packed")]


def _job_at(printer: Printer) -> PrintJob:
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    return job


def _rows(job: PrintJob) -> set[tuple[int, str, int]]:
    return set(ListedCopy.objects.filter(job=job).values_list("printer_id", "handle", "event_id"))


@pytest.mark.django_db
def test_a_copy_named_past_the_notes_cut_is_not_listed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    with PrivateCups() as cups_server:
        # given a job whose copy began and was cancelled at the console, between the retries of its send, on
        # a printer that lists 30 more such copies of it before that one (a console cancel each: made up
        # here, a device taking seconds a print)
        job, printer, began = ready_with_a_send_that_began(cups_server, monkeypatch)
        other = cups_printer(cups_server, "other", print_seconds=1)
        earlier = [
            JobInfo(handle=str(900000 + n), title=job.title, state=JobState.CANCELED, processing_started_at=1)
            for n in range(30)
        ]
        listed_by_the_printer = copies_titled

        def with_earlier_copies(backend: PrinterBackend, title: str) -> list[JobInfo]:
            return [*earlier, *listed_by_the_printer(backend, title)]

        monkeypatch.setattr(withdrawals, "copies_titled", with_earlier_copies)

        # ... moved to another printer: one event lists all 31, its note cut at 500 characters before the
        # copy that began
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=other.pk)
        monkeypatch.setattr(withdrawals, "copies_titled", listed_by_the_printer)
        (flagged,) = JobEvent.objects.filter(job=job, kind=LATE)
        assert flagged.note.startswith(f"{MAY_HAVE_PRINTED}: 900000:canceled, began, ")
        assert len(flagged.note) == 500
        assert not re.search(rf"(: |, ){re.escape(began)}:", flagged.note)  # what the regex looked for
        assert copy_listed_already(job_id=job.pk, printer_id=printer.pk, handle=began)
        assert len(_rows(job)) == 31

        # when it is moved back to its own printer under the same title, its new send held there, and a
        # supervisor cancels the order
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=printer.pk)
        cups_server.disable("busy")
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        job.refresh_from_db()
        held = job.backend_job_id
        assert backend_for(printer).job_info(held).state is JobState.PENDING
        order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))

        # then the copy that began is not listed again (before: the cancel listed it as printing, a second
        # alert for one copy), and the held send is withdrawn cleanly
        assert list(JobEvent.objects.filter(job=job, kind=LATE)) == [flagged]
        (settled,) = JobEvent.objects.filter(job=job, kind="printer_cancelled")
        assert not settled.note.startswith(MAY_HAVE_PRINTED)
        assert f"{held}:cancelled" in settled.note
        assert f"{began}:canceled, began, listed already" in settled.note
        assert list(printed_after_cancel_events()) == [flagged]
        cups_server.enable("busy")
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("busy")) == 1


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_records_the_copies_the_events_before_it_listed() -> None:
    # given a lab before migration 0022, with the events of late copies it wrote then
    minilab = hotfolder_printer("minilab", sizes=["4x6"])
    job = _job_at(minilab)
    backup = hotfolder_printer("backup", sizes=["4x6"])
    latest = leaf_migrations("production")
    migrate_to(BEFORE)
    try:

        def event(kind: str, note: str, printer: Printer | None = minilab) -> JobEvent:
            return JobEvent.objects.create(job=job, printer=printer, kind=kind, note=note)

        moved = event(LATE, f"{MAY_HAVE_PRINTED}: 12:processing, cancel asked, 13:canceled, began")
        again = event(LATE, f"{MAY_HAVE_PRINTED}: 13:canceled, began, 14:stopped, cancel asked")
        late = event(
            LATE, f"{ALREADY_PRINTED}: 15:completed, sent after the job was cancelled, not cancelled"
        )
        cut = event(LATE, f"{MAY_HAVE_PRINTED}: 16:stopped, cancel asked, 17")  # cut at 500 after `17`
        elsewhere = event(LATE, f"{MAY_HAVE_PRINTED}: 12:canceled, began", printer=backup)
        event(LATE, f"{MAY_HAVE_PRINTED}: 18:canceled, began", printer=None)  # the regex never found it
        event("printer_cancelled", f"{MAY_HAVE_PRINTED}: 19:processing, cancel asked")  # not a listing
    finally:
        # when the lab is upgraded
        migrate_to(latest)

    # then each copy an event's note named at its printer is a row, kept by the first event that named it
    # (before: no rows, every such copy listed again after the upgrade)
    assert _rows(job) == {
        (minilab.pk, "12", moved.pk),
        (minilab.pk, "13", moved.pk),
        (minilab.pk, "14", again.pk),
        (minilab.pk, "15", late.pk),
        (minilab.pk, "16", cut.pk),
        (backup.pk, "12", elsewhere.pk),
    }
    assert copy_listed_already(job_id=job.pk, printer_id=minilab.pk, handle="13")
    assert not copy_listed_already(job_id=job.pk, printer_id=minilab.pk, handle="17")


@pytest.mark.django_db
def test_recording_a_copy_twice_keeps_one_row_the_first_events() -> None:
    # given two events of a job that name the same copy
    minilab = hotfolder_printer("minilab", sizes=["4x6"])
    job = _job_at(minilab)
    first, second = (
        JobEvent.objects.create(job=job, printer=minilab, kind=LATE, note=f"{MAY_HAVE_PRINTED}: …")
        for _ in range(2)
    )

    # when each records its copies, the first one naming a copy twice
    recorded_first = copies_listed_record(event=first, printer_id=minilab.pk, handles=["a1", "a1", "b2"])
    recorded_second = copies_listed_record(event=second, printer_id=minilab.pk, handles=["b2", "c3"])

    # then a copy is one row, the first event's (before: nothing recorded them)
    assert (recorded_first, recorded_second) == ({"a1", "b2"}, {"c3"})
    assert _rows(job) == {
        (minilab.pk, "a1", first.pk),
        (minilab.pk, "b2", first.pk),
        (minilab.pk, "c3", second.pk),
    }


@pytest.mark.django_db(transaction=True)
def test_a_copy_another_writer_lists_at_the_same_moment_is_listed_once() -> None:
    # given a job at a printer, and a move that lists copy `aa11` of it, committing right after a send again
    # checked that no event listed the copies it found (`aa11` and `bb22`)
    minilab = hotfolder_printer("minilab", sizes=["4x6"])
    job = _job_at(minilab)
    moved: list[JobEvent | None] = []

    def move_lists() -> None:
        moved.append(late_copies_list(job=job, outcomes={"aa11": "aa11:canceled, began"}))

    # when the send again lists its copies
    with committed_right_after_the_check("aa11", move_lists):
        again = late_copies_list(
            job=job, outcomes={"aa11": "aa11:canceled, began", "bb22": "bb22:stopped, cancel asked"}
        )

    # then each copy is listed by one event, the send again's naming only the copy the move did not (before:
    # both events named `aa11`, alerted twice)
    (by_the_move,) = moved
    assert by_the_move is not None and again is not None
    assert by_the_move.note == f"{MAY_HAVE_PRINTED}: aa11:canceled, began"
    assert again.note == f"{MAY_HAVE_PRINTED}: bb22:stopped, cancel asked"
    assert _rows(job) == {(minilab.pk, "aa11", by_the_move.pk), (minilab.pk, "bb22", again.pk)}
    assert list(JobEvent.objects.filter(job=job, kind=LATE)) == [by_the_move, again]

    # ... and one that would list only copies listed meanwhile writes no event
    with committed_right_after_the_check(
        "cc33", lambda: late_copies_list(job=job, outcomes={"cc33": "cc33:canceled, began"})
    ):
        assert late_copies_list(job=job, outcomes={"cc33": "cc33:canceled, began"}) is None
    assert JobEvent.objects.filter(job=job, kind=LATE).count() == 3
    assert ListedCopy.objects.filter(job=job, handle="cc33").count() == 1
