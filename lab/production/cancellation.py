"""Cancelling an order that is in production, and making the printers agree with the database afterwards.

A supervisor's cancel is one decision under the order's lock: the refund is decided, every job that still
counts is cancelled in the database, the order is cancelled — one commit. The outside world follows:
the refund is asked for after the commit (retried until Stripe confirms), and every job that may already be
at a printer (submitted, or being submitted by a worker right now) is flagged `cancel_at_printer`; the
printer poll cancels it there and clears the flag, so a cancelled order never prints behind the lab's back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from lab.accounts.models import User
from lab.accounts.roles import SUPERVISOR_ROLES, has_role
from lab.lib.clock import database_now
from lab.lib.errors import CommonError, Conflict, PermissionDenied
from lab.orders import payment_refunds, payments
from lab.orders.errors import OrderError
from lab.orders.models import Order
from lab.orders.states import SUPERVISOR_CANCELLABLE, OrderStatus
from lab.orders.transitions import order_locked, order_transition
from lab.production.backends import backend_for
from lab.production.holds import clarifications_close
from lab.production.jobs import job_move
from lab.production.models import JOB_TITLE_PREFIX, JobEvent, ListedCopy, Printer, PrintJob
from lab.production.silence import SilentServers
from lab.production.states import JobStatus
from printers.base import FINAL_JOB_STATES, JobInfo, JobState, PrinterBackend
from printers.errors import JOB_NOT_CANCELABLE, JOB_NOT_FOUND, PermanentPrinterError, PrinterError

logger = logging.getLogger(__name__)
J = JobStatus

# Jobs the printer may already hold: cancelling them in the database alone would let them print.
AT_PRINTER = frozenset({J.SUBMITTING, J.SUBMITTED, J.UNKNOWN, J.SUSPECT})
# How a cancelled job's history says that a copy of it printed (or was printing) before the cancel reached the
# printer (here, and for a send that landed after the cancel: lab.production.send_landed).
ALREADY_PRINTED = "already printed before the cancel reached the printer"
# How it says that a copy was printing when the cancel reached the printer: the cancel was asked, but it may
# reach the device after the print is made (CUPS keeps a job `processing` while its device prints it, and
# calls it `canceled` afterwards whatever the device did; a hot folder's device does not give a ticket back).
# Listed with the copies already printed (lab.production.alerts.printed_after_cancel_events).
MAY_HAVE_PRINTED = "printing when the cancel reached the printer, may have printed"
# The event of a cancel its printer refused while its device has the copy (a hot folder's processing/): the
# cancel stays pending (`cancel_at_printer`) until the copy is over; listed as MAY_HAVE_PRINTED.
PRINTER_CANCEL_REFUSED = "printer_cancel_refused"
# A copy of ours at the printer that may have printed though nobody asked for it: listed on the board
# (lab.production.alerts.printed_after_cancel_events), its note naming it as `handle:state…` for people, and
# each copy it lists recorded at its printer (ListedCopy: copies_listed_record, copy_listed_already).
LATE_COPY_NOT_CANCELLED = "late_copy_not_cancelled"


def order_cancel_in_production(*, order_ref: str, actor: User, note: str = "") -> Order:
    """A supervisor cancels an order at any stage before packing; its jobs stop, at the printer too."""
    if not has_role(actor, *SUPERVISOR_ROLES):
        raise PermissionDenied(
            CommonError.NOT_ALLOWED, "Only supervisors cancel orders that are in production."
        )
    with transaction.atomic():
        order = order_locked(ref=order_ref)
        if order.status not in SUPERVISOR_CANCELLABLE:
            raise Conflict(
                OrderError.ORDER_NOT_CANCELLABLE, f"An order that is {order.status} cannot be cancelled."
            )
        # Also an order still awaiting payment: its PaymentIntent is owed a cancel at Stripe (before, a
        # supervisor's cancel never asked for one, and the customer could still pay the cancelled order).
        refund_due = payments.payment_cancel_decide(order=order)
        jobs_cancel_for_order(order_id=order.pk, actor_id=actor.pk)
        # A held order's question ends with it, as a release ends it (lab.production.holds): before, the
        # cancelled order kept its hold message, and its customer was asked for ever.
        order.hold_message = ""
        clarifications_close(order_id=order.pk)
        order_transition(
            order=order,
            to_status=OrderStatus.CANCELLED,
            actor=actor,
            actor_kind="staff",
            note=note or "cancelled by a supervisor",
            extra_fields=("hold_message",),
        )
    if refund_due:
        payment_refunds.refund_issue_soon(order_id=order.pk)
    printer_cancels_settle(order_id=order.pk)
    order.refresh_from_db()
    return order


def jobs_cancel_for_order(*, order_id: int, actor_id: int | None = None) -> int:
    """Inside the caller's transaction (the order is locked): every job that still counts is cancelled."""
    cancelled = 0
    for job in (
        PrintJob.objects.select_for_update()
        .filter(order_id=order_id)
        .exclude(status__in=[J.PRINTED, J.CANCELLED])
    ):
        cancelled += int(
            job_move(
                job_id=job.pk,
                from_statuses={job.status},
                to_status=J.CANCELLED,
                kind="order_cancelled",
                actor_id=actor_id,
                # Also a job back in `ready`/`failed` after a transient error: its earlier send may be
                # held at the printer and print there (found by its title).
                cancel_at_printer=job.status in AT_PRINTER or job.submit_attempts > 0,
            )
        )
    return cancelled


def printer_cancels_settle(
    *, order_id: int | None = None, silent: SilentServers | None = None
) -> dict[str, int]:
    """Cancel at the printer every job we cancelled that the printer may hold; called by the poll too.

    A job cancelled while a worker was submitting it is left to that worker until its claim runs out (the
    worker cancels what it sent when it finds the job cancelled); after that it is found by its title.
    A send fence with no live claim (the reconciler made the job `unknown`, or the lease ran out) is not
    waited for: the fence stays on the job for good once set, and its worker, frozen past its lease, may wake
    at any time or never. A send that lands after this settled flags the cancel again with its handle
    (lab.production.send_landed.submitted), for its worker and then the poll to cancel it, or to record
    that it could not be.

    silent: the round's servers that gave no answer (the poll's, when it settles after its round): none of
    them is asked, and a server that gives none here is asked for no further job. Before, each cancelled job
    of a stalled cupsd cost libcups' minute, after the poll had found that server silent already.

    Each printer is listed at most once here, for all its jobs (PrinterListings). Before, it was listed once
    per job: a hot folder's listing reads every ticket it ever had (`done/` keeps them), seconds each, and a
    supervisor's cancel of a 20-line order outlasted the web worker's timeout (and held the poll as long).
    """
    silent = silent if silent is not None else SilentServers()
    listings = PrinterListings()
    lease_expired = database_now() - timedelta(seconds=settings.PRODUCTION_CLAIM_LEASE_SECONDS)
    jobs = PrintJob.objects.filter(status=J.CANCELLED, cancel_at_printer=True).select_related("printer")
    if order_id is not None:
        jobs = jobs.filter(order_id=order_id)
    counts = {"cancelled_at_printer": 0, "unreachable": 0, "waiting_for_worker": 0}
    for job in jobs:
        if not job.backend_job_id and job.claimed_at is not None and job.claimed_at > lease_expired:
            counts["waiting_for_worker"] += 1
            continue
        outcome = printer_cancel(job=job, silent=silent, listings=listings)
        counts["cancelled_at_printer" if outcome else "unreachable"] += 1
    return counts


class PrinterListings:
    """Each printer's jobs with our titles, listed once for a run of cancels (one `find_jobs` with the common
    title prefix) and matched by exact title in memory: a listing costs as much for one title as for all (a
    hot folder reads every ticket, CUPS sends every job of the server). A listing that failed fails the same
    way for the printer's other jobs, unasked again."""

    def __init__(self) -> None:
        self._by_printer: dict[int, dict[str, list[JobInfo]] | PrinterError] = {}

    def copies_titled(self, backend: PrinterBackend, printer: Printer, title: str) -> list[JobInfo]:
        """The printer's jobs titled exactly `title` (as lab.production.backends.copies_titled)."""
        listed = self._by_printer.get(printer.pk)
        if listed is None:
            try:
                found = backend.find_jobs(title_prefix=JOB_TITLE_PREFIX)
            except PrinterError as error:
                self._by_printer[printer.pk] = error
                raise
            listed = {}
            for info in found:
                listed.setdefault(info.title, []).append(info)
            self._by_printer[printer.pk] = listed
        if isinstance(listed, PrinterError):
            raise listed
        return list(listed.get(title, ()))


def printer_cancel(
    *, job: PrintJob, silent: SilentServers | None = None, listings: PrinterListings | None = None
) -> bool:
    """Cancel one cancelled job at its printer; True once the printer agrees.

    Every copy of it there: the send whose handle the job saved, and every job titled with its title at its
    printer now. The saved handle alone missed a send its retry left held after a transient error (the send
    had no handle saved), and after a reroute it named the old printer's copy: the new printer's held send
    stayed and printed for a refunded order (tests/production/test_cancel_after_reroute.py).

    silent: as for printer_cancels_settle; a job whose server gave no answer in the round waits for the next.
    listings: the printers' listings shared by the caller's other cancels (each printer listed once).
    """
    if job.printer is None:
        return _printer_cancel_done(job=job, note="no printer")
    silent = silent if silent is not None else SilentServers()
    listings = listings if listings is not None else PrinterListings()
    if silent.error_for(job.printer) is not None:
        return False
    backend = backend_for(job.printer)
    outcomes: list[str] = []
    unlisted = ""
    try:
        # The saved handle first: the send we know of is stopped even when the listing below fails.
        if job.backend_job_id:
            outcome = copy_cancel(backend, job.backend_job_id, title=job.title)
            outcomes.append(_listed_once(job, job.backend_job_id, outcome))
        try:
            titled = listings.copies_titled(backend, job.printer, job.title)
        except PermanentPrinterError as error:
            if not outcomes:
                raise
            # A server that will never list titles (CUPS hiding job names): the saved send was withdrawn,
            # which is all that can be; asked again for ever, the cancel never settled and the spool kept
            # the job's document. The note says what could not be looked for.
            titled, unlisted = [], f" (other copies not looked for: {error.code})"
        for found in titled:
            if found.handle != job.backend_job_id:
                outcome = copy_cancel(backend, found.handle, title=job.title)
                outcomes.append(_listed_once(job, found.handle, outcome))
    except PrinterError as error:
        silent.heard(job.printer, error)
        logger.warning("printer cancel pending job=%s code=%s", job.pk, error.code)
        return False
    note = cancel_note(outcomes, (", ".join(outcomes) or "the printer had no job with our title") + unlisted)
    if any(copy_cancel_refused(o) for o in outcomes):
        # Its device still has the copy, and its print file (a hot folder's processing/): the cancel stays
        # pending until the copy is over, so an erasure waits (lab.customer_data.erasure). Before, it was
        # settled at once, and a minilab switched off mid-print printed it later for an erased order.
        printer_cancel_refused(job=job, note=note)
        return False
    return _printer_cancel_done(job=job, note=note)


def _listed_once(job: PrintJob, handle: str, outcome: str) -> str:
    """copy_cancel's `outcome`, marked `, listed already` (no longer counted as printing by cancel_note) when
    it says the copy may have printed and a move or send again of the job listed that copy already
    (copy_listed_already): before, a copy cancelled at the CUPS console mid-print, flagged when the job was
    sent again on its printer, was listed a second time by the order's cancel, and alerted twice. A copy
    whose device would not give it back stays as it is: its cancel is pending."""
    if copy_was_printing(outcome) and not copy_cancel_refused(outcome):
        assert job.printer_id is not None
        if copy_listed_already(job_id=job.pk, printer_id=job.printer_id, handle=handle):
            return f"{outcome}{_LISTED_ALREADY}"
    return outcome


def copy_listed_already(*, job_id: int, printer_id: int, handle: str) -> bool:
    """An earlier `late_copy_not_cancelled` event of the job listed that copy at that printer (its ListedCopy
    row): a person was told to count its prints already. Before, the events' notes were searched for
    `handle:` by a regex, and a copy named past a note's 500 characters was listed (and alerted) again."""
    return ListedCopy.objects.filter(job_id=job_id, printer_id=printer_id, handle=handle).exists()


def copies_listed_record(*, event: JobEvent, printer_id: int, handles: Iterable[str]) -> set[str]:
    """Record, in the caller's transaction (the one that writes `event`), that the `late_copy_not_cancelled`
    `event` of its job lists the copies `handles` at the printer `printer_id` (where they were sent, which a
    job_move's event may not name). A copy listed already keeps the event that listed it first (one row per
    copy: ListedCopy's unique constraint; a writer listing it at the same time waits for the other's commit
    and skips it). Returns the handles that this event lists first."""
    assert event.job_id is not None
    wanted = list(dict.fromkeys(handles))
    ListedCopy.objects.bulk_create(
        [ListedCopy(job_id=event.job_id, printer_id=printer_id, handle=h, event=event) for h in wanted],
        ignore_conflicts=True,
    )
    return set(ListedCopy.objects.filter(event=event, handle__in=wanted).values_list("handle", flat=True))


def late_copies_list(
    *, job: PrintJob, outcomes: Mapping[str, str], actor_id: int | None = None
) -> JobEvent | None:
    """List for a person the copies of `job` at its printer that may have printed (`outcomes`: each copy's
    handle → its copy_cancel outcome, `handle:state…`) and that no event listed already: one
    `late_copy_not_cancelled` MAY_HAVE_PRINTED event naming them, and their ListedCopy rows, in one
    transaction. A copy another writer listed meanwhile is left out of the note; an event that would list
    none of its own is not written (None): before, a move and a send again at the same time could both list a
    copy, and a person was alerted twice for it."""
    assert job.printer_id is not None
    if not outcomes:
        return None
    with transaction.atomic():
        listed = set(
            ListedCopy.objects.filter(
                job_id=job.pk, printer_id=job.printer_id, handle__in=list(outcomes)
            ).values_list("handle", flat=True)
        )
        fresh = {handle: outcome for handle, outcome in outcomes.items() if handle not in listed}
        if not fresh:
            return None
        event = JobEvent.objects.create(
            job_id=job.pk,
            printer_id=job.printer_id,
            kind=LATE_COPY_NOT_CANCELLED,
            actor_id=actor_id,
            note=_late_copies_note(fresh.values()),
        )
        own = copies_listed_record(event=event, printer_id=job.printer_id, handles=fresh)
        if not own:
            event.delete()
            return None
        if len(own) < len(fresh):
            event.note = _late_copies_note(o for h, o in fresh.items() if h in own)
            event.save(update_fields=["note"])
    return event


def _late_copies_note(outcomes: Iterable[str]) -> str:
    return f"{MAY_HAVE_PRINTED}: {', '.join(outcomes)}"[:500]


def cancel_note(outcomes: list[str], note: str) -> str:
    """`note` on copy_cancel's `outcomes`, prefixed with ALREADY_PRINTED when one of them had printed, else
    with MAY_HAVE_PRINTED when one was printing: the prefixes printed_after_cancel_events lists."""
    if any(o.endswith(f":{JobState.COMPLETED}") for o in outcomes):
        return f"{ALREADY_PRINTED}: {note}"
    if any(copy_was_printing(o) for o in outcomes):
        return f"{MAY_HAVE_PRINTED}: {note}"
    return note


def copy_was_printing(outcome: str) -> bool:
    """A copy_cancel outcome of a copy its device had (copy_may_have_printed), cancel asked or refused, or
    of one over without completing after it began at its device (JobInfo.began)."""
    return outcome.endswith((_CANCEL_ASKED, _CANCEL_REFUSED, _BEGAN))


def copy_withdrawn(outcome: str) -> bool:
    """A copy_cancel outcome of a copy that cannot print: cancelled before its device had it, or over
    before it began (canceled, aborted). Not one that printed, was printing, began before it was over, or is
    gone from the printer's history (printed and purged, maybe)."""
    return outcome.endswith((":cancelled", f":{JobState.CANCELED}", f":{JobState.ABORTED}"))


def copy_cancel_refused(outcome: str) -> bool:
    """A copy_cancel outcome of a copy whose device has it and would not give it back."""
    return outcome.endswith(_CANCEL_REFUSED)


# The outcomes of a copy that may have printed (copy_may_have_printed): `handle:state, cancel asked` or
# `handle:state, cancel refused` (the printer would not cancel it: a hot folder's device took the ticket);
# and of a copy over without completing after it began at its device: `handle:canceled, began`.
_CANCEL_ASKED = ", cancel asked"
_CANCEL_REFUSED = ", cancel refused"
_BEGAN = ", began"
# Added to the outcome of a copy that may have printed which an earlier event listed already (_listed_once).
_LISTED_ALREADY = ", listed already"


def copy_may_have_printed(info: JobInfo) -> bool:
    """A copy not over that may have printed, or be printing, however a cancel ends: its device has it
    (`processing`, or `stopped` mid-job), it has printed impressions, or it started once and was put back in
    the queue (JobInfo.was_requeued). A cancel still stops what is left of it; it cannot take a print back."""
    return not info.state.is_final and (
        info.state in (JobState.PROCESSING, JobState.STOPPED)
        or (info.completed_impressions or 0) > 0
        or info.was_requeued
    )


def copy_over_outcome(info: JobInfo) -> str:
    """The outcome of a copy already over, as copy_cancel gives it: `handle:state`, and `handle:canceled,
    began` for one over without completing after it began at its device (JobInfo.began), which
    copy_was_printing counts as printing."""
    began = info.state is not JobState.COMPLETED and info.began
    return f"{info.handle}:{info.state}{_BEGAN if began else ''}"


def copy_cancel(backend: PrinterBackend, handle: str, *, title: str) -> str:
    """Cancel one copy at the printer unless it is over; what became of it, as `handle:outcome`.

    A copy that may have printed (copy_may_have_printed) is cancelled too, its outcome saying so: before, a
    copy its device was printing counted as withdrawn (CUPS calls it `canceled` once asked, the print made
    all the same), and a cancelled order's print was on neither the board nor an alert. Also the lab's own
    send cancelled right after it landed (lab.production.send_landed): CUPS takes a job to its device at once.
    A copy over without completing that began at its device (JobInfo.began: cancelled at the CUPS console
    mid-print, or by our own cancel whose record was lost) is `handle:canceled, began`, counted as printing:
    before, it was `handle:canceled`, withdrawn, and its print of a refunded order went unlisted.
    Raises the printer's error but JOB_NOT_FOUND (`handle:gone`)."""
    try:
        info = backend.job_info_of(handle, title=title)
        if info.state in FINAL_JOB_STATES:
            return copy_over_outcome(info)
        printing = copy_may_have_printed(info)
        try:
            backend.cancel_of(handle, title=title)
        except PermanentPrinterError as error:
            if not printing or error.code != JOB_NOT_CANCELABLE:
                raise
            return f"{handle}:{info.state}{_CANCEL_REFUSED}"
    except PrinterError as error:
        if error.code != JOB_NOT_FOUND:
            raise
        return f"{handle}:gone"
    return f"{handle}:{info.state}{_CANCEL_ASKED}" if printing else f"{handle}:cancelled"


def printer_cancel_refused(*, job: PrintJob, note: str) -> None:
    """Record, once for what the printer said, that its device has a copy of a cancelled job it would not
    give back: the board and the alert list it (alerts.printed_after_cancel_events). Asked again at each
    poll until the copy is over, it says the same, and nothing more is recorded."""
    with transaction.atomic():
        pending = PrintJob.objects.select_for_update().filter(pk=job.pk, cancel_at_printer=True).exists()
        recorded = JobEvent.objects.filter(job_id=job.pk, kind=PRINTER_CANCEL_REFUSED, note=note[:500])
        if pending and not recorded.exists():
            JobEvent.objects.create(job_id=job.pk, kind=PRINTER_CANCEL_REFUSED, note=note[:500])
    logger.warning("printer cancel refused, the device has the copy job=%s", job.pk)


def _printer_cancel_done(*, job: PrintJob, note: str) -> bool:
    with transaction.atomic():
        updated = PrintJob.objects.filter(pk=job.pk, cancel_at_printer=True).update(
            cancel_at_printer=False, claimed_at=None, claimed_by=""
        )
        if updated:
            JobEvent.objects.create(job_id=job.pk, kind="printer_cancelled", note=note[:500])
    logger.info("job cancelled at printer job=%s", job.pk)
    return True
