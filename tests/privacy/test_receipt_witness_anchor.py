"""A receipt checked against the lab's witness is refused when a checkpoint signed with the lab's key puts
another hash at the receipt's record's lane position: the log holds another record there."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from lab.audit.canonical import utc_timestamp
from lab.audit.checkpoints import sign_checkpoint
from lab.audit.configured import key_id, signing_key
from lab.audit.lane_heads import lanes_checkpoint_head
from lab.audit.signer import checkpoint_write
from lab.customer_data import receipts
from lab.lib.clock import database_now
from tests.builders import TO_PACKED, new_customer, order_for, order_move
from tests.support.audit_verifiers import receipt_verified, witness_path

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_a_witness_that_signs_another_hash_at_the_receipts_record_refuses_the_receipt(tmp_path: Path):
    # given a shipped order's receipt as served, after a signed checkpoint
    checkpoint_write()
    order = order_for(new_customer())
    order_move(order, *TO_PACKED, "shipped")
    receipt = receipts.receipt_issue(order=order, reason="shipped", mail=False)
    assert receipt is not None
    served = receipts.receipt_body(receipt)
    record = served["document"]["anchor"]["record"]
    # and the lab's witness, whose next checkpoint (signed with the lab's key) puts another hash at the
    # receipt's record's lane position
    heads = [(record["lane"], record["lane_seq"], record["seq"], "f" * 64)]
    seq, head_hash = lanes_checkpoint_head(heads)
    other = sign_checkpoint(
        private_key=signing_key(),
        key_id=key_id(),
        seq=seq,
        head_hash=head_hash,
        signed_at=utc_timestamp(database_now() + timedelta(seconds=1)),
        lanes=heads,
        is_settled=True,
    )
    witness = tmp_path / "witness.jsonl"
    witness.write_text(witness_path().read_text() + other.to_line() + "\n")

    # when the customer's verifier checks it against that witness
    said = receipt_verified(served, tmp_path, "--witness", str(witness))

    # then it is refused as anchor_mismatch, not reported covered by that checkpoint
    assert said.returncode == 1, said.stdout + said.stderr
    assert said.stdout.startswith("TAMPERED: anchor_mismatch"), said.stdout
