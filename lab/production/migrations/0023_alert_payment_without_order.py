"""A supervisor alert of a new kind, `payment_without_order`: a payment at Stripe that no order in the
database holds, found by `manage.py stripe_replay` after a restore from a backup
(lab/orders/stripe_replay.py). Choices only: no row changes."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("production", "0022_listedcopy"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alert",
            name="kind",
            field=models.CharField(
                choices=[
                    ("order_at_risk", "Order At Risk"),
                    ("printer_error", "Printer Error"),
                    ("job_needs_person", "Job Needs Person"),
                    ("queue_growing", "Queue Growing"),
                    ("payment_without_order", "Payment Without Order"),
                ],
                max_length=32,
            ),
        ),
    ]
