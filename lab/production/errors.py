"""Error codes of production: floor actions on printers, batches and jobs, holds, maintenance tickets.

Their HTTP statuses are mapped in api/errors.py; a print job's failure codes are printers/ errors, not these.
"""

from __future__ import annotations

from enum import StrEnum


class ProductionError(StrEnum):
    PRINTER_NOT_FOUND = "printer_not_found"
    PRINTER_ALREADY_PAUSED = "printer_already_paused"
    PRINTER_NOT_PAUSED = "printer_not_paused"
    PRINTER_CANCEL_FAILED = "printer_cancel_failed"  # CUPS did not cancel a submitted job; nothing changed
    BATCH_NOT_FOUND = "batch_not_found"
    BATCH_HOLD_UNCHANGED = "batch_hold_unchanged"  # already held (or already released); details: is_held
    JOB_NOT_FOUND = "job_not_found"
    JOB_CHANGED = "job_changed"  # another worker or person moved the job meanwhile: look again and retry
    EARLIER_SEND_PRINTED = (
        "earlier_send_printed"  # a reroute refused: the old printer printed an earlier send
    )
    # A reroute (or a send again) refused: the old printer is printing an earlier send, which a cancel
    # may reach too late; wait until it has finished and count the prints.
    EARLIER_SEND_PRINTING = "earlier_send_printing"
    JOB_NOT_REROUTABLE = "job_not_reroutable"  # only queued, ready or failed jobs move to another printer
    SAME_PRINTER = "same_printer"
    NO_CAPABLE_PRINTER = "no_capable_printer"  # no other online printer holds the job's media
    JOB_NOT_CANCELLABLE = "job_not_cancellable"
    JOB_NOT_PRINTED = "job_not_printed"  # reprints and copy checks are for printed jobs only
    JOB_NOT_UNKNOWN = "job_not_unknown"  # only jobs of unknown fate (or suspect) are resolved by a person
    INVALID_REPRINT_REASON = "invalid_reprint_reason"
    INVALID_COPIES = "invalid_copies"
    REPRINT_EXCEEDS_COPIES = "reprint_exceeds_copies"  # its reprints together replace more than it printed
    ORDER_NOT_IN_PRODUCTION = "order_not_in_production"  # a reprint for an order past production
    # Holds for clarification.
    HOLD_MESSAGE_REQUIRED = "hold_message_required"
    HOLD_MESSAGE_TOO_LONG = "hold_message_too_long"
    ORDER_NOT_HOLDABLE = "order_not_holdable"  # only paid orders not yet packed are held
    ORDER_NOT_ON_HOLD = "order_not_on_hold"
    # Maintenance tickets.
    DESCRIPTION_REQUIRED = "description_required"
    JOB_NOT_ELIGIBLE = (
        "job_not_eligible"  # a ticket may name only jobs at its printer now or printed recently
    )
    NOT_A_SUPERVISOR = "not_a_supervisor"
    APPROVER_IS_OPENER = "approver_is_opener"  # four eyes: the opener cannot approve their own ticket
    TICKET_NOT_FOUND = "ticket_not_found"
    TICKET_CLOSED = "ticket_closed"
    TICKET_APPROVED = "ticket_approved"  # already approved
