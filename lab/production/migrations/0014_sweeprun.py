"""Scheduled tasks' runs, watched from outside beat (lab/production/sweeps.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("production", "0013_printjob_sending_claim_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="SweepRun",
            fields=[
                ("task", models.CharField(max_length=100, primary_key=True, serialize=False)),
                ("first_run_at", models.DateTimeField()),
                ("last_run_at", models.DateTimeField()),
            ],
        ),
    ]
