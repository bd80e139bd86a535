"""Print job titles carry a random token per job (lab/production/models.py, JOB_TITLE_PREFIX).

Jobs already made keep an empty token: they were sent as `lab-job-<id>` and must still be found by that title.
"""

from django.db import migrations, models

import lab.production.models


class Migration(migrations.Migration):
    dependencies = [("production", "0011_maintenanceticket_sealed")]

    operations = [
        migrations.AddField(
            model_name="printjob",
            name="title_token",
            field=models.CharField(blank=True, default="", max_length=8),
        ),
        migrations.AlterField(
            model_name="printjob",
            name="title_token",
            field=models.CharField(blank=True, default=lab.production.models.new_title_token, max_length=8),
        ),
    ]
