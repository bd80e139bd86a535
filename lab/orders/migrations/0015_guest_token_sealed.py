"""A guest order's token is stored as a seal of its row (key and ref) and the token's SHA-256 (lab/orders/guest_tokens.py),
no longer as the bare SHA-256, which a database administrator could write for a token of their own.

Each stored hash is sealed as it is, with its order's key and ref: the upgrade trusts the state it finds (as 0008
did the addresses), and no token is needed. The column keeps its name and width (a seal is 64 hex digits
too), so no ALTER TABLE. In batches, each written as it is made. A bare hash written after this ran (by a
web process of the previous version during a rolling upgrade, or in the database) is refused: README,
*Guest tokens*. Going backwards cannot recover a hash from its seal: nothing is changed.
"""

from django.db import migrations

from lab.lib.seals import seal_of

BATCH = 500
# lab.orders.guest_tokens.GUEST_TOKEN_SEAL_SALT, copied: a migration does not follow the app's code.
GUEST_TOKEN_SEAL_SALT = "lab.orders.guest_token.seal"


def seal_guest_token_hashes(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    rows = Order.objects.exclude(guest_token_hash="").only("pk", "ref", "guest_token_hash").order_by("pk")
    sealed = []
    for order in rows.iterator(chunk_size=BATCH):
        facts = f"order:{order.pk}|{order.ref}|{order.guest_token_hash}"
        order.guest_token_hash = seal_of(GUEST_TOKEN_SEAL_SALT, facts)
        sealed.append(order)
        if len(sealed) >= BATCH:
            Order.objects.bulk_update(sealed, ["guest_token_hash"], batch_size=BATCH)
            sealed = []
    Order.objects.bulk_update(sealed, ["guest_token_hash"], batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0014_erased_rows_blanked"),
    ]

    operations = [
        migrations.RunPython(seal_guest_token_hashes, migrations.RunPython.noop),
    ]
