"""People's working shifts in the lab admin: the auditors' `outside_shift` rule reads them.

A shift is wall-clock times in the lab's time zone (LAB_TIME_ZONE), which the list and the form name, so
nobody enters UTC hours for a lab that is not on UTC.

Each change is recorded in the audit chain, not only in Django's LogEntry: widening a person's shift after
the fact would hide their views outside it from the rule, so who changed which shift, and when, must be
provable (README, "Threat model of the audit log").
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db import transaction
from django.db.models import ForeignKey, Model
from django.forms import ModelChoiceField
from django.http import HttpRequest

from lab.accounts.models import User
from lab.accounts.roles import STAFF_ROLES
from lab.audit.models import StaffShift
from lab.staff.admin.base import LabModelAdmin
from lab.staff.admin.services import lab_admin_record
from lab.staff.admin.site import is_lab_admin


def _shift_text(shift: StaffShift) -> str:
    day = StaffShift.Weekday(shift.weekday).label
    return f"{day} {shift.start_time:%H:%M}-{shift.end_time:%H:%M}"


def _record(*, request: HttpRequest, shift: StaffShift, what: str) -> None:
    assert isinstance(request.user, User)
    lab_admin_record(
        actor=request.user,
        action="staff.shift_changed",
        justification=what,
        context_type="user",
        context_id=str(shift.user.public_id),
    )


def zone_note() -> str:
    return f"Times are on the lab's wall clock, in {settings.LAB_TIME_ZONE} (LAB_TIME_ZONE)."


class StaffShiftAdmin(LabModelAdmin[StaffShift]):
    list_display = ("user", "weekday", "start_time", "end_time")
    list_filter = ("weekday",)

    def get_fieldsets(self, request: HttpRequest, obj: StaffShift | None = None) -> Any:
        return [(None, {"fields": ("user", "weekday", "start_time", "end_time"), "description": zone_note()})]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        # Any: whatever response LabModelAdmin's list page returns, with the zone as the page's subtitle.
        return super().changelist_view(request, {**(extra_context or {}), "subtitle": zone_note()})

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        if db_field.name == "user":  # staff only: customers have no shifts
            kwargs["queryset"] = User.objects.filter(groups__name__in=STAFF_ROLES).distinct()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_lab_admin(request.user)  # a shift that ended is removed; the chain keeps what it was

    def get_readonly_fields(self, request: HttpRequest, obj: StaffShift | None = None) -> tuple[str, ...]:
        # A shift stays its person's: moved to another, the first was left with no shift, which the rule reads
        # as "not judged", and the change was recorded under the other person. Add one for them instead.
        return ("user",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: StaffShift, form: Any, change: bool) -> None:
        with transaction.atomic():
            # Under the row's lock: two saves of one shift each record the window the other committed.
            before = StaffShift.objects.select_for_update().filter(pk=obj.pk).first() if change else None
            super().save_model(request, obj, form, change)
            what = f"{_shift_text(before)} -> {_shift_text(obj)}" if before else f"added {_shift_text(obj)}"
            _record(request=request, shift=obj, what=what)

    def delete_model(self, request: HttpRequest, obj: StaffShift) -> None:
        with transaction.atomic():
            # Under the row's lock, the stored window: the delete page read `obj` unlocked, and another
            # admin's save since would otherwise be recorded as removing the window it replaced.
            stored = StaffShift.objects.select_for_update().select_related("user").filter(pk=obj.pk).first()
            if stored is None:  # removed meanwhile, recorded by whoever removed it
                return
            _record(request=request, shift=stored, what=f"removed {_shift_text(stored)}")
            super().delete_model(request, stored)


def register(site: admin.AdminSite) -> None:
    site.register(StaffShift, StaffShiftAdmin)
