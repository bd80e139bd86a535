"""The erasures' entries still owed to the erasure log outside the database (ErasureLogPending)."""

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("customer_data", "0001_privacy_receipts"),
    ]

    operations = [
        migrations.CreateModel(
            name="ErasureLogPending",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("kind", models.CharField(max_length=16)),
                ("subject", models.CharField(max_length=64)),
                ("erased_at", models.DateTimeField()),
                ("created_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ("attempts", models.PositiveSmallIntegerField(db_default=0)),
                ("last_failed_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
    ]
