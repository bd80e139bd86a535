"""What every model page of the lab admin shares: the `admin` role decides, and nothing is deleted here.

Deleting a product, printer or person would orphan orders, jobs and audit records that name them; the
admin deactivates instead (`is_active`), and Django's LogEntry records each change.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.contrib import admin
from django.core.exceptions import SuspiciousOperation
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

from lab.staff.admin.site import is_lab_admin

ModelT = TypeVar("ModelT", bound=Model)


class LabModelAdmin(admin.ModelAdmin[ModelT]):
    actions = None  # the bulk "delete selected" action included

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_lab_admin(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_lab_admin(request.user)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return is_lab_admin(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_lab_admin(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """A NUL in the search or a list filter is a 400 (PostgreSQL refuses it in text: a 500 before)."""
        if any("\x00" in key or "\x00" in value for key, values in request.GET.lists() for value in values):
            raise SuspiciousOperation("A NUL character in a list's search or filters.")
        return super().changelist_view(request, extra_context)
