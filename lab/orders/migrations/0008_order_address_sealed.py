"""Orders get their shipping address's seal (lab/orders/models.py). The orders there are when this runs are
sealed as they are: the upgrade trusts the state it finds, as the operator running it on the app host does."""

import json

from django.db import migrations, models
from django.utils.crypto import salted_hmac

BATCH = 500
# The same seal as Order._address_seal (a historical model has no methods).
SALT = "lab.orders.shipping_address"


def seal_addresses(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    sealed = []
    for order in Order.objects.iterator(chunk_size=BATCH):
        address = json.dumps(order.shipping_address or {}, sort_keys=True, separators=(",", ":"))
        message = f"{order.ref}|{order.customer_id or ''}|{address}"
        order.address_sealed = salted_hmac(SALT, message, algorithm="sha256").hexdigest()
        sealed.append(order)
    Order.objects.bulk_update(sealed, ["address_sealed"], batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0007_asset_sealed"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="address_sealed",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(seal_addresses, migrations.RunPython.noop),
    ]
