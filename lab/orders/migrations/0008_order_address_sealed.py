"""Orders get their shipping address's seal (lab/orders/models.py). The orders there are when this runs are
sealed as they are: the upgrade trusts the state it finds, as the operator running it on the app host does.

In one transaction with the column it fills (a run stopped part-way could not add the column again): the
lock of its ALTER TABLE is held until the last order is sealed. It ran once, on upgrades to the seals; a
database that has it does not run it again (tests/production/test_migration_defaults.py names it)."""

from django.db import migrations, models

from lab.orders.models import address_seal

BATCH = 500


def seal_addresses(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    sealed = []
    for order in Order.objects.iterator(chunk_size=BATCH):
        order.address_sealed = address_seal(
            ref=order.ref, customer_id=order.customer_id, address=order.shipping_address
        )
        sealed.append(order)
        if len(sealed) >= BATCH:  # each batch written as it is made: no list of every order in memory
            Order.objects.bulk_update(sealed, ["address_sealed"], batch_size=BATCH)
            sealed = []
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
