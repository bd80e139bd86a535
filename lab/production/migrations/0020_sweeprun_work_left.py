"""What a scheduled task's last run left for the next one: a sweep that falls behind
(lab/production/sweeps.py); and an index of the jobs still holding a raster, for the retention gauge read
at every scrape."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("production", "0019_printjob_db_defaults"),
    ]

    operations = [
        migrations.AddField(
            model_name="sweeprun",
            name="work_left",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddIndex(
            model_name="printjob",
            index=models.Index(
                condition=models.Q(("raster_blob", ""), _negated=True),
                fields=["status", "id"],
                name="job_raster_held",
            ),
        ),
    ]
