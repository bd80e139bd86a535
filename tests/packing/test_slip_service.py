"""Slips are rendered for ready-to-pack orders and printed to a real CUPS slip printer."""

from __future__ import annotations

import io
import time

import pytest
from pypdf import PdfReader

from lab.packing.services import packing_slip_print, packing_slip_render
from lab.production.models import Printer
from tests.builders import paid_order
from tests.support.cups import PrivateCups

pytestmark = pytest.mark.django_db


def test_slip_carries_ref_and_address_and_prints_on_cups(settings):
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 2), ("PRINT-8X10-MATTE", 1)])
    order.shipping_address = {
        "name": "Ines Lumen",
        "line1": "9 Aperture Way",
        "city": "Focus",
        "postal_code": "40400",
        "country": "US",
    }
    order.save()

    slip = packing_slip_render(order_id=order.pk)

    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(bytes(slip.pdf))).pages)
    assert order.ref in text
    assert "Ines Lumen" in text and "9 Aperture Way" in text
    assert slip.pages == 1
    with PrivateCups() as cups_server:
        cups_server.add_printer("slips", media=["na_letter_8.5x11in"])
        Printer.objects.create(name="slips", backend="cups", target="slips", cups_server=cups_server.server)

        handle = packing_slip_print(order_id=order.pk, printer_name="slips")

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not cups_server.received_files("slips"):
            time.sleep(0.2)
        received = cups_server.received_files("slips")
    assert handle.isdigit()
    assert len(received) == 1
