"""An audit record, and a signed checkpoint, is timed on the database's clock, whichever host writes it; and
the witness's freshness is judged on it.

A lab's records come from every web process (the gate) and every worker (production reads, purges), on as
many hosts. Timed by each host's own clock, a host two hours off wrote views two hours off: out of seq order,
outside or inside a person's shift by mistake (the auditors' rules compare the two), and with a freshness
the witness check reads wrongly. The record's time is read with its lane's lock (one statement already sent),
and it is what the record's hash and mac cover: every record still verifies.

Both ways a lane is locked are run: in a transaction of the append's own (BEGIN and the lock in one message,
answered in the text format) and inside a caller's transaction (the prepared statement's binary answer).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from django.db import transaction

from lab.audit.database_verify import audit_verify_database
from lab.audit.models import AuditRecord
from lab.audit.records import Entry, audit_append
from lab.audit.signer import checkpoint_write
from lab.lib.clock import database_now
from tests.builders import preview_entry
from tests.support.clock import host_clock_off

pytestmark = pytest.mark.django_db(transaction=True)

SKEW = timedelta(hours=2)


def _close_to_the_database_s_clock(at: datetime) -> bool:
    return abs(at - database_now()) < timedelta(seconds=30)


def _entry() -> Entry:
    return preview_entry("technician-1", asset_id="asset-1")


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
@pytest.mark.parametrize("opens_transaction", [True, False], ids=["opens-its-transaction", "in-an-open-one"])
def test_a_record_written_on_a_host_whose_clock_is_off_bears_the_database_s_time(
    monkeypatch, offset, opens_transaction
):
    with host_clock_off(offset, monkeypatch), transaction.atomic():
        if not opens_transaction:
            database_now()  # the caller's transaction is open before the append
        returned = audit_append(_entry(), ends_transaction=opens_transaction)

    stored = AuditRecord.objects.get(seq=returned.seq)
    assert returned.occurred_at == stored.occurred_at
    assert _close_to_the_database_s_clock(stored.occurred_at)
    assert audit_verify_database().problem is None  # the time the chain hashed is the one stored


def test_records_from_hosts_whose_clocks_disagree_follow_seq_in_time(monkeypatch):
    written = []
    for offset in (SKEW, -SKEW, timedelta(0), SKEW):
        with host_clock_off(offset, monkeypatch), transaction.atomic():
            written.append(audit_append(_entry(), ends_transaction=True))

    times = list(
        AuditRecord.objects.filter(seq__in=[r.seq for r in written])
        .order_by("seq")
        .values_list("occurred_at", flat=True)
    )
    assert times == sorted(times)
    assert audit_verify_database().problem is None


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_checkpoint_signed_on_a_host_whose_clock_is_off_bears_the_database_s_time(monkeypatch, offset):
    with transaction.atomic():
        audit_append(_entry(), ends_transaction=True)

    with host_clock_off(offset, monkeypatch):
        signed = checkpoint_write()

    assert _close_to_the_database_s_clock(datetime.fromisoformat(signed.signed_at))
    assert audit_verify_database().problem is None


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_verifier_on_a_host_whose_clock_is_off_judges_the_witness_fresh_on_the_database_s_clock(
    monkeypatch, offset
):
    # given a log whose last checkpoint was just signed
    with transaction.atomic():
        audit_append(_entry(), ends_transaction=True)
    checkpoint_write()

    # when a host two hours off verifies it (before: from two hours ahead the witness was "stale")
    with host_clock_off(offset, monkeypatch):
        result = audit_verify_database()

    # then it is whole and fresh
    assert result.problem is None


def test_a_verifier_whose_clock_is_behind_still_sees_a_signer_that_stopped(monkeypatch, settings):
    # given a signer that stopped: its last checkpoint older than two intervals, on the database's clock
    settings.AUDIT_CHECKPOINT_SECONDS = 1
    with transaction.atomic():
        audit_append(_entry(), ends_transaction=True)
    checkpoint_write()
    time.sleep(2.5)

    # when a host two hours behind verifies the log (before: to it the checkpoint was signed in its future,
    # fresh for two more hours)
    with host_clock_off(-SKEW, monkeypatch):
        result = audit_verify_database()

    # then the witness is stale
    assert result.problem is not None and result.problem.kind == "stale_witness"
