"""A photo purged (retention, erasure) after the gate's owner path decided but before it read the photo: the
owner's download and the proofs answer 410 `image_unavailable` and record no access, as the staff path
does; they answered 500."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from lab.audit.models import AuditRecord
from lab.customer_data.photo_purge import asset_purge
from lab.customer_data.retention_rules import RULE_CANCELLED, RULE_NEVER_ORDERED
from lab.orders.models import Asset
from lab.privacy.vault import vault_read
from tests.builders import asset_for, order_move, order_with_items

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("demo_catalog")]

PROBLEM = "application/problem+json"


@pytest.fixture
def purge_lands_before_the_read(monkeypatch, django_capture_on_commit_callbacks) -> Callable[[str], None]:
    """The photo is purged through the real purge service, and its files deleted as after that purge's commit,
    the moment the owner path reads it: the purge another process commits between the gate's checks and its
    read."""

    def arrange(rule: str) -> None:
        def purged_then_read(**arguments):
            asset = Asset.objects.get(blob_name=arguments["name"])
            with django_capture_on_commit_callbacks(execute=True):
                assert asset_purge(asset_id=asset.pk, rule=rule, cutoffs=None)
            return vault_read(**arguments)

        monkeypatch.setattr("lab.gate.owner.vault_read", purged_then_read)

    return arrange


def assert_gone_and_unrecorded(response, asset_id: uuid.UUID) -> None:
    assert (response.status_code, response["Content-Type"], response.json()["code"]) == (
        410,
        PROBLEM,
        "image_unavailable",
    )
    assert Asset.objects.get(pk=asset_id).status == Asset.Status.PURGED
    # the purge's own record only: no access was recorded for bytes nobody was given
    assert list(AuditRecord.objects.values_list("action", flat=True)) == ["image.purge"]


def test_the_owners_download_racing_a_purge_answers_410(api, customer, purge_lands_before_the_read):
    # given a customer's photo, purged the moment the gate's owner path reads it
    photo = asset_for(customer)
    purge_lands_before_the_read(RULE_NEVER_ORDERED)

    # when the customer downloads it
    response = api.get(f"/api/v1/assets/{photo.pk}/content")

    # then the photo is gone, not a server error
    assert_gone_and_unrecorded(response, photo.pk)


def test_a_quote_items_proof_racing_a_purge_answers_410(api, customer, purge_lands_before_the_read):
    # given a customer's photo, purged the moment the proof's read of it goes through the gate
    photo = asset_for(customer)
    purge_lands_before_the_read(RULE_NEVER_ORDERED)

    # when the customer asks for its proof
    response = api.post("/api/v1/proofs", {"sku": "PRINT-4X6-LUSTRE", "asset": str(photo.pk)}, format="json")

    # then
    assert_gone_and_unrecorded(response, photo.pk)


def test_an_ordered_items_proof_racing_a_purge_answers_410(api, customer, purge_lands_before_the_read):
    # given a cancelled order of the customer's, whose photo retention purges as its proof is read
    order = order_move(order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], customer=customer), "cancelled")
    purge_lands_before_the_read(RULE_CANCELLED)

    # when the customer asks for the ordered item's proof
    response = api.get(f"/api/v1/orders/{order.ref}/items/1/proof")

    # then
    assert_gone_and_unrecorded(response, order.items.get().asset_id)
