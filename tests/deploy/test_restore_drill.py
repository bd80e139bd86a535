"""The restore drill: README *Restoring the database from a backup* run on a real `pg_dump -Fc` of the
test's own PostgreSQL database and a real `pg_restore` of it (tests/support/pg_dump_restore.py), not rows
written back.

Before the backup, customer A and customer B each paid an order at Stripe (localstripe), B's printed and
shipped, and gate views were witnessed by a checkpoint. After it, A's payment was refunded at Stripe (its
webhook applied), B erased their account, and more gate views were witnessed. The restore takes the database
back; the witness log, the erasure log and Stripe keep what happened since. Then `audit_restore`,
`stripe_replay --since`, `erasures_reapply`, in that order, twice. The drill found the erasure applied again
raising a false alarm for each raster file the undone erasure had deleted ("raster file kept: not this photo's
raster", as for a job row pointed at another photo's file); it raises none now."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from lab.accounts.models import User
from lab.audit.models import AuditCheckpoint, AuditRecord
from lab.audit.records import audit_append
from lab.audit.signer import checkpoint_write
from lab.customer_data.models import PrivacyReceipt
from lab.orders.models import Order, OrderEvent, StripeEvent
from lab.production.models import Alert, PrintJob
from lab.production.reconcile import production_reconcile
from tests.builders import (
    PERSON_PASSWORD,
    Person,
    audit_write,
    blob_path,
    database_text,
    pack_and_ship,
    place_order,
    print_order,
    register,
    upload,
)
from tests.builders.audit import preview_entry
from tests.support.audit_verifiers import (
    audit_verify_printed,
    export_for_auditors,
    offline_verifier,
    witness_path,
)
from tests.support.pg_dump_restore import database_dump, database_restore
from tests.support.stripe_webhooks import (
    deliver,
    pay_at_stripe,
    refunds_made,
    stripe_events_delivered,
    stripe_forgotten,
    stripe_test_client,
)

# Rows pg_dump sees are committed ones: the test commits as the lab does (pytest-django then empties every
# table after it).
pytestmark = pytest.mark.django_db(transaction=True)

ALICE = Person(
    full_name="Ottoline Marchbanks",
    email="ottoline.marchbanks@example.org",
    line1="31 Collodion Row",
    line2="",
    city="Albumenburg",
    postal_code="97997",
)
BERTRAND = Person(
    full_name="Bertrand Fothergill",
    email="bertrand.fothergill@example.org",
    line1="8 Daguerre Mews",
    line2="Studio 2",
    city="Tintypeville",
    postal_code="97996",
)
# How far before the backup's time the replay starts reading Stripe (the runbook's margin).
REPLAY_MARGIN = timedelta(minutes=10)


@pytest.fixture
def stripe(stripe_api):
    """The session's localstripe, holding nothing of the tests before (the replay reads the whole account)."""
    stripe_forgotten()
    return stripe_api


def order_paid_by(person: Person, *, key: str) -> Order:
    """`person` registers, uploads a photo, orders it and pays at Stripe; the payment's event delivered."""
    customer = APIClient()
    register(customer, person)
    order = place_order(customer, asset_id=upload(customer, person), key=key, person=person)
    pay_at_stripe(order)
    assert stripe_events_delivered(APIClient(), order) == ["paid"]
    order.refresh_from_db()
    return order


def refunded_at_stripe(order: Order) -> str:
    """A full refund made in Stripe's dashboard, and the charge.refunded Stripe sends for it delivered: its
    outcome."""
    client = stripe_test_client()
    refund = client.v1.refunds.create(params={"payment_intent": order.payment_intent_id})
    charge = client.v1.charges.retrieve(str(refund.charge)).to_dict()
    answered = deliver(APIClient(), "charge.refunded", charge, event_id="evt_drill_refund")
    assert answered.status_code == 200, answered.json()
    return str(answered.json()["outcome"])


def sign_in(person: Person) -> int:
    response = APIClient().post(
        "/api/v1/auth/token",
        {"email": person.email, "password": PERSON_PASSWORD, "name": "laptop"},
        format="json",
    )
    return response.status_code


def state(order: Order) -> tuple[str, str]:
    order.refresh_from_db()
    return (order.status, order.payment_status)


def runbook(*, since: str) -> list[str]:
    """The three commands of the runbook, in its order: what each printed."""
    said = []
    for command, arguments in (
        ("audit_restore", ()),
        ("stripe_replay", ("--since", since)),
        ("erasures_reapply", ()),
    ):
        out = io.StringIO()
        call_command(command, *arguments, stdout=out, stderr=out)
        said.append(out.getvalue())
    return said


def lab_state(erasure_log: Path) -> tuple[Any, ...]:
    """What the runbook could change, inside the database and out."""
    return (
        sorted(Order.objects.values_list("ref", "status", "payment_status", "updated_at", "is_anonymized")),
        sorted(OrderEvent.objects.values_list("pk", flat=True)),
        sorted(StripeEvent.objects.values_list("event_id", "outcome")),
        sorted(Alert.objects.values_list("key", flat=True)),
        sorted(User.objects.values_list("public_id", "email", "erased_at", "is_active")),
        sorted(AuditRecord.objects.values_list("seq", flat=True)),
        AuditCheckpoint.objects.count(),
        PrivacyReceipt.objects.count(),
        witness_path().read_bytes(),
        erasure_log.read_bytes(),
    )


def erased(person: Person) -> None:
    """`person` erases their account (DELETE me, with their password)."""
    customer = APIClient()
    customer.force_authenticate(User.objects.get(email=person.email))
    response = customer.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")
    assert response.status_code == 200, response.json()


def test_the_runbook_after_a_real_pg_restore_keeps_the_audit_log_refunds_and_erasures(
    stripe, settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if connection.vendor != "postgresql":
        pytest.fail("the drill restores a pg_dump: it needs the PostgreSQL test database (DATABASE_URL)")
    # The restored orders are past the production sweep's grace, as after any real restore.
    settings.PRODUCTION_HANDOFF_GRACE_SECONDS = 0

    # given, before the backup: A's order paid; B's paid, printed and shipped; gate views, witnessed
    alice_order = order_paid_by(ALICE, key="drill-a")
    bertrand_order = pack_and_ship(print_order(order_paid_by(BERTRAND, key="drill-b")))
    raster = PrintJob.objects.get(order=bertrand_order).raster_blob
    assert raster and blob_path(raster).exists()
    audit_write(3)
    backed_up = checkpoint_write()

    # and the backup: a real pg_dump
    backed_up_at = timezone.now()
    dump = database_dump(tmp_path / "printlab.dump")

    # and after it: A refunded at Stripe, B erased, more gate views witnessed
    assert refunded_at_stripe(alice_order) == "held_for_payment"
    assert state(alice_order) == ("on_hold", "refunded")
    bertrand = User.objects.get(email=BERTRAND.email)
    erased(BERTRAND)
    assert not blob_path(raster).exists()
    erasure_log = Path(settings.LAB_ERASURE_LOG)
    erased_line = erasure_log.read_bytes()
    assert [json.loads(line)["subject"] for line in erased_line.splitlines()] == [str(bertrand.public_id)]
    audit_write(2)
    superseded = checkpoint_write()

    # when the database is restored from the dump
    database_restore(dump)

    # then, before the runbook: the log no longer reaches the witness, A's order is paid again, B is back
    assert audit_verify_printed().startswith(
        f"TAMPERED: truncated_after_checkpoint at seq {backed_up.seq + 1}"
    )
    assert state(alice_order) == ("paid", "succeeded")
    assert sign_in(BERTRAND) == 200
    assert erasure_log.read_bytes() == erased_line

    # when the operator runs the runbook
    since = (backed_up_at - REPLAY_MARGIN).isoformat()
    assert PrintJob.objects.get(order=bertrand_order).raster_blob == raster
    with caplog.at_level(logging.ERROR):
        restored, replayed, reapplied = runbook(since=since)
    # (and raises no alarm: B's raster file, deleted by the erasure the restore undid, is simply gone)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert PrintJob.objects.get(order=bertrand_order).raster_blob == ""

    # then the audit log reports the restore, never TAMPERED, and a gate view after it is signed and verifies
    assert f"seqs {backed_up.seq + 1}..{superseded.seq} lost" in restored, restored
    audit_append(preview_entry("actor-after", asset_id="asset-after"))
    assert checkpoint_write().seq > superseded.seq
    verified = audit_verify_printed()
    assert verified.startswith("OK:") and "TAMPERED" not in verified, verified
    assert f"seqs {backed_up.seq + 1}..{superseded.seq} lost" in verified, verified
    offline = offline_verifier(export_for_auditors(tmp_path), witness_path())
    assert offline.returncode == 0 and offline.stdout.startswith("OK:"), offline.stdout + offline.stderr
    assert f"seqs {backed_up.seq + 1}..{superseded.seq} lost" in offline.stdout, offline.stdout

    # and A's order is refunded again, held for a supervisor, never released to print, refunded once
    assert "applied: 1 (held_for_payment 1)" in replayed, replayed
    assert state(alice_order) == ("on_hold", "refunded")
    production_reconcile()
    assert not PrintJob.objects.filter(order=alice_order).exists()
    assert state(alice_order) == ("on_hold", "refunded")
    assert [status for status, _tag in refunds_made(alice_order)] == ["succeeded"]

    # and B is erased again: no sign-in, nothing of theirs left in the database
    assert f"erased again: account {bertrand.public_id}" in reapplied, reapplied
    assert "erased again: 1 accounts" in reapplied, reapplied
    assert sign_in(BERTRAND) == 401
    text = database_text()
    assert [needle for needle in BERTRAND.needles if needle in text] == []
    assert [needle for needle in ALICE.needles if needle in text] != []  # A is not erased
    bertrand_order.refresh_from_db()
    assert bertrand_order.is_anonymized

    # and running the three commands again changes nothing
    before = lab_state(erasure_log)
    again = runbook(since=since)
    assert lab_state(erasure_log) == before
    assert again[0].startswith("nothing to do"), again[0]
    assert "applied: 0;" in again[1], again[1]
    assert "erased again: 0 accounts" in again[2] and "erased already: 1" in again[2], again[2]
