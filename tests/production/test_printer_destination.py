"""A printer's destination written in the database alone receives nothing (lab/production/models.py).

As a database administrator would: SQL points the printer at a folder (or a CUPS server) they read. The
decrypted raster is then not sent anywhere, and the job fails for a person with its reason. The lab's own
saves keep the destination sealed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.core.checks import WARNING
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse

from lab.production import checks, jobs, rasterizing, routing, submission, tracking
from lab.production.models import JobEvent, Printer, PrintJob
from printers.hotfolder_device import process_pending
from tests.builders import (
    WORKER,
    asset_for,
    blob_path,
    client_as,
    hotfolder_printer,
    paid_order,
    printer_folder,
    printer_form,
    released_order,
)
from tests.support.dba import dba

pytestmark = pytest.mark.django_db


def dba_points(printer: Printer, *, target: str) -> None:
    dba("UPDATE production_printer SET target = %s WHERE id = %s", target, printer.pk)


def files_in(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_a_printer_pointed_elsewhere_in_the_database_is_sent_nothing(settings):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    elsewhere = Path(settings.HOTFOLDER_ROOT) / "read-by-someone-else"
    elsewhere.mkdir()

    dba_points(printer, target=elsewhere.name)
    # The lab's own write of the printer's state (the poll's) does not seal what the DBA wrote.
    Printer.objects.get(pk=printer.pk).save(update_fields=["state", "state_reasons"])

    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "failed"
    job.refresh_from_db()
    assert (job.status, job.failure_code) == ("failed", "printer_changed_outside_the_lab")
    assert files_in(elsewhere) == [] and files_in(Path(settings.HOTFOLDER_ROOT) / "minilab") == []


def test_the_labs_own_change_of_destination_is_sealed_and_printed_to(settings):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    (Path(settings.HOTFOLDER_ROOT) / "minilab-2").mkdir()
    printer.target = "minilab-2"
    printer.save(update_fields=["target"])  # as printers_sync and the lab admin save it
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()

    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(files_in(Path(settings.HOTFOLDER_ROOT) / "minilab-2")) == 2  # the print file and its ticket


def test_the_labs_next_save_of_a_printer_changed_in_the_database_does_not_make_the_change_its_own(settings):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    dba("UPDATE production_printer SET host = %s WHERE id = %s", "host-of-someone-else", printer.pk)

    synced = Printer.objects.get(pk=printer.pk)
    synced.target = "minilab"
    synced.save(update_fields=["target"])  # as printers_sync writes a printer it reads

    assert not Printer.objects.get(pk=printer.pk).destination_is_sealed


def test_a_printer_the_admin_moves_while_its_job_is_being_submitted_gets_nothing_at_its_old_destination(
    monkeypatch,
):
    # given a ready job (never sent: a move of its printer is not refused for it) at a hot-folder printer
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    old_folder = printer_folder(printer)
    new_folder = old_folder.parent / "minilab-b"
    new_folder.mkdir()
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    client, _ = client_as("admin")
    real_check = jobs.job_photo_changed_outside_the_lab

    def moved_by_the_admin_meanwhile(*args: object, **kwargs: object) -> bool:
        # the lab admin points the printer at folder B after the submit read it, before it claims the job
        response = client.post(
            f"/lab/admin/production/printer/{printer.pk}/change/",
            printer_form(printer, target=new_folder.name),
        )
        assert response.status_code == 302
        return real_check(*args, **kwargs)  # type: ignore[arg-type]

    # when the submit runs
    monkeypatch.setattr(submission, "job_photo_changed_outside_the_lab", moved_by_the_admin_meanwhile)
    outcome = submission.print_job_submit(job_id=job.pk, worker=WORKER)
    monkeypatch.setattr(submission, "job_photo_changed_outside_the_lab", real_check)

    # then nothing is sent to the old folder (before, the claim sent it there: the tracker read the job at the
    # new one as lost, a cancel went there, and the old destination printed it all the same); the job waits
    job.refresh_from_db()
    assert (outcome, job.status, job.submit_attempts) == ("moved", "ready", 0)
    assert files_in(old_folder) == [] and files_in(new_folder) == []

    # and its next submit sends it to the new destination, which prints it once
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(process_pending(folder=new_folder, delay_seconds=0)) == 1
    assert files_in(old_folder) == []


def _admin_moves(printer: Printer, *, target: str) -> TemplateResponse | HttpResponseRedirect:
    client, _ = client_as("admin")
    response = client.post(
        f"/lab/admin/production/printer/{printer.pk}/change/", printer_form(printer, target=target)
    )
    assert isinstance(response, TemplateResponse | HttpResponseRedirect)
    return response


@pytest.mark.parametrize("where", ["dot-dot", "absolute"])
def test_the_admin_cannot_point_a_hot_folder_printer_outside_the_root(settings, where):
    # given a hot-folder printer, and a folder outside HOTFOLDER_ROOT (the vault's shard, a static folder)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    outside = Path(settings.HOTFOLDER_ROOT).parent / "static"
    outside.mkdir()
    target = "../storage/blobs/00" if where == "dot-dot" else str(outside)
    before = Printer.objects.values().get(pk=printer.pk)

    # when the lab admin points it there, then the page refuses the target and the row is unchanged
    response = _admin_moves(printer, target=target)

    assert response.status_code == 200
    assert isinstance(response, TemplateResponse) and response.context_data is not None
    errors = response.context_data["adminform"].form.errors.as_data()
    assert [error.code for error in errors["target"]] == ["printer_target_refused"]
    assert Printer.objects.values().get(pk=printer.pk) == before


def test_the_admin_may_give_an_absolute_folder_under_the_root(settings):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    inside = Path(settings.HOTFOLDER_ROOT) / "minilab-2"
    inside.mkdir()

    assert _admin_moves(printer, target=str(inside)).status_code == 302
    assert Printer.objects.get(pk=printer.pk).target == str(inside)


def test_the_admins_move_of_a_printer_whose_folder_lies_outside_the_root_erases_nothing_there(settings):
    # given a photo whose blob is an hour old, and a printer the lab's code saved pointing at the blob's
    # shard (sealed: a target from before the check)
    photo = asset_for(None)
    blob = blob_path(photo.blob_name)
    an_hour_ago = time.time() - 3600
    os.utime(blob, (an_hour_ago, an_hour_ago))
    printer = Printer.objects.create(
        name="minilab",
        backend="hotfolder",
        target=f"../storage/blobs/{photo.blob_name[:2]}",
        media_sizes=["4x6"],
        papers=["lustre"],
    )
    (Path(settings.HOTFOLDER_ROOT) / "minilab").mkdir(parents=True)

    # when the lab admin moves it to a folder under the root
    response = _admin_moves(printer, target="minilab")

    # then the move is made, and the old "destination" is not cleared (before, the blob was erased there)
    assert response.status_code == 302
    assert Printer.objects.get(pk=printer.pk).target == "minilab"
    assert blob.exists()


def test_a_job_for_a_printer_whose_folder_lies_outside_the_root_is_not_written_there_nor_lost(settings):
    # given a hot-folder printer the lab's code saved with an absolute folder outside HOTFOLDER_ROOT (sealed:
    # a target from before the check), and a ready job for it
    outside = Path(settings.HOTFOLDER_ROOT).parent / "static"
    outside.mkdir(parents=True)
    printer = Printer.objects.create(
        name="minilab", backend="hotfolder", target=str(outside), media_sizes=["4x6"], papers=["lustre"]
    )
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"

    # when it is submitted
    outcome = submission.print_job_submit(job_id=job.pk, worker=WORKER)

    # then nothing is written outside the root (before, the raster and its ticket were), and the job is
    # failed for a person with the reason, its raster kept, as for a destination changed outside the lab
    job.refresh_from_db()
    assert (outcome, job.status, job.failure_code) == ("failed", "failed", "printer_target_refused")
    assert files_in(outside) == []
    assert blob_path(job.raster_blob).is_file()

    # and the poll shows the printer offline, saying why
    tracking.printer_poll()
    printer.refresh_from_db()
    assert (printer.state, printer.state_reasons) == ("offline", ["printer_target_refused"])
    assert files_in(outside) == []


def _submitted_job_at_a_folder_moved_out_of_the_root(tmp_path: Path) -> tuple[Printer, PrintJob]:
    """A hot-folder printer with a job submitted there, whose folder is then replaced by a symlink to a folder
    outside HOTFOLDER_ROOT (a share linked in before the upgrade): the lab refuses the target from then on."""
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    folder = printer_folder(printer)
    share = tmp_path / "share"
    folder.rename(share)
    folder.symlink_to(share, target_is_directory=True)
    return printer, job


def test_the_system_check_names_a_printer_whose_folder_is_refused(settings, tmp_path):
    # given a printer whose folder is a symlink out of the root, and one whose folder lies under it
    printer, _ = _submitted_job_at_a_folder_moved_out_of_the_root(tmp_path)
    hotfolder_printer("minilab2", sizes=["4x6"])

    # when the checks run with the database, then the refused printer (only) is named, as a warning
    warnings = checks.printers_with_a_refused_target(databases=["default"])

    assert [(warning.id, warning.level) for warning in warnings] == [("production.W001", WARNING)]
    assert f"minilab (id {printer.pk})" in warnings[0].msg and "minilab2" not in warnings[0].msg
    assert checks.printers_with_a_refused_target(databases=None) == []


def test_the_admin_may_move_a_printer_whose_folder_is_refused_with_its_submitted_jobs_to_unknown(
    settings, tmp_path
):
    # given a submitted job at a printer whose folder is refused since the upgrade (tracking keeps it
    # submitted for ever, its cancel raises), and a folder under the root
    printer, job = _submitted_job_at_a_folder_moved_out_of_the_root(tmp_path)
    (Path(settings.HOTFOLDER_ROOT) / "minilab2").mkdir()
    client, _ = client_as("admin")
    url = f"/lab/admin/production/printer/{printer.pk}/change/"

    # when the lab admin moves it without the box, then the move is refused for the job at its destination
    refused = client.post(url, printer_form(printer, target="minilab2"))
    assert refused.status_code == 200
    assert Printer.objects.get(pk=printer.pk).target == "minilab"

    # when the lab admin moves it with "Move it all the same" ticked (before, refused all the same)
    response = client.post(url, printer_form(printer, target="minilab2", old_copies_left="on"))

    # then the printer is at the new folder, and the job is unknown for a person who counts the prints, with
    # its event, in the same save
    assert response.status_code == 302
    assert Printer.objects.get(pk=printer.pk).target == "minilab2"
    job.refresh_from_db()
    assert job.status == "unknown"
    event = JobEvent.objects.filter(job_id=job.pk).latest("pk")
    assert (event.kind, event.from_status, event.to_status) == (
        "printer_moved_from_refused_folder",
        "submitted",
        "unknown",
    )
    assert checks.printers_with_a_refused_target(databases=["default"]) == []
