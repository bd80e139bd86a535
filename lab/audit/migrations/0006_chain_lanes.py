"""The audit log becomes 16 hash chains ("lanes") so that concurrent writers do not wait for each other's
commits (lab/audit/lane_heads.py and canonical.py explain the format). Forward only.

Records keep their rows untouched: a record from before lanes has no lane_seq and stays, in the format it was
hashed in, at lane 1 position seq; lane 1 continues after it. The head row (id 1) is lane 1's head; rows 2..16
start empty. The existing triggers are per row, so they protect every lane's head row as they protected the
one head: a head only moves forward one position at a time, is never deleted, the table never truncated.
Adding columns with a default does not rewrite or update rows, so no trigger has to be switched off.

On PostgreSQL seq now comes from the sequence audit_auditrecord_seq (nextval is not transactional: a writer
that rolls back leaves a gap in seq, never in a lane). The application's role needs USAGE on it (nextval),
never UPDATE (setval).
"""

from django.db import migrations, models

GENESIS_HASH = "0" * 64
LANES = 16


def lanes_and_sequence(apps, schema_editor):
    head = apps.get_model("audit", "AuditHead")
    for lane in range(1, LANES + 1):
        head.objects.get_or_create(id=lane, defaults={"seq": 0, "hash": GENESIS_HASH})
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE SEQUENCE audit_auditrecord_seq AS bigint OWNED BY audit_auditrecord.seq")
    schema_editor.execute(
        "SELECT setval('audit_auditrecord_seq',"
        " COALESCE((SELECT max(seq) FROM audit_auditrecord), 0) + 1, false)"
    )


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_record_mac_and_protected_head")]

    operations = [
        migrations.RemoveConstraint(model_name="audithead", name="audit_head_single_row"),
        migrations.AddConstraint(
            model_name="audithead",
            constraint=models.CheckConstraint(
                condition=models.Q(("id__gte", 1), ("id__lte", 16)), name="audit_head_lane_1_to_16"
            ),
        ),
        migrations.AddField(
            model_name="auditcheckpoint", name="lanes", field=models.TextField(blank=True, default="")
        ),
        migrations.AddField(
            model_name="auditrecord", name="lane", field=models.PositiveSmallIntegerField(default=1)
        ),
        migrations.AddField(
            model_name="auditrecord", name="lane_seq", field=models.BigIntegerField(null=True)
        ),
        migrations.AddConstraint(
            model_name="auditrecord",
            constraint=models.UniqueConstraint(
                fields=("lane", "lane_seq"), name="audit_record_one_per_lane_position"
            ),
        ),
        migrations.AddConstraint(
            model_name="auditrecord",
            constraint=models.CheckConstraint(
                condition=models.Q(("lane__gte", 1), ("lane__lte", 16)), name="audit_record_lane_1_to_16"
            ),
        ),
        migrations.RunPython(lanes_and_sequence, elidable=False),
    ]
