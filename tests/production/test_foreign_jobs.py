"""The lab acts only on its own jobs at a print server it shares.

A lab's job is known at the printer by its title. The title was `lab-job-<id>`, and ids are unique in one
database only: a second installation sending to the same cupsd (another lab, a staging copy), or this lab's
database restored from a backup or rebuilt (its ids counted again from where the backup left them), has jobs
of the same ids. The lab took such a job for its own: a retry adopted it instead of sending its own print (a
silent loss: the job ended `printed` on the other's paper), and the spool sweep purged it (the other lab's
record of it gone). A title now carries a random token per job, `lab-job-<id>-<token>`
(lab/production/models.py), and every place that maps a printer's titles to jobs matches the whole title.

Against a private cupsd; "another installation" is whoever else sends titled jobs to the same queue: one on
an older version (`lab-job-<id>`), or one on this version, or this database before a restore
(`lab-job-<id>-<another token>`). What the printer received is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db.models.functions import Now

from lab.production import rasterizing
from lab.production.backends import backend_for, media_for
from lab.production.listener import EventSource, SourceListener
from lab.production.models import Printer, PrintJob, job_title, jobs_titled
from lab.production.spool import printer_documents_discard
from lab.production.states import JobStatus
from lab.production.submission import print_job_submit
from lab.production.submit_reconcile import reconcile_submitting
from printers.base import EventBatch, EventFeed, JobNotice, JobState
from printers.registry import KIND_CUPS
from tests.builders.production import WORKER, hotfolder_printer, job_walk, released_order
from tests.support.celery_worker import wait_until
from tests.support.cups import PrivateCups
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db
J = JobStatus
QUEUE = "shared"
# The titles another installation gives its job of the same id: on an older version, and on this one.
OTHER_TITLES = {"older-version": "lab-job-{pk}", "this-version": "lab-job-{pk}-0badc0de"}


@pytest.fixture
def shared_cups() -> Iterator[PrivateCups]:
    with PrivateCups() as server:
        server.add_printer(QUEUE, media=["na_index-4x6_4x6in"])
        yield server


@pytest.fixture
def printer(shared_cups: PrivateCups) -> Printer:
    return Printer.objects.create(
        name="shared",
        backend="cups",
        target=QUEUE,
        cups_server=shared_cups.server,
        media_sizes=["4x6"],
        papers=["lustre", "glossy"],
    )


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "other-lab.jpg"
    path.write_bytes(jpeg_bytes(60, 40))
    return path


def _our_job(printer: Printer) -> PrintJob:
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.get(order=order)
    assert job.printer_id == printer.pk
    return job


def _printed_at(printer: Printer, photo: Path, title: str) -> str:
    """A job titled `title` sent to the printer (by another installation, or as ours), printed: its handle."""
    backend = backend_for(printer)
    handle = backend.submit(path=photo, title=title, media=media_for("4x6"), copies=1)
    wait_until(lambda: backend.job_info(handle).state is JobState.COMPLETED, timeout=30, what="its print")
    return handle


def _received_titles(server: PrivateCups) -> list[str]:
    return [path.stem.partition("-")[2] for path in server.received_files(QUEUE)]


@pytest.mark.parametrize("other", OTHER_TITLES)
def test_a_retry_adopts_no_job_of_another_installation_and_sends_its_own_print(
    shared_cups: PrivateCups, printer: Printer, photo: Path, other: str
) -> None:
    # given our job ready to be sent again (an earlier attempt was cut off before CUPS had it) ...
    job = _our_job(printer)
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    PrintJob.objects.filter(pk=job.pk).update(submit_attempts=1)
    job.refresh_from_db()
    # ... and another installation's job of the same id at the same printer, printed there
    foreign_title = OTHER_TITLES[other].format(pk=job.pk)
    foreign = _printed_at(printer, photo, foreign_title)

    # when the retry runs
    outcome = print_job_submit(job_id=job.pk, worker=WORKER)

    # then it sent our print (before: "adopted", the other's job taken for ours, our print never made)
    job.refresh_from_db()
    assert (outcome, job.status) == ("submitted", J.SUBMITTED)
    assert job.backend_job_id != foreign
    wait_until(lambda: len(_received_titles(shared_cups)) == 2, timeout=30, what="our print")
    assert sorted(_received_titles(shared_cups)) == sorted([foreign_title, job.title])


@pytest.mark.parametrize("other", OTHER_TITLES)
def test_a_retry_adopts_no_job_another_installation_left_in_a_shared_hot_folder(
    photo: Path, other: str
) -> None:
    # given a hot folder two installations write to, our job ready to be sent again, and the other's job of
    # the same id waiting in the folder for the device
    printer = hotfolder_printer("shared-folder", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    PrintJob.objects.filter(pk=job.pk).update(submit_attempts=1)
    backend = backend_for(printer)
    foreign = backend.submit(path=photo, title=OTHER_TITLES[other].format(pk=job.pk), media=media_for("4x6"))

    # when the retry runs, then it sends our print beside the other's (before: it adopted the other's)
    assert print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    job.refresh_from_db()
    titles = sorted(info.title for info in backend.find_jobs(title_prefix="lab-job-"))
    assert job.backend_job_id != foreign
    assert titles == sorted([OTHER_TITLES[other].format(pk=job.pk), job.title])


@pytest.mark.parametrize("other", OTHER_TITLES)
def test_the_reconciler_takes_no_job_of_another_installation_for_the_one_a_dead_worker_was_sending(
    shared_cups: PrivateCups, printer: Printer, photo: Path, other: str
) -> None:
    # given our job left `submitting` by a worker that died before CUPS had it, and another installation's
    # job of the same id printed at the same printer
    job = job_walk(_our_job(printer), J.SUBMITTING)
    PrintJob.objects.filter(pk=job.pk).update(sending_claim_at=Now())  # it had begun to send
    job.refresh_from_db()
    _printed_at(printer, photo, OTHER_TITLES[other].format(pk=job.pk))

    # when the reconciler looks for our job at the printer
    outcome = reconcile_submitting(job)

    # then it finds none and asks a person (before: "reconciled" with the other's job, and `printed` next)
    job.refresh_from_db()
    assert (outcome, job.status, job.backend_job_id) == ("unknown", J.UNKNOWN, "")


@pytest.mark.parametrize("other", OTHER_TITLES)
def test_the_spool_sweep_erases_no_job_of_another_installation(
    shared_cups: PrivateCups, printer: Printer, photo: Path, other: str
) -> None:
    # given our job printed, its document discarded already, and another installation's job of the same id
    # over at the same printer, its document and history entry still there (that lab has yet to read it)
    job = job_walk(_our_job(printer), J.PRINTED)
    foreign = _printed_at(printer, photo, OTHER_TITLES[other].format(pk=job.pk))

    # when the sweep runs
    counts = printer_documents_discard()

    # then it left the other's job alone (before: purged, as if it were our printed job's)
    assert counts.get("discarded", 0) == 0
    assert [info.handle for info in backend_for(printer).find_jobs(title_prefix="lab-job-")] == [foreign]


def test_the_spool_sweep_still_erases_our_own_printed_jobs_documents(
    shared_cups: PrivateCups, printer: Printer, photo: Path
) -> None:
    # given our printed job's document at the printer, under its title
    job = _our_job(printer)
    _printed_at(printer, photo, job.title)
    job_walk(job, J.PRINTED)

    # when the sweep runs, then it is erased
    assert printer_documents_discard().get("discarded") == 1
    assert backend_for(printer).find_jobs(title_prefix="lab-job-") == []


class _Notices(EventFeed):
    def __init__(self, notices: tuple[JobNotice, ...]) -> None:
        self.notices = notices

    def pull(self) -> EventBatch:
        return EventBatch(jobs=self.notices)


@pytest.mark.parametrize("other", OTHER_TITLES)
def test_the_listener_reads_no_job_for_another_installation_s_event(
    shared_cups: PrivateCups, printer: Printer, other: str
) -> None:
    # given our job being sent (its handle not saved yet), and an event about another installation's job of
    # the same id
    job = job_walk(_our_job(printer), J.SUBMITTING)
    title = OTHER_TITLES[other].format(pk=job.pk)
    other_job = JobNotice(handle="77", title=title, state=JobState.COMPLETED)
    listener = SourceListener(
        source=EventSource(kind=KIND_CUPS, server=shared_cups.server), feed=_Notices((other_job,))
    )

    # when the listener acts on it, then our job is not queued to be read again on its account
    listener.step()
    assert listener._retry == {}


def test_only_whole_titles_of_our_jobs_name_them(printer: Printer) -> None:
    ours = _our_job(printer)
    legacy = _our_job(printer)
    PrintJob.objects.filter(pk=legacy.pk).update(title_token="")  # made before titles had a token
    legacy.refresh_from_db()

    titles = [
        ours.title,
        legacy.title,
        job_title(ours.pk, "0badc0de"),
        f"lab-job-{ours.pk}",
        f"lab-job-{legacy.pk}-0badc0de",
        "lab-job-999999-0badc0de",
        f"lab-job-{ours.pk}-{ours.title_token}-x",
        "lab-job-",
    ]

    assert jobs_titled(titles) == {ours.title: ours.pk, legacy.title: legacy.pk}
    assert ours.title == f"lab-job-{ours.pk}-{ours.title_token}" and len(ours.title_token) == 8
    assert legacy.title == f"lab-job-{legacy.pk}"
