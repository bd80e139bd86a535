"""What an account erasure used to leave behind: failed sign-ins with the customer's address (its SHA-256 and
the client's IP, kept for ever), the hash of an order's request and its client-chosen Idempotency-Key, and
the floor's notes on a reprint or a cancel naming the customer. None outlives the erasure now."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from lab.accounts.models import SecurityEvent, User
from lab.accounts.signin import sign_ins_with_address
from lab.customer_data import retention
from lab.orders.intake import request_seal
from lab.orders.models import IdempotencyKey
from lab.production import actions, reprints
from lab.production.models import JobEvent, PrintJob
from tests.builders import (
    PERSON,
    PERSON_PASSWORD,
    SKU,
    UserFactory,
    client_as,
    database_text,
    email_change_confirmed,
    hotfolder_printer,
    minilab,
    pack_and_ship,
    pay,
    place_order,
    print_order,
    register,
    released_order,
    upload,
)

pytestmark = pytest.mark.django_db
GUESSER_ADDRESS = "203.0.113.77"


def _email_digest(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def test_failed_sign_ins_with_the_address_are_exported_without_the_ip_and_erased_with_the_account(api):
    # given a failed sign-in with the customer's address before they registered (no account: recorded by the
    # address's SHA-256 and the IP of whoever typed it)
    failed = api.post(
        "/api/v1/auth/token",
        {"email": PERSON.email.upper(), "password": "a guess"},
        format="json",
        REMOTE_ADDR=GUESSER_ADDRESS,
    )
    assert failed.status_code == 401
    digest = _email_digest(PERSON.email)
    assert SecurityEvent.objects.filter(user=None, email_sha256=digest).count() == 1
    register(api)

    # when the customer asks for their export
    exported = api.get("/api/v1/me/export").json()["security_events"]

    # then the failed sign-in with their address is in it, without the IP: that is whoever typed it
    assert [
        (event["kind"], event["channel"], event["client_ip"])
        for event in exported
        if event["kind"] == "sign_in_failed"
    ] == [("sign_in_failed", "api", None)]
    assert GUESSER_ADDRESS not in json.dumps(exported)

    # when they erase their account
    erased = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")

    # then neither the address's hash nor the IP recorded with it is left in any table
    assert erased.status_code == 200, erased.json()
    after = database_text()
    assert [needle for needle in (digest, GUESSER_ADDRESS) if needle in after] == []


EARLIER_EMAIL = "w.quarrington.old@example.org"


def _signed_in_with_an_earlier_address(api: APIClient) -> str:
    """A customer registered as EARLIER_EMAIL, with a failed sign-in under it before and after they changed
    to PERSON's address; the earlier address's digest."""
    earlier = dataclasses.replace(PERSON, email=EARLIER_EMAIL)
    guess = {"email": EARLIER_EMAIL, "password": "a guess"}
    assert (
        api.post("/api/v1/auth/token", guess, format="json", REMOTE_ADDR=GUESSER_ADDRESS).status_code == 401
    )
    register(api, earlier)
    email_change_confirmed(api, PERSON.email)
    # out of habit, the earlier address once more (it signs nobody in now)
    assert (
        APIClient().post("/api/v1/auth/token", guess, format="json", REMOTE_ADDR=GUESSER_ADDRESS).status_code
        == 401
    )
    digest = _email_digest(EARLIER_EMAIL)
    assert SecurityEvent.objects.filter(user=None, email_sha256=digest).count() == 2
    return digest


def test_failed_sign_ins_with_an_address_the_account_had_before_are_in_its_export(api):
    digest = _signed_in_with_an_earlier_address(api)

    exported = api.get("/api/v1/me/export").json()["security_events"]

    # before, the export looked for the current address only, and both were left out
    assert [
        (event["kind"], event["client_ip"]) for event in exported if event["kind"] == "sign_in_failed"
    ] == [
        ("sign_in_failed", None),
        ("sign_in_failed", None),
    ]
    # the change's event names the earlier address by its digest only
    changed = [event for event in exported if event["kind"] == "email_changed"]
    assert [event["detail"] for event in changed] == [{"previous_email_sha256": digest}]
    assert EARLIER_EMAIL not in json.dumps(exported)


def test_failed_sign_ins_with_an_address_the_account_had_before_are_erased_with_it(api):
    # Needs lab/customer_data/erasure.py to delete sign_ins_with_addresses_of(user=user) (it deleted those
    # with the current address only, and both outlived the erasure).
    digest = _signed_in_with_an_earlier_address(api)

    erased = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")

    assert erased.status_code == 200, erased.json()
    assert not SecurityEvent.objects.filter(email_sha256=digest).exists()
    after = database_text()
    assert [needle for needle in (digest, EARLIER_EMAIL, GUESSER_ADDRESS) if needle in after] == []


def test_the_retention_sweep_deletes_old_unknown_account_sign_in_events_and_keeps_recent_ones():
    # given failed sign-ins with unknown addresses, one past the kept period and one inside it, and an
    # account's own sign-in event just as old (it goes with the account)
    now = timezone.now()
    kept_for = timedelta(days=7)
    old, recent = (
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.SIGN_IN_FAILED,
            channel=SecurityEvent.Channel.API,
            email_sha256=_email_digest(email),
            client_ip="198.51.100.9",
            created_at=created_at,
        )
        for email, created_at in (
            ("old@example.org", now - kept_for - timedelta(minutes=1)),
            ("recent@example.org", now - kept_for + timedelta(minutes=1)),
        )
    )
    customer = UserFactory.create()
    own = SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.SIGN_IN_FAILED,
        channel=SecurityEvent.Channel.API,
        user=customer,
        client_ip="198.51.100.9",
        created_at=now - kept_for - timedelta(days=1),
    )

    # when the retention sweep runs
    counts = retention.retention_sweep(now=now)

    # then only the old unknown-account event is deleted
    assert counts.get("unknown_account_events_deleted") == 1
    assert sorted(SecurityEvent.objects.values_list("pk", flat=True)) == sorted([recent.pk, own.pk])
    assert not SecurityEvent.objects.filter(pk=old.pk).exists()


def test_an_export_finds_the_sign_ins_with_its_address_by_an_index_not_a_scan_of_the_security_log():
    # given a security log of many accounts' events and a few unknown addresses' failed sign-ins
    customers = UserFactory.create_batch(20)
    SecurityEvent.objects.bulk_create(
        SecurityEvent(
            kind=SecurityEvent.Kind.TOKEN_ISSUED,
            channel=SecurityEvent.Channel.API,
            user=customers[n % len(customers)],
        )
        for n in range(5000)
    )
    SecurityEvent.objects.bulk_create(
        SecurityEvent(
            kind=SecurityEvent.Kind.SIGN_IN_FAILED,
            channel=SecurityEvent.Channel.API,
            email_sha256=_email_digest(f"guess{n}@example.org"),
        )
        for n in range(50)
    )
    # (the test command runs on PostgreSQL, as CI does: no skip on another database, a failure)
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {SecurityEvent._meta.db_table}")

    # when an export or an erasure asks for one address's events
    plan = sign_ins_with_address(email="Guess7@Example.org ").explain()

    # then PostgreSQL reads them through the index, not the whole log (an erasure runs in its transaction)
    assert "security_event_unknown_email" in plan, plan
    assert sign_ins_with_address(email="Guess7@Example.org ").count() == 1


@pytest.mark.usefixtures("stripe_api")  # orders are placed through the API: PaymentIntents
def test_an_erased_accounts_orders_keep_neither_their_request_hash_nor_their_idempotency_key(api):
    # given an order placed with a key of the customer's choosing
    register(api)
    asset_id = upload(api)
    key = "quarrington-basket-2024-07"
    order = place_order(api, asset_id=asset_id, key=key)
    body = {
        "items": [{"sku": SKU, "asset": asset_id, "copies": 2, "sizing": "fill"}],
        "shipping_method": "standard",
        "shipping_address": PERSON.address,
    }
    request_sha256 = request_seal(
        scope=f"user:{User.objects.get(email=PERSON.email).public_id}",
        idempotency_key=key,
        order_id=order.pk,
        body=json.dumps(body, sort_keys=True, default=str, separators=(",", ":")),
    )
    assert IdempotencyKey.objects.get(order=order).request_sha256 == request_sha256  # the body rebuilt

    # when the account is erased
    erased = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")

    # then the hash covering the shipping address and the key's text are gone; the row names the order only
    assert erased.status_code == 200, erased.json()
    after = database_text()
    assert [needle for needle in (request_sha256, key) if needle in after] == []
    assert list(IdempotencyKey.objects.values_list("scope", "request_sha256")) == [
        (f"erased:{order.ref}", "")
    ]


@pytest.mark.usefixtures("stripe_api")  # orders are placed through the API: PaymentIntents
def test_the_floors_notes_on_a_reprint_and_a_cancel_naming_the_customer_go_with_the_account(api):
    # given a printed order whose print a technician reprinted, and then cancelled, with notes naming the
    # customer, and which was then packed and shipped
    register(api)
    customer = User.objects.get(email=PERSON.email)
    order = place_order(api, asset_id=upload(api), key="erase-notes")
    pay(order, event_id="evt_erase_notes")
    minilab()
    print_order(order)
    technician = UserFactory.create(roles=["technician"])
    original = PrintJob.objects.get(order=order)
    reprint = reprints.job_reprint(
        job_id=original.pk,
        actor=technician,
        reason="damaged",
        copies=1,
        note=f"{PERSON.full_name} called about a scratch",
    )
    actions.job_cancel(job_id=reprint.pk, actor=technician, note=f"{PERSON.full_name} is fine with it")
    order.refresh_from_db()
    assert order.status == "ready_to_pack"
    pack_and_ship(order)
    assert PERSON.full_name.lower() in database_text()  # the notes, and the order's own fields

    # when the account is erased
    erased = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")

    # then the name is in no table; the events keep what the lab wrote itself
    assert erased.status_code == 200, erased.json()
    assert list(
        JobEvent.objects.filter(job=reprint, kind__in=["reprint_requested", "cancelled"])
        .order_by("pk")
        .values_list("kind", "note")
    ) == [
        ("reprint_requested", f"reprint of job {original.pk}: damaged"),
        ("cancelled", "cancelled by staff"),
    ]
    name_left = PERSON.full_name.lower() in database_text()
    assert name_left is False
    customer.refresh_from_db()
    assert customer.erased_at is not None


def test_the_photo_request_form_tells_staff_their_reason_is_kept_and_must_not_name_the_customer():
    # given a job on the floor, whose photo a technician may ask to see (printing, handling); the reason they
    # give is written into the append-only audit log, which no erasure reaches
    hotfolder_printer("minilab", sizes=["4x6"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.get()
    client, _ = client_as("technician")

    # when the technician opens the job's page
    page = client.get(f"/lab/jobs/{job.pk}/").content.decode()

    # then each request form's reason field is described by the warning
    assert page.count('name="justification"') == 2
    assert [
        f'aria-describedby="justification-help-{n}"' in page and f'id="justification-help-{n}"' in page
        for n in (1, 2)
    ] == [True, True]
    warning = (
        "Say why you need to see the photo; do not write the customer's name or other personal details: "
        "this text is kept in the audit log."
    )
    assert page.count(warning) == 2
