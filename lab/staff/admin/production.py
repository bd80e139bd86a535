"""Printers in the lab admin: where a printer is and what it holds; its live state stays production's.

State, reasons and the server watch are written only by the production services (the state machine), so
they are read-only here; so is the board's pause, which a technician sets through its own service.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest

from lab.accounts.models import User
from lab.catalog.models import Paper
from lab.production.backends import (
    PRINTER_TARGET_REFUSED,
    PrinterTargetRefused,
    backend_for,
    folder_target_check,
)
from lab.production.jobs import job_move
from lab.production.models import (
    DESTINATION_FIELDS,
    Printer,
    PrintJob,
)
from lab.production.spool import UNFINISHED_SEND_SECONDS, destination_is_swept, printer_copies_discard
from lab.production.states import JobStatus
from lab.staff.admin.base import LabModelAdmin
from lab.staff.admin.services import lab_admin_record
from printers.errors import PrinterError
from printers.media import UnknownMediaError, pwg_media_for_size

logger = logging.getLogger(__name__)


def media_size_check(label: str) -> str:
    """`4x6` (short x long, inches) when a PWG media of that size exists, else a ValidationError."""
    width, _, height = label.lower().partition("x")
    try:
        pwg_media_for_size(width_inches=Decimal(width), height_inches=Decimal(height))
    except (ArithmeticError, UnknownMediaError) as error:  # decimal's InvalidOperation: not a number
        raise forms.ValidationError(
            f"{label!r} is not a known print size (short x long in inches, e.g. 4x6).", code="media_unknown"
        ) from error
    return label.lower()


class MediaSizesField(forms.CharField):
    """The JSON list `["4x6", "5x7"]` as the text `4x6, 5x7`."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value)
        return [media_size_check(part.strip()) for part in str(text).split(",") if part.strip()]


class PrinterForm(forms.ModelForm[Printer]):
    media_sizes = MediaSizesField(help_text="Sizes loaded, short x long in inches: 4x6, 5x7")
    papers = forms.MultipleChoiceField(choices=Paper.choices, widget=forms.CheckboxSelectMultiple)
    old_copies_left = forms.BooleanField(
        required=False,
        label="Move it all the same",
        help_text="Only for a move the page refused because the current destination does not answer or could"
        " not erase its copies of finished jobs, or has jobs at it while its hot folder is refused (outside"
        " HOTFOLDER_ROOT): the move goes ahead, those copies stay there for a person to remove, such jobs go"
        " to unknown for a person to count, and the audit chain says so.",
    )
    # Set by clean: what a move made with old_copies_left left at the old destination (save_model records it).
    old_copies_not_erased: str | None = None
    # Set by clean: the jobs sent to a refused old folder that the move sends to unknown (save_model does).
    jobs_to_unknown: tuple[int, ...] = ()

    class Meta:
        model = Printer
        fields = (
            "name",
            "backend",
            "target",
            "cups_server",
            "host",
            "location",
            "media_sizes",
            "papers",
            "dpi",
            "output_format",
        )

    def clean_target(self) -> str:
        """A hot folder lies strictly under HOTFOLDER_ROOT once resolved (lab.production.backends): the lab
        writes decrypted rasters there, and erases files there by their names alone."""
        target = str(self.cleaned_data.get("target", ""))
        backend = self.cleaned_data.get("backend")
        if backend is None:
            return target  # the backend's own error says why
        try:
            folder_target_check(backend=str(backend), target=target)
        except PrinterTargetRefused as refused:
            raise forms.ValidationError(
                "A hot folder must lie under HOTFOLDER_ROOT: give a folder name relative to it (an absolute"
                " path must lead there too, once `..` and symbolic links are followed).",
                code=PRINTER_TARGET_REFUSED,
            ) from refused
        return target

    def clean(self) -> dict[str, Any]:
        """Refuse to move a printer while a job may be at its destination: the lab reads such a job (and
        cancels it) by its handle at the printer's destination, so at a new one it would read as lost, its
        cancel would go there, and the old destination would print it all the same. Checked on the stored row,
        locked until the admin's save commits (the change form runs in one transaction)."""
        cleaned = super().clean() or {}
        if self.instance.pk is None:
            return cleaned
        stored = Printer.objects.select_for_update().filter(pk=self.instance.pk).first()
        if stored is None or all(
            field not in cleaned or cleaned[field] == getattr(stored, field) for field in DESTINATION_FIELDS
        ):
            return cleaned
        at_destination = PrintJob.objects.filter(printer_id=stored.pk).filter(
            Q(status__in=JOBS_AT_DESTINATION)
            | Q(cancel_at_printer=True)
            # a retry due: it looks for its earlier send at the printer first (none at a new one)
            | Q(status=JobStatus.READY, submit_attempts__gt=0)
        )
        count = at_destination.count()
        if count and cleaned.get("old_copies_left") and _folder_is_refused(stored):
            # No way out otherwise: a refused folder is never read, so its jobs would stay submitted (or
            # their cancels owed) for ever. Nothing there is read or erased; a person counts the prints.
            self.jobs_to_unknown = tuple(
                at_destination.filter(status__in=JOBS_SENT).values_list("pk", flat=True)
            )
        elif count:
            raise forms.ValidationError(
                f"{count} job(s) of this printer may be at its current destination (submitting, submitted,"
                " unknown or suspect, a retry of a send, or a cancel owed to it): the lab reads and cancels"
                " them there. Change"
                " its backend, target, CUPS server or host once they are printed, failed, resolved or"
                " cancelled (pause it on the board to stop new sends). A hot folder the lab refuses (outside"
                ' HOTFOLDER_ROOT) may be moved with "Move it all the same": its jobs go to unknown.',
                code="printer_jobs_at_destination",
            )
        if not self.errors:
            self._old_destination_clear(stored, move_all_the_same=bool(cleaned.get("old_copies_left")))
        return cleaned

    def _old_destination_clear(self, stored: Printer, *, move_all_the_same: bool) -> None:
        """Erase the copies of finished jobs the printer's current (stored) destination still holds, before
        the printer moves: the discard sweep asks each printer only at its destination as stored, so what
        the old one keeps after the move (CUPS: a day, PreserveJobFiles; a hot folder's done/: for ever) no
        sweep, erasure or retention would reach again. A destination that cannot be read, or a copy that
        cannot be erased, refuses the move, unless the admin moves it all the same (old_copies_left: on the
        record). A current destination that is not the lab's to clear (changed outside the lab, or a folder
        outside HOTFOLDER_ROOT: spool.destination_is_swept) is left alone: nothing there is erased."""
        if not destination_is_swept(stored):
            return
        try:
            erased, failed = _finished_copies_discard(stored)
        except (PrinterError, OSError) as error:
            logger.warning(
                "printer move: old destination not read printer=%s error=%s",
                stored.pk,
                getattr(error, "code", type(error).__name__),
            )
            if move_all_the_same:
                self.old_copies_not_erased = "the old destination did not answer"
                return
            raise forms.ValidationError(
                "This printer's current destination does not answer, so the copies of finished jobs it may"
                " still hold (a CUPS spool keeps them a day, a hot folder's done/ for ever) cannot be erased,"
                " and once the printer is moved no sweep asks there again. Try again when it answers, or"
                ' remove them there and tick "Move it all the same".',
                code="printer_old_destination_unreadable",
            ) from error
        if failed and move_all_the_same:
            self.old_copies_not_erased = f"{failed} print file(s) at the old destination could not be erased"
        elif failed:
            raise forms.ValidationError(
                f"This printer's current destination still holds {failed} print(s)' files that could not be"
                f" erased ({erased} were): once the printer is moved no sweep asks there again. Try again"
                ' when they can be, or remove them there and tick "Move it all the same".',
                code="printer_old_destination_unreadable",
            )


def _folder_is_refused(printer: Printer) -> bool:
    """Whether `printer`'s stored hot folder is refused (backends.folder_target_check): not strictly under
    HOTFOLDER_ROOT once resolved, so nothing there is ever read, cancelled or erased."""
    try:
        folder_target_check(backend=printer.backend, target=printer.target)
    except PrinterTargetRefused:
        return True
    return False


def _finished_copies_discard(printer: Printer) -> tuple[int, int]:
    """The discard sweep's erasure (lab/production/spool.py, same rules) at `printer`'s destination as given:
    the documents of our jobs that are over there and that nothing here looks at again, and the files of
    sends cut off before they became jobs; (erased, not erased). Raises PrinterError or OSError when the
    destination cannot be read."""
    backend = backend_for(printer)
    erased = backend.unfinished_sends_discard(older_than=time.time() - UNFINISHED_SEND_SECONDS)
    counts: Counter[str] = Counter()
    printer_copies_discard(printer, counts, backend=backend)
    return erased + counts["discarded"], counts["failed"]


# Jobs that may be at a printer's destination, read (and cancelled) there by their handle or title.
JOBS_AT_DESTINATION = (JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.UNKNOWN, JobStatus.SUSPECT)
# Of those, the ones the lab still tracks there (unknown and suspect are a person's already).
JOBS_SENT = frozenset({JobStatus.SUBMITTING, JobStatus.SUBMITTED})


class PrinterAdmin(LabModelAdmin[Printer]):
    form = PrinterForm
    list_display = ("name", "backend", "host", "cups_server", "target", "state", "is_paused_by_lab")
    list_filter = ("backend", "host", "state")
    search_fields = ("name", "target", "host", "location")
    readonly_fields = ("state", "state_reasons", "state_message", "state_changed_at", "is_paused_by_lab")

    def save_model(self, request: HttpRequest, obj: Printer, form: Any, change: bool) -> None:
        """Save, sealing the destination (Printer.save), and record a destination the admin wrote in the
        audit chain: the workers send decrypted rasters there, so where photos go is a lab admin's act an
        auditor can see and that cannot be edited away (Django's LogEntry can be, by the database's owner).

        A printer whose stored destination was changed outside the lab (its seal did not hold) is sent
        nothing, and `Printer.save` does not seal it again: this page, which shows every destination field,
        is where a person accepts it, on the record and told so, as an account's page accepts its state."""
        assert isinstance(request.user, User)
        with transaction.atomic():
            stored = Printer.objects.select_for_update().filter(pk=obj.pk).first() if change else None
            before = {field: getattr(stored, field) for field in DESTINATION_FIELDS} if stored else None
            seal_held = stored is None or stored.destination_is_sealed
            if stored is None:
                obj.save()
            else:
                obj.save(update_fields=_fields_to_write(obj, form, stored, seal_held=seal_held))
            changes = []
            if not seal_held:
                obj.destination_accept()
                found = ", ".join(f"{field} {value or '-'}" for field, value in (before or {}).items())
                changes.append(f"accepted a destination changed outside the lab (found: {found})")
            changes += [
                f"{field} {(before or {}).get(field) or '-'} -> {getattr(obj, field) or '-'}"
                for field in DESTINATION_FIELDS
                if before is None or before[field] != getattr(obj, field)
            ]
            moved_to_unknown = _jobs_at_refused_folder_to_unknown(
                getattr(form, "jobs_to_unknown", ()) if changes else (), actor=request.user
            )
            if moved_to_unknown:
                changes.append(
                    f"moved from a refused hot folder: {moved_to_unknown} job(s) sent there now unknown,"
                    " for a person to count"
                )
            if changes and getattr(form, "old_copies_not_erased", None):
                changes.append(
                    f"moved all the same: {form.old_copies_not_erased}, copies of finished jobs stay there"
                )
            if changes:
                lab_admin_record(
                    actor=request.user,
                    action="staff.printer_destination_set",
                    justification="; ".join(changes),
                    context_type="printer",
                    context_id=str(obj.pk),
                )
        if not seal_held:
            self.message_user(
                request,
                "This printer's destination was changed outside the lab: the destination this page shows"
                " (backend, target, CUPS server, host) is the lab's again and is printed to. Its failed"
                " jobs are not sent again by themselves: a technician resends them.",
                messages.WARNING,
            )


def _jobs_at_refused_folder_to_unknown(job_ids: tuple[int, ...], *, actor: User) -> int:
    """Move the jobs sent to the refused folder a printer leaves to `unknown`, in the admin's save: the lab
    never reads that folder, and at the new one it would read them as lost; a person counts the prints and
    decides. A job that moved on meanwhile is left as it is. How many moved."""
    moved = 0
    for job_id in job_ids:
        moved += job_move(
            job_id=job_id,
            from_statuses=JOBS_SENT,
            to_status=JobStatus.UNKNOWN,
            kind="printer_moved_from_refused_folder",
            note="its printer was moved off a hot folder outside HOTFOLDER_ROOT, which the lab never reads",
            actor_id=actor.pk,
            claimed_at=None,
            claimed_by="",
        )
    return moved


# What a printer's destination seal covers (Printer.save).
SEALED_FIELDS = ("name", *DESTINATION_FIELDS)


def _fields_to_write(obj: Printer, form: Any, stored: Printer, *, seal_held: bool) -> set[str]:
    """The columns the admin's save writes: the form's fields the admin changed, never the live state (state,
    reasons, the board's pause, the server watch and its cursor), which production's services write under the
    row's lock while the page waits for it: the page's copy of them, read before, undid a pause and moved the
    restart cursor back. Every other column of `obj` is set from the locked row, so the seal `Printer.save`
    makes and the changes this page records are of the row as it is stored. A destination changed outside the
    lab is accepted as the page showed it: all its sealed fields are written then."""
    editable = {field.name for field in Printer._meta.concrete_fields if field.name in form.cleaned_data}
    written = editable & set(form.changed_data)
    if not seal_held:
        written |= set(SEALED_FIELDS)
    for field in Printer._meta.concrete_fields:
        if not field.primary_key and field.name not in written:
            setattr(obj, field.attname, getattr(stored, field.attname))
    return written


def register(site: admin.AdminSite) -> None:
    site.register(Printer, PrinterAdmin)
