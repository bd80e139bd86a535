"""On PostgreSQL the database itself protects the auditors' review items as it protects the log: an item is
never deleted nor its table truncated, and the one change it takes is its sign-off (reviewer, time and note
set once, on an item not signed off; nothing else about it changes).

Before, the table was a plain one: with the app's role anyone could make a flagged view look signed off by an
auditor, or delete an open item (a maintenance view among them), and leave no trace. The app's role may still
sign an item off in the table, since that is how the app signs off: the console shows a sign-off as signed
only when the chain holds its `audit.review.sign_off` record (lab.gate.selectors). As for the log, no setting
turns the triggers off; a superuser can (the threat model's DBA), and what it changes is caught the same way.
The test suite's flush between transactional tests runs with triggers off (tests/conftest.py), as for the log.
"""

from django.db import migrations

TABLE = "audit_reviewitem"

SIGN_OFF_ONLY = """
CREATE OR REPLACE FUNCTION audit_review_sign_off_only() RETURNS trigger AS $$
BEGIN
    IF OLD.reviewed_at IS NULL AND OLD.reviewed_by_id IS NULL AND OLD.note = ''
        AND NEW.reviewed_at IS NOT NULL AND NEW.reviewed_by_id IS NOT NULL
        AND NEW.id = OLD.id AND NEW.record_id = OLD.record_id AND NEW.reason = OLD.reason
        AND NEW.created_at = OLD.created_at THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'review items are signed off once and never changed otherwise: %% of item %% refused',
        TG_OP, OLD.id USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def protect(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(SIGN_OFF_ONLY)
    schema_editor.execute(
        f"CREATE TRIGGER {TABLE}_sign_off_only BEFORE UPDATE ON {TABLE} "
        f"FOR EACH ROW EXECUTE FUNCTION audit_review_sign_off_only();"
    )
    # audit_refuse_change (migration 0005): refuses whatever it is called for, with no escape.
    schema_editor.execute(
        f"CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
        f"FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();"
    )
    schema_editor.execute(
        f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();"
    )


def unprotect(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in ("sign_off_only", "no_delete", "no_truncate"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_{name} ON {TABLE};")
    schema_editor.execute("DROP FUNCTION IF EXISTS audit_review_sign_off_only();")


class Migration(migrations.Migration):
    dependencies = [("audit", "0009_records_in_lanes_only")]

    operations = [migrations.RunPython(protect, unprotect)]
