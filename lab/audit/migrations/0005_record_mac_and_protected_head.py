"""Records carry a mac; the head row is protected like the log; TRUNCATE of the audit tables is refused for
everyone (the `lab.allow_audit_truncate` escape of 0002 is gone: no setting a role can SET turns it back on).

The head may only move forward one seq at a time; it is never deleted or truncated. A superuser can still
disable triggers: what it then changes is caught by the record macs and the witness log, not by the database.
"""

from django.db import migrations, models

GENESIS_HASH = "0" * 64

REFUSE = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only: %% on %% refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

ADVANCE = """
CREATE OR REPLACE FUNCTION audit_head_advance() RETURNS trigger AS $$
BEGIN
    IF NEW.id = OLD.id AND NEW.seq = OLD.seq + 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit log is append-only: the head only moves forward by one (%% to %% refused)',
        OLD.seq, NEW.seq USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

# 0002's function, for going back.
REFUSE_WITH_ESCAPE = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('lab.allow_audit_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit log is append-only: %% on %% refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def protect(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        apps.get_model("audit", "AuditHead").objects.get_or_create(id=1, defaults={"hash": GENESIS_HASH})
        return
    schema_editor.execute(REFUSE)
    schema_editor.execute(ADVANCE)
    schema_editor.execute(
        "CREATE TRIGGER audit_audithead_advance_only BEFORE UPDATE ON audit_audithead "
        "FOR EACH ROW EXECUTE FUNCTION audit_head_advance();"
    )
    schema_editor.execute(
        "CREATE TRIGGER audit_audithead_no_delete BEFORE DELETE ON audit_audithead "
        "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();"
    )
    schema_editor.execute(
        "CREATE TRIGGER audit_audithead_no_truncate BEFORE TRUNCATE ON audit_audithead "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();"
    )
    schema_editor.execute(
        "INSERT INTO audit_audithead (id, seq, hash) VALUES (1, 0, %s) ON CONFLICT (id) DO NOTHING;",
        [GENESIS_HASH],
    )


def unprotect(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in ("advance_only", "no_delete", "no_truncate"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS audit_audithead_{name} ON audit_audithead;")
    schema_editor.execute("DROP FUNCTION IF EXISTS audit_head_advance();")
    schema_editor.execute(REFUSE_WITH_ESCAPE)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_maintenance_jobs_and_grant_renewals")]

    operations = [
        migrations.AddField(
            model_name="auditrecord",
            name="mac",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddConstraint(
            model_name="audithead",
            constraint=models.CheckConstraint(condition=models.Q(id=1), name="audit_head_single_row"),
        ),
        migrations.RunPython(protect, unprotect),
    ]
