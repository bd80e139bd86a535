"""Every record inserted from now on is in a lane, at a position, with a positive seq (PostgreSQL).

The app's role may insert records (that is how it appends), and nothing stopped it from inserting rows the
signer never reads: a row in the format from before lanes (lane_seq NULL; `UNIQUE (lane, lane_seq)` ignores
NULLs) at an old free seq, or one with a seq of 0 or less. The signer reads the rows from before lanes only
above lane 1's witnessed head and no row at seq 0 or below, so the next checkpoint signed over them without a
word (only a full `audit_verify` walk tripped on them). No writer of the app makes such a row: since lanes
(audit/0006) every append names its lane and position, and seq comes from the sequence (or max + 1 on
SQLite).

CHECK constraints, NOT VALID: enforced on every row inserted (or updated) from now on, never checked against
the rows already there, so a lab's records from before lanes stay as they are and adding them reads no row.
A CHECK costs the append no statement and no round trip. The app's role owns no table and cannot drop them;
a superuser can (the threat model's DBA, caught by macs and the witness, not by the database). They are not
in the model's state: Django has no NOT VALID constraint, and one it validated would refuse the rows from
before lanes. The embedded SQLite lab is skipped: it has no such insider, and its one writer
(records._append_portable) always writes lane 1, its next position and seq max + 1.
"""

from django.db import migrations

CONSTRAINTS = {
    "audit_record_seq_positive": "seq > 0",
    "audit_record_in_a_lane": "lane_seq IS NOT NULL AND lane_seq >= 1 AND lane BETWEEN 1 AND 16",
}


def add(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, condition in CONSTRAINTS.items():
        schema_editor.execute(
            f"ALTER TABLE audit_auditrecord ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in CONSTRAINTS:
        schema_editor.execute(f"ALTER TABLE audit_auditrecord DROP CONSTRAINT IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("audit", "0008_head_not_moved_error")]

    operations = [migrations.RunPython(add, drop)]
