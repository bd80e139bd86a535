"""Registration, the COPPA age gate, consent records and My Account."""

from __future__ import annotations

import importlib
from datetime import UTC, date, datetime

import pytest
from django.apps import apps as django_apps
from django.db import connection

from lab.accounts.email_change import email_change_tokens
from lab.accounts.models import Consent, PolicyVersion, User
from lab.accounts.services import policy_current
from lab.orders.models import Order
from tests.builders import PASSWORD, TOO_LONG_EMAILS, UserFactory, new_customer, order_for
from tests.support.database_locks import committed_right_after_the_check

pytestmark = pytest.mark.django_db

ADDRESS = {
    "name": "Ada Quill",
    "line1": "1 Lens Lane",
    "city": "Exposure",
    "postal_code": "12345",
    "country": "US",
}


def registration(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "email": "ada.quill@example.org",
        "password": "a long enough secret 42",
        "full_name": "Ada Quill",
        "address": ADDRESS,
        "birth_date": "1990-04-01",
        "privacy_policy_version": policy_current().version,
    }
    body.update(overrides)
    return body


def test_register_records_consent_to_current_policy_and_returns_token(api):
    response = api.post("/api/v1/accounts", registration(), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["email"] == "ada.quill@example.org"
    assert body["marketing_opt_in"] is False
    assert len(body["token"]) == 40
    user = User.objects.get(email="ada.quill@example.org")
    assert list(user.groups.values_list("name", flat=True)) == ["customer"]
    consent = Consent.objects.get(user=user)
    assert consent.policy_version is not None
    assert (consent.kind, consent.policy_version.version) == ("privacy_policy", "1.0")


def test_under_13_is_refused_and_leaves_no_personal_data_anywhere(api, caplog):
    twelve = date.today().replace(year=date.today().year - 12).isoformat()

    response = api.post("/api/v1/accounts", registration(birth_date=twelve), format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "under_minimum_age"
    assert User.objects.count() == 0
    assert "ada.quill" not in caplog.text and "Ada Quill" not in caplog.text
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')
            dump = repr(cursor.fetchall())
            assert "ada.quill" not in dump and "Lens Lane" not in dump, table


def test_old_policy_version_is_refused(api):
    # given the current policy (as migrations publish it: an earlier transactional test may have flushed it)
    # and an older version
    policy_current()
    PolicyVersion.objects.create(
        version="0.9", text="old", sha256="0" * 64, published_at=datetime(2020, 1, 1, tzinfo=UTC)
    )

    response = api.post("/api/v1/accounts", registration(privacy_policy_version="0.9"), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "policy_version_mismatch"
    assert User.objects.count() == 0


def test_duplicate_email_conflicts(api):
    assert api.post("/api/v1/accounts", registration(), format="json").status_code == 201

    response = api.post("/api/v1/accounts", registration(), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param("kate@exa\u00admple.org", id="soft-hyphen"),
        pytest.param("kate@e\u00adx\u00ad\u00adample.org", id="soft-hyphens"),
        pytest.param("Kate@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.org", id="fullwidth"),
        pytest.param("kate@\u212fxample.org", id="script-small-e"),
    ],
)
def test_another_spelling_of_a_registered_mailbox_is_taken(api, spelling):
    # Django's mail sends each spelling to kate@example.org (the domain IDNA-encoded): before, each was
    # stored as typed, an account of its own for the same mailbox
    assert (
        api.post("/api/v1/accounts", registration(email="kate@example.org"), format="json").status_code == 201
    )

    response = api.post("/api/v1/accounts", registration(email=spelling), format="json")

    assert (response.status_code, response.json()["code"]) == (409, "email_taken")
    assert list(User.objects.values_list("email", flat=True)) == ["kate@example.org"]


def test_an_address_is_stored_and_signed_in_with_in_the_form_its_mail_goes_to(api):
    created = api.post(
        "/api/v1/accounts", registration(email="Zoe@\uff42ü\uff43\uff48\uff45\uff52.Example"), format="json"
    )

    signed_in = api.post(
        "/api/v1/auth/token",
        {"email": "ZOE@bü\u00adcher.example", "password": "a long enough secret 42", "name": "other"},
        format="json",
    )

    assert created.status_code == 201, created.json()
    assert created.json()["email"] == "zoe@xn--bcher-kva.example"
    assert User.objects.get().email == "zoe@xn--bcher-kva.example"
    assert signed_in.status_code == 200, signed_in.json()


def test_my_account_refuses_another_spelling_of_a_taken_address(api):
    UserFactory.create(email="kate@example.org")
    changing = new_customer(email="someone@example.org")
    api.force_authenticate(changing)

    response = api.patch(
        "/api/v1/me", {"email": "kate@exa\u00admple.org", "current_password": PASSWORD}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (409, "email_taken")
    changing.refresh_from_db()
    assert changing.email == "someone@example.org"


def test_weak_password_and_bad_payload_have_codes(api):
    weak = api.post("/api/v1/accounts", registration(password="123"), format="json")
    bad = api.post("/api/v1/accounts", {"email": "nope"}, format="json")

    assert (weak.status_code, weak.json()["code"]) == (400, "weak_password")
    assert bad.status_code == 400
    assert bad.headers["Content-Type"] == "application/problem+json"
    assert bad.json()["code"] == "invalid_request"
    assert set(bad.json()["errors"]) >= {"email", "password", "birth_date"}
    assert User.objects.count() == 0


def test_me_read_and_update_with_password_change(api):
    token = api.post("/api/v1/accounts", registration(), format="json").json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert api.get("/api/v1/me").json()["full_name"] == "Ada Quill"
    wrong = api.patch("/api/v1/me", {"current_password": "nope", "new_password": "another long secret 77"})
    changed = api.patch(
        "/api/v1/me",
        {
            "full_name": "Ada Q.",
            "marketing_opt_in": True,
            "current_password": "a long enough secret 42",
            "new_password": "another long secret 77",
        },
        format="json",
    )

    assert (wrong.status_code, wrong.json()["code"]) == (403, "wrong_password")
    assert changed.status_code == 200
    assert changed.json()["full_name"] == "Ada Q."
    assert changed.json()["marketing_opt_in"] is True
    user = User.objects.get()
    assert user.check_password("another long secret 77")
    assert list(Consent.objects.filter(user=user).values_list("kind", "granted")) == [
        ("privacy_policy", True),
        ("marketing", True),
    ]
    login = api.post(
        "/api/v1/auth/token", {"email": "ada.quill@example.org", "password": "another long secret 77"}
    )
    assert login.status_code == 200


def test_me_requires_authentication(api):
    response = api.get("/api/v1/me")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db(transaction=True)
def test_an_email_taken_between_the_check_and_the_save_is_a_409_and_changes_nothing(api):
    # given two customers, and a request of the second to take an address nobody has yet
    first = UserFactory.create(email="first@example.org")
    second = UserFactory.create(email="second@example.org", full_name="Second")
    api.force_authenticate(second)

    def first_takes_it() -> None:
        User.objects.filter(pk=first.pk).update(email="new@example.org")

    asked = api.patch("/api/v1/me", {"email": "new@example.org", "current_password": PASSWORD}, format="json")
    assert asked.status_code == 200  # the address waits for the token mailed to it

    # when the second customer's confirmation is saved after another web process committed the first
    # customer's change to that address, right after the check
    with committed_right_after_the_check("new@example.org", first_takes_it):
        response = api.post(
            "/api/v1/me/email/confirm",
            {"token": email_change_tokens.make_token(User.objects.get(pk=second.pk))},
            format="json",
        )

    # then it is the same 409 as when the address was taken before, and nothing of the request was saved
    assert (response.status_code, response.json()["code"]) == (409, "email_taken")
    second.refresh_from_db()
    assert (second.email, second.full_name) == ("second@example.org", "Second")
    assert User.objects.get(pk=first.pk).email == "new@example.org"


@pytest.mark.parametrize("email", TOO_LONG_EMAILS.values(), ids=TOO_LONG_EMAILS.keys())
def test_an_email_longer_than_its_column_is_refused_at_registration_and_in_my_account(api, email):
    # Before: a 500 from PostgreSQL's "value too long".
    api.raise_request_exception = False
    registration_answer = api.post("/api/v1/accounts", registration(email=email), format="json")
    api.force_authenticate(new_customer())
    change = api.patch("/api/v1/me", {"email": email, "current_password": "x"}, format="json")

    assert (registration_answer.status_code, registration_answer.json()["code"]) == (400, "invalid_request")
    assert (change.status_code, change.json()["code"]) == (400, "invalid_request")


def test_the_upgrade_stores_every_address_in_the_form_its_mail_goes_to_and_merges_nothing(capsys):
    # given accounts and a guest order stored as typed, before the form (migration accounts/0010)
    canonicalise = importlib.import_module(
        "lab.accounts.migrations.0010_emails_in_the_form_their_mail_goes_to"
    ).canonicalise
    stored = {
        "kate": "kate@example.org",
        "kate-again": "kate@exa\u00admple.org",  # kate's mailbox: left, both accounts as they are
        "zoe": "zoe@\uff42ü\uff43\uff48\uff45\uff52.example",
        # two spellings of one mailbox, neither in the form: both left
        "ann": "ann@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.net",
        "ann-again": "ann@exam\u00adple.net",
        "unencodable": "x@" + 60 * "ä" + ".com",
    }
    users = {name: UserFactory.create(email=f"{name}@placeholder.example") for name in stored}
    for name, email in stored.items():
        User.objects.filter(pk=users[name].pk).update(email=email)
    guest_order = order_for(None, guest_email="victim@\u212fxample.com")

    canonicalise(django_apps, None)

    after = {name: User.objects.get(pk=user.pk).email for name, user in users.items()}
    assert after == {**stored, "zoe": "zoe@xn--bcher-kva.example"}
    assert Order.objects.get(pk=guest_order.pk).guest_email == "victim@example.com"
    # and the accounts left are named for a lab admin to settle
    printed = capsys.readouterr().out
    left = sorted(users[name].pk for name in ("kate-again", "ann", "ann-again"))
    assert (
        f"(ids): {left}; accounts that have one of those forms already (ids): {[users['kate'].pk]}" in printed
    )
    assert f"no mail can be sent to their address (ids): {[users['unencodable'].pk]}" in printed


def test_the_upgrade_leaves_an_address_whose_form_does_not_fit_its_column_as_it_is_and_names_it(capsys):
    # given an account and a guest order whose address the previous version let in (207 characters,
    # lower-cased), whose form (its domain in Punycode) is 324: longer than the columns' 254
    canonicalise = importlib.import_module(
        "lab.accounts.migrations.0010_emails_in_the_form_their_mail_goes_to"
    ).canonicalise
    long_address = "anna@" + ".".join(13 * ["äöüéèêëïîôûàâç"]) + ".example"
    assert len(long_address) <= 254
    user = UserFactory.create(email="long@placeholder.example")
    User.objects.filter(pk=user.pk).update(email=long_address)
    guest_order = order_for(None, guest_email=long_address)
    other = order_for(None, guest_email="victim@\u212fxample.com")

    # when the migration runs, then it does not fail (before: PostgreSQL's "value too long", and the whole
    # migration rolled back), both rows are as they were and named, and the others are in the form
    canonicalise(django_apps, None)

    assert User.objects.get(pk=user.pk).email == long_address
    assert Order.objects.get(pk=guest_order.pk).guest_email == long_address
    assert Order.objects.get(pk=other.pk).guest_email == "victim@example.com"
    printed = capsys.readouterr().out
    too_long = "the form their mail goes to is longer than 254 characters (ids)"
    assert f"accounts left unchanged, {too_long}: {[user.pk]}" in printed
    assert f"guest orders left unchanged, {too_long}: {[guest_order.pk]}" in printed
