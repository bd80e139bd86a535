"""Photos get their seal (lab/orders/models.py). The photos there are when this runs are sealed as they are:
the upgrade trusts the state it finds, as the operator running it on the app host does.

In one transaction with the column it fills (a run stopped part-way could not add the column again): the
lock of its ALTER TABLE is held until the last photo is sealed. It ran once, on upgrades to the seals; a
database that has it does not run it again (tests/production/test_migration_defaults.py names it)."""

from django.db import migrations, models

from lab.orders.models import asset_seal

BATCH = 500


def seal_assets(apps, schema_editor):  # type: ignore[no-untyped-def]
    Asset = apps.get_model("orders", "Asset")
    sealed = []
    for asset in Asset.objects.iterator(chunk_size=BATCH):
        asset.sealed = asset_seal(
            asset_id=asset.pk,
            owner_id=asset.owner_id,
            guest_order_id=asset.guest_order_id,
            data_key_id=asset.data_key_id,
            blob_name=asset.blob_name,
        )
        sealed.append(asset)
        if len(sealed) >= BATCH:  # each batch written as it is made: no list of every photo in memory
            Asset.objects.bulk_update(sealed, ["sealed"], batch_size=BATCH)
            sealed = []
    Asset.objects.bulk_update(sealed, ["sealed"], batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0006_asset_fetch_claim"),
    ]

    operations = [
        migrations.AddField(
            model_name="asset",
            name="sealed",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(seal_assets, migrations.RunPython.noop),
    ]
