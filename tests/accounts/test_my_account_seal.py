"""My Account's password change seals the account again only if its seal held (lab/accounts/seal.py): else a
database administrator holding a customer's stolen token could write a password hash of their own, confirm
it as the "current password" and have the lab seal it, and the account would then be theirs at every door.
The tampering is SQL, as the administrator writes it."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import make_password
from rest_framework.test import APIClient

from lab.accounts.models import ApiToken, SecurityEvent, User
from lab.accounts.seal import account_seal_holds
from tests.builders import PASSWORD, UserFactory
from tests.support.dba import dba

pytestmark = pytest.mark.django_db
DBA_PASSWORD = "the dba chose this one"
NEW_PASSWORD = "the dba's next passphrase 41"


def token_for(email: str, password: str) -> tuple[int, dict[str, object]]:
    response = APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": password, "name": "script"}, format="json"
    )
    return response.status_code, response.json()


def test_a_password_hash_set_in_the_database_is_not_sealed_by_my_accounts_password_change():
    # given a customer's token (stolen), and a password hash the DBA wrote on the account
    customer = UserFactory.create()
    status, issued = token_for(customer.email, PASSWORD)
    assert status == 200
    dba("UPDATE accounts_user SET password = %s WHERE id = %s", make_password(DBA_PASSWORD), customer.pk)
    stored_before = User.objects.values_list("password", "account_seal").get(pk=customer.pk)
    thief = APIClient()
    thief.credentials(HTTP_AUTHORIZATION=f"Token {issued['token']}", REMOTE_ADDR="203.0.113.40")

    # when the token's holder "changes" the password from the one the DBA wrote
    response = thief.patch(
        "/api/v1/me", {"current_password": DBA_PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )

    # then it is refused on the record, nothing is written, and the account still gets no token (the stolen
    # token itself is refused: its account's seal no longer holds)
    assert (response.status_code, response.json().get("code")) == (401, "authentication_failed")
    assert User.objects.values_list("password", "account_seal").get(pk=customer.pk) == stored_before
    assert not account_seal_holds(User.objects.get(pk=customer.pk))
    assert list(
        SecurityEvent.objects.filter(user=customer, kind="account_seal_broken").values_list(
            "channel", "client_ip"
        )
    ) == [("api", "203.0.113.40")]
    assert ApiToken.objects.filter(user=customer).count() == 1  # the stolen one; no token was revoked or made
    assert token_for(customer.email, NEW_PASSWORD)[0] == 401
    assert token_for(customer.email, DBA_PASSWORD)[1]["code"] == "account_changed_outside_the_lab"


def test_a_sealed_customers_password_change_keeps_the_account_sealed():
    customer = UserFactory.create()
    status, issued = token_for(customer.email, PASSWORD)
    owner = APIClient()
    owner.credentials(HTTP_AUTHORIZATION=f"Token {issued['token']}")

    response = owner.patch(
        "/api/v1/me", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )

    assert (status, response.status_code) == (200, 200)
    assert account_seal_holds(User.objects.get(pk=customer.pk))
    assert token_for(customer.email, NEW_PASSWORD)[0] == 200


def test_an_operator_s_changepassword_for_a_customer_is_sealed_by_the_operator_s_command_on_the_record():
    # given a customer who forgot their password, to whom the operator set a new one with Django's own
    # `changepassword` (which knows nothing of seals: the account is then refused everything, its tokens too)
    from django.core.management import call_command

    from lab.audit.models import AuditRecord

    customer = UserFactory.create()
    status, issued = token_for(customer.email, PASSWORD)
    assert status == 200
    customer.set_password(NEW_PASSWORD)
    customer.save()
    owner = APIClient()
    owner.credentials(HTTP_AUTHORIZATION=f"Token {issued['token']}")
    assert owner.get("/api/v1/me/export").status_code == 401
    assert token_for(customer.email, NEW_PASSWORD)[0] == 403

    # when the operator seals it as the README says (before: "No staff account for" a customer)
    call_command("staff_account_seal", customer.email)

    # then the customer signs in with the new password and reaches their own data again, on the record
    status, fresh = token_for(customer.email, NEW_PASSWORD)
    assert status == 200
    renewed = APIClient()
    renewed.credentials(HTTP_AUTHORIZATION=f"Token {fresh['token']}")
    assert renewed.get("/api/v1/me/export").status_code == 200
    record = AuditRecord.objects.get(action="staff.account_sealed")
    assert (record.context_id, record.justification) == (str(customer.public_id), "roles (customer); active")
    # and the token from before the reset stays dead (before, sealing brought every old token back)
    assert owner.get("/api/v1/me/export").status_code == 401


def test_the_operator_s_reset_of_a_customer_ends_every_old_token_and_webhook_endpoint_on_the_record():
    # given a customer whose token a thief holds, and the endpoint the thief registered with it
    from django.core.management import call_command

    from lab.notify.models import WebhookEndpoint

    customer = UserFactory.create()
    status, issued = token_for(customer.email, PASSWORD)
    assert status == 200
    endpoint = WebhookEndpoint.objects.create(
        owner=customer, url="https://thief.example/hooks", secret="whsec_x", event_types=["order.shipped"]
    )
    thief = APIClient()
    thief.credentials(HTTP_AUTHORIZATION=f"Token {issued['token']}")
    assert thief.get("/api/v1/me").status_code == 200

    # when the operator resets the password with Django's changepassword and seals the account again
    customer.set_password(NEW_PASSWORD)
    customer.save()
    call_command("staff_account_seal", customer.email)

    # then the thief's token is gone (before: it worked again once the account was sealed), the endpoint is
    # off, and the customer's log says why
    assert thief.get("/api/v1/me").status_code == 401
    assert not ApiToken.objects.filter(user=customer).exists()
    endpoint.refresh_from_db()
    assert endpoint.is_active is False
    event = SecurityEvent.objects.get(user=customer, kind="token_revoked")
    assert event.detail == {
        "reason": "operator_reseal",
        "tokens_revoked": 1,
        "webhook_endpoints_deactivated": 1,
    }
    assert token_for(customer.email, NEW_PASSWORD)[0] == 200
