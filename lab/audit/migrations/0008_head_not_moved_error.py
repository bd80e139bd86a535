"""An append whose lane head did not move fails with its own error, naming no record field.

The insert takes its stored hash from the head row it moved (lab/audit/lanes.py); with no row moved, it used
to fail on the hash column's NOT NULL, whose error carries the whole failing row (who viewed which photo,
from which address) into PostgreSQL's server log. This function, called only when no row moved, says what
happened and nothing else.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_head_not_moved() RETURNS varchar AS $$
BEGIN
    RAISE EXCEPTION 'audit log: the lane''s head moved under its lock; nothing was appended'
        USING ERRCODE = 'serialization_failure';
END;
$$ LANGUAGE plpgsql VOLATILE;
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS audit_head_not_moved();")


class Migration(migrations.Migration):
    dependencies = [("audit", "0007_tickets_and_cases_moved_out")]

    operations = [migrations.RunPython(create, drop)]
