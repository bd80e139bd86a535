"""Printers, batches and print jobs: the production floor's state, written only by production services."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from lab.lib.seals import resealing, seal_holds, seal_of, stored_row_sealed
from lab.production.states import PRINTER_STATE_CHOICES, JobStatus, PrinterState, ReprintReason
from printers.registry import backend_choices

# A print job's title at the printer: `lab-job-<id>-<token>` (PrintJob.title, PrintJob.id_from_title,
# jobs_titled). The id alone is unique in one database only: another installation sending to the same print
# host (a second lab, a staging copy), a database restored from a backup or rebuilt from scratch, numbers its
# jobs from the same sequence, and the lab adopted, cancelled or erased the other's `lab-job-<id>` as its own.
# The token, random per job, makes a title name one job of one database. Jobs made before it had none and keep
# the title they were sent with (`lab-job-<id>`).
JOB_TITLE_PREFIX = "lab-job-"
_JOB_TITLE = re.compile(rf"{JOB_TITLE_PREFIX}([0-9]+)(?:-([0-9a-f]{{8}}))?")


def new_title_token() -> str:
    return secrets.token_hex(4)


# Where a printer's jobs go: the decrypted rasters (and packing slips) leave the lab's hands there.
DESTINATION_FIELDS = ("backend", "target", "cups_server", "host")
_DESTINATION_SALT = "lab.production.printer_destination"
_TICKET_SALT = "lab.production.maintenance_ticket"


def destination_seal(*, name: str, backend: str, target: str, cups_server: str, host: str) -> str:
    """The seal (lab/lib/seals.py) of a printer's destination: a destination written in the database alone (a
    CUPS server or a folder someone else reads) does not carry it, and nothing is sent there
    (lab/production/submission.py)."""
    return seal_of(_DESTINATION_SALT, _destination_facts(name, backend, target, cups_server, host))


def _destination_facts(*fields: str) -> str:
    return "\x1f".join(fields)


class Printer(models.Model):
    class OutputFormat(models.TextChoices):
        JPEG = "jpeg"
        TIFF = "tiff"

    name = models.SlugField(max_length=64, unique=True)
    backend = models.CharField(max_length=16, choices=backend_choices)  # printers.registry
    target = models.CharField(max_length=500)  # CUPS queue name, or hot folder path
    cups_server = models.CharField(max_length=200, blank=True)  # host:port; empty = settings.CUPS_SERVER
    host = models.CharField(max_length=100, blank=True)  # print host: its worker consumes queue print.<host>
    location = models.CharField(max_length=200, blank=True)
    media_sizes = models.JSONField(default=list)  # ["4x6", "5x7"] (short x long, inches)
    papers = models.JSONField(default=list)  # papers loaded: ["lustre", "glossy"]
    dpi = models.PositiveIntegerField(default=300)
    icc_profile = models.BinaryField(null=True, blank=True)
    output_format = models.CharField(max_length=8, choices=OutputFormat.choices, default=OutputFormat.JPEG)
    state = models.CharField(max_length=16, choices=PRINTER_STATE_CHOICES, default=PrinterState.ONLINE)
    state_reasons = models.JSONField(default=list)
    state_message = models.CharField(max_length=300, blank=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    is_paused_by_lab = models.BooleanField(default=False)  # a technician paused it on the board
    # The standing watch on the printer's server (a CUPS subscription) and the last event read from it: how
    # the poll hears that cupsd restarted (and so may send a job again).
    server_watch_id = models.PositiveIntegerField(null=True, blank=True)
    server_event_sequence = models.PositiveIntegerField(default=0)
    # destination_seal() of the fields the lab's own code last saved (every ORM save that writes them).
    destination_sealed = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar[list[str]] = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Seal the destination whenever the lab's code writes it (the admin, printers_sync, the demo seed):
        only a write that bypasses the app leaves it unsealed."""
        watched = {"name", *DESTINATION_FIELDS}
        reseal, update_fields = resealing(kwargs.get("update_fields"), watched, "destination_sealed")
        if reseal and stored_row_sealed(self, lambda stored: stored.destination_is_sealed):
            self.destination_sealed = seal_of(_DESTINATION_SALT, self._destination())
            kwargs["update_fields"] = update_fields
        self._forget_watch_of_another_server(kwargs)
        super().save(*args, **kwargs)

    def _forget_watch_of_another_server(self, kwargs: dict[str, Any]) -> None:
        """A printer moved to another print server drops its restart watch (`server_watch_id`, the cursor):
        that id and sequence number are the old server's, and on the new one the same id may be another
        subscription whose lower numbers would read as old news, so its restarts would go unheard."""
        update_fields = kwargs.get("update_fields")
        if self.pk is None or (update_fields is not None and "cups_server" not in update_fields):
            return
        stored = Printer.objects.filter(pk=self.pk).values_list("cups_server", flat=True).first()
        if stored is None or stored == self.cups_server:
            return
        self.server_watch_id, self.server_event_sequence = None, 0
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "server_watch_id", "server_event_sequence"}

    def _destination(self) -> str:
        return _destination_facts(self.name, self.backend, self.target, self.cups_server, self.host)

    @property
    def destination_is_sealed(self) -> bool:
        """Whether the destination is as the lab's own code last wrote it."""
        return seal_holds(self.destination_sealed, _DESTINATION_SALT, self._destination())

    def destination_accept(self) -> None:
        """Seal the destination as it is now, though the stored row's seal did not hold (which `save` never
        does): only for a person shown every destination field who saved them, the lab admin's printer page,
        which records what it accepted."""
        self.destination_sealed = seal_of(_DESTINATION_SALT, self._destination())
        Printer.objects.filter(pk=self.pk).update(destination_sealed=self.destination_sealed)

    @property
    def is_available(self) -> bool:
        return self.state == PrinterState.ONLINE and not self.is_paused_by_lab

    def holds(self, *, size: str, paper: str) -> bool:
        return size in self.media_sizes and paper in self.papers


class Batch(models.Model):
    """Jobs for one printer and one media, so paper is loaded once; a held batch is not submitted."""

    printer = models.ForeignKey(Printer, on_delete=models.PROTECT, related_name="batches")
    size = models.CharField(max_length=16)
    paper = models.CharField(max_length=16)
    is_held = models.BooleanField(default=False)
    is_open = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["printer", "size", "paper"],
                condition=models.Q(is_open=True),
                name="one_open_batch_per_media",
            )
        ]

    def __str__(self) -> str:
        return f"batch:{self.pk}"


class PrintJob(models.Model):
    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="print_jobs")
    item = models.ForeignKey("orders.OrderItem", on_delete=models.CASCADE, related_name="print_jobs")
    printer = models.ForeignKey(Printer, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    copies = models.PositiveSmallIntegerField()
    copies_verified = models.PositiveSmallIntegerField(default=0)
    # The packer's own count at the station (lab.packing.station.item_confirm), apart from the quality check's
    # copies_verified: a check of a reprint at the printer is not the packer finding it in the box. Lowered
    # with copies_verified by a reprint (and by a check that rejects prints), cleared by an unpack.
    copies_packed = models.PositiveSmallIntegerField(default=0, db_default=0)
    # Prints the floor's quality check found bad (copies minus the good ones it counted): never counted
    # good at the packing station; a reprint brings their replacements.
    copies_rejected = models.PositiveSmallIntegerField(default=0, db_default=0)
    # Of those, the ones the last quality check itself rejected (reprints raise copies_rejected to the prints
    # they replace): a reprint cancelled as not needed gives back only what it rejected, never the check's.
    copies_rejected_at_check = models.PositiveSmallIntegerField(default=0, db_default=0)
    raster_blob = models.CharField(max_length=64, blank=True)
    raster_sha256 = models.CharField(max_length=64, blank=True)
    raster_width_px = models.PositiveIntegerField(default=0)
    raster_height_px = models.PositiveIntegerField(default=0)
    raster_printer = models.ForeignKey(
        Printer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    raster_engine = models.CharField(max_length=16, blank=True)
    backend_job_id = models.CharField(max_length=100, blank=True)
    backend_state = models.CharField(max_length=16, blank=True)
    # Cancelled here while the printer may still hold it (submitting or submitted): the poll cancels it there
    # (by handle, or by title when the submitting worker died) and clears the flag.
    cancel_at_printer = models.BooleanField(default=False)
    # CUPS time-at-processing as first seen, and whether the printer started the job again since (cupsd
    # restarted mid-job and re-sent the document): such a job ends `suspect`, never silently `printed`.
    backend_started_at = models.BigIntegerField(null=True, blank=True)
    backend_restarted = models.BooleanField(default=False)
    submit_attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    # The submit claim's send fence: cleared by the claim, set to the claim's `claimed_at` by the claiming
    # worker just before it hands the raster to the printer, and only while its claim is still the job's. A
    # claim whose lease ran out with it unset never sent anything, so the reconciler sends the job again by
    # itself; with it set, the printer is asked, and a job it does not hold is `unknown` for a person. It
    # stays when the claim ends, naming the claim whose send the job may still be waiting for.
    sending_claim_at = models.DateTimeField(null=True, blank=True)
    # The `claimed_at` of the last submit claim made by a worker that sets the send fence. Only such a claim
    # can show by an unset fence that it sent nothing: a worker of a version before the fence (one still
    # running through an upgrade) leaves both fields as they were, so its claim never matches, counts as sent,
    # and is never sent again by the reconciler (which asks the printer, then a person, as before the fence).
    fence_armed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    failure_is_permanent = models.BooleanField(default=False)
    reprint_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reprints"
    )
    reprint_reason = models.CharField(max_length=16, choices=ReprintReason.choices, blank=True)
    # The reprint form's one-time key: the same form sent twice (a double click, a resend) reprints once.
    reprint_request_key = models.CharField(max_length=64, blank=True, default="")
    # The title's random part (JOB_TITLE_PREFIX); "" for jobs made before titles had one, and for those a
    # process of a version before them inserts during an upgrade (the database's default, production/0019):
    # such a version sends and looks for `lab-job-<id>`, the title an empty token names.
    title_token = models.CharField(max_length=8, blank=True, default=new_title_token, db_default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    printed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["pk"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["status", "printer"]),
            models.Index(fields=["order", "status"]),
            # The jobs still holding a raster (a week's, retention purges them): what the retention gauge
            # reads at every scrape (customer_data/retention_lateness.py: retention_due_late), not every job.
            models.Index(
                fields=["status", "id"], condition=~models.Q(raster_blob=""), name="job_raster_held"
            ),
        ]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["reprint_of", "reprint_request_key"],
                condition=~models.Q(reprint_request_key=""),
                name="one_reprint_per_request",
            )
        ]

    def __str__(self) -> str:
        return f"job:{self.pk}"

    @property
    def title(self) -> str:
        """The backend job title carries our id, so a reconciler can find a job we lost track of, and the
        job's token, so that it finds no other database's job of the same id."""
        return job_title(self.pk, self.title_token)

    @staticmethod
    def id_from_title(title: str) -> int | None:
        """The id in a backend job's title when it is one of ours in form (`lab-job-<id>[-<token>]`), else
        None. In form only: jobs_titled says which titles are our jobs'."""
        match = _JOB_TITLE.fullmatch(title)
        return int(match.group(1)) if match else None


# The job events whose note is the floor's own words (a person's reason, which may name the customer),
# written by lab/production/actions.py (job_cancel) and reprints.py (job_reprint): erasure rewrites their
# notes, the export shows them. Every other event's note is the lab's machine-written one (printer states,
# spool titles).
JOB_CANCELLED = "cancelled"
JOB_CANCELLED_NOTE = "cancelled by staff"  # what job_cancel writes when it is given no note
JOB_REPRINT_REQUESTED = "reprint_requested"
PERSONAL_JOB_EVENT_KINDS = frozenset({JOB_CANCELLED, JOB_REPRINT_REQUESTED})


class JobEvent(models.Model):
    """Every job status change and floor action, with who did it (the floor's audit trail)."""

    job = models.ForeignKey(PrintJob, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    # A printer's own event (kind `printer_state`, `printer_paused`, …: no job), or, on a job's status change
    # (jobs.job_move), the printer the job is at after it: the job's printer changes later (a reroute), and
    # the supervisor's figures count the event where it happened. Empty on events written before migration
    # 0018 and on the job events written elsewhere; the figures then read the job's printer now.
    printer = models.ForeignKey(
        Printer, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    kind = models.CharField(max_length=40)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    # On a move to `failed`: the code the job failed with (the job's own is cleared when it is rerouted).
    failure_code = models.CharField(max_length=64, blank=True, default="", db_default="")
    actor = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar[list[str]] = ["created_at", "pk"]
        # The supervisor's view reads events by time range: by status reached (printed, failed), by kind
        # (reprints), a printer's state changes, and every job event of a window (bench/supervisor).
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["created_at"]),
            models.Index(fields=["to_status", "created_at"]),
            models.Index(fields=["kind", "created_at"]),
            models.Index(fields=["printer", "kind", "created_at"]),
        ]


class ListedCopy(models.Model):
    """A copy of a job at a printer that a `late_copy_not_cancelled` event listed for a person (it may have
    printed: lab.production.cancellation.late_copies_list), one row per copy: a later move, send again or
    cancel of the job does not list it again (cancellation.copy_listed_already). Before, the copies were
    found by a regex over those events' notes: one past the note's 500 characters was never found, so listed
    and alerted again, and two writers at once could both list one copy."""

    job = models.ForeignKey(PrintJob, on_delete=models.CASCADE, related_name="listed_copies")
    printer = models.ForeignKey(Printer, on_delete=models.CASCADE, related_name="listed_copies")
    handle = models.CharField(max_length=100)  # the copy's handle at that printer (PrintJob.backend_job_id)
    # The event that listed it first (its note names it for people, perhaps cut at 500 characters).
    event = models.ForeignKey(JobEvent, on_delete=models.CASCADE, related_name="listed_copies")
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["job", "printer", "handle"], name="listed_copy_once"),
        ]

    def __str__(self) -> str:
        return f"listed:{self.job_id}:{self.printer_id}:{self.handle}"


class Alert(models.Model):
    """A condition a supervisor must hear about, once: the key names one instance of the condition."""

    class Kind(models.TextChoices):
        ORDER_AT_RISK = "order_at_risk"
        PRINTER_ERROR = "printer_error"
        JOB_NEEDS_PERSON = "job_needs_person"  # fate unknown, or may have printed twice
        QUEUE_GROWING = "queue_growing"
        # A payment at Stripe no order holds (a database restored from a backup): a person refunds it
        # (lab/orders/stripe_replay.py raises it).
        PAYMENT_WITHOUT_ORDER = "payment_without_order"

    key = models.CharField(max_length=200, unique=True)  # e.g. "printer_error:3:2026-12-01T10:00:00+00:00"
    kind = models.CharField(max_length=32, choices=Kind.choices)
    message = models.CharField(max_length=500)
    link = models.CharField(max_length=200, blank=True)  # the staff page behind the alert
    created_at = models.DateTimeField(default=timezone.now)
    # Claimed (set) before the e-mail goes out, so two checks running at once send it once.
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["-created_at", "-pk"]
        indexes: ClassVar[list[models.Index]] = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"alert:{self.key}"


class MaintenanceTicket(models.Model):
    """A printer problem and the specific jobs it concerns: the only photos a `maintenance` view may show.

    The jobs are chosen when the ticket is opened (lab.production.maintenance.maintenance_ticket_open); full
    resolution under the ticket needs a supervisor other than the opener to approve it.
    """

    printer = models.ForeignKey(Printer, on_delete=models.CASCADE, related_name="tickets")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=500)
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    jobs = models.ManyToManyField(PrintJob, blank=True, related_name="+")
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    # ticket_seal() of its printer, opener, jobs, approver and whether it is closed, as the lab's own code
    # (lab.production.maintenance) last wrote them: the gate shows nothing under a ticket that does not carry
    # it (a job added, an approval or a reopening written in the database alone).
    sealed = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "audit_maintenanceticket"  # created by the audit app, moved here without a table rename
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=models.Q(approved_by__isnull=True) | ~models.Q(approved_by=models.F("opened_by")),
                name="ticket_approver_is_not_opener",
            )
        ]

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    @property
    def is_approved(self) -> bool:
        return self.approved_at is not None

    def seal(self) -> None:
        """Seal the ticket as it is now (its jobs read from the database): the ticket actions call it."""
        self.sealed = ticket_seal(self, list(self.jobs.values_list("pk", flat=True)))
        MaintenanceTicket.objects.filter(pk=self.pk).update(sealed=self.sealed)

    @property
    def is_sealed(self) -> bool:
        """Whether its printer, opener, jobs, approver and state are as the lab's own code last wrote them."""
        facts = ticket_facts(self, list(self.jobs.values_list("pk", flat=True)))
        return seal_holds(self.sealed, _TICKET_SALT, facts)


def ticket_facts(ticket: Any, job_ids: list[int]) -> str:
    """What a ticket's seal covers (a historical model in a migration has the same fields)."""
    jobs = ",".join(str(job_id) for job_id in sorted(job_ids))
    state = "closed" if ticket.closed_at else "open"
    return (
        f"{ticket.pk}|{ticket.printer_id}|{ticket.opened_by_id}|{jobs}|{ticket.approved_by_id or ''}|{state}"
    )


def ticket_seal(ticket: Any, job_ids: list[int]) -> str:
    return seal_of(_TICKET_SALT, ticket_facts(ticket, job_ids))


# The JobEvent kind that records a title a job gave up (its `note`: the token, its `printer`: where the job
# was): a job re-titled (a person chose "send again" on a job whose fate was unknown) leaves its earlier
# copies at the printer under the title it gave up.
TITLE_SUPERSEDED = "title_superseded"


def job_title(job_id: int, token: str) -> str:
    return f"{JOB_TITLE_PREFIX}{job_id}-{token}" if token else f"{JOB_TITLE_PREFIX}{job_id}"


def jobs_titled(titles: Iterable[str]) -> dict[str, int]:
    """Of these backend job titles, those that are exactly one of our jobs' titles, with its id (one query).
    A title of our form whose id is ours but whose token is not (another installation's job, or one from
    before a restore) is left out."""
    wanted = {title: job_id for title in titles if (job_id := PrintJob.id_from_title(title)) is not None}
    if not wanted:
        return {}
    tokens = dict(PrintJob.objects.filter(pk__in=set(wanted.values())).values_list("pk", "title_token"))
    return {
        title: job_id
        for title, job_id in wanted.items()
        if job_id in tokens and job_title(job_id, tokens[job_id]) == title
    }


def jobs_formerly_titled(titles: Iterable[str]) -> dict[str, int]:
    """Of these backend job titles, those that one of our jobs carried before it was re-titled (a
    TITLE_SUPERSEDED event of that job names the token), with its id (one query). Only a recorded token
    counts: a title of a job's id with any other token stays another installation's."""
    wanted = {title: job_id for title in titles if (job_id := PrintJob.id_from_title(title)) is not None}
    if not wanted:
        return {}
    given_up = set(
        JobEvent.objects.filter(kind=TITLE_SUPERSEDED, job_id__in=set(wanted.values())).values_list(
            "job_id", "note"
        )
    )
    return {
        title: job_id
        for job_id, token in given_up
        if (title := job_title(job_id, token)) in wanted and wanted[title] == job_id
    }


class SweepRun(models.Model):
    """A scheduled task's runs, as beat's watchers see them (lab/production/sweeps.py): when it first and last
    finished without an error, on the database's clock. One row per task, updated in place."""

    task = models.CharField(max_length=100, primary_key=True)
    first_run_at = models.DateTimeField()
    last_run_at = models.DateTimeField()
    # What its last run left for the next one (its result's `work_left`: the retention sweep out of its time
    # budget); above 0 the sweep is behind its schedule, shown like an overdue one (sweeps.py).
    work_left = models.PositiveIntegerField(default=0, db_default=0)

    def __str__(self) -> str:
        return f"sweep:{self.task}"
