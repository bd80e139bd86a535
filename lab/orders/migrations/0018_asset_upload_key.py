"""A photo sent with an Idempotency-Key remembers it (AssetUploadKey): its retry answers the same photo."""

import django.db.models.deletion
import django.db.models.functions.datetime
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0017_erased_orders_keys_and_floor_notes_blanked"),
    ]

    operations = [
        migrations.CreateModel(
            name="AssetUploadKey",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key_seal", models.CharField(max_length=64, unique=True)),
                ("request_seal", models.CharField(max_length=64)),
                (
                    "created_at",
                    models.DateTimeField(
                        db_default=django.db.models.functions.datetime.Now(),
                        default=django.utils.timezone.now,
                    ),
                ),
                (
                    "asset",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="orders.asset"
                    ),
                ),
            ],
        ),
    ]
