"""Which submit claims set the send fence (PrintJob.fence_armed_at, lab/production/submission.py).

Every claim made before this migration, and every claim a worker of an earlier version makes while it still
runs, leaves the field as it was, so it never equals that claim's `claimed_at`: the reconciler counts such a
claim as sent and never sends its job again by itself. Before, a worker of the version before the fence
claimed a job with the fence unset, and the reconciler read that as "nothing sent" and sent the job again: a
second print if that worker had only stalled and then sent.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("production", "0014_sweeprun")]

    operations = [
        migrations.AddField(
            model_name="printjob",
            name="fence_armed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
