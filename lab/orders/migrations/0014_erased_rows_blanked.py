"""What an erasure or a purge blanks since commit e978d66, blanked on the rows erased or purged before it.

An erased order (`is_anonymized`) keeps no address seal: `address_sealed` was an HMAC of the ref, the
customer's id and the full address under SECRET_KEY, which anyone holding the key and a backup could test
guessed addresses against, offline (an empty address counts as sealed: lab/orders/models.py,
Order.address_is_sealed). Its items' preflight colour note quoted the photo's embedded ICC profile
description, text from the customer's file (a name, at times): a note that starts "embedded" becomes the note
without it, as the erasure writes it (lab/customer_data/erasure.py: ERASED_COLOR_NOTE). A purged photo
(status "purged") keeps no `icc_description`.

Before, only erasures and purges made after the upgrade blanked these; every order erased and every photo
purged before kept them. In batches (updates in the database; the items' notes read and written BATCH at a
time), so no table is loaded whole. What was blanked cannot be put back: going backwards changes nothing.
"""

from django.db import migrations

BATCH = 500
# lab.customer_data.erasure.ERASED_COLOR_NOTE, copied: a migration does not follow the app's code.
ERASED_COLOR_NOTE = "embedded profile will be converted to the printer profile"
PURGED = "purged"  # lab.orders.models.Asset.Status.PURGED


def blank_what_erasure_and_purge_blank(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    OrderItem = apps.get_model("orders", "OrderItem")
    Asset = apps.get_model("orders", "Asset")

    Order.objects.filter(is_anonymized=True).exclude(address_sealed="").update(address_sealed="")
    Asset.objects.filter(status=PURGED).exclude(icc_description="").update(icc_description="")

    items = (
        OrderItem.objects.filter(order__is_anonymized=True, preflight__color_note__startswith="embedded")
        .exclude(preflight__color_note=ERASED_COLOR_NOTE)
        .only("pk", "preflight")
        .order_by("pk")
    )
    rewritten = []
    for item in items.iterator(chunk_size=BATCH):
        item.preflight = {**item.preflight, "color_note": ERASED_COLOR_NOTE}
        rewritten.append(item)
        if len(rewritten) >= BATCH:
            OrderItem.objects.bulk_update(rewritten, ["preflight"], batch_size=BATCH)
            rewritten = []
    OrderItem.objects.bulk_update(rewritten, ["preflight"], batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0013_order_shipping_method_sealed_slip_served_at"),
    ]

    operations = [
        migrations.RunPython(blank_what_erasure_and_purge_blank, migrations.RunPython.noop, elidable=True),
    ]
