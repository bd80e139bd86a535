"""`printers_sync` imports queues and media from a real private CUPS."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from lab.production.jobs import print_queue
from lab.production.models import Printer
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
