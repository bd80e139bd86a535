"""The app's database role may insert records (that is how it appends), but not rows the signer never reads:
a record in the format from before lanes (no lane_seq) at an old free seq, or one with a seq of 0 or less.
The signer reads such rows only above lane 1's witnessed head, so it signed over them without a word;
CHECK constraints (migration audit/0009, NOT VALID: the rows from before lanes stay) refuse them, at no cost
to the append, and the app's role cannot drop them (it owns no table)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from lab.audit.canonical import GENESIS_HASH, LANE_FIELDS, seal_record
from lab.audit.database_verify import audit_verify_database
from lab.audit.models import AuditRecord
from lab.audit.records import record_as_chain_dict
from lab.audit.signer import checkpoint_write
from tests.builders import audit_write
from tests.support.audit_insiders import as_app_role, record_insert_sql

pytestmark = pytest.mark.django_db
ATTACKER_RECORD_KEY = bytes(range(200, 232))


@pytest.fixture
def free_seq() -> int:
    """A witnessed log of 6 records with one seq no record holds (a writer that rolled back took it)."""
    audit_write(3)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_write(1)
        raise RuntimeError("the decision failed: its record goes with it")
    audit_write(3)
    checkpoint_write()
    seqs = list(AuditRecord.objects.order_by("seq").values_list("seq", flat=True))
    (free,) = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    return free


def junk(*, seq: int, lane: int, lane_seq: int | None) -> dict[str, object]:
    """A record made by someone without the record key, at the given place."""
    last = record_as_chain_dict(AuditRecord.objects.order_by("seq").last())  # type: ignore[arg-type]
    fields = {name: value for name, value in last.items() if name not in LANE_FIELDS}
    fields["actor_id"] = "technician-x"
    if lane_seq is None:
        sealed = seal_record(fields, seq=seq, prev_hash=GENESIS_HASH, record_key=ATTACKER_RECORD_KEY)
        return sealed | {"lane": lane}
    # A position below 1 cannot be hashed; the row is stored all the same, unless the database refuses it.
    sealed = seal_record(
        fields,
        seq=seq,
        prev_hash=GENESIS_HASH,
        record_key=ATTACKER_RECORD_KEY,
        lane=lane,
        lane_seq=max(lane_seq, 1),
    )
    return sealed | {"lane_seq": lane_seq}


JUNK = {
    "a record from before lanes at an old free seq": (None, 1, None, "audit_record_in_a_lane"),
    "seq 0 in an empty lane": (0, 5, 1, "audit_record_seq_positive"),
    "a negative seq in an empty lane": (-7, 5, 1, "audit_record_seq_positive"),
    "position 0 of an empty lane": (None, 5, 0, "audit_record_in_a_lane"),
}


def stored() -> list[tuple[object, ...]]:
    return list(AuditRecord.objects.order_by("seq").values_list("seq", "lane", "lane_seq", "hash"))


@pytest.mark.parametrize("name", JUNK)
def test_the_app_s_role_cannot_insert_a_row_the_signer_would_not_read(free_seq: int, name: str) -> None:
    # given a witnessed log with a free seq, and the app's role
    seq, lane, lane_seq, constraint = JUNK[name]
    row = junk(seq=free_seq if seq is None else seq, lane=lane, lane_seq=lane_seq)
    before = stored()
    # when the role inserts the junk row
    with pytest.raises(IntegrityError) as refused, as_app_role(), connection.cursor() as cursor:
        cursor.execute(*record_insert_sql(row))
    # then the database refuses it by the constraint, nothing changed, and the log still verifies
    assert constraint in str(refused.value)
    assert stored() == before
    assert audit_verify_database().problem is None


def test_the_app_s_role_cannot_drop_the_constraints() -> None:
    # given the constraints the migration added (not validated: the rows from before lanes stay as they are)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, convalidated FROM pg_constraint"
            " WHERE conrelid = 'audit_auditrecord'::regclass AND conname = ANY(%s) ORDER BY conname",
            [["audit_record_in_a_lane", "audit_record_seq_positive"]],
        )
        constraints = cursor.fetchall()
    assert constraints == [("audit_record_in_a_lane", False), ("audit_record_seq_positive", False)]
    # when the app's role tries to drop either
    for name, _ in constraints:
        with pytest.raises(DatabaseError) as refused, as_app_role(), connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE audit_auditrecord DROP CONSTRAINT {name}")
        # then it is not the table's owner
        assert "must be owner" in str(refused.value)
