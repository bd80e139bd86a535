"""A job keeps apart the prints its last quality check rejected (`copies_rejected_at_check`), so that a reprint
cancelled as not needed gives back only the rejection it made. Jobs from before keep all their rejected prints
as the check's: a reprint cancelled after the upgrade gives nothing back, as before."""

from django.db import migrations, models
from django.db.models import F


def rejections_as_checked(apps, schema_editor):
    PrintJob = apps.get_model("production", "PrintJob")
    PrintJob.objects.filter(copies_rejected__gt=0).update(copies_rejected_at_check=F("copies_rejected"))


class Migration(migrations.Migration):
    dependencies = [
        ("production", "0016_printjob_copies_rejected"),
    ]

    operations = [
        migrations.AddField(
            model_name="printjob",
            name="copies_rejected_at_check",
            field=models.PositiveSmallIntegerField(db_default=0, default=0),
        ),
        migrations.RunPython(rejections_as_checked, migrations.RunPython.noop),
    ]
