"""An erasure waits while a copy of the customer's photo is still being withdrawn from a printer: a
supervisor's cancel leaves the decrypted raster in the printer's spool (a hot folder's inbox, cupsd's
spool) until the printer confirms the cancel, and it may still print when an unreachable printer comes back.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from lab.orders.models import Order
from lab.privacy.models import DataKey
from lab.production import rasterizing, submission
from lab.production.alerts import printed_after_cancel_events
from lab.production.cancellation import MAY_HAVE_PRINTED, order_cancel_in_production, printer_cancels_settle
from lab.production.models import PrintJob
from printers.hotfolder import move_ticket
from printers.hotfolder_device import pending_tickets
from tests.builders import (
    PERSON_PASSWORD,
    WORKER,
    minilab,
    pay,
    person,
    place_order,
    printer_folder,
    register,
    upload,
)

pytestmark = pytest.mark.django_db


def _sent_to_the_printer(order: Order) -> PrintJob:
    from lab.production import routing

    minilab()
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get(order=order)
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    job.refresh_from_db()
    return job


@pytest.mark.usefixtures("stripe_api")  # orders are placed through the API: PaymentIntents
def test_erasure_waits_until_the_printer_has_given_up_the_cancelled_order_s_copy(
    api, django_capture_on_commit_callbacks
):
    # given a paid order whose print file sits in the minilab's hot folder, cancelled by a supervisor while
    # the folder cannot be reached, and refunded
    register(api)
    order = place_order(api, asset_id=upload(api), key="erase-while-withdrawing")
    pay(order, event_id="evt_withdrawing_paid")
    job = _sent_to_the_printer(order)
    folder = Path(settings.HOTFOLDER_ROOT) / job.printer.target  # type: ignore[union-attr]
    away = folder.with_name(f"{folder.name}.unmounted")
    os.replace(folder, away)
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    Order.objects.filter(pk=order.pk).update(payment_status=Order.PaymentStatus.REFUNDED)
    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer) == ("cancelled", True)
    data_key = order.items.get().asset.data_key_id
    assert data_key is not None

    # when the customer asks for their data to be erased (before: 200, the key destroyed while the print
    # file could still print once the folder came back)
    refused = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")

    # then it is refused, naming the order and why, and nothing is erased
    assert (refused.status_code, refused.json()["code"], refused.json()["orders"]) == (
        409,
        "erasure_blocked_by_open_orders",
        [order.ref],
    )
    assert (
        f"{order.ref} (a copy of your photo is still being withdrawn from a printer)"
        in refused.json()["detail"]
    )
    order.refresh_from_db()
    assert order.is_anonymized is False
    assert DataKey.objects.get(pk=data_key).destroyed_at is None

    # and once the printer is back and has withdrawn the copy, the erasure goes through
    os.replace(away, folder)
    assert printer_cancels_settle(order_id=order.pk)["cancelled_at_printer"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        erased = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")
    assert erased.status_code == 200, erased.json()
    assert DataKey.objects.get(pk=data_key).destroyed_at is not None


@pytest.mark.usefixtures("stripe_api")
def test_a_job_whose_printer_is_gone_does_not_hold_up_the_erasure(api, django_capture_on_commit_callbacks):
    # given a cancelled job still flagged for its printer, whose printer the lab no longer has on the job
    register(api)
    order = place_order(api, asset_id=upload(api), key="erase-printer-gone")
    pay(order, event_id="evt_printer_gone_paid")
    job = _sent_to_the_printer(order)
    folder = Path(settings.HOTFOLDER_ROOT) / job.printer.target  # type: ignore[union-attr]
    away = folder.with_name(f"{folder.name}.unmounted")
    os.replace(folder, away)
    try:
        order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    finally:
        os.replace(away, folder)
    Order.objects.filter(pk=order.pk).update(payment_status=Order.PaymentStatus.REFUNDED)
    PrintJob.objects.filter(pk=job.pk).update(printer=None)

    # when the cancels are settled (the poll does it), the flag is cleared without a printer to ask
    assert printer_cancels_settle(order_id=order.pk)["cancelled_at_printer"] == 1

    # then the erasure goes through
    with django_capture_on_commit_callbacks(execute=True):
        erased = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")
    assert erased.status_code == 200, erased.json()


@pytest.mark.usefixtures("stripe_api")
def test_erasure_waits_while_the_minilab_prints_the_cancelled_order_s_ticket(
    api, django_capture_on_commit_callbacks
):
    # given a paid order whose ticket the minilab has taken into processing/ (its print file with it), then
    # cancelled by a supervisor and refunded: the minilab refuses the cancel
    register(api)
    order = place_order(api, asset_id=upload(api), key="erase-while-printing")
    pay(order, event_id="evt_printing_paid")
    job = _sent_to_the_printer(order)
    folder = printer_folder(job.printer)  # type: ignore[arg-type]
    (ticket,) = pending_tickets(folder=folder)
    taken = move_ticket(folder=folder, ticket_path=ticket, directory="processing")
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    Order.objects.filter(pk=order.pk).update(payment_status=Order.PaymentStatus.REFUNDED)
    assert printer_cancels_settle(order_id=order.pk)["cancelled_at_printer"] == 0  # the poll, asking again
    data_key = order.items.get().asset.data_key_id
    assert data_key is not None

    # when the customer asks for their data to be erased (before: 200, the cancel counted as settled while
    # the decrypted print file lay in processing/, for a minilab switched off mid-print to print later)
    refused = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")

    # then it is refused while the minilab has the copy, which is listed once as one that may have printed
    assert refused.status_code == 409, refused.json()
    assert refused.json()["orders"] == [order.ref]
    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer) == ("cancelled", True)
    (may_have_printed,) = printed_after_cancel_events()
    assert (may_have_printed.job_id, may_have_printed.note) == (
        job.pk,
        f"{MAY_HAVE_PRINTED}: {job.backend_job_id}:processing, cancel refused",
    )
    assert DataKey.objects.get(pk=data_key).destroyed_at is None

    # and once the minilab has finished it (the ticket and its file in done/) and the poll has settled the
    # cancel, the erasure goes through
    move_ticket(folder=taken.parent, ticket_path=taken, directory="../done")
    assert printer_cancels_settle(order_id=order.pk)["cancelled_at_printer"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        erased = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")
    assert erased.status_code == 200, erased.json()
    assert DataKey.objects.get(pk=data_key).destroyed_at is not None
