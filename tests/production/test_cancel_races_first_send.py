"""A person's cancel reads the job, then moves it under the order's lock: a send the print worker makes in
between (the document reaches the printer, the submit fails with a transient error, the job is back in
`ready`) must not be cancelled as if it never went out. Before, the cancel's move from `ready` still matched,
the job was cancelled with nothing asked of the printer, and the held copy printed for a cancelled job."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from lab.lib.errors import Conflict
from lab.orders.transitions import order_locked as real_order_locked
from lab.production import actions, submission
from lab.production.errors import ProductionError
from lab.production.models import PrintJob
from lab.production.states import JobStatus
from printers.errors import TransientPrinterError
from printers.hotfolder import HotFolderBackend
from printers.hotfolder_device import pending_tickets, process_pending
from tests.builders import WORKER, job_on_the_first_of_two_minilabs, person, printer_folder

pytestmark = pytest.mark.django_db(transaction=True)  # the worker sends from its own thread and connection
J = JobStatus


def test_a_cancel_that_read_the_job_before_its_first_send_is_refused_and_the_next_withdraws_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a ready job at minilab A, and another job of its item (a reprint waiting for a printer)
    job, first, _ = job_on_the_first_of_two_minilabs()
    PrintJob.objects.create(order=job.order, item=job.item, copies=1, status=J.NO_PRINTER)
    technician = person("technician")
    real_submit = HotFolderBackend.submit

    def took_it_then_went_away(self: HotFolderBackend, **kwargs: Any) -> str:
        real_submit(self, **kwargs)
        raise TransientPrinterError(code="printer_unreachable", message="connection reset")

    sends: list[str] = []

    def the_worker_sends_meanwhile(**kwargs: Any) -> Any:
        # the print worker's send lands between the cancel's read of the job and its move
        if not sends:

            def send() -> None:
                try:
                    sends.append(submission.print_job_submit(job_id=job.pk, worker=WORKER))
                finally:
                    connection.close()

            worker = threading.Thread(target=send)
            worker.start()
            worker.join(30)
        return real_order_locked(**kwargs)

    monkeypatch.setattr(HotFolderBackend, "submit", took_it_then_went_away)
    monkeypatch.setattr("lab.production.actions.order_locked", the_worker_sends_meanwhile)

    # when a technician cancels it, then the cancel is refused and nothing of it is done
    with pytest.raises(Conflict) as refused:
        actions.job_cancel(job_id=job.pk, actor=technician)
    assert sends == ["retry"]
    assert refused.value.code == ProductionError.JOB_CHANGED
    job.refresh_from_db()
    assert (job.status, job.submit_attempts, job.cancel_at_printer) == (J.READY, 1, False)
    assert len(pending_tickets(folder=printer_folder(first))) == 1  # the send held in A's inbox

    # when the technician looks again and cancels, then the held send is withdrawn from A
    monkeypatch.setattr("lab.production.actions.order_locked", real_order_locked)
    monkeypatch.setattr(HotFolderBackend, "submit", real_submit)
    actions.job_cancel(job_id=job.pk, actor=technician)
    job.refresh_from_db()
    assert job.status == J.CANCELLED
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) != "submitted"  # the worker's retry
    assert process_pending(folder=printer_folder(first), delay_seconds=0) == []  # A prints nothing
