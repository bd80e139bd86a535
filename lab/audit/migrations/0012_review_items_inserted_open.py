"""On PostgreSQL a review item is inserted open, at an id the database draws: whatever id an INSERT names is
replaced by the table's own next one, and an item inserted signed off (a reviewer, a time or a note) is
refused, to the app's role as to anyone.

Before, the app's role could insert rows at the next ids of the items' sequence: the nightly run's and the
gate's inserts, which skip a conflict, then skipped their items without a word, while the chain's queued
record named a sample that had no item. They now skip only an item that exists for its (record, reason) and
check afterwards that every item they meant to insert is there (lab.gate.review, lab.gate.access). As for
migration 0010, a superuser can turn the trigger off (the threat model's DBA): an item the chain's queued
record names and the table lacks is shown on the console (lab.gate.review.review_queued_items_missing).
"""

from django.db import migrations

TABLE = "audit_reviewitem"


def inserted_open(sequence: str) -> str:
    # The sequence's name is fixed when the function is made: a lookup per row (pg_get_serial_sequence)
    # would cost every insert a catalogue query.
    return f"""
CREATE OR REPLACE FUNCTION audit_review_inserted_open() RETURNS trigger AS $$
BEGIN
    IF NEW.reviewed_at IS NOT NULL OR NEW.reviewed_by_id IS NOT NULL OR NEW.note <> '' THEN
        RAISE EXCEPTION 'review items are inserted open: INSERT of a signed-off item refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    NEW.id := nextval('{sequence}');
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""


def protect(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
        (sequence,) = cursor.fetchone()
    schema_editor.execute(inserted_open(sequence))
    schema_editor.execute(
        f"CREATE TRIGGER {TABLE}_inserted_open BEFORE INSERT ON {TABLE} "
        f"FOR EACH ROW EXECUTE FUNCTION audit_review_inserted_open();"
    )


def unprotect(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_inserted_open ON {TABLE};")
    schema_editor.execute("DROP FUNCTION IF EXISTS audit_review_inserted_open();")


class Migration(migrations.Migration):
    dependencies = [("audit", "0011_reviewitem_created_at_db_default")]

    operations = [migrations.RunPython(protect, unprotect)]
