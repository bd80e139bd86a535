"""The signer checks each lane's head row against the last record it walked in that lane: a record deleted
behind the triggers' back, or a head row rewritten, is refused as head_mismatch before anything is signed; and
`audit_verify` reports the same head_mismatch at once, without waiting for the signer's next round."""

from __future__ import annotations

import pytest

from lab.audit.database_verify import audit_verify_database
from lab.audit.models import AuditRecord
from lab.audit.signer import AuditChainBroken, checkpoint_write
from tests.builders import audit_write
from tests.support.audit_verifiers import witness_path
from tests.support.dba import dba

pytestmark = pytest.mark.django_db


def _verified_problem() -> tuple[str, int | None] | None:
    problem = audit_verify_database().problem
    return None if problem is None else (problem.kind, problem.seq)


def _witnessed_then_two_more() -> AuditRecord:
    """Three records and a witnessed checkpoint of them, then two more records; the last of them, the log
    verified whole."""
    audit_write(3)
    checkpoint_write()
    audit_write(2)
    last = AuditRecord.objects.order_by("-seq").first()
    assert last is not None
    assert _verified_problem() is None
    return last


def test_a_lanes_last_record_deleted_under_its_head_row_is_refused_as_head_mismatch():
    # given a witnessed checkpoint, then two more records in lane 1
    last = _witnessed_then_two_more()
    # when a database superuser deletes the last one (triggers off), its lane's head row left pointing at it
    dba(
        "SET LOCAL session_replication_role = replica;"
        " DELETE FROM audit_auditrecord WHERE seq = %s;"
        " SET LOCAL session_replication_role = DEFAULT",
        last.seq,
    )
    # then audit_verify names the head row at the deleted record's seq
    assert _verified_problem() == ("head_mismatch", last.seq)
    # and the signer refuses, naming the same, and signs nothing
    witnessed = witness_path().read_bytes()
    with pytest.raises(AuditChainBroken) as refused:
        checkpoint_write()
    assert refused.value.problem.kind == "head_mismatch"
    assert refused.value.problem.seq == last.seq
    assert witness_path().read_bytes() == witnessed


def test_a_head_row_rewritten_at_its_own_position_is_refused_as_head_mismatch():
    # given a witnessed checkpoint, then two more records in lane 1
    last = _witnessed_then_two_more()
    # when a database superuser rewrites the lane's head hash, its position left as it was
    dba(
        "SET LOCAL session_replication_role = replica;"
        " UPDATE audit_audithead SET hash = %s WHERE id = %s;"
        " SET LOCAL session_replication_role = DEFAULT",
        "e" * 64,
        last.lane,
    )
    # then audit_verify, and the signer, name the head row at that record's seq
    assert _verified_problem() == ("head_mismatch", last.seq)
    with pytest.raises(AuditChainBroken) as refused:
        checkpoint_write()
    assert refused.value.problem.kind == "head_mismatch"
    assert refused.value.problem.seq == last.seq
