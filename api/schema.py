"""The API contract's error half: one `Problem` component (RFC 9457, `application/problem+json`) and an
AutoSchema that lists, on every operation, each error status that operation can answer.

What an operation can answer is derived from what DRF will do with it (a body can be malformed, a token can
be invalid, a permission can refuse, a path can name nothing, a throttle can trip); statuses a view's own
domain errors add are declared on the view with `problems(...)`.

Also the views that serve the contract: the schema (one version, whatever `?version=` says) and its docs page,
Swagger UI from the lab's own files under the staff pages' Content-Security-Policy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import drf_spectacular_sidecar
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.views.static import serve
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import BasePagination
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request

from api.errors import STATUS_BY_CODE, ApiError
from lab.staff.middleware import CONTENT_SECURITY_POLICY

PROBLEM_CONTENT_TYPE = "application/problem+json"

DESCRIPTIONS = {
    400: "Invalid request: malformed body or invalid fields (`errors` per field).",
    401: "Not authenticated, or the token is invalid or revoked.",
    403: "Authenticated but not allowed (or a CSRF failure on a session-authenticated change).",
    404: "No such resource (someone else's answers the same).",
    409: "Conflicts with the resource's current state.",
    410: "Gone for good.",
    413: "The request body is too large.",
    415: "Unsupported request content type.",
    422: "Understood but cannot be processed.",
    429: "Too many requests: see `Retry-After` and `retry_after_seconds`.",
    500: "Unexpected server error.",
    502: "A service the lab depends on (payments) failed; retry later.",
    503: "Temporarily unavailable; retry later.",
    507: "The photo store is full (`storage_full`); nothing was kept, retry later.",
}


# Every stable code a problem carries (api/errors.py): each domain code's, and the API's own (DRF's refusals
# and the errors met before a view among them).
PROBLEM_CODES = sorted({str(code) for code in STATUS_BY_CODE} | {str(code) for code in ApiError})


@extend_schema_field(serializers.ChoiceField(choices=PROBLEM_CODES), component_name="ProblemCodeEnum")
class ProblemCodeField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=PROBLEM_CODES, **kwargs)


# RFC 9457's members, as every problem carries them (api/errors.py problem_response).
PROBLEM_MEMBERS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "type": serializers.CharField(help_text="A URI naming the problem type."),
    "title": serializers.CharField(),
    "status": serializers.IntegerField(),
    "code": ProblemCodeField(help_text="Stable machine-readable code, e.g. `invalid_request`."),
    "detail": serializers.CharField(),
}


def _text(help_text: str) -> serializers.CharField:
    return serializers.CharField(required=False, help_text=help_text)


def _texts(help_text: str) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(), required=False, help_text=help_text)


def _whole(help_text: str, *, allow_null: bool = False) -> serializers.IntegerField:
    return serializers.IntegerField(required=False, allow_null=allow_null, help_text=help_text)


def _number(help_text: str) -> serializers.FloatField:
    return serializers.FloatField(required=False, help_text=help_text)


# The members a problem adds to RFC 9457's with its code: a DomainError's details (its raise site's keyword
# arguments) and the ones api/errors.py adds itself. Each is optional: a problem carries those of its code.
# tests/api/test_contract_types.py reads every raise site and holds this list to what they pass.
PROBLEM_DETAILS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "errors": serializers.JSONField(
        required=False, help_text="`invalid_request`: the validation errors, per field (a list per field)."
    ),
    "retry_after_seconds": _whole("Seconds to wait before trying again; also the `Retry-After` header."),
    "raster_code": _text("`photo_not_printable`: why the rasterizer refused the photo."),
    "budget_bytes": _whole("`upload_budget_exhausted`: the photo bytes one uploader may send a day."),
    "asset": _text("The photo's id: `asset_not_found`, `asset_not_ready`, `asset_still_needed`."),
    "asset_status": _text("`asset_not_ready`: the photo's status (`pending`, `failed` or `purged`)."),
    "failure_code": _text("`asset_not_ready` of a failed photo: why it failed (its `failure.code`)."),
    "position": _whole("The basket's item (from 1) a crop, focal point or border refusal is about."),
    "crop_aspect": _number("`crop_aspect_mismatch`: the crop's aspect (width:height) in the photo's pixels."),
    "expected_aspect": _number("`crop_aspect_mismatch`: the print image area's aspect (width:height)."),
    "min_width": _number("`crop_out_of_bounds`: the least crop width, a share of the photo's (one pixel)."),
    "min_height": _number("`crop_out_of_bounds`: the least crop height, a share of the photo's (one pixel)."),
    "max_border_mm": _number("`border_out_of_range`: the widest border on this product, in millimetres."),
    "max_bytes": _whole("`file_too_large`: the largest photo accepted, in bytes."),
    "max_pixels": _whole("`decompression_bomb`: the most pixels a photo may have."),
    "max_scans": _whole("`decompression_bomb`: the most scans a progressive JPEG may have."),
    "max_items": _whole("`too_many_metadata_items`: the most metadata items of one kind."),
    "frames": _whole("`image_has_several_frames`: the frames or pages counted."),
    "format": serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="`unsupported_format`: the file's format (empty: unknown).",
    ),
    "sku": _text("`unknown_sku`: the sku asked for."),
    "currency": _text("`currency_not_sold`: the product's currency."),
    "lab_currency": _text("`currency_not_sold`: the currency the lab sells in."),
    "total_minor": _whole(
        "`order_total_too_small` / `order_total_too_large`: the order's total, minor units."
    ),
    "min_total_minor": _whole(
        "`order_total_too_small`: the least total a card payment takes (null: Stripe's own minimum).",
        allow_null=True,
    ),
    "max_total_minor": _whole("`order_total_too_large`: the most a card payment takes, in minor units."),
    "order": _text("`payment_provider_unavailable`: the order saved, awaiting payment (its ref)."),
    "orders": _texts("The refs of the orders an erasure or a photo's purge waits for."),
    "current_version": _text("`policy_version_mismatch`: the privacy policy version to agree to."),
    "unknown": _texts("`unknown_event_type`: the event types not known."),
    "allowed": _texts("`unknown_event_type`: the event types there are."),
    "max_length": _whole("`url_invalid`: the longest URL accepted, once percent-encoded."),
    "from_state": _text("`invalid_transition`: the state it is in."),
    "to_state": _text("`invalid_transition`: the state it cannot move to."),
    "rule": _text("`image_unavailable` and the photo gate's refusals: the access rule that refused."),
    # Met by workers and staff pages only (an asset's or a delivery's failure, a Stripe event, the floor).
    "status_code": _whole("`url_fetch_status`: the HTTP status the photo's URL answered."),
    "event_type": _text("`unknown_event_type`: the event type emitted."),
    "order_id": _whole("`order_event_not_found`: the order's internal id."),
    "order_status": _text("`unknown_order_status` / `order_event_not_found`: the status notified."),
    "problem": _text("`malformed_event`: what is wrong with the Stripe event."),
    "is_held": serializers.BooleanField(
        required=False, help_text="`batch_hold_unchanged`: the batch's hold."
    ),
    "job_ids": serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="`job_not_eligible`: the jobs refused."
    ),
}

# `errors` is also a Serializer attribute, so the component is built from a field mapping.
Problem = inline_serializer(
    name="Problem",
    fields={
        **PROBLEM_MEMBERS,
        **PROBLEM_DETAILS,
    },
)


class ProblemExtension(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]  # untyped __init_subclass__
    """`Problem` with `additionalProperties`: a problem may carry members of its own (RFC 9457, 3.2)."""

    target_class = type(Problem)

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        return {**super().map_serializer(auto_schema, direction), "additionalProperties": True}


# Statuses whose problems may say when to try again: throttles and sign-in locks (429), a database that does
# not answer (503, always), a full photo store (507). An operation adds one of its own with retry_after().
RETRY_AFTER_STATUSES = frozenset({"429", "503", "507"})
RETRY_AFTER_DESCRIPTION = (
    "Seconds to wait before trying again (the body's `retry_after_seconds`), when known."
)


def retry_after(*status_codes: int) -> OpenApiParameter:
    """`extend_schema(parameters=[retry_after(409)])`: a `Retry-After` an operation's own refusal sends."""
    return OpenApiParameter(
        "Retry-After",
        int,
        location=OpenApiParameter.HEADER,
        response=list(status_codes),
        description=RETRY_AFTER_DESCRIPTION,
    )


def problem_response(status_code: int) -> OpenApiResponse:
    return OpenApiResponse(response=Problem, description=DESCRIPTIONS.get(status_code, "Error."))


def problems(*status_codes: int) -> dict[Any, Any]:
    """`extend_schema(responses={200: X, **problems(409, 502)})`: errors a view's domain rules add."""
    return {(code, PROBLEM_CONTENT_TYPE): problem_response(code) for code in status_codes}


# The no-untyped-call ignores below: drf-spectacular is typed but leaves these AutoSchema hooks unannotated.
class ProblemAutoSchema(AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        for code in sorted(self._problem_statuses(operation)):
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(  # type: ignore[no-untyped-call]
                    problem_response(code), str(code), media_types=[PROBLEM_CONTENT_TYPE]
                )
        return operation

    def _get_response_headers_for_code(self, status_code: Any, direction: Any = "response") -> dict[str, Any]:
        headers = super()._get_response_headers_for_code(status_code, direction)
        if str(status_code) in RETRY_AFTER_STATUSES:
            headers.setdefault(
                "Retry-After", {"schema": {"type": "integer"}, "description": RETRY_AFTER_DESCRIPTION}
            )
        return headers

    def _get_request_body(self, direction: Any = "request") -> Any:
        # drf-spectacular documents bodies for POST/PUT/PATCH only; the erasure (DELETE me) takes the
        # password in its body, and a contract that hides it would send every client to a 400.
        if self.method == "DELETE" and self._declared_request() is not None:
            self.method = "POST"
            try:
                return super()._get_request_body(direction)  # type: ignore[no-untyped-call]
            finally:
                self.method = "DELETE"
        return super()._get_request_body(direction)  # type: ignore[no-untyped-call]

    def _declared_request(self) -> Any:
        """The request body declared with extend_schema(request=...), without guessing one from the view."""
        self._only_declared = True
        try:
            return self.get_request_serializer()
        finally:
            self._only_declared = False

    def _get_serializer(self) -> Any:
        if getattr(self, "_only_declared", False):
            return None
        return super()._get_serializer()  # type: ignore[no-untyped-call]

    def _problem_statuses(self, operation: dict[str, Any]) -> set[int]:
        view = self.view
        parameters = operation.get("parameters", [])
        has_body = "requestBody" in operation
        # Any operation may meet a database that does not answer: 503 `database_unavailable`.
        statuses = {500, 503}
        if has_body or any(p.get("in") in ("query", "header") for p in parameters):
            statuses.add(400)
        if has_body:
            statuses.add(415)
        authenticators = list(getattr(view, "authentication_classes", ()))
        permissions = list(getattr(view, "permission_classes", ()))
        if authenticators or IsAuthenticated in permissions:
            statuses.add(401)
        if any(p not in (AllowAny, IsAuthenticated) for p in permissions):
            statuses.add(403)
        unsafe = self.method not in ("GET", "HEAD", "OPTIONS")
        if unsafe and SessionAuthentication in authenticators:
            statuses.add(403)
        if any(p.get("in") == "path" for p in parameters) or self._is_paginated():
            statuses.add(404)
        if getattr(view, "throttle_classes", ()):
            statuses.add(429)
        return statuses

    def _is_paginated(self) -> bool:
        paginator = getattr(self.view, "pagination_class", None)
        return (
            self.method == "GET"
            and isinstance(paginator, type)
            and issubclass(paginator, BasePagination)
            and self._is_list_view()
        )


# Imported here, below ProblemAutoSchema: drf-spectacular's views resolve DRF's DEFAULT_SCHEMA_CLASS (this
# module's ProblemAutoSchema) as they are defined, so imported at the top they found this module half-made.
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView  # noqa: E402


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema. The lab has one API version (/api/v1/): drf-spectacular took `?version=` as the
    schema's version and wrote it into the Content-Disposition header, where a line break was a
    BadHeaderError (a 500). The parameter is ignored."""

    def _get_version_parameter(self, request: Request) -> None:
        return None


# Swagger UI's distribution as drf-spectacular-sidecar ships it (requirements.txt pins the release).
SWAGGER_UI_DIR = (
    Path(drf_spectacular_sidecar.__file__).resolve().parent / "static/drf_spectacular_sidecar/swagger-ui-dist"
)
SWAGGER_UI_FILES = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"}
)


def swagger_ui_file_view(request: HttpRequest, path: str) -> HttpResponseBase:
    """Swagger UI's files, served by the app as the admin's are (the reference deployment has no static
    file server, and the sidecar is not an installed app)."""
    if path not in SWAGGER_UI_FILES:
        raise Http404("no such file")
    return serve(request, path, document_root=str(SWAGGER_UI_DIR))


# drf-spectacular's page template sets the page's margin and background in an inline <style>, which the
# policy blocks (a CSP violation in the console): it is left out, Swagger UI's own stylesheet does the rest.
INLINE_STYLE = re.compile(rb"\s*<style>.*?</style>", re.DOTALL)


def _without_inline_style(response: HttpResponse) -> None:
    response.content = INLINE_STYLE.sub(b"", response.content)


def _swagger_ui_file(filename: str) -> str:
    return reverse("api:docs-file", kwargs={"path": filename})


class DocsView(SpectacularSwaggerSplitView):
    """The API docs page, on the staff pages' origin: Swagger UI from the lab's own files (never a CDN's
    `@latest`), its start-up script a file of its own (`?script`) rather than inline, and the staff pages'
    Content-Security-Policy, so only the lab's own scripts run there."""

    url_name = "api:schema"

    @staticmethod
    def _swagger_ui_resource(filename: str) -> str:
        if spectacular_settings.SWAGGER_UI_DIST == "SIDECAR":
            return _swagger_ui_file(filename)
        return str(SpectacularSwaggerSplitView._swagger_ui_resource(filename))  # type: ignore[no-untyped-call]

    @staticmethod
    def _swagger_ui_favicon() -> str:
        if spectacular_settings.SWAGGER_UI_FAVICON_HREF == "SIDECAR":
            return _swagger_ui_file("favicon-32x32.png")
        return str(SpectacularSwaggerSplitView._swagger_ui_favicon())  # type: ignore[no-untyped-call]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if request.GET.get("script") is None and hasattr(response, "add_post_render_callback"):
            response.add_post_render_callback(_without_inline_style)
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        # The script holds the visitor's CSRF token: no other site may load it, and no cache keeps it.
        response["Cross-Origin-Resource-Policy"] = "same-origin"
        response["Cache-Control"] = "no-store"
        return response
