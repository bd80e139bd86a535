"""The packer's count of a job's prints (`copies_packed`), kept apart from the quality check's
copies_verified, which the packing station read until now (a check of a reprint at the printer confirmed the
item at the station).

Existing rows: a job of an order already packed, shipped or delivered gets copies_packed = copies_verified,
so that no box already packed looks uncounted (an unpack still clears it). Any other job starts at 0: on an
order still to pack, copies_verified may be a floor check's rather than the packer's, so its items are
counted again.
"""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

PACKED_STATUSES = ("packed", "shipped", "delivered")


def packed_counts_kept(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    PrintJob = apps.get_model("production", "PrintJob")
    PrintJob.objects.filter(order__status__in=PACKED_STATUSES, copies_verified__gt=0).update(
        copies_packed=models.F("copies_verified")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("production", "0020_sweeprun_work_left"),
    ]

    operations = [
        migrations.AddField(
            model_name="printjob",
            name="copies_packed",
            field=models.PositiveSmallIntegerField(db_default=0, default=0),
        ),
        migrations.RunPython(packed_counts_kept, migrations.RunPython.noop, elidable=True),
    ]
