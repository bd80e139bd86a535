"""The seal of an erasure's entry still owed to the erasure log (lab/customer_data/erasure_log.py). A row
written by a version before it has none ("") and is not appended by the sweep: it is logged for a person."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("customer_data", "0002_erasure_log_pending"),
    ]

    operations = [
        migrations.AddField(
            model_name="erasurelogpending",
            name="seal",
            field=models.CharField(blank=True, db_default="", max_length=64),
        ),
    ]
