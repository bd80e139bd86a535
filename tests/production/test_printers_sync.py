"""`printers_sync` imports queues and media from a real private CUPS; a printer's destination (the queue and
server it sends to) changes only while no job of it may be at the old one."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from lab.production.jobs import print_queue
from lab.production.models import Printer, PrintJob
from tests.builders import client_as, hotfolder_printer, job_walk, printer_form, released_order
from tests.support.cups import PrivateCups

pytestmark = pytest.mark.django_db


def test_printers_sync_imports_queues_with_their_media(capsys):
    with PrivateCups() as cups_server:
        cups_server.add_printer("photo_small", media=["na_index-4x6_4x6in", "na_5x7_5x7in"])
        cups_server.add_printer("photo_large", media=["na_govt-letter_8x10in"])

        call_command("printers_sync", "--server", cups_server.server, "--papers", "lustre")
        call_command("printers_sync", "--server", cups_server.server)

    printers = {p.name: p for p in Printer.objects.all()}
    assert set(printers) == {"photo-small", "photo-large"}
    assert printers["photo-small"].media_sizes == ["4x6", "5x7"]
    assert printers["photo-large"].media_sizes == ["8x10"]
    assert (printers["photo-small"].backend, printers["photo-small"].target) == ("cups", "photo_small")
    assert printers["photo-small"].papers == ["lustre"]
    assert printers["photo-small"].state == "online"
    assert "updated: photo-large, photo-small" in capsys.readouterr().out


def test_printers_sync_gives_its_printers_the_print_host_so_their_jobs_reach_that_host_s_worker(settings):
    # given a print host's cupsd (the reference deployment consumes print.<host> queues only: a printer
    # without a host was sent to through queue 'print', which nothing there consumes, so its jobs stayed
    # 'ready' for ever)
    settings.PRINT_HOST = ""
    with PrivateCups() as cups_server:
        cups_server.add_printer("photo_small", media=["na_index-4x6_4x6in"])
        cups_server.add_printer("photo_large", media=["na_govt-letter_8x10in"])
        # when it is imported for host alpha, and one of its printers is imported again without a host
        call_command("printers_sync", "--server", cups_server.server, "--host", "alpha")
        call_command("printers_sync", "--server", cups_server.server)

    # then both keep host alpha, their destinations stay sealed, and their jobs go to alpha's queue
    printers = {p.name: p for p in Printer.objects.all()}
    assert {name: printer.host for name, printer in printers.items()} == {
        "photo-small": "alpha",
        "photo-large": "alpha",
    }
    assert all(printer.destination_is_sealed for printer in printers.values())
    assert print_queue(printers["photo-small"]) == "print.alpha"


def test_printers_sync_takes_the_print_host_from_print_host_on_a_print_host(settings):
    # given the command run on print host beta (PRINT_HOST=beta)
    settings.PRINT_HOST = "beta"
    with PrivateCups() as cups_server:
        cups_server.add_printer("photo_small", media=["na_index-4x6_4x6in"])
        # when its queues are imported with no --host (the default is read when the command is made)
        call_command("printers_sync", "--server", cups_server.server)

    # then the printer is beta's
    assert Printer.objects.get().host == "beta"


def test_a_second_print_host_s_queue_of_the_same_name_is_another_printer(settings):
    # given two print hosts, alpha and beta, each with a cupsd holding a queue `photo_small`
    settings.PRINT_HOST = ""
    with PrivateCups() as alpha_cups, PrivateCups() as beta_cups:
        alpha_cups.add_printer("photo_small", media=["na_index-4x6_4x6in"])
        beta_cups.add_printer("photo_small", media=["na_5x7_5x7in"])

        # when alpha's queues are imported, then beta's, then alpha's again
        call_command("printers_sync", "--server", alpha_cups.server, "--host", "alpha")
        call_command("printers_sync", "--server", beta_cups.server, "--host", "beta")
        call_command("printers_sync", "--server", alpha_cups.server, "--host", "alpha")

    # then they are two printers: the first still sends to alpha's cupsd (its jobs in flight are read and
    # cancelled there), beta's is named after its host, and both destinations are sealed
    printers = {p.name: p for p in Printer.objects.all()}
    assert {name: (p.cups_server, p.target, p.host, p.media_sizes) for name, p in printers.items()} == {
        "photo-small": (alpha_cups.server, "photo_small", "alpha", ["4x6"]),
        "photo-small-beta": (beta_cups.server, "photo_small", "beta", ["5x7"]),
    }
    assert all(printer.destination_is_sealed for printer in printers.values())


def test_the_lab_admin_refuses_to_move_a_printer_while_a_job_may_be_at_its_destination():
    # given a printer with a job submitted to it (read, and cancelled, by its handle at its destination)
    printer = hotfolder_printer("alpha", sizes=["4x6"])
    job = job_walk(PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)])), "submitted")
    client, _ = client_as("admin")
    url = f"/lab/admin/production/printer/{printer.pk}/change/"
    elsewhere = printer_form(
        printer, backend="cups", target="photo_small", cups_server="beta.example.net:631"
    )

    # when the lab admin points it at another queue, then it is refused with a form error, and the printer
    # still sends to (and reads its job at) the old destination; a change of its location alone is saved
    refused = client.post(url, elsewhere)
    relocated = client.post(url, printer_form(printer, location="Back room"))
    assert (refused.status_code, relocated.status_code) == (200, 302)
    assert "may be at its current destination" in refused.content.decode()
    printer.refresh_from_db()
    assert (printer.backend, printer.target, printer.cups_server, printer.location) == (
        "hotfolder",
        "alpha",
        "",
        "Back room",
    )

    # when the job is cancelled but its cancel is still owed to the printer, then the move is still refused
    PrintJob.objects.filter(pk=job.pk).update(status="cancelled", cancel_at_printer=True)
    assert client.post(url, elsewhere).status_code == 200

    # when the job is back to ready with a send retry due, which first looks for its earlier send at the
    # printer's destination, then the move is still refused, and the printer still sends there
    PrintJob.objects.filter(pk=job.pk).update(status="ready", submit_attempts=1, cancel_at_printer=False)
    retry_due = client.post(url, elsewhere)
    assert retry_due.status_code == 200
    assert "may be at its current destination" in retry_due.content.decode()
    printer.refresh_from_db()
    assert (printer.backend, printer.target, printer.cups_server) == ("hotfolder", "alpha", "")

    # when nothing of it is at the printer any more (a ready job never sent), then the move is saved
    PrintJob.objects.filter(pk=job.pk).update(submit_attempts=0)
    assert client.post(url, elsewhere).status_code == 302
    printer.refresh_from_db()
    assert (printer.backend, printer.target, printer.cups_server) == (
        "cups",
        "photo_small",
        "beta.example.net:631",
    )
