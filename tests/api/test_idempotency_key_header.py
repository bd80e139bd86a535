"""The Idempotency-Key header's one rule (api/idempotency.py): 1-200 printable characters once stripped,
read alike by POST orders (required), POST assets and webhook-endpoints (optional) and the order throttles."""

from __future__ import annotations

import pytest
from django.http import HttpRequest
from django.test import RequestFactory

from api.idempotency import idempotency_key_look, idempotency_key_optional, idempotency_key_required
from lab.lib.errors import DomainError


def _request(key: str | None) -> HttpRequest:
    return RequestFactory().post("/api/v1/orders", headers={} if key is None else {"Idempotency-Key": key})


USABLE = [
    ("k" * 200, "k" * 200),  # the longest
    ("k", "k"),  # the shortest
    ("  order-1 \t", "order-1"),  # stripped
    ("a key with spaces", "a key with spaces"),
]
UNUSABLE = [
    "k" * 201,  # one too long
    "k\x00",  # a NUL byte must not reach the database
    "erp\x7f1",  # DEL, not printable
    "k\u2028k",  # a line separator, not printable
]
BLANK = [None, "", "   "]


@pytest.mark.parametrize(("sent", "taken"), USABLE, ids=["200 characters", "1", "stripped", "spaces"])
def test_a_usable_key_is_taken_stripped_by_every_reader(sent, taken):
    request = _request(sent)

    assert idempotency_key_look(request) == taken
    assert idempotency_key_optional(request) == taken
    assert idempotency_key_required(request) == taken


@pytest.mark.parametrize("sent", UNUSABLE, ids=["201 characters", "NUL", "DEL", "line separator"])
def test_an_unusable_key_is_refused_by_the_writes_and_ignored_by_the_look(sent):
    request = _request(sent)

    with pytest.raises(DomainError) as optional:
        idempotency_key_optional(request)
    with pytest.raises(DomainError) as required:
        idempotency_key_required(request)

    assert idempotency_key_look(request) is None
    assert (optional.value.code, optional.value.message) == (
        "idempotency_key_required",
        "An Idempotency-Key has 1-200 printable characters.",
    )
    assert (required.value.code, required.value.message) == (
        "idempotency_key_required",
        "Send an Idempotency-Key header (1-200 printable characters).",
    )


@pytest.mark.parametrize("sent", BLANK, ids=["none", "empty", "spaces"])
def test_a_blank_key_is_none_where_optional_and_refused_where_required(sent):
    request = _request(sent)

    with pytest.raises(DomainError) as required:
        idempotency_key_required(request)

    assert idempotency_key_look(request) is None
    assert idempotency_key_optional(request) is None
    assert required.value.code == "idempotency_key_required"
