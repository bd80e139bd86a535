"""One error shape for the whole API: RFC 9457 problem+json with a stable `code`, and each code's status.

Domain errors, DRF's own errors (validation, auth, throttling) and 404s all come out the same way. Codes are
enums in each app's errors.py (and ApiError below); STATUS_BY_CODE is the one place mapping them to HTTP.
"""

from __future__ import annotations

import math
import sys
from enum import StrEnum
from typing import Any

from django.core.exceptions import DisallowedHost, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler

from lab.accounts.errors import AccountError
from lab.catalog.errors import CatalogError
from lab.customer_data.errors import CustomerDataError
from lab.gate.errors import GateError
from lab.lib.errors import (
    CommonError,
    Conflict,
    DomainError,
    Gone,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    Unavailable,
    UpstreamError,
)
from lab.notify.errors import NotifyError
from lab.orders.errors import OrderError
from lab.packing.errors import PackingError
from lab.production.errors import ProductionError
from lab.production.imaging.errors import RasterError
from lab.staff.errors import StaffError

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ApiError(StrEnum):
    """Codes the API layer answers with itself, before or around the services."""

    # DRF's own refusals (_DRF_CODES): their status is the DRF exception's.
    NOT_AUTHENTICATED = "not_authenticated"  # also raised by views that need a signed-in customer
    AUTHENTICATION_FAILED = "authentication_failed"  # a token that is unknown, revoked or a staff member's
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    THROTTLED = "throttled"
    MALFORMED_REQUEST = "malformed_request"  # the body does not parse
    INVALID_REQUEST = "invalid_request"  # fields fail validation; `errors` lists them per field
    ERROR = "error"  # an APIException of a class _DRF_CODES does not list
    # Django's errors under /api/ that happen before or outside DRF (handler400/403/404/500 in lab/urls.py).
    BAD_REQUEST = "bad_request"
    REQUEST_TOO_LARGE = "request_too_large"  # over DATA_UPLOAD_MAX_MEMORY_SIZE
    TOO_MANY_FIELDS = "too_many_fields"
    DISALLOWED_HOST = "disallowed_host"  # a Host header not in ALLOWED_HOSTS
    MALFORMED_CONTENT_TYPE = "malformed_content_type"  # a Content-Type header that does not parse
    SERVER_ERROR = "server_error"
    DATABASE_UNAVAILABLE = "database_unavailable"  # the database did not answer (down, restarting, busy)
    # The views' own checks.
    INVALID_CREDENTIALS = "invalid_credentials"  # POST auth/token with a wrong e-mail or password
    IDEMPOTENCY_KEY_REQUIRED = "idempotency_key_required"
    # A proof of a stored photo the rasterizer refuses (its `raster_code` says why), which is what printing
    # it would meet: one stored before intake took only what the raster workers decode, say.
    PHOTO_NOT_PRINTABLE = "photo_not_printable"
    # A photo upload past the uploader's byte budget for the day (API_UPLOAD_BYTES_PER_DAY,
    # api/upload_throttle.py UploadByteBudget); details: retry_after_seconds, budget_bytes.
    UPLOAD_BUDGET_EXHAUSTED = "upload_budget_exhausted"


_DRF_CODES: dict[type[exceptions.APIException], ApiError] = {
    exceptions.NotAuthenticated: ApiError.NOT_AUTHENTICATED,
    exceptions.AuthenticationFailed: ApiError.AUTHENTICATION_FAILED,
    exceptions.PermissionDenied: ApiError.PERMISSION_DENIED,
    exceptions.NotFound: ApiError.NOT_FOUND,
    exceptions.MethodNotAllowed: ApiError.METHOD_NOT_ALLOWED,
    exceptions.NotAcceptable: ApiError.NOT_ACCEPTABLE,
    exceptions.UnsupportedMediaType: ApiError.UNSUPPORTED_MEDIA_TYPE,
    exceptions.Throttled: ApiError.THROTTLED,
    exceptions.ParseError: ApiError.MALFORMED_REQUEST,
    exceptions.ValidationError: ApiError.INVALID_REQUEST,
}

# The HTTP status of every code a DomainError (or a page below) can carry, grouped by status: the public
# contract in one place. tests/api/test_error_codes.py checks that every code of every enum is here (DRF's
# own refusals above excepted). Codes raised only to workers or staff pages never reach the API; they are
# listed anyway, with the status their kind implies, so no code is left to a default.
STATUS_BY_CODE: dict[str, int] = {
    **dict.fromkeys(
        (
            AccountError.EMAIL_CONFIRMATION_EXPIRED,
            AccountError.EMAIL_CONFIRMATION_INVALID,
            AccountError.POLICY_VERSION_MISMATCH,
            AccountError.WEAK_PASSWORD,
            ApiError.BAD_REQUEST,
            ApiError.DISALLOWED_HOST,
            ApiError.IDEMPOTENCY_KEY_REQUIRED,
            ApiError.TOO_MANY_FIELDS,
            ApiError.MALFORMED_CONTENT_TYPE,
            CatalogError.BORDER_OUT_OF_RANGE,
            CatalogError.CROP_AND_FOCAL_POINT,
            CatalogError.CROP_ASPECT_MISMATCH,
            CatalogError.CROP_OUT_OF_BOUNDS,
            CatalogError.CROP_REQUIRES_FILL,
            CatalogError.FOCAL_POINT_OUT_OF_BOUNDS,
            CatalogError.PRODUCT_SIZE_UNPRINTABLE,
            GateError.NOTE_REQUIRED,
            NotifyError.EVENT_TYPES_REQUIRED,
            NotifyError.UNKNOWN_EVENT_TYPE,
            NotifyError.UNKNOWN_ORDER_STATUS,
            OrderError.EMPTY_ORDER,
            OrderError.GUEST_DETAILS_REQUIRED,
            OrderError.INVALID_PAYLOAD,
            OrderError.INVALID_SIGNATURE,
            OrderError.MALFORMED_EVENT,
            OrderError.CURRENCY_NOT_SOLD,
            OrderError.MIXED_CURRENCY,
            OrderError.ORDER_TOTAL_TOO_LARGE,
            # With `total_minor` and `min_total_minor` (null when Stripe refused an amount the lab's table
            # takes: a settlement currency's minimum after conversion).
            OrderError.ORDER_TOTAL_TOO_SMALL,
            OrderError.UNKNOWN_SKU,
            PackingError.COPIES_NOT_PRINTED,
            PackingError.COUNT_MISMATCH,
            PackingError.INVALID_CARRIER,
            PackingError.INVALID_TRACKING_NUMBER,
            PackingError.ITEMS_NOT_CONFIRMED,
            PackingError.NO_ORDERS_TO_PACK,
            PackingError.NOT_AN_ORDER_CODE,
            PackingError.PAGE_TOKEN_REQUIRED,
            ProductionError.BATCH_HOLD_UNCHANGED,
            ProductionError.DESCRIPTION_REQUIRED,
            ProductionError.HOLD_MESSAGE_REQUIRED,
            ProductionError.HOLD_MESSAGE_TOO_LONG,
            ProductionError.INVALID_COPIES,
            ProductionError.INVALID_REPRINT_REASON,
            ProductionError.JOB_NOT_CANCELLABLE,
            ProductionError.JOB_NOT_ELIGIBLE,
            ProductionError.JOB_NOT_PRINTED,
            ProductionError.JOB_NOT_REROUTABLE,
            ProductionError.JOB_NOT_UNKNOWN,
            ProductionError.NO_CAPABLE_PRINTER,
            ProductionError.PRINTER_ALREADY_PAUSED,
            ProductionError.PRINTER_NOT_PAUSED,
            ProductionError.SAME_PRINTER,
            StaffError.INVALID_INPUT,
            StaffError.NO_PRINTER,
        ),
        400,
    ),
    **dict.fromkeys((ApiError.INVALID_CREDENTIALS, ApiError.NOT_AUTHENTICATED), 401),
    **dict.fromkeys(
        (
            AccountError.ACCOUNT_CHANGED_OUTSIDE_THE_LAB,
            AccountError.STAFF_ACCOUNT_NOT_A_CUSTOMER,
            AccountError.STAFF_TOKENS_NOT_ISSUED,
            AccountError.UNDER_MINIMUM_AGE,
            AccountError.WRONG_PASSWORD,
            ApiError.PERMISSION_DENIED,
            CommonError.NOT_ALLOWED,
            CustomerDataError.STAFF_ACCOUNT_NOT_ERASABLE,
            GateError.IMAGE_ACCESS_DENIED,
            GateError.REQUEST_FROM_ANOTHER_SITE,
            GateError.NOT_AN_AUDITOR,
            GateError.OWN_RECORD,
            ProductionError.APPROVER_IS_OPENER,
            ProductionError.NOT_A_SUPERVISOR,
        ),
        403,
    ),
    **dict.fromkeys(
        (
            AccountError.TOKEN_NOT_FOUND,
            ApiError.NOT_FOUND,
            CustomerDataError.RECEIPT_NOT_FOUND,
            GateError.IMAGE_NOT_FOUND,
            GateError.ORDER_ITEM_NOT_FOUND,
            GateError.REVIEW_ITEM_NOT_FOUND,
            NotifyError.ORDER_EVENT_NOT_FOUND,
            NotifyError.WEBHOOK_DELIVERY_NOT_FOUND,
            NotifyError.WEBHOOK_ENDPOINT_NOT_FOUND,
            OrderError.ASSET_NOT_FOUND,
            OrderError.ORDER_NOT_FOUND,
            PackingError.ITEM_NOT_FOUND,
            ProductionError.BATCH_NOT_FOUND,
            ProductionError.JOB_NOT_FOUND,
            ProductionError.PRINTER_NOT_FOUND,
            ProductionError.TICKET_NOT_FOUND,
        ),
        404,
    ),
    GateError.IMAGE_METHOD_NOT_ALLOWED: 405,  # only the staff photo URLs meet it (DRF answers its own 405s)
    **dict.fromkeys(
        (
            AccountError.ACCOUNT_ERASED,
            AccountError.EMAIL_TAKEN,
            AccountError.PASSWORD_CHANGED_MEANWHILE,
            CommonError.INVALID_TRANSITION,
            CustomerDataError.ALREADY_ERASED,
            CustomerDataError.ERASE_THE_ACCOUNT,
            CustomerDataError.ASSET_STILL_NEEDED,
            CustomerDataError.ERASURE_BLOCKED_BY_OPEN_ORDERS,
            GateError.ALREADY_SIGNED_OFF,
            GateError.REVIEW_DAY_NOT_OVER,
            NotifyError.DELIVERY_ALREADY_QUEUED,
            NotifyError.DELIVERY_IN_PROGRESS,
            NotifyError.REDELIVERY_TOO_SOON,
            NotifyError.TOO_MANY_WEBHOOK_ENDPOINTS,
            # With the photo's `asset_status` (pending, failed, purged) and a failed one's `failure_code`.
            OrderError.ASSET_NOT_READY,
            OrderError.IDEMPOTENCY_KEY_REUSED,
            OrderError.ORDER_ADDRESS_LOCKED,
            OrderError.ORDER_NOT_CANCELLABLE,
            OrderError.PICKUP_ORDER_HAS_NO_ADDRESS,
            PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB,
            PackingError.COLLECTED_AT_THE_COUNTER,
            PackingError.ORDER_NOT_PACKED,
            PackingError.ORDER_NOT_READY_TO_PACK,
            PackingError.SHIPS_BY_CARRIER,
            PackingError.SLIP_NO_LONGER_SERVED,
            PackingError.TRACKING_NUMBER_IN_USE,
            ProductionError.JOB_CHANGED,
            ProductionError.REPRINT_EXCEEDS_COPIES,
            ProductionError.EARLIER_SEND_PRINTED,
            ProductionError.EARLIER_SEND_PRINTING,
            ProductionError.ORDER_NOT_HOLDABLE,
            ProductionError.ORDER_NOT_IN_PRODUCTION,
            ProductionError.ORDER_NOT_ON_HOLD,
            ProductionError.TICKET_APPROVED,
            ProductionError.TICKET_CLOSED,
        ),
        409,
    ),
    GateError.IMAGE_UNAVAILABLE: 410,
    **dict.fromkeys((ApiError.REQUEST_TOO_LARGE, CommonError.FILE_TOO_LARGE), 413),
    # The bytes or the URL are understood but refused. The fetch and delivery codes are met by workers only
    # (an asset's or a webhook attempt's failure code).
    **dict.fromkeys(
        (
            ApiError.PHOTO_NOT_PRINTABLE,
            CommonError.DELIVERY_FAILED,
            CommonError.URL_FETCH_FAILED,
            CommonError.URL_FETCH_STATUS,
            CommonError.URL_HOST_UNRESOLVABLE,
            CommonError.URL_INVALID,
            CommonError.URL_SCHEME_NOT_ALLOWED,
            CommonError.URL_TARGET_NOT_ALLOWED,
            OrderError.CHECKSUM_MISMATCH,
            OrderError.CORRUPT_IMAGE,
            OrderError.DECOMPRESSION_BOMB,
            OrderError.EMPTY_FILE,
            OrderError.GPS_NOT_REMOVABLE,
            OrderError.ICC_PROFILE_TOO_LARGE,
            OrderError.IMAGE_HAS_SEVERAL_FRAMES,
            OrderError.NOT_AN_IMAGE,
            OrderError.TOO_MANY_METADATA_ITEMS,
            OrderError.UNSUPPORTED_COLOR_MODE,
            OrderError.UNSUPPORTED_FORMAT,
        ),
        422,
    ),
    AccountError.SIGN_IN_LOCKED: 429,
    ApiError.UPLOAD_BUDGET_EXHAUSTED: 429,
    ApiError.SERVER_ERROR: 500,
    **dict.fromkeys(
        (
            OrderError.PAYMENT_PROVIDER_UNAVAILABLE,
            OrderError.REFUND_FAILED,
            ProductionError.PRINTER_CANCEL_FAILED,
        ),
        502,
    ),
    **dict.fromkeys(
        (
            AccountError.SIGN_IN_UNAVAILABLE,
            ApiError.DATABASE_UNAVAILABLE,
            CustomerDataError.ERASURE_PAYMENT_CHECK_UNAVAILABLE,
            GateError.AUDIT_UNAVAILABLE,
            OrderError.PAYMENTS_NOT_CONFIGURED,
            OrderError.PHOTO_STORE_UNAVAILABLE,
        ),
        503,
    ),
    # Insufficient Storage: the photo store is at its reserve; not a 503, which a proxy may retry on another
    # web host (they share the store) and which says the host, not the store, is unavailable.
    OrderError.STORAGE_FULL: 507,
}
# A code in no enum (none today) falls back on its kind; the first kind it is an instance of wins.
STATUS_BY_KIND: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Gone, 410),
    (MethodNotAllowed, 405),
    (PermissionDenied, 403),
    (Conflict, 409),
    (Unavailable, 503),
    (UpstreamError, 502),
    (DomainError, 400),
)


def http_status(error: DomainError) -> int:
    """The HTTP status the API answers `error` with: its code's in STATUS_BY_CODE, else its kind's."""
    if error.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[error.code]
    return next(status for kind, status in STATUS_BY_KIND if isinstance(error, kind))


class ProblemJSONRenderer(JSONRenderer):
    media_type = PROBLEM_CONTENT_TYPE


class ProblemResponse(Response):
    """A problem is JSON (application/problem+json) whatever renderer the view negotiated: the OpenAPI
    schema's view renders YAML, so a POST to it (405) was rendered in YAML, which cannot represent a code's
    enum: a 500 under a problem+json content type."""

    @property
    def rendered_content(self) -> Any:
        self.accepted_renderer = ProblemJSONRenderer()
        self.accepted_media_type = PROBLEM_CONTENT_TYPE
        return super().rendered_content


def problem_response(*, status_code: int, code: str, detail: str, **extra: Any) -> Response:
    body = {
        "type": f"https://printlab.example/problems/{code}",
        "title": code.replace("_", " ").capitalize(),
        "status": status_code,
        "code": code,
        "detail": detail,
        **{name: _finite(value) for name, value in extra.items()},
    }
    return ProblemResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def _finite(value: Any) -> Any:
    """A detail's value with each infinite or NaN float as null. JSON has neither, and DRF's strict renderer
    raised on one while rendering the problem (a crop so thin its aspect was infinite): a 500 instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        problem = problem_response(
            status_code=http_status(exc), code=exc.code, detail=exc.message, **exc.details
        )
        if "retry_after_seconds" in exc.details:
            problem["Retry-After"] = str(exc.details["retry_after_seconds"])
        return problem
    if isinstance(exc, RasterError):
        # Only proofs rasterize in a request (lab.gate.proofs); RasterError is not a DomainError, and was a
        # 500. Every raster code describes the photo or the spec, so no retry changes the answer.
        return problem_response(
            status_code=STATUS_BY_CODE[ApiError.PHOTO_NOT_PRINTABLE],
            code=ApiError.PHOTO_NOT_PRINTABLE,
            detail=f"This photo cannot be printed as asked: {' '.join(exc.message.split())}",
            raster_code=exc.code,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), ApiError.ERROR)
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        extra["errors"] = response.data
        detail = "The request has invalid fields."
    else:
        detail = str(exc.detail)
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        extra["retry_after_seconds"] = int(wait)
    problem = problem_response(status_code=response.status_code, code=code, detail=detail, **extra)
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            problem[header] = response[header]
    return problem


# --- handler400/403/404/500 under /api/ (lab/urls.py): errors raised before a view, or outside DRF ---------


def problem_page(*, code: str, detail: str) -> JsonResponse:
    # A plain JsonResponse: these run where DRF never negotiated content (middleware, URL routing).
    status_code = STATUS_BY_CODE[code]
    body = {
        "type": f"https://printlab.example/problems/{code}",
        "title": code.replace("_", " ").capitalize(),
        "status": status_code,
        "code": code,
        "detail": detail,
    }
    return JsonResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


DATABASE_RETRY_AFTER_SECONDS = 5


def database_unavailable() -> bool:
    """Whether the error being handled (Django calls handler500 inside its `except`) is the database's
    refusal to answer: no connection, a restart or shutdown, too many connections, a lock, deadlock or
    statement timeout. Each is transient, and the client's retry is the remedy."""
    return isinstance(sys.exc_info()[1], OperationalError | InterfaceError)


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's SuspiciousOperation family: a foreign Host header, a body or a form too big to parse."""
    if isinstance(exception, RequestDataTooBig):
        return problem_page(
            code=ApiError.REQUEST_TOO_LARGE, detail="The request body is larger than this API accepts."
        )
    if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
        return problem_page(
            code=ApiError.TOO_MANY_FIELDS, detail="The request has more form fields or files than allowed."
        )
    if isinstance(exception, DisallowedHost):
        return problem_page(
            code=ApiError.DISALLOWED_HOST, detail="The Host header names a host this server does not serve."
        )
    return problem_page(code=ApiError.BAD_REQUEST, detail="The request is malformed.")


def permission_denied_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return problem_page(code=ApiError.PERMISSION_DENIED, detail="You may not do this.")


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return problem_page(code=ApiError.NOT_FOUND, detail="No such resource.")


def server_error_view(request: HttpRequest) -> JsonResponse:
    if database_unavailable():
        response = problem_page(
            code=ApiError.DATABASE_UNAVAILABLE,
            detail="The lab's database did not answer (restarting or overloaded). Retry in a few seconds; "
            "send a write again with the same Idempotency-Key, so that it takes effect once.",
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    return problem_page(
        code=ApiError.SERVER_ERROR,
        detail="The server failed to answer; the response's X-Request-ID names it in the lab's logs.",
    )
