"""Signed privacy receipts: issued when an order ships, when retention purges its photos and on erasure, with
exactly the order's photos, every employee view of them (by role only) and when each data key was destroyed,
anchored in the audit log; verified offline by the real CLI (where Django cannot be imported) and refused once
tampered with; readable with the link's token or by their owner only; e-mailed with that link."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from lab.accounts.models import User
from lab.audit.canonical import utc_timestamp
from lab.audit.checkpoints import Checkpoint
from lab.audit.configured import key_id, public_key, signing_key, witness_sink
from lab.audit.database_verify import audit_verify_database
from lab.audit.keys import load_private_key, load_public_key, public_key_b64, public_key_fingerprint
from lab.audit.lane_heads import lanes_from_json
from lab.audit.models import AuditCheckpoint, AuditRecord
from lab.audit.receipt import RECEIPT_FORMAT, receipt_sign
from lab.audit.records import RequestMeta
from lab.audit.signer import checkpoint_write
from lab.audit.witness import FileWitness
from lab.catalog.models import Product
from lab.customer_data import receipts, retention, retention_rules
from lab.customer_data.models import PrivacyReceipt
from lab.customer_data.photo_purge import asset_purge
from lab.gate import access as gate
from lab.gate.refusals import AccessDenied
from lab.gate.rules import AccessRequest
from lab.orders.models import Asset, Order, OrderItem
from lab.privacy.models import DataKey
from lab.production import routing
from lab.production.models import PrintJob
from tests.builders import (
    PASSWORD,
    SHIPPING_ADDRESS,
    asset_for,
    broker_tasks,
    minilab,
    new_customer,
    order_move,
    order_pay,
    order_with_items,
    pack_and_ship,
    person,
    print_order,
)
from tests.support.audit_verifiers import receipt_verified, verifier_run_without_django, witness_path
from tests.support.mail import SlowEmailBackend, StalledServerEmailBackend

pytestmark = pytest.mark.django_db
MAIN_DIRECTORY = Path(__file__).resolve().parents[2]
SKU = "PRINT-4X6-LUSTRE"
STAFF_WORDS = "checking the colour of the print"
STAFF_ADDRESS = "10.0.0.5"


def bad_signature(path: Path) -> str:
    """What the verifier says of a receipt whose document or signature was changed."""
    return (
        f"TAMPERED: bad_signature in {path}: the signature does not verify over the document with the public"
        " key given: the document was changed after it was signed, or the signature belongs to another"
        " document"
    )


# --- building orders, views and receipts ----------------------------------------------------------------


def two_photo_order(customer: User | None = None) -> Order:
    """An unpaid order of two different photos of its customer."""
    order = order_with_items(lines=[(SKU, 1)], customer=customer, shipping_address=SHIPPING_ADDRESS)
    OrderItem.objects.create(
        order=order,
        position=2,
        product=Product.objects.get(sku=SKU),
        asset=asset_for(order.customer, width=1200, height=1800),
        copies=1,
        sizing="fill",
        unit_price_minor=0,
        line_total_minor=0,
    )
    return order


def photos_of(order: Order) -> list[Asset]:
    return [item.asset for item in order.items.select_related("asset").order_by("position")]


def look(
    user: User, *, asset: Asset, purpose: str, context_type: str, context_id: str, variant: str = "preview"
):
    """An employee's view through the gate, with the words and address that must never reach a receipt."""
    return gate.image_access(
        user=user,
        request=AccessRequest(
            asset_id=str(asset.pk),
            purpose=purpose,
            justification=STAFF_WORDS,
            context_type=context_type,
            context_id=context_id,
            variant=variant,
        ),
        meta=RequestMeta(client_ip=STAFF_ADDRESS, user_agent="FloorTablet/3"),
    )


def shipped_order(customer: User | None = None) -> tuple[Order, list[User]]:
    """Two photos, each seen once at the packing station (and a refused attempt), then packed and shipped."""
    order = two_photo_order(customer)
    order_move(order, "paid", "in_production", "ready_to_pack")
    first, second = photos_of(order)
    packer, supervisor, technician = person("packer"), person("supervisor"), person("technician")
    look(packer, asset=first, purpose="packaging", context_type="order", context_id=order.ref)
    look(supervisor, asset=second, purpose="packaging", context_type="order", context_id=order.ref)
    with pytest.raises(AccessDenied):  # technicians may not ask for packaging: refused, no view
        look(technician, asset=first, purpose="packaging", context_type="order", context_id=order.ref)
    order_move(order, "packed")
    return order_move(order, "shipped", shipped_at=timezone.now()), [packer, supervisor, technician]


def employee_views(order: Order) -> list[dict[str, Any]]:
    """The granted views of the order's photos by employees, as the receipt must list them."""
    records = AuditRecord.objects.filter(
        asset_id__in=[str(asset.pk) for asset in photos_of(order)],
        outcome="granted",
        action__startswith="image.view.",
    ).exclude(actor_role__in=["system", "customer"])
    return [
        {
            "seq": record.seq,
            "occurred_at": utc_timestamp(record.occurred_at),
            "action": record.action,
            "purpose": record.purpose,
            "role": record.actor_role,
            "asset_id": record.asset_id,
            "order_ref": record.order_ref,
        }
        for record in records.order_by("seq")
    ]


def destroyed_at(asset: Asset) -> str | None:
    assert asset.data_key_id is not None
    key = DataKey.objects.get(pk=asset.data_key_id)
    return utc_timestamp(key.destroyed_at) if key.destroyed_at is not None else None


def photos_expected(order: Order) -> list[dict[str, Any]]:
    return [
        {"asset_id": str(asset.pk), "sha256": asset.sha256, "data_key_destroyed_at": destroyed_at(asset)}
        for asset in sorted(photos_of(order), key=lambda asset: str(asset.pk))
    ]


def issued(order: Order, reason: str) -> PrivacyReceipt:
    """The receipt as the worker issues it on the task message the event sent."""
    receipts.receipt_issue_for_order(order_id=order.pk, reason=reason)
    return PrivacyReceipt.objects.get(order_ref=order.ref, reason=reason)


def anchor_of(receipt: PrivacyReceipt, checkpoint: AuditCheckpoint | None) -> dict[str, Any]:
    record = AuditRecord.objects.get(action="receipt.issued", context_id=str(receipt.pk))
    return {
        "record": {"seq": record.seq, "lane": record.lane, "lane_seq": record.lane_seq, "hash": record.hash},
        "body_sha256": record.content_sha256,
        "checkpoint": None if checkpoint is None else json.loads(as_line(checkpoint)),
    }


def as_line(row: AuditCheckpoint) -> str:
    lanes = lanes_from_json(json.loads(row.lanes)) if row.lanes else ()
    return Checkpoint(row.seq, row.head_hash, row.signed_at, row.key_id, row.signature, lanes).to_line()


def link_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def fetched(url: str) -> dict[str, Any]:
    """The receipt as anyone holding its link gets it (no account)."""
    response = APIClient().get(link_path(url))
    assert response.status_code == 200, response.json()
    body: dict[str, Any] = response.json()
    return body


# --- the command line, as a customer runs it, where Django cannot be imported ----------------------------


# --- shipped ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("_checkpointed")
def test_shipping_issues_a_signed_receipt_of_the_photos_and_every_employee_view_by_role(
    api, django_capture_on_commit_callbacks, mailoutbox, tmp_path
):
    # given an order printed for real (the workers' own reads are recorded too), seen by three employees
    minilab()
    order = order_pay(two_photo_order())
    routing.order_release(order_id=order.pk)
    first, second = photos_of(order)
    jobs = {job.item.position: job for job in PrintJob.objects.filter(order=order).select_related("item")}
    technician, supervisor, packer = person("technician"), person("supervisor"), person("packer")
    look(technician, asset=first, purpose="printing", context_type="print_job", context_id=str(jobs[1].pk))
    look(
        supervisor,
        asset=second,
        purpose="printing",
        context_type="print_job",
        context_id=str(jobs[2].pk),
        variant="full",
    )
    with pytest.raises(AccessDenied):  # not at the packing station yet: refused, so not a view
        look(packer, asset=first, purpose="packaging", context_type="order", context_id=order.ref)
    print_order(order)
    look(packer, asset=first, purpose="packaging", context_type="order", context_id=order.ref)
    before = AuditCheckpoint.objects.order_by("-pk").first()
    assert before is not None

    # when it ships: the status change sends the task that issues the receipt, which sends the e-mail
    with django_capture_on_commit_callbacks(execute=True):
        pack_and_ship(order)
    assert ("privacy.receipt_issue", {"order_id": order.pk, "reason": "shipped"}) in broker_tasks("default")
    with django_capture_on_commit_callbacks(execute=True):
        receipt = issued(order, "shipped")
    assert ("privacy.receipt_email", {"receipt_id": str(receipt.pk)}) in broker_tasks("default")
    assert receipts.receipt_email_send(receipt_id=receipt.pk) is True

    # then the receipt names exactly the two photos (keys still alive) and the three views, by role
    document = json.loads(receipt.document)
    assert [
        (view["action"], view["purpose"], view["role"], view["asset_id"])
        for view in document["employee_views"]
    ] == [
        ("image.view.preview", "printing", "technician", str(first.pk)),
        ("image.view.full", "printing", "supervisor", str(second.pk)),
        ("image.view.preview", "packaging", "packer", str(first.pk)),
    ]
    assert document == {
        "format": RECEIPT_FORMAT,
        "receipt_id": str(receipt.pk),
        "issued_at": utc_timestamp(receipt.created_at),
        "key_id": key_id(),
        "issuer": settings.LAB_NAME,
        "order_ref": order.ref,
        "reason": "shipped",
        "photos": photos_expected(order),
        "employee_views": employee_views(order),
        "anchor": anchor_of(receipt, before),
    }
    assert [photo["data_key_destroyed_at"] for photo in document["photos"]] == [None, None]
    # and nothing names an employee beyond their role: no id, e-mail, name, address or words of theirs
    staff = [technician, supervisor, packer]
    leaks = (
        [str(user.public_id) for user in staff]
        + [user.email for user in staff]
        + [STAFF_ADDRESS, STAFF_WORDS]
    )
    assert [leak for leak in leaks if leak in receipt.document] == []
    # and its audit record holds the digest of the body, and the chain still verifies
    record = AuditRecord.objects.get(action="receipt.issued")
    assert (record.actor_role, record.order_ref, record.context_type, record.context_id, record.seq) == (
        "system",
        order.ref,
        "privacy_receipt",
        str(receipt.pk),
        receipt.audit_seq,
    )
    assert audit_verify_database().problem is None
    # and the customer was mailed the link, which answers the signed receipt to anyone holding it
    url = receipts.receipt_url(receipt)
    [message] = [message for message in mailoutbox if "privacy receipt" in message.subject]
    assert order.customer is not None
    assert (message.to, message.subject) == (
        [order.customer.email],
        f"Your privacy receipt for order {order.ref}",
    )
    assert f"Your receipt: {url}\n" in message.body
    response = api.get(link_path(url))
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    assert response.json() == {"document": document, "signature": receipt.signature, "key_id": key_id()}

    # when the next scheduled checkpoint has run and the customer verifies offline, against the witness log
    covering = checkpoint_write()
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    completed = receipt_verified(response.json(), tmp_path, "--witness", str(sink.path))

    # then it is intact, anchored after the earlier checkpoint and covered by the later one
    lane = document["anchor"]["record"]
    assert (completed.returncode, completed.stderr) == (0, "")
    assert completed.stdout == (
        f"OK: receipt {receipt.pk} (shipped, order {order.ref}, issued {document['issued_at']}): 2 photos,"
        f" 3 employee views; signed by key {public_key_fingerprint(public_key())}; audit record seq"
        f" {lane['seq']} (lane {lane['lane']} #{lane['lane_seq']}) after checkpoint seq {before.seq} signed"
        f" at {before.signed_at}; covered by the witnessed checkpoint seq {covering.seq} signed at"
        f" {covering.signed_at}\n"
    )


@pytest.fixture
def _checkpointed() -> None:
    """A signed checkpoint exists before anything happens, as on a lab whose signer runs on schedule."""
    checkpoint_write()


@pytest.fixture
def shipped_receipt(
    _checkpointed, django_capture_on_commit_callbacks
) -> tuple[PrivacyReceipt, dict[str, Any]]:
    order, _ = shipped_order()
    receipt = issued(order, "shipped")
    return receipt, fetched(receipts.receipt_url(receipt))


def _change_a_view(receipt: dict[str, Any]) -> None:
    receipt["document"]["employee_views"][0]["purpose"] = "maintenance"


def _remove_a_view(receipt: dict[str, Any]) -> None:
    del receipt["document"]["employee_views"][1]


def _change_a_hash(receipt: dict[str, Any]) -> None:
    receipt["document"]["photos"][0]["sha256"] = "0" * 64


def _backdate_it(receipt: dict[str, Any]) -> None:
    receipt["document"]["issued_at"] = "2020-01-01T00:00:00.000000Z"


def _swap_the_signature(receipt: dict[str, Any]) -> None:
    # The lab's genuine signature, of another customer's receipt.
    other, _ = shipped_order()
    receipt["signature"] = issued(other, "shipped").signature


@pytest.mark.parametrize(
    "tamper", [_change_a_view, _remove_a_view, _change_a_hash, _backdate_it, _swap_the_signature]
)
def test_a_tampered_receipt_is_refused_with_the_reason(shipped_receipt, tmp_path, tamper):
    # given a receipt as served, verified intact, and then changed
    _, served = shipped_receipt
    assert receipt_verified(served, tmp_path).returncode == 0
    tamper(served)

    # when the customer verifies it offline
    completed = receipt_verified(served, tmp_path)

    # then it is refused, saying the signature does not cover what the file says
    assert (completed.returncode, completed.stderr) == (1, "")
    assert completed.stdout == bad_signature(tmp_path / "receipt.json") + "\n"


def test_a_receipt_checked_with_another_key_or_a_witness_without_its_checkpoint_is_refused(
    shipped_receipt, tmp_path
):
    # given an intact receipt, a key that is not the lab's, and a witness log that lost the anchoring line
    _, served = shipped_receipt
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(served), encoding="utf-8")
    stranger = public_key_b64(load_private_key("A" * 43 + "=").public_key())
    witness = tmp_path / "other-witness.jsonl"
    witness.write_text("", encoding="utf-8")

    # when verified with each
    other_key = verifier_run_without_django(["--receipt", str(path), "--public-key", stranger], tmp_path)
    no_line = receipt_verified(served, tmp_path, "--witness", str(witness))

    # then both are refused, naming why
    stranger_id = public_key_fingerprint(load_public_key(stranger))[:16]
    assert (other_key.returncode, no_line.returncode) == (1, 1)
    assert other_key.stdout == (
        f"{bad_signature(path)}; the receipt names key {key_id()}, the public key given is {stranger_id}\n"
    )
    checkpoint = served["document"]["anchor"]["checkpoint"]
    assert no_line.stdout == (
        f"TAMPERED: not_witnessed in {path}: the anchoring checkpoint (seq {checkpoint['seq']}, signed at"
        f" {checkpoint['signed_at']}) is not in the witness log\n"
    )


def _anchor_hashes_another_body(document: dict[str, Any]) -> None:
    document["anchor"]["body_sha256"] = "0" * 64


def _anchoring_checkpoint_signature_changed(document: dict[str, Any]) -> None:
    checkpoint = document["anchor"]["checkpoint"]
    signature = checkpoint["signature"]
    # Another base64 letter for the first: still well-formed, no longer the lab's signature.
    checkpoint["signature"] = ("B" if signature[0] != "B" else "C") + signature[1:]


def _record_at_the_checkpoints_seq(document: dict[str, Any]) -> None:
    document["anchor"]["record"]["seq"] = document["anchor"]["checkpoint"]["seq"]


def _record_at_the_start_of_its_lane(document: dict[str, Any]) -> None:
    # Its seq still after the checkpoint's, its place in its lane not after what the checkpoint signed there.
    document["anchor"]["record"]["lane_seq"] = 0


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        (_anchor_hashes_another_body, "anchor_mismatch"),
        (_anchoring_checkpoint_signature_changed, "bad_checkpoint_signature"),
        (_record_at_the_checkpoints_seq, "anchor_mismatch"),
        (_record_at_the_start_of_its_lane, "anchor_mismatch"),
    ],
)
def test_a_receipt_the_lab_key_signed_over_a_wrong_anchor_is_refused(shipped_receipt, tmp_path, damage, kind):
    # given a receipt as served, anchored after a checkpoint, then its anchor damaged and the document
    # signed again with the lab's own key: the signature holds, only the anchor's checks can refuse it
    _, served = shipped_receipt
    assert served["document"]["anchor"]["checkpoint"] is not None
    damage(served["document"])
    served["signature"] = receipt_sign(private_key=signing_key(), document=served["document"])

    # when the customer verifies it offline
    completed = receipt_verified(served, tmp_path)

    # then it is refused, naming what of the anchor is wrong
    assert (completed.returncode, completed.stderr) == (1, ""), completed.stdout
    assert completed.stdout.startswith(f"TAMPERED: {kind} in "), completed.stdout


NEW_SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))


def test_a_receipt_issued_after_a_key_rotation_before_the_new_keys_first_checkpoint_verifies(
    settings, tmp_path
):
    # given a checkpoint signed with the old key, then the key rotated as the README says (the new key
    # signs, the old one retired, a new witness log) and no checkpoint signed with the new key yet
    checkpoint_write()
    old_public = public_key_b64(public_key())
    settings.AUDIT_SIGNING_KEY = base64.b64encode(NEW_SIGNING_KEY.private_bytes_raw()).decode()
    settings.AUDIT_RETIRED_PUBLIC_KEYS = [old_public]
    settings.AUDIT_WITNESS = (tmp_path / "witness-b" / "checkpoints.jsonl").as_uri()
    assert public_key_b64(public_key()) != old_public

    # when an order ships and its receipt is issued
    order, _ = shipped_order()
    receipt = issued(order, "shipped")
    served = fetched(receipts.receipt_url(receipt))

    # then the customer's verifier, with the new key, finds it intact: it is anchored to no checkpoint (the
    # old key's would not verify with the key that signed the receipt)
    completed = receipt_verified(served, tmp_path)
    assert (completed.returncode, completed.stderr) == (0, ""), completed.stdout
    assert "(no checkpoint before it)" in completed.stdout
    assert (served["key_id"], served["document"]["anchor"]["checkpoint"]) == (key_id(), None)
    # and once the new key's first checkpoint is written, it is covered by it in the new witness log
    covering = checkpoint_write()
    witnessed = receipt_verified(served, tmp_path, "--witness", str(witness_path()))
    assert witnessed.returncode == 0, witnessed.stdout
    assert witnessed.stdout.endswith(
        f"covered by the witnessed checkpoint seq {covering.seq} signed at {covering.signed_at}\n"
    )


# --- purged by retention ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("_checkpointed")
def test_the_retention_purge_issues_a_receipt_with_when_each_photo_key_was_destroyed(
    django_capture_on_commit_callbacks, tmp_path
):
    # given a shipped order whose two photos were each seen once; before the purge no purge receipt is due
    order, _ = shipped_order()
    assert receipts.receipt_issue(order=order, reason="purged") is None

    # when the retention sweep purges its photos 30 days after shipping
    with django_capture_on_commit_callbacks(execute=True):
        assert order.shipped_at is not None
        swept = retention.retention_sweep(now=order.shipped_at + timedelta(days=30))
    assert swept[retention_rules.RULE_SHIPPED] == 2
    messages = broker_tasks("default")
    assert messages.count(("privacy.receipt_issue", {"order_id": order.pk, "reason": "purged"})) >= 2
    receipt = issued(order, "purged")

    # then the receipt gives the exact time each photo's data key was destroyed, and the views
    document = json.loads(receipt.document)
    assert [photo["data_key_destroyed_at"] is not None for photo in document["photos"]] == [True, True]
    assert document["photos"] == photos_expected(order)
    assert [(view["purpose"], view["role"]) for view in document["employee_views"]] == [
        ("packaging", "packer"),
        ("packaging", "supervisor"),
    ]
    assert document["employee_views"] == employee_views(order)
    assert (document["reason"], document["order_ref"]) == ("purged", order.ref)
    # and it verifies offline; a later key-destruction time written into it is refused
    served = fetched(receipts.receipt_url(receipt))
    assert receipt_verified(served, tmp_path).returncode == 0
    served["document"]["photos"][0]["data_key_destroyed_at"] = "2099-01-01T00:00:00.000000Z"
    assert receipt_verified(served, tmp_path).stdout.startswith("TAMPERED: bad_signature")
    # and the message for the other photo finds the receipt issued: one per order and reason
    assert issued(order, "purged").pk == receipt.pk
    assert PrivacyReceipt.objects.filter(order_ref=order.ref).count() == 1


def test_no_purge_receipt_while_one_photo_of_the_order_is_kept():
    # given a shipped order of two photos
    order, _ = shipped_order()
    first, second = photos_of(order)

    # when one photo is purged: no "purged" receipt, the other photo is still kept
    assert asset_purge(asset_id=first.pk, rule=retention_rules.RULE_SHIPPED, cutoffs=None)
    assert receipts.receipt_issue(order=order, reason="purged", mail=False) is None
    assert not PrivacyReceipt.objects.filter(order_ref=order.ref, reason="purged").exists()

    # when the other is purged too, the receipt is issued
    assert asset_purge(asset_id=second.pk, rule=retention_rules.RULE_SHIPPED, cutoffs=None)
    receipt = receipts.receipt_issue(order=order, reason="purged", mail=False)
    assert receipt is not None
    assert [
        photo["data_key_destroyed_at"] is not None for photo in json.loads(receipt.document)["photos"]
    ] == [
        True,
        True,
    ]


# --- erasure ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("_checkpointed")
def test_erasure_mails_receipts_that_stay_readable_after_the_account_is_gone(
    api, django_capture_on_commit_callbacks, mailoutbox, tmp_path
):
    # given a customer with a shipped order (two photos, two employee views) and a photo never ordered
    customer = new_customer()
    address = customer.email
    order, _ = shipped_order(customer)
    loose = asset_for(customer)
    api.force_authenticate(customer)

    # when they erase their account
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    # then the answer links a receipt for the order and one for the photo in no order
    assert response.status_code == 200, response.json()
    assert response["Cache-Control"] == "private, no-store"
    by_order = {link["order_ref"]: link for link in response.json()["receipts"]}
    assert sorted(by_order) == ["", order.ref]
    assert {link["reason"] for link in by_order.values()} == {"erased"}
    for link in by_order.values():
        assert link["url"] == receipts.receipt_url(PrivacyReceipt.objects.get(pk=link["id"]))
    # and both links were mailed, in one message, to the address the account had before it was wiped
    [mailed] = [message for message in mailoutbox if "privacy receipt" in message.subject]
    assert (mailed.to, mailed.subject) == ([address], "Your data is erased: your privacy receipts")
    assert f"Order {order.ref}: {by_order[order.ref]['url']}" in mailed.body
    assert f"Photos in no order: {by_order['']['url']}" in mailed.body
    customer.refresh_from_db()
    assert (customer.is_active, customer.email) == (False, f"erased-{customer.public_id}@invalid")

    # and each link still answers the signed receipt, with the keys' destruction times and the views
    order_document = fetched(by_order[order.ref]["url"])["document"]
    assert order_document["photos"] == photos_expected(order)
    assert [photo["data_key_destroyed_at"] is not None for photo in order_document["photos"]] == [True, True]
    assert order_document["employee_views"] == employee_views(order)
    loose.refresh_from_db()
    served = fetched(by_order[""]["url"])
    assert served["document"]["order_ref"] is None
    assert served["document"]["photos"] == [
        {"asset_id": str(loose.pk), "sha256": loose.sha256, "data_key_destroyed_at": destroyed_at(loose)}
    ]
    assert served["document"]["employee_views"] == []
    completed = receipt_verified(served, tmp_path)
    assert (
        completed.returncode,
        completed.stdout.startswith(f"OK: receipt {by_order['']['id']} (erased,"),
    ) == (
        0,
        True,
    )
    assert audit_verify_database().problem is None


def test_a_failing_mail_server_costs_the_erasures_answer_one_send_not_one_per_receipt(
    api, django_capture_on_commit_callbacks, settings
):
    # given a customer with three shipped orders: three receipts to mail after the erasure, in its request
    customer = new_customer()
    for _ in range(3):
        shipped_order(customer)
    api.force_authenticate(customer)
    settings.EMAIL_BACKEND = "tests.support.mail.StalledServerEmailBackend"
    StalledServerEmailBackend.attempts = 0

    # when they erase their account while the mail server fails every send
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    # then the answer, with every link, comes after one failed send; before, each receipt waited its own
    # EMAIL_TIMEOUT (10 s), and six of them passed gunicorn's 60 s: a 502, and the links lost
    assert response.status_code == 200, response.json()
    assert len(response.json()["receipts"]) == 3
    assert StalledServerEmailBackend.attempts == 1


def test_an_erasure_mails_every_receipt_link_in_one_message_over_one_connection(
    api, django_capture_on_commit_callbacks, settings
):
    # given a customer with four shipped orders and a photo never ordered: five receipts, and a mail server
    # that takes its time over each message
    customer = new_customer()
    address = customer.email
    orders = [shipped_order(customer)[0] for _ in range(4)]
    asset_for(customer)
    api.force_authenticate(customer)
    settings.EMAIL_BACKEND = "tests.support.mail.SlowEmailBackend"
    SlowEmailBackend.reset()

    # when they erase their account
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    # then the answer lists every link, and one message over one connection carried them all: the answer
    # waits for one send whatever the number of orders (before: five messages, five connections, each its
    # own wait, and with enough orders or a slow relay the web server's timeout killed the request)
    assert response.status_code == 200, response.json()
    links = response.json()["receipts"]
    assert sorted(link["order_ref"] for link in links) == sorted(["", *(order.ref for order in orders)])
    assert (SlowEmailBackend.connections, SlowEmailBackend.messages) == (1, 1)
    [mailed] = mail.outbox
    assert (mailed.to, [link["url"] in mailed.body for link in links]) == ([address], [True] * 5)
    assert set(PrivacyReceipt.objects.values_list("email_status", "email_attempts")) == {("sent", 1)}


def test_erasure_receipts_issued_again_give_the_one_receipt_of_the_photos_in_no_order():
    # given a customer with a photo in no order, whose erasure's receipts were issued
    customer = new_customer()
    asset_for(customer)
    [first] = receipts.receipts_issue_for_erasure(user=customer)

    # when they are issued again (an erasure applied again)
    [again] = receipts.receipts_issue_for_erasure(user=customer)

    # then it is the same receipt: one per customer for the photos in no order
    assert again.pk == first.pk
    assert PrivacyReceipt.objects.filter(customer=customer, order_ref="").count() == 1


# --- who may read a receipt ------------------------------------------------------------------------------


def test_only_the_link_or_its_owner_reads_a_receipt(api, shipped_receipt):
    receipt, served = shipped_receipt
    owner = User.objects.get(pk=receipt.customer_id)
    path = f"/api/v1/receipts/{receipt.pk}"
    token = urlsplit(receipts.receipt_url(receipt)).query.removeprefix("token=")

    # another customer, with the id alone, or with a wrong token: as if there were no such receipt
    api.force_authenticate(new_customer())
    other = api.get(path)
    wrong = api.get(f"{path}?token={token[:-2]}xx")
    listed = api.get("/api/v1/me/receipts")
    api.force_authenticate(None)
    anonymous = api.get(path)

    assert [(r.status_code, r.json()["code"]) for r in (other, wrong, anonymous)] == [
        (404, "receipt_not_found")
    ] * 3
    assert listed.json()["results"] == []
    # the owner reads it signed in, without the token; anyone reads it with the token, as a header too
    api.force_authenticate(owner)
    mine = api.get(path)
    own_list = api.get("/api/v1/me/receipts")
    # the list carries each receipt's link, its token: never kept by a cache
    assert own_list.get("Cache-Control") == "private, no-store"
    api.force_authenticate(None)
    by_header = api.get(path, HTTP_X_RECEIPT_TOKEN=token)
    assert (mine.status_code, mine.json(), by_header.json()) == (200, served, served)
    assert own_list.json()["results"] == [
        {
            "id": str(receipt.pk),
            "order_ref": receipt.order_ref,
            "reason": "shipped",
            "created_at": own_list.json()["results"][0]["created_at"],
            "url": receipts.receipt_url(receipt),
        }
    ]


def test_the_openapi_schema_documents_the_receipt_endpoints(api):
    schema = api.get("/api/v1/schema/?format=json").json()

    operation = schema["paths"]["/api/v1/receipts/{receipt_id}"]["get"]
    assert sorted(parameter["name"] for parameter in operation["parameters"]) == [
        "X-Receipt-Token",
        "receipt_id",
        "token",
    ]
    assert sorted(operation["responses"]) == ["200", "400", "401", "404", "429", "500", "503"]
    assert "get" in schema["paths"]["/api/v1/me/receipts"]


# --- a lost message ---------------------------------------------------------------------------------------


def test_the_sweep_issues_and_mails_what_a_lost_message_left_undone(mailoutbox, settings):
    # given an order shipped a few minutes ago whose task message was lost (no receipt, no e-mail)
    settings.NOTIFY_SWEEP_SECONDS = 60
    order, _ = shipped_order()
    Order.objects.filter(pk=order.pk).update(shipped_at=timezone.now() - timedelta(minutes=5))

    # when the sweep runs, and again after the grace given to the e-mail's own message
    first = receipts.receipts_sweep()
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        second = receipts.receipts_sweep()
        third = receipts.receipts_sweep()

    # then the receipt was issued once and mailed once
    assert (first, second, third) == (
        {"shipped": 1, "purged": 0, "emails_sent": 0},
        {"shipped": 0, "purged": 0, "emails_sent": 1},
        {"shipped": 0, "purged": 0, "emails_sent": 0},
    )
    receipt = PrivacyReceipt.objects.get(order_ref=order.ref)
    assert (receipt.reason, receipt.email_status, receipt.email_attempts) == ("shipped", "sent", 1)
    assert order.customer is not None
    assert [message.to for message in mailoutbox] == [[order.customer.email]]


def owed_receipts(count: int) -> list[Order]:
    """`count` orders shipped a few minutes ago whose receipts the sweep issued, their e-mails now owed (the
    e-mail's own message lost)."""
    orders = [shipped_order()[0] for _ in range(count)]
    Order.objects.filter(pk__in=[order.pk for order in orders]).update(
        shipped_at=timezone.now() - timedelta(minutes=5)
    )
    assert receipts.receipts_sweep()["shipped"] == count
    return orders


def test_a_sweep_stops_sending_when_the_mail_server_is_down_and_the_next_sends_the_rest(mailoutbox, settings):
    # given five receipts whose e-mails are owed
    settings.NOTIFY_SWEEP_SECONDS = 60
    owed_receipts(5)

    # when the sweep runs while the mail server fails every send (each after EMAIL_TIMEOUT: before, the
    # sweep tried every owed e-mail, 200 of them, and ran into its task's time limit run after run)
    settings.EMAIL_BACKEND = "tests.support.mail.StalledServerEmailBackend"
    StalledServerEmailBackend.attempts = 0
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        down = receipts.receipts_sweep()
        attempts = StalledServerEmailBackend.attempts
        # and again once the mail server is back
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        back = receipts.receipts_sweep()
    with time_machine.travel(timezone.now() + receipts.EMAIL_CLAIM_LEASE + timedelta(minutes=3)):
        later = receipts.receipts_sweep()  # the failed ones' claims have run out

    # then it gave up after a few failures in a row, the next sweep sent the e-mails it had not tried, and
    # the failed ones went once their claims ran out: every e-mail once
    assert attempts == receipts.SWEEP_FAILURES_IN_A_ROW == 3
    assert (down["emails_sent"], back["emails_sent"], later["emails_sent"]) == (0, 2, 3)
    assert len(mailoutbox) == 5
    assert set(PrivacyReceipt.objects.values_list("email_status", flat=True)) == {"sent"}


def test_a_sweep_out_of_time_leaves_the_rest_of_the_e_mails_to_the_next(mailoutbox, settings, monkeypatch):
    # given three receipts whose e-mails are owed, and a sweep with time for one e-mail
    settings.NOTIFY_SWEEP_SECONDS = 60
    owed_receipts(3)
    monkeypatch.setattr(receipts, "SWEEP_TIME_BUDGET_SECONDS", 0.0)

    # when the sweep runs three times
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        sent = [receipts.receipts_sweep()["emails_sent"] for _ in range(3)]

    # then each sent one
    assert sent == [1, 1, 1]
    assert len(mailoutbox) == 3


def test_the_sweep_leaves_alone_orders_shipped_and_e_mails_owed_before_its_window(mailoutbox, settings):
    # given an order shipped 30 days ago that has no receipt (shipped before receipts existed)
    settings.NOTIFY_SWEEP_SECONDS = 60
    long_ago, _ = shipped_order()
    Order.objects.filter(pk=long_ago.pk).update(shipped_at=timezone.now() - timedelta(days=30))
    # and a receipt issued 8 days ago whose e-mail is still owed
    owed, _ = shipped_order()
    Order.objects.filter(pk=owed.pk).update(shipped_at=timezone.now() - timedelta(days=8))
    receipt = receipts.receipt_issue(order=owed, reason="shipped", mail=False)
    assert receipt is not None
    PrivacyReceipt.objects.filter(pk=receipt.pk).update(created_at=timezone.now() - timedelta(days=8))

    # when the sweep runs
    counts = receipts.receipts_sweep()

    # then it issues nothing for the old order and mails nobody out of the blue
    assert counts == {"shipped": 0, "purged": 0, "emails_sent": 0}
    assert not PrivacyReceipt.objects.filter(order_ref=long_ago.ref).exists()
    assert PrivacyReceipt.objects.get(pk=receipt.pk).email_status == "pending"
    assert mailoutbox == []
