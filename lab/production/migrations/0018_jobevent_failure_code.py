"""A job's status change records the facts of the moment on its event: the job's printer (in the event's
existing `printer`) and, on a move to failed, the failure code (this column). Earlier events keep neither and
are not filled in: the supervisor's figures read the job's printer and code for them
(lab/staff/supervisor.py). The database default keeps inserts that name their columns (bench/supervisor)
working."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("production", "0017_printjob_copies_rejected_at_check"),
    ]

    operations = [
        migrations.AddField(
            model_name="jobevent",
            name="failure_code",
            field=models.CharField(blank=True, db_default="", default="", max_length=64),
        ),
    ]
