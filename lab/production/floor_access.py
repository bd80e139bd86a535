"""Who may act on the production floor (the floor actions' role check), and the job an action is about."""

from __future__ import annotations

from collections.abc import Collection

from lab.accounts.models import User
from lab.accounts.roles import FLOOR_ROLES, has_role
from lab.lib.errors import CommonError, NotFound, PermissionDenied
from lab.production.errors import ProductionError
from lab.production.models import PrintJob


def floor_access_check(actor: User, roles: Collection[str] = FLOOR_ROLES) -> None:
    if not has_role(actor, *roles):
        raise PermissionDenied(CommonError.NOT_ALLOWED, "Your role may not do this on the production floor.")


def floor_job(job_id: int) -> PrintJob:
    job = PrintJob.objects.select_related("printer", "order", "item__product").filter(pk=job_id).first()
    if job is None:
        raise NotFound(ProductionError.JOB_NOT_FOUND, "No such print job.")
    return job
