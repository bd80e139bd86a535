"""Staff image view: the only HTTP endpoint that returns customer photo bytes to an employee.

Every response is `Cache-Control: no-store`; the audit gate decides and records each delivery.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from lab.accounts.models import User
from lab.audit.gate import AccessRequest, image_access
from lab.audit.records import RequestMeta
from lab.lib.errors import DomainError


def request_meta(request: HttpRequest) -> RequestMeta:
    return RequestMeta(
        client_ip=request.META.get("REMOTE_ADDR"),
        user_agent=request.headers.get("User-Agent", "")[:300],
        request_id=getattr(request, "request_id", ""),
    )


@login_required
@require_GET
def staff_photo(request: HttpRequest, asset_id: str, variant: str) -> HttpResponse:
    assert isinstance(request.user, User)
    access = AccessRequest(
        asset_id=str(asset_id),
        purpose=request.GET.get("purpose", ""),
        justification=request.GET.get("justification", ""),
        context_type=request.GET.get("context_type", ""),
        context_id=request.GET.get("context_id", ""),
        variant=variant,
    )
    if variant not in ("preview", "full", "download"):
        return JsonResponse({"code": "not_found", "detail": "No such variant."}, status=404)
    response: HttpResponse
    try:
        delivery = image_access(user=request.user, request=access, meta=request_meta(request))
    except DomainError as error:
        response = JsonResponse(
            {"code": error.code, "detail": error.message, **error.details}, status=error.status
        )
    else:
        response = HttpResponse(delivery.data, content_type=delivery.content_type)
        response["X-Audit-Seq"] = str(delivery.audit_seq)
        if variant == "download":
            response["Content-Disposition"] = f'attachment; filename="{asset_id}"'
    response["Cache-Control"] = "no-store, private"
    return response
