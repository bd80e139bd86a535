"""An e-mail address no e-mail can be sent to is refused where it is given (400 naming the field).

"x@" + 60 * "ä" + ".com" passes Django's EmailValidator, but its domain's label is over 63 characters once
IDNA-encoded, and Django's sanitize_address raises UnicodeError for it in every send. Before, the API took
it: the customer's notifications never went, and their erasure answered 500 after it had committed
(tests/privacy/test_unencodable_stored_address.py has what happens to such an address stored before).
"""

from __future__ import annotations

import pytest

from lab.accounts.models import User
from lab.accounts.services import policy_current
from lab.catalog.demo import catalog_seed_demo
from lab.orders.models import IdempotencyKey, Order
from tests.builders import ADDRESS, asset_for, new_customer, order_body

pytestmark = pytest.mark.django_db

UNENCODABLE = "x@" + 60 * "ä" + ".com"
REFUSAL = (
    "No e-mail can be sent to this address: it cannot be encoded (a part of its domain is too long once "
    "encoded, for example)."
)


def test_registration_with_an_address_no_mail_can_be_sent_to_is_refused(api):
    response = api.post(
        "/api/v1/accounts",
        {
            "email": UNENCODABLE,
            "password": "a long enough secret 42",
            "full_name": "Ada Quill",
            "address": ADDRESS,
            "birth_date": "1990-04-01",
            "privacy_policy_version": policy_current().version,
        },
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert response.json()["errors"] == {"email": [REFUSAL]}
    assert User.objects.count() == 0


def test_a_guest_order_with_an_address_no_mail_can_be_sent_to_is_refused(api):
    catalog_seed_demo()  # the order is otherwise one the lab would take
    guest = {"email": UNENCODABLE, "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}

    response = api.post(
        "/api/v1/orders",
        order_body(asset_for(None), guest=guest),
        format="json",
        HTTP_IDEMPOTENCY_KEY="unencodable",
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert response.json()["errors"] == {"guest": {"email": [REFUSAL]}}
    assert (Order.objects.count(), IdempotencyKey.objects.count()) == (0, 0)


def test_my_account_refuses_to_change_to_an_address_no_mail_can_be_sent_to(api):
    customer = new_customer(email="ada@example.org")
    api.force_authenticate(customer)

    response = api.patch("/api/v1/me", {"email": UNENCODABLE, "current_password": "x"}, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert response.json()["errors"] == {"email": [REFUSAL]}
    customer.refresh_from_db()
    assert customer.email == "ada@example.org"


def test_an_address_in_another_script_that_can_be_encoded_is_still_accepted(api):
    # The check refuses only what cannot be sent: a short internationalised domain is fine.
    response = api.post(
        "/api/v1/accounts",
        {
            "email": "zoe@bücher.example",
            "password": "a long enough secret 42",
            "full_name": "Zoë Quill",
            "address": ADDRESS,
            "birth_date": "1990-04-01",
            "privacy_policy_version": policy_current().version,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    # Stored in the form its mail goes to (lab/lib/email_address.py: email_canonical).
    assert User.objects.get().email == "zoe@xn--bcher-kva.example"
