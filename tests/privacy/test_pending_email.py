"""A new e-mail address asked for in My Account and not yet confirmed (`pending_email`) is the customer's
personal data: it is in their export, and their erasure clears it."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from lab.accounts.models import User
from tests.builders import PASSWORD, UserFactory, token_client

pytestmark = pytest.mark.django_db
WAITING = "ada.new@example.org"


def customer_with_an_address_waiting() -> tuple[User, APIClient]:
    customer = UserFactory.create(email="ada@example.org")
    client = token_client(APIClient(), customer)
    asked = client.patch("/api/v1/me", {"email": WAITING, "current_password": PASSWORD}, format="json")
    assert (asked.status_code, asked.json()["pending_email"]) == (200, WAITING)
    return customer, client


def test_the_export_names_the_address_waiting_for_confirmation():
    _, client = customer_with_an_address_waiting()

    exported = client.get("/api/v1/me/export")

    assert exported.status_code == 200
    assert (exported.json()["profile"]["email"], exported.json()["profile"]["pending_email"]) == (
        "ada@example.org",
        WAITING,
    )


def test_the_erasure_clears_the_address_waiting_for_confirmation():
    customer, client = customer_with_an_address_waiting()

    erased = client.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    assert erased.status_code == 200
    assert User.objects.filter(pk=customer.pk).values_list("pending_email", flat=True).get() == ""
    assert not User.objects.filter(pending_email=WAITING).exists()
