"""Errors Django raises before (or outside) an API view answer problem+json under /api/, like every other
API error: a foreign Host, too many fields, a body too large, an unknown URL, a crash."""

from __future__ import annotations

import json

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"


def problem(response) -> tuple[int, str, str]:
    return response.status_code, response["Content-Type"], response.json()["code"]


def test_a_foreign_host_is_a_400_problem(api):
    response = api.get("/api/v1/products", HTTP_HOST="attacker.example")

    assert problem(response) == (400, PROBLEM, "disallowed_host")
    assert response.json()["status"] == 400


def test_too_many_form_fields_is_a_400_problem(api, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"field{n}=x" for n in range(11))

    response = api.post("/api/v1/accounts", body, content_type="application/x-www-form-urlencoded")

    assert problem(response) == (400, PROBLEM, "too_many_fields")


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_a_body_above_the_limit_is_a_413_problem_before_it_is_read(api, settings, content_type):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"email": "' + "x" * 1000 + '"}'

    response = api.post("/api/v1/accounts", body, content_type=content_type)

    assert problem(response) == (413, PROBLEM, "request_too_large")


def test_a_body_within_the_limit_reaches_the_view(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = api.post("/api/v1/accounts", '{"email": "x"}', content_type="application/json")

    assert problem(response) == (400, PROBLEM, "invalid_request")


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing", "/api/v2/orders", "/api/"])
def test_unknown_api_urls_are_404_problems(api, path):
    assert problem(api.get(path)) == (404, PROBLEM, "not_found")


@pytest.mark.urls("tests.api.crash_urls")
def test_a_crash_under_the_api_is_a_500_problem_without_details():
    response = Client(raise_request_exception=False).get("/api/v1/crash")

    assert problem(response) == (500, PROBLEM, "server_error")
    assert b"a bug" not in response.content
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.parametrize("path", ["/api/v1/quotes", "/api/v1/orders", "/api/v1/accounts", "/api/v1/proofs"])
def test_json_nested_deeper_than_python_parses_is_a_400_problem(path):
    # Python's json raises RecursionError, not ValueError, past about a thousand brackets: DRF's parser let
    # it through as a 500, on anonymous endpoints too.
    body = '{"items": ' + "[" * 5000 + "]" * 5000 + ', "shipping_method": "standard"}'

    response = Client(raise_request_exception=False).post(
        path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="nested"
    )

    assert problem(response) == (400, PROBLEM, "malformed_request")


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_method_the_openapi_schema_does_not_take_is_a_405_problem_in_json(api, method):
    """The schema's view renders YAML, and YAML cannot represent a problem's code: it was a 500."""
    response = getattr(api, method)("/api/v1/schema/")

    assert (response.status_code, response["Content-Type"]) == (405, "application/problem+json")
    assert json.loads(response.content)["code"] == "method_not_allowed"


@pytest.mark.parametrize("version", ["1%0A2", "1%0D%0AX-Injected:%201", "2"])
def test_a_version_asked_of_the_openapi_schema_is_ignored_not_a_500(version):
    """The lab has one API version: drf-spectacular wrote `?version=` into the schema's Content-Disposition,
    and a line break there was a BadHeaderError, a 500."""
    response = Client(raise_request_exception=False).get(f"/api/v1/schema/?version={version}")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'inline; filename="Print Lab API.yaml"'
