"""`printers_sync` imports queues and media from a real private CUPS."""

from __future__ import annotations

import pytest
from django.core.management import call_command

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
