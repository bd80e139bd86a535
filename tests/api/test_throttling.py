"""Anonymous endpoints are throttled, with the same problem+json shape and a Retry-After; the costly
signed-in endpoints per customer, and guest orders per e-mail address."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from api import throttle_rates
from lab.audit.models import AuditRecord
from lab.catalog.demo import catalog_seed_demo
from lab.orders.models import IdempotencyKey, Order
from tests.builders import ADDRESS, PASSWORD, UserFactory, asset_for, order_body, order_for, token_client
from tests.builders.guest_tokens import guest_token_grant
from tests.support.concurrency import at_once
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db


def test_anonymous_registration_is_throttled(api, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "registration": "2/hour"},
    }

    statuses = [api.post("/api/v1/accounts", {}, format="json").status_code for _ in range(3)]
    throttled = api.post("/api/v1/accounts", {}, format="json")

    assert statuses == [400, 400, 429]
    assert throttled.status_code == 429
    assert throttled.headers["Content-Type"] == "application/problem+json"
    assert throttled.json()["code"] == "throttled"
    assert int(throttled.headers["Retry-After"]) > 0


class _ReadAtOnce:
    """The throttles' cache, where each request's first call returns only once the other request has made its
    own: two requests on two web processes that both read the count before either wrote it."""

    def __init__(self, cache: Any, requests: int) -> None:
        self._cache = cache
        self._all_read = threading.Barrier(requests, timeout=10)
        self._request = threading.local()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._cache, name)
        if not callable(method) or getattr(self._request, "read", False):
            return method

        def then_wait_for_the_other(*args: Any, **kwargs: Any) -> Any:
            self._request.read = True
            answer = method(*args, **kwargs)
            self._all_read.wait()
            return answer

        return then_wait_for_the_other


@pytest.mark.django_db(transaction=True)
def test_two_registrations_that_reach_the_throttle_at_once_are_counted_both(settings, monkeypatch):
    # given a rate of one registration an hour, and two requests from one address at the throttle at once
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "registration": "1/hour"},
    }
    monkeypatch.setattr(throttle_rates._RateFromSettings, "cache", _ReadAtOnce(cache, requests=2))
    responses: list[Any] = []

    at_once(lambda: responses.append(APIClient().post("/api/v1/accounts", {}, format="json")))

    # then the second is throttled: before, both read an empty history, both passed (400, the body is
    # invalid) and each wrote its own history of one request over the other's
    assert sorted(response.status_code for response in responses) == [400, 429]
    throttled = next(response for response in responses if response.status_code == 429)
    assert throttled.json()["code"] == "throttled"
    assert 0 < int(throttled.headers["Retry-After"]) <= 3600


def _rates(settings, **rates: str) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
    }


def _quote(api: APIClient, asset_id: str) -> Any:
    items = [{"sku": "PRINT-4X6-LUSTRE", "asset": asset_id, "copies": 1, "sizing": "fill"}]
    return api.post("/api/v1/quotes", {"items": items, "shipping_method": "standard"}, format="json")


def _upload(api: APIClient) -> Any:
    return api.post(
        "/api/v1/assets", {"file": SimpleUploadedFile("p.jpg", jpeg_bytes(300, 200))}, format="multipart"
    )


def test_quotes_of_a_signed_in_customer_are_throttled_per_customer(api, customer, demo_catalog, settings):
    # given two quotes a minute per customer (anonymous callers still 10000/min)
    _rates(settings, customer_quotes="2/min")
    photo = str(asset_for(customer, width=600, height=400).pk)

    statuses = [_quote(api, photo).status_code for _ in range(3)]
    throttled = _quote(api, photo)

    # then the third is refused: before, AnonThrottle counted nobody signed in, and nothing else did
    assert statuses == [200, 200, 429]
    assert throttled.headers["Content-Type"] == "application/problem+json"
    assert throttled.json()["code"] == "throttled"
    assert int(throttled.headers["Retry-After"]) > 0
    # and another customer, from the same client address, has a count of its own
    other = UserFactory.create()
    api.force_authenticate(other)
    assert _quote(api, str(asset_for(other, width=600, height=400).pk)).status_code == 200


def test_uploads_of_a_signed_in_customer_are_throttled_per_customer(api, customer, settings):
    _rates(settings, customer_uploads="2/min")

    statuses = [_upload(api).status_code for _ in range(3)]

    assert statuses == [201, 201, 429]
    api.force_authenticate(UserFactory.create())
    assert _upload(api).status_code == 201


def test_photo_bytes_of_a_signed_in_customer_are_throttled_per_customer(api, customer, settings):
    _rates(settings, customer_reads="2/min")
    photo = asset_for(customer, width=300, height=200)

    statuses = [api.get(f"/api/v1/assets/{photo.pk}/content").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


def test_a_customers_account_exports_share_the_photo_bytes_count(api, customer, settings):
    # given two reads a minute per customer
    _rates(settings, customer_reads="2/min")
    photo = asset_for(customer, width=300, height=200)

    # when they read a photo's bytes, then export their account twice
    statuses = [
        api.get(f"/api/v1/assets/{photo.pk}/content").status_code,
        api.get("/api/v1/me/export").status_code,
        api.get("/api/v1/me/export").status_code,
    ]

    # then the second export is refused: each export reads every photo's views and appends an audit record
    assert statuses == [200, 200, 429]


@pytest.mark.usefixtures("stripe_api")
def test_orders_of_a_signed_in_customer_are_throttled_but_not_the_list(api, customer, demo_catalog, settings):
    _rates(settings, customer_orders="2/hour")

    statuses = [
        api.post(
            "/api/v1/orders", order_body(asset_for(customer)), format="json", HTTP_IDEMPOTENCY_KEY=f"k-{n}"
        ).status_code
        for n in range(3)
    ]

    assert statuses == [201, 201, 429]
    assert api.get("/api/v1/orders").status_code == 200  # reading one's orders is not an order


def test_a_customers_retries_after_a_502_and_refused_orders_do_not_count_for_the_customer(
    api, customer, demo_catalog, settings, stripe_api
):
    # given one order an hour per customer, and Stripe out of reach
    _rates(settings, customer_orders="1/hour")
    settings.STRIPE_TIMEOUT_SECONDS = 1
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the discard port: nothing listens
    body = order_body(asset_for(customer))

    def order(key: str | None, the_body: dict[str, object] = body) -> Any:
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
        return api.post("/api/v1/orders", the_body, format="json", **headers)

    # when the customer first sends an order without an Idempotency-Key (400), then the order, kept without
    # its payment (502, "retry"), and retries it as told, with the same key
    no_key = order(None)
    first = order("k-1")
    retried = order("k-1")
    settings.STRIPE_API_BASE = stripe_api.url
    completed = order("k-1")
    replayed = order("k-1")
    reused = order("k-1", order_body(asset_for(customer), shipping_method="express"))
    another = order("k-2", order_body(asset_for(customer)))

    # then the request without a key did not use the window, the retries get the order and its payment
    # (before, the 400 used the window and the 502's retry was 429 for the hour: the order could never get
    # its PaymentIntent), and only a second order is refused
    assert (no_key.status_code, no_key.json()["code"]) == (400, "idempotency_key_required")
    assert (first.status_code, first.json()["code"]) == (502, "payment_provider_unavailable")
    assert (retried.status_code, retried.json()["code"]) == (502, "payment_provider_unavailable")
    assert (completed.status_code, replayed.status_code) == (200, 200)
    assert completed.json()["ref"] == replayed.json()["ref"]
    assert completed.json()["payment"]["client_secret"]
    assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused")
    assert (another.status_code, another.json()["code"]) == (429, "throttled")
    assert Order.objects.count() == 1


def test_a_customers_replays_of_a_502d_order_are_throttled_per_request(api, customer, demo_catalog, settings):
    # given five order requests a minute per customer, orders created unlimited, and Stripe out of reach
    _rates(settings, customer_order_requests="5/min", customer_orders="1000/hour")
    settings.STRIPE_TIMEOUT_SECONDS = 1
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the discard port: nothing listens
    body = order_body(asset_for(customer))

    # when the customer sends one order (kept without its payment, 502) and replays its key again and again
    answers = [api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1") for _ in range(6)]

    # then each of the first five asked Stripe again (502), and the sixth is refused before the view (before,
    # only orders created were counted: every replay asked Stripe for an intent, up to 3 Stripe timeouts, with
    # no limit)
    assert [answer.status_code for answer in answers] == [502, 502, 502, 502, 502, 429]
    assert answers[-1].json()["code"] == "throttled"
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert Order.objects.count() == 1


def test_a_customers_refused_orders_are_throttled_per_request(api, customer, demo_catalog, settings):
    # given five order requests a minute per customer
    _rates(settings, customer_order_requests="5/min", customer_orders="1000/hour")
    photo = asset_for(customer)
    unknown = order_body(
        photo, items=[{"sku": "NO-SUCH-SKU", "asset": str(photo.pk), "copies": 1, "sizing": "fill"}]
    )

    # when the customer sends six baskets that are refused (an unknown product), each with a fresh key
    answers = [
        api.post("/api/v1/orders", unknown, format="json", HTTP_IDEMPOTENCY_KEY=f"k-{n}") for n in range(6)
    ]

    # then the sixth is refused before its basket is read (before: none created an order, so none counted)
    assert [answer.json()["code"] for answer in answers] == ["unknown_sku"] * 5 + ["throttled"]
    assert answers[-1].status_code == 429
    assert Order.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0


def _guest_order(api: APIClient, email: str, *, key: str, address: str) -> Any:
    guest = {"email": email, "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}
    return api.post(
        "/api/v1/orders",
        order_body(asset_for(None), guest=guest),
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
        REMOTE_ADDR=address,
    )


class _KeysSeen:
    """The throttles' cache, noting every key it is asked about."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self.keys: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._cache, name)

        def noted(key: str, *args: Any, **kwargs: Any) -> Any:
            self.keys.append(key)
            return method(key, *args, **kwargs)

        return noted


@pytest.mark.usefixtures("stripe_api")
def test_guest_orders_to_one_address_are_throttled_from_any_client_address(
    api, demo_catalog, settings, monkeypatch
):
    # given two guest orders an hour per e-mail address (each order mails it)
    _rates(settings, guest_order_emails="2/hour")
    seen = _KeysSeen(cache)
    monkeypatch.setattr(throttle_rates._RateFromSettings, "cache", seen)
    spellings = ["victim@example.org", "  Victim@Example.ORG", "VICTIM@example.org "]

    statuses = [
        _guest_order(api, email, key=f"g-{n}", address=f"192.0.2.{n + 1}").status_code
        for n, email in enumerate(spellings)
    ]
    other = _guest_order(api, "someone.else@example.org", key="g-other", address="192.0.2.1")

    # then the third order to that address is refused, whatever its spelling and client address: before, each
    # client address could mail it about 80 times a minute (orders and their cancellations)
    assert statuses == [201, 201, 429]
    assert other.status_code == 201
    # and the address is in no cache key, only a keyed hash of it
    guest_keys = [key for key in seen.keys if "guest_order_emails" in key]
    assert guest_keys
    assert not [key for key in guest_keys if "victim" in key.lower() or "example" in key.lower()]


@pytest.mark.usefixtures("stripe_api")
def test_a_guest_order_sent_as_a_form_counts_for_its_address_too(api, demo_catalog, settings):
    _rates(settings, guest_order_emails="1/hour")
    form = {
        "items[0]sku": "PRINT-4X6-LUSTRE",
        "items[0]asset": str(asset_for(None).pk),
        "items[0]copies": "1",
        "items[0]sizing": "fill",
        "shipping_method": "standard",
        "guest.email": "Victim@example.org",
        "guest.birth_date": "1985-02-03",
        "guest.privacy_policy_version": "1.0",
        **{f"shipping_address.{name}": value for name, value in ADDRESS.items()},
    }

    first = _guest_order(api, "victim@example.org", key="g-json", address="192.0.2.1")
    as_form = api.post("/api/v1/orders", form, format="multipart", HTTP_IDEMPOTENCY_KEY="g-form")

    assert (first.status_code, as_form.status_code) == (201, 429)


@pytest.mark.usefixtures("stripe_api")
def test_guest_orders_to_one_mailbox_are_throttled_whatever_the_spelling_of_its_domain(
    api, demo_catalog, settings
):
    # given two guest orders an hour per address, and three spellings of one mailbox: Django's mail sends
    # each to victim@example.com (the domain IDNA-encoded: NFKC, soft hyphens dropped)
    _rates(settings, guest_order_emails="2/hour")
    spellings = [
        "victim@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
        "victim@exam\u00adple.com",
        "victim@\u212fxample.com",
    ]

    statuses = [
        _guest_order(api, email, key=f"s-{n}", address=f"192.0.2.{n + 1}").status_code
        for n, email in enumerate(spellings)
    ]

    # then the third is refused: before, each spelling was an address of its own, counted apart
    assert statuses == [201, 201, 429]
    # and the orders keep the address their mail goes to
    assert set(Order.objects.values_list("guest_email", flat=True)) == {"victim@example.com"}


def _guest_body(email: str, **overrides: object) -> dict[str, object]:
    guest = {"email": email, "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}
    return order_body(asset_for(None), guest=guest, **overrides)


@pytest.mark.usefixtures("stripe_api")
def test_guest_orders_refused_before_they_are_created_do_not_count_for_their_address(
    api, demo_catalog, settings
):
    # given two guest orders an hour per address
    _rates(settings, guest_order_emails="2/hour")

    # when someone sends five orders to the victim's address with no Idempotency-Key, and five that fail
    # validation (each a 400, nothing created)
    no_key = [api.post("/api/v1/orders", _guest_body("victim@example.org"), format="json") for _ in range(5)]
    invalid = [
        api.post(
            "/api/v1/orders",
            _guest_body("victim@example.org", shipping_method="by-pigeon"),
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"bad-{n}",
        )
        for n in range(5)
    ]
    # then the victim still places the two orders the rate allows: before, each 400 was counted, and the
    # victim's own order was 429 for the rest of the hour
    orders = [_guest_order(api, "victim@example.org", key=f"v-{n}", address="192.0.2.9") for n in range(3)]

    assert {response.json()["code"] for response in no_key} == {"idempotency_key_required"}
    assert {response.status_code for response in invalid} == {400}
    assert [response.status_code for response in orders] == [201, 201, 429]
    assert Order.objects.count() == 2


def test_a_guest_orders_retries_after_a_502_do_not_count_for_its_address(
    api, demo_catalog, settings, stripe_api
):
    # given one guest order an hour per address, and Stripe out of reach
    _rates(settings, guest_order_emails="1/hour")
    settings.STRIPE_TIMEOUT_SECONDS = 1
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the discard port: nothing listens
    body = _guest_body("victim@example.org")

    def order(key: str, the_body: dict[str, object] = body) -> Any:
        return api.post("/api/v1/orders", the_body, format="json", HTTP_IDEMPOTENCY_KEY=key)

    # when the order is kept without its payment (502, "retry") and retried as told, with the same key
    first = order("k-1")
    retried = order("k-1")
    settings.STRIPE_API_BASE = stripe_api.url
    completed = order("k-1")
    replayed = order("k-1")
    another = order("k-2", _guest_body("victim@example.org"))

    # then the retries get the order (before, the first retry was 429: it counted as a second order), and
    # only a second order is refused
    assert (first.status_code, first.json()["code"]) == (502, "payment_provider_unavailable")
    assert (retried.status_code, retried.json()["code"]) == (502, "payment_provider_unavailable")
    assert (completed.status_code, replayed.status_code) == (200, 200)
    assert completed.json()["ref"] == replayed.json()["ref"]
    assert (another.status_code, another.json()["code"]) == (429, "throttled")
    assert Order.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("stripe_api")
def test_two_guest_orders_to_one_address_at_once_are_counted_both(settings, monkeypatch):
    # given one guest order an hour per address, and two orders to it that both find the address under its
    # limit before either is created (two web processes)
    catalog_seed_demo()
    _rates(settings, guest_order_emails="1/hour")
    monkeypatch.setattr(throttle_rates._RateFromSettings, "cache", _ReadAtOnce(cache, requests=2))
    bodies = [_guest_body("victim@example.org") for _ in range(2)]
    keys = iter(["at-once-1", "at-once-2"])
    lock = threading.Lock()
    responses: list[Any] = []

    def order() -> None:
        with lock:
            body, key = bodies.pop(), next(keys)
        responses.append(APIClient().post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY=key))

    at_once(order)

    # then the order created second is refused, and rolled back: the count is taken when an order is created
    assert sorted(response.status_code for response in responses) == [201, 429]
    assert Order.objects.count() == 1
    assert IdempotencyKey.objects.count() == 1


def test_sign_ins_have_a_quota_of_their_own_and_do_not_use_registrations(api, settings):
    # given two registrations and three sign-ins an hour per client address
    _rates(settings, registration="2/hour", sign_in="3/hour")
    UserFactory.create(email="ada@example.org")
    body = {"email": "ada@example.org", "password": PASSWORD}

    # when one address signs in three times, then once more
    sign_ins = [api.post("/api/v1/auth/token", body, format="json").status_code for _ in range(3)]
    fourth = api.post("/api/v1/auth/token", body, format="json")

    # then the fourth is throttled, and registration from that address is untouched by them: before, both
    # counted in registration's scope, and right sign-ins used up the address's registrations
    assert sign_ins == [200, 200, 200]
    assert (fourth.status_code, fourth.json()["code"]) == (429, "throttled")
    registrations = [api.post("/api/v1/accounts", {}, format="json").status_code for _ in range(3)]
    assert registrations == [400, 400, 429]


def test_email_changes_are_throttled_per_client_address_whatever_the_account(settings):
    # given two e-mail changes an hour per client address, and many per account
    _rates(settings, email_changes="2/hour", account_changes="100/hour")
    UserFactory.create(email="victim@example.org")
    prober = APIClient(REMOTE_ADDR="203.0.113.9")
    elsewhere = APIClient(REMOTE_ADDR="192.0.2.50")

    def asks(client: APIClient, user_email: str, probe: str) -> tuple[int, str]:
        token_client(client, UserFactory.create(email=user_email))
        response = client.patch("/api/v1/me", {"email": probe, "current_password": PASSWORD}, format="json")
        return response.status_code, response.json().get("code", "")

    # when one address probes from account after account (accounts are free to make)
    answers = [asks(prober, f"prober{n}@example.org", "victim@example.org") for n in range(3)]
    renamed = prober.patch("/api/v1/me", {"full_name": "Not an e-mail change"}, format="json")
    same_address = prober.patch("/api/v1/me", {"email": "PROBER2@example.org"}, format="json")

    # then the third is throttled, though each account asked once: before, only the account's count held
    assert answers == [(409, "email_taken"), (409, "email_taken"), (429, "throttled")]
    # what changes no e-mail is not counted here, and another address has a count of its own
    assert (renamed.status_code, same_address.status_code) == (200, 200)
    assert asks(elsewhere, "someone@example.org", "victim@example.org") == (409, "email_taken")


def test_confirming_an_email_change_shares_the_account_changes_count_with_patch_me(settings):
    # given two account changes an hour per customer
    _rates(settings, account_changes="2/hour")
    customer = token_client(APIClient(), UserFactory.create())

    # when they make two changes, then try to confirm an e-mail change (any token)
    changes = [
        customer.patch("/api/v1/me", {"full_name": f"Name {n}"}, format="json").status_code for n in range(2)
    ]
    confirm = customer.post("/api/v1/me/email/confirm", {"token": "x-y"}, format="json")

    # then the confirm is throttled as a third change (README: "throttled as PATCH me"): its refusals of a
    # wrong token or a taken address are not free to try without limit
    assert changes == [200, 200]
    assert (confirm.status_code, confirm.json()["code"]) == (429, "throttled")


def _fresh_account(client: APIClient) -> APIClient:
    """`client` signed in as an account made just now: accounts are free to make."""
    return token_client(client, UserFactory.create())


def test_a_signed_in_caller_exporting_a_guest_order_is_throttled_per_client_address(settings):
    # given three requests a minute per client address, and a guest order whose token a caller holds
    _rates(settings, anon="3/min")
    order = guest_token_grant(order_for(None, guest_email="guest@example.org"), "the-guests-token")
    prober = APIClient(REMOTE_ADDR="203.0.113.9")
    elsewhere = APIClient(REMOTE_ADDR="192.0.2.50")
    path = f"/api/v1/orders/{order.ref}/export"

    def exports(client: APIClient) -> int:
        return _fresh_account(client).get(path, HTTP_X_ORDER_TOKEN="the-guests-token").status_code

    # when one address exports it four times, each time signed in as an account of its own
    statuses = [exports(prober) for _ in range(4)]

    # then the fourth export is refused and appends nothing, though its account had asked nothing yet:
    # before, AnonThrottle counted nobody signed in, and a caller with any account's token exported without
    # limit, an audit record appended each time; counted per account, a new account each time did the same
    assert statuses == [200, 200, 200, 429]
    assert AuditRecord.objects.filter(action="order.export").count() == 3
    # and another address has a count of its own
    assert exports(elsewhere) == 200
    assert AuditRecord.objects.filter(action="order.export").count() == 4


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/api/v1/orders/{ref}/personal-data"),
        ("post", "/api/v1/orders/{ref}/cancel"),
        ("get", "/api/v1/receipts/00000000-0000-4000-8000-000000000000"),
    ],
)
def test_a_signed_in_callers_guest_erasures_cancels_and_receipts_are_throttled_per_client_address(
    settings, method, path
):
    # given three requests a minute per client address, and a guest order the callers have no token of
    _rates(settings, anon="3/min")
    order = guest_token_grant(order_for(None, guest_email="guest@example.org"), "the-guests-token")
    prober = APIClient(REMOTE_ADDR="203.0.113.9")
    elsewhere = APIClient(REMOTE_ADDR="192.0.2.50")

    def guesses(client: APIClient) -> int:
        call = getattr(_fresh_account(client), method)
        status: int = call(path.format(ref=order.ref), HTTP_X_ORDER_TOKEN="x" * 43).status_code
        return status

    # when one address guesses four times, each time signed in as an account of its own
    statuses = [guesses(prober) for _ in range(4)]

    # then the fourth guess is refused, though its account had guessed nothing yet (before, a signed-in
    # caller's guesses were never counted; counted per account, a new account each time guessed on), and
    # another address has a count of its own
    assert statuses == [404, 404, 404, 429]
    assert guesses(elsewhere) == 404
    order.refresh_from_db()
    assert (order.status, order.is_anonymized) == ("awaiting_payment", False)
