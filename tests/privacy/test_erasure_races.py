"""An account erased while an order or a photo of it is on its way, the requests in two database sessions at
once (as two web processes run them): each ends in a decision, never a deadlock, and nothing of the account
outlives the erasure.

The order takes its photos' row locks (its quote) and then the customer's row (the order's foreign key,
checked at COMMIT: Django's constraints are deferred). The erasure took the customer's row and then each
photo's (its purge): the two waited for each other and PostgreSQL killed the erasure as a deadlock, a 500 for
a customer's own two requests. It now takes the photos first (lab/customer_data/erasure.py). A photo uploaded
while the erasure ran was kept, its foreign key checked only at COMMIT, once the erasure had committed; the
upload now takes the account's row before it commits and is refused (lab/orders/photos.py). Another session
holding a table stops each request at a known step, so each order of arrival is tested, not left to timing.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone
from pypdf import PdfReader

from lab.accounts.models import ApiToken, Consent, SecurityEvent, User
from lab.accounts.services import customer_update
from lab.accounts.signin import SignInAttempt, sign_in_failed
from lab.accounts.tokens import api_token_authenticate, api_token_issue, api_token_revoke
from lab.catalog.demo import catalog_seed_demo
from lab.customer_data import erasure, erasure_refusals
from lab.customer_data.erasure import account_erase
from lab.notify import delivery as webhook_delivery
from lab.notify.models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from lab.notify.webhooks import webhook_endpoint_create, webhook_endpoint_update, webhook_event_emit
from lab.orders.intake import order_create
from lab.orders.models import Asset, Order
from lab.orders.photos import asset_create_from_upload, asset_create_from_url
from lab.orders.quotes import ItemRequest
from lab.packing import services as packing_services
from lab.packing.models import PackingSlip
from lab.packing.slip import render_slip
from lab.privacy.models import DataKey
from tests.builders.customers import blob_path
from tests.builders.orders import ADDRESS as ADDRESS_OF_ORDERS
from tests.builders.orders import order_for, order_move
from tests.builders.people import PASSWORD, new_customer
from tests.support.database_locks import holds_up_another_session, until_sessions_wait_for_locks
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = {
    "name": "R. Acer",
    "line1": "1 Lock Lane",
    "city": "Waitsville",
    "postal_code": "10001",
    "country": "US",
}


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `work` in a thread of its own (its own database session); the outcome: its result or its error."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as error:  # the outcome is asserted by the test
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _order(customer_id: int, asset_id: str) -> Callable[[], Any]:
    def place() -> Any:
        return order_create(
            customer=User.objects.get(pk=customer_id),
            guest=None,
            items=[ItemRequest(sku="PRINT-4X6-LUSTRE", asset_id=asset_id, copies=1, sizing="fill")],
            shipping_address=ADDRESS,
            shipping_method="standard",
            idempotency_key=uuid.uuid4().hex,
            request_fingerprint="fingerprint",
        )

    return place


def _erase(customer_id: int) -> Callable[[], Any]:
    return lambda: account_erase(user=User.objects.get(pk=customer_id), password=PASSWORD)


def test_an_order_that_holds_its_photo_when_the_account_is_erased_is_made_then_cancelled_with_the_account(
    stripe_api: object,
) -> None:
    # given a customer with a photo, and the orders table held (SHARE) by another session, so that an order
    # request stops at its INSERT, after its quote locked the photo
    customer, asset = _customer_with_a_photo()
    with _held("orders_order"):
        # when the customer places an order, and erases the account while that order is on its way
        placing, placed = _in_thread(_order(customer.pk, str(asset.pk)))
        until_sessions_wait_for_locks(1, timeout=20)  # else: the order request did not reach its INSERT
        erasing, erased = _in_thread(_erase(customer.pk))
        until_sessions_wait_for_locks(2, timeout=20)  # else: the erasure did not come to wait for the order
    placing.join(timeout=60)
    erasing.join(timeout=60)

    # then neither died as a deadlock: the order was made, and the erasure, which waited for it, cancelled
    # it with the account's other unpaid orders, anonymised it and purged the photo
    assert "error" not in placed, placed
    assert "error" not in erased, erased
    customer.refresh_from_db()
    assert customer.erased_at is not None
    assert Asset.objects.get(pk=asset.pk).status == Asset.Status.PURGED
    ((status, anonymized),) = Order.objects.filter(customer=customer).values_list("status", "is_anonymized")
    assert (status, anonymized) == ("cancelled", True)


def test_an_order_that_comes_while_the_account_is_being_erased_is_refused_and_nothing_is_made(
    stripe_api: object,
) -> None:
    # given a customer with a photo, whose erasure holds the photo and stops before its last write (the
    # orders table held by another session)
    customer, asset = _customer_with_a_photo()
    with _held("orders_order"):
        erasing, erased = _in_thread(_erase(customer.pk))
        until_sessions_wait_for_locks(1, timeout=20)  # else: the erasure did not reach the orders
        # when an order of the same customer comes meanwhile
        placing, placed = _in_thread(_order(customer.pk, str(asset.pk)))
        until_sessions_wait_for_locks(2, timeout=20)  # else: the order did not come to wait for the erasure
    placing.join(timeout=60)
    erasing.join(timeout=60)

    # then the erasure is done, and the order is refused with a reason: its photo is gone; no order exists
    assert "error" not in erased, erased
    assert getattr(placed.get("error"), "code", None) == "asset_not_ready", placed
    assert Asset.objects.get(pk=asset.pk).status == Asset.Status.PURGED
    assert not Order.objects.filter(customer=customer).exists()


def test_a_photo_uploaded_while_the_account_is_being_erased_is_refused_and_leaves_nothing_readable(
    settings,
) -> None:
    # given a customer whose erasure holds the account and stops before its last write
    customer, photo = _customer_with_a_photo()
    keys_before = set(DataKey.objects.values_list("pk", flat=True))
    files_before = _stored_files(settings)
    assert blob_path(photo.blob_name) in files_before
    # when a photo upload of the same customer comes meanwhile
    erased, uploaded = _sent_while_erased(
        customer,
        lambda: asset_create_from_upload(owner=User.objects.get(pk=customer.pk), data=jpeg_bytes(640, 480)),
    )

    # then the erasure is done and the upload refused with a reason; the photo was not kept: no photo of the
    # account is left unpurged, and the key its bytes were stored under is destroyed
    assert "error" not in erased, erased
    assert getattr(uploaded.get("error"), "code", None) == "account_erased", uploaded
    assert not Asset.objects.filter(owner=customer).exclude(status=Asset.Status.PURGED).exists()
    (new_key,) = DataKey.objects.exclude(pk__in=keys_before)
    assert (new_key.wrapped_key, new_key.destroyed_at is not None) == (None, True)
    # and its file was deleted: the store holds what it held, less the erased account's photo
    assert _stored_files(settings) == files_before - {blob_path(photo.blob_name)}


def test_a_photo_sent_by_url_while_the_account_is_being_erased_is_refused_and_never_fetched(settings) -> None:
    settings.ASSET_FETCH_ALLOW_PRIVATE, settings.ASSET_FETCH_ALLOW_HTTP = True, True
    customer, _ = _customer_with_a_photo()
    erased, sent = _sent_while_erased(
        customer,
        lambda: asset_create_from_url(
            owner=User.objects.get(pk=customer.pk), url="http://127.0.0.1:9/holiday.jpg"
        ),
    )

    # before, the photo was kept `pending` under the erased account, then fetched and stored `ready`
    assert "error" not in erased, erased
    assert getattr(sent.get("error"), "code", None) == "account_erased", sent
    assert not Asset.objects.filter(owner=customer).exclude(status=Asset.Status.PURGED).exists()


def _sent_while_erased(
    customer: User, send: Callable[[], Any], *, held: str = "orders_order"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`send` a request of `customer`'s while the account's erasure holds the account and waits at a write to
    `held` (the test's session holds that table: the orders, or, after the account's own rows are gone, the
    grants); the outcomes of the erasure and of the send."""
    with _held(held):
        erasing, erased = _in_thread(_erase(customer.pk))
        until_sessions_wait_for_locks(1, timeout=20)  # else: the erasure did not reach {held}
        sending, sent = _in_thread(send)
        until_sessions_wait_for_locks(2, timeout=20)  # else: the request did not come to wait for the erasure
    sending.join(timeout=60)
    erasing.join(timeout=60)
    return erased, sent


def _customer_with_a_photo() -> tuple[User, Asset]:
    catalog_seed_demo()
    customer = new_customer()
    return customer, asset_create_from_upload(owner=customer, data=jpeg_bytes(1800, 1200))


def _stored_files(settings: Any) -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


@contextlib.contextmanager
def _held(table: str) -> Iterator[None]:
    """The test's own session holds `table` in SHARE mode (reads go on, writes wait) until the block ends."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN SHARE MODE")
        yield


def test_a_packing_slip_rendered_while_the_account_is_erased_does_not_bring_the_address_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a shipped order, and its slip being rendered again (a late slip task, the packing station)
    catalog_seed_demo()
    customer = new_customer()
    order = order_move(order_for(customer), "paid", "in_production", "ready_to_pack", "packed", "shipped")
    real_render = render_slip
    erasures: list[dict[str, Any]] = []

    def render_while_erased(*, slip: Any) -> bytes:
        # the first render read the order with its address; the customer's erasure commits meanwhile
        pdf = real_render(slip=slip)
        if not erasures:
            thread, erased = _in_thread(lambda: account_erase(user=customer, password=PASSWORD))
            thread.join(timeout=30)
            erasures.append(erased)
        return pdf

    monkeypatch.setattr(packing_services, "render_slip", render_while_erased)

    # when the slip is stored after the erasure
    slip = packing_services.packing_slip_render(order_id=order.pk)

    # then the erasure's work stands: the slip stored was rendered from the erased order, without the address
    assert "result" in erasures[0], erasures
    order.refresh_from_db()
    assert order.is_anonymized
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(bytes(slip.pdf))).pages)
    assert order.ref in text
    for personal in (ADDRESS_OF_ORDERS["name"], ADDRESS_OF_ORDERS["line1"], ADDRESS_OF_ORDERS["city"]):
        assert personal not in text
    assert PackingSlip.objects.filter(order=order).count() == 1


def test_a_my_account_change_sent_while_the_account_is_being_erased_does_not_bring_the_person_back() -> None:
    customer, _ = _customer_with_a_photo()
    erased, changed = _sent_while_erased(
        customer,
        lambda: customer_update(
            user=User.objects.get(pk=customer.pk),
            full_name="W. Q.",
            email="w.q@example.net",
            address=ADDRESS,
            marketing_opt_in=True,
            current_password=PASSWORD,  # a new e-mail needs it
        ),
    )

    # before, the change waited for the erasure and then wrote the name, address and e-mail back (and the
    # e-mail could never be registered again); a marketing consent was recorded after the erasure
    assert "error" not in erased, erased
    assert getattr(changed.get("error"), "code", None) == "account_erased", changed
    customer.refresh_from_db()
    assert (customer.full_name, customer.address, customer.email) == (
        "",
        {},
        f"erased-{customer.public_id}@invalid",
    )
    assert not Consent.objects.filter(user=customer).exists()


def test_a_webhook_endpoint_registered_while_the_account_is_being_erased_is_refused(settings) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE, settings.WEBHOOK_ALLOW_HTTP = True, True
    customer, _ = _customer_with_a_photo()
    erased, registered = _sent_while_erased(
        customer,
        lambda: webhook_endpoint_create(
            owner=User.objects.get(pk=customer.pk),
            url="http://127.0.0.1:9/r-acer",
            event_types=["order.shipped"],
            description="R. Acer's studio",
        ),
    )

    assert "error" not in erased, erased
    assert getattr(registered.get("error"), "code", None) == "account_erased", registered
    assert not WebhookEndpoint.objects.filter(owner=customer).exists()


def test_a_webhook_endpoint_changed_while_the_account_is_being_erased_is_not_found_not_a_500(
    settings,
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE, settings.WEBHOOK_ALLOW_HTTP = True, True
    customer, _ = _customer_with_a_photo()
    endpoint = webhook_endpoint_create(
        owner=customer, url="http://127.0.0.1:9/hooks", event_types=["order.shipped"], description="studio"
    )
    erased, changed = _sent_while_erased(
        customer,
        lambda: webhook_endpoint_update(
            endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk), description="R. Acer's studio"
        ),
        held="audit_accessgrant",  # the erasure has deleted the endpoint, and not committed
    )

    # before: Django's "Save with update_fields did not affect any rows", answered 500
    assert "error" not in erased, erased
    assert getattr(changed.get("error"), "code", None) == "webhook_endpoint_not_found", changed
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_a_failed_sign_in_while_the_account_is_being_erased_leaves_no_record_under_the_account() -> None:
    customer, _ = _customer_with_a_photo()
    attempt = SignInAttempt(email=customer.email, client_ip="203.0.113.9", channel=SecurityEvent.Channel.API)
    erased, failed = _sent_while_erased(
        customer, lambda: sign_in_failed(attempt=attempt, user=User.objects.get(pk=customer.pk))
    )

    # before, the record (with the client's address) was written under the erased account after its erasure
    assert "error" not in erased, erased
    assert "error" not in failed, failed
    assert not SecurityEvent.objects.filter(user=customer).exists()
    # and the record kept for the unknown address holds neither the client's address nor the e-mail's hash:
    # the erasure that had just committed would not find it, and it outlived the erasure (now cleared)
    assert list(
        SecurityEvent.objects.filter(user=None, kind=SecurityEvent.Kind.SIGN_IN_FAILED).values_list(
            "email_sha256", "client_ip"
        )
    ) == [("", None)]


def test_a_token_revoked_while_the_account_is_being_erased_waits_and_is_not_found_not_a_deadlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert connection.vendor == "postgresql"  # row locks: SQLite runs one write transaction at a time
    # given a customer with a token, whose erasure has locked the account and is held right after
    customer = new_customer()
    issued = api_token_issue(user=customer, name="laptop")
    # the customer's request, signed in with that token: it revokes itself, which needs no password (the
    # password check, for another token, runs before the transaction and takes no row)
    authenticated = api_token_authenticate(key=issued.key)
    assert authenticated is not None
    signed_in, _ = authenticated
    locked, go_on = threading.Event(), threading.Event()
    refuse_open_orders = erasure_refusals._refuse_open_orders

    def held_with_the_account_locked(user: User) -> None:
        locked.set()
        go_on.wait(timeout=30)
        refuse_open_orders(user)

    monkeypatch.setattr(erasure, "_refuse_open_orders", held_with_the_account_locked)
    erasing, erased = _in_thread(_erase(customer.pk))
    assert locked.wait(timeout=20)  # else: the erasure never locked the account
    # when the customer revokes the token meanwhile (DELETE me/tokens/{id} with it), and it comes to wait
    # for the erasure before the erasure goes on
    revoking, revoked = _in_thread(
        lambda: api_token_revoke(
            user=signed_in, token_id=str(issued.token.public_id), client_ip="203.0.113.9"
        )
    )
    until_sessions_wait_for_locks(1, timeout=20)  # else: the revoke did not wait for the erasure
    go_on.set()
    erasing.join(timeout=60)
    revoking.join(timeout=60)

    # then neither died as a deadlock: before, the revoke deleted its token row and waited for the account
    # at COMMIT (its SecurityEvent's foreign key), the erasure waited for that token row, and PostgreSQL
    # killed one (503 database_unavailable, or the erasure's 500). Now the revoke waits for the erasure
    # before it deletes anything and finds the token gone with the rest of the account: 404
    assert "error" not in erased, erased
    assert getattr(revoked.get("error"), "code", None) == "token_not_found", revoked
    customer.refresh_from_db()
    assert customer.erased_at is not None
    assert not ApiToken.objects.filter(user=customer).exists()
    assert not SecurityEvent.objects.filter(user=customer).exists()  # no revoke record outlives the erasure


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_webhook_attempt_recorded_while_the_account_is_being_erased_leaves_the_erasure_whole(
    settings, moment: str
) -> None:
    """A worker records an attempt at one of the customer's deliveries at the moment the erasure deletes them
    (the order's webhook events, cascading to their deliveries and attempts): right `before` the deliveries'
    DELETE, after the attempts' one, or right `after` it."""
    assert connection.vendor == "postgresql"  # row locks: SQLite runs one write transaction at a time
    settings.WEBHOOK_ALLOW_PRIVATE, settings.WEBHOOK_ALLOW_HTTP = True, True
    catalog_seed_demo()
    customer = new_customer()
    order = order_move(order_for(customer), "paid", "in_production", "ready_to_pack", "packed", "shipped")
    webhook_endpoint_create(owner=customer, url="http://127.0.0.1:9/hooks", event_types=["item.reprinted"])
    webhook_event_emit(order_id=order.pk, event_type=EventType.ITEM_REPRINTED, data={})
    delivery = WebhookDelivery.objects.get(endpoint__owner=customer)
    recording: list[tuple[threading.Thread, dict[str, Any]]] = []

    def record() -> None:
        outcome = webhook_delivery.AttemptOutcome(
            attempted_at=timezone.now(), status_code=200, error_code="", duration_ms=12
        )
        webhook_delivery._record(
            delivery_id=str(delivery.pk), outcome=outcome, is_final=False, claimed_until=None
        )

    def until_recorded_or_held() -> None:
        # the attempt is recorded and committed, or it waits for a lock of the erasure's
        thread, _ = recording[0]
        deadline = time.monotonic() + 20
        while thread.is_alive() and not holds_up_another_session():
            assert time.monotonic() < deadline, "the attempt neither finished nor waited for the erasure"
            time.sleep(0.02)

    def at_the_deliveries_delete(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        first = not recording and sql.startswith(f'DELETE FROM "{WebhookDelivery._meta.db_table}"')
        if first:
            recording.append(_in_thread(record))
            if moment == "before":
                until_recorded_or_held()
        result = execute(sql, params, many, context)
        if first and moment == "after":
            until_recorded_or_held()
        return result

    # when the erasure runs, and the attempt is recorded at that moment
    erased: dict[str, Any] = {}
    with connection.execute_wrapper(at_the_deliveries_delete):
        try:
            erased["result"] = account_erase(user=User.objects.get(pk=customer.pk), password=PASSWORD)
        except Exception as error:  # the outcome is asserted below
            erased["error"] = error
    assert recording, "the erasure never deleted the deliveries"
    thread, recorded = recording[0]
    thread.join(timeout=60)

    # then the erasure committed and nothing of the endpoint is left; the attempt either came first and went
    # with it, or waited and found its delivery gone. Before, `before`: the attempt committed between the
    # attempts' DELETE and the deliveries', and the erasure failed its foreign key check at COMMIT (a 500);
    # `after`: the attempt held the endpoint and waited for the delivery, the erasure waited for the endpoint,
    # and PostgreSQL killed one as a deadlock
    assert "error" not in erased, erased
    assert "error" not in recorded, recorded
    customer.refresh_from_db()
    assert customer.erased_at is not None
    assert not WebhookEndpoint.objects.filter(owner=customer).exists()
    assert not WebhookDelivery.objects.filter(pk=delivery.pk).exists()
    assert not WebhookAttempt.objects.filter(delivery_id=delivery.pk).exists()
