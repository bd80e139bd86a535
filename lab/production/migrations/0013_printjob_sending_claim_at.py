"""A submit claim's send fence (PrintJob.sending_claim_at, lab/production/submission.py).

Jobs being sent while this migration runs were claimed by a worker that did not set the fence: they count as
sent (the reconciler asks the printer and, if it holds no such job, leaves the job `unknown` for a person, as
before), never as a claim that sent nothing, which would be sent again.
"""

from django.db import migrations, models
from django.db.models.functions import Coalesce, Now


def mark_claims_in_flight(apps, schema_editor):
    PrintJob = apps.get_model("production", "PrintJob")
    PrintJob.objects.filter(status="submitting").update(sending_claim_at=Coalesce("claimed_at", Now()))


class Migration(migrations.Migration):
    dependencies = [("production", "0012_printjob_title_token")]

    operations = [
        migrations.AddField(
            model_name="printjob",
            name="sending_claim_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(mark_claims_in_flight, migrations.RunPython.noop),
    ]
