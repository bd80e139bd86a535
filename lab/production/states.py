"""The print-job state machine and the printer states: the one table each status change is checked against."""

from __future__ import annotations

from django.db.models import TextChoices

from lab.lib.states import StateMachine
from printers.base import PrinterState as PrinterState  # re-exported for production code


class JobStatus(TextChoices):
    NO_PRINTER = "no_printer"  # no online printer holds this media: waits, routed when one appears
    QUEUED = "queued"
    RASTERIZING = "rasterizing"
    READY = "ready"
    SUBMITTING = "submitting"  # claimed by a worker that is talking to the printer right now
    SUBMITTED = "submitted"
    PRINTED = "printed"  # the device accepted all of it (CUPS "completed"), not yet checked by a person
    FAILED = "failed"
    UNKNOWN = "unknown"  # a submit whose outcome nobody knows: a technician decides, never a retry
    # CUPS restarted while the job was at the printer and sent it again from the start: it may have printed
    # twice. A technician counts the prints and confirms (printed) or asks for a reprint.
    SUSPECT = "suspect"
    CANCELLED = "cancelled"


J = JobStatus
ACTIVE_JOB_STATUSES = frozenset({J.QUEUED, J.RASTERIZING, J.READY, J.SUBMITTING, J.SUBMITTED})
FINAL_JOB_STATUSES = frozenset({J.PRINTED, J.CANCELLED})
# Jobs a person must decide about before the order can move on.
NEEDS_PERSON_JOB_STATUSES = frozenset({J.UNKNOWN, J.SUSPECT})
JOB_MACHINE = StateMachine(
    "print_job",
    {
        J.NO_PRINTER: frozenset({J.QUEUED, J.CANCELLED}),
        J.QUEUED: frozenset(
            {J.QUEUED, J.RASTERIZING, J.NO_PRINTER, J.CANCELLED, J.FAILED}
        ),  # queued->queued: reroute
        # rasterizing -> rasterizing: another worker takes over the claim of a dead one after its lease.
        J.RASTERIZING: frozenset({J.RASTERIZING, J.READY, J.QUEUED, J.FAILED, J.CANCELLED}),
        J.READY: frozenset({J.SUBMITTING, J.QUEUED, J.NO_PRINTER, J.CANCELLED, J.FAILED}),
        # submitting -> cancelled: a supervisor's cancel; the printer side is settled by the worker or poll.
        J.SUBMITTING: frozenset({J.SUBMITTED, J.READY, J.FAILED, J.UNKNOWN, J.CANCELLED}),
        # submitted -> ready: CUPS holds the job without its document (nothing printed), resent safely.
        # submitted -> unknown: the printer has no record of the job any more (printed and dropped, or lost).
        J.SUBMITTED: frozenset({J.PRINTED, J.FAILED, J.CANCELLED, J.SUSPECT, J.READY, J.UNKNOWN}),
        J.FAILED: frozenset({J.QUEUED, J.READY, J.CANCELLED}),
        # unknown -> submitted: the send its worker began lands after all (the worker was slow, not dead).
        J.UNKNOWN: frozenset({J.PRINTED, J.READY, J.CANCELLED, J.SUBMITTED}),
        J.SUSPECT: frozenset({J.PRINTED, J.READY, J.CANCELLED}),
        J.PRINTED: frozenset(),
        J.CANCELLED: frozenset(),
    },
)


# One printer-state enum: the backends' (printers.base), stored as is.
PRINTER_STATE_CHOICES = [(state.value, state.name.capitalize()) for state in PrinterState]


class ReprintReason(TextChoices):
    DAMAGED = "damaged"
    COLOUR = "colour"
    CROP = "crop"
    PAPER_JAM = "paper_jam"
    OTHER = "other"
