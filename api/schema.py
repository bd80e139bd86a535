"""The API contract's error half: one `Problem` component (RFC 9457, `application/problem+json`) and an
AutoSchema that lists, on every operation, each error status that operation can answer.

What an operation can answer is derived from what DRF will do with it (a body can be malformed, a token can
be invalid, a permission can refuse, a path can name nothing, a throttle can trip); statuses a view's own
domain errors add are declared on the view with `problems(...)`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import BasePagination
from rest_framework.permissions import AllowAny, IsAuthenticated

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
}


# `errors` is also a Serializer attribute, so the component is built from a field mapping.
Problem = inline_serializer(
    name="Problem",
    fields={
        "type": serializers.CharField(help_text="A URI naming the problem type."),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "code": serializers.CharField(help_text="Stable machine-readable code, e.g. `invalid_request`."),
        "detail": serializers.CharField(),
        "errors": serializers.JSONField(required=False, help_text="Validation errors per field."),
        "retry_after_seconds": serializers.IntegerField(required=False),
    },
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
