"""An order's address seal names its row (lab/orders/models.py: order_address_seal): it covers the order's
primary key too, so the ref, address, method and seal of one order, moved together onto another's row in the
database (with the guest's e-mail and token), no longer hold there.

Before, a database administrator with a guest order of their own swapped those columns with a customer's paid
guest order: that row, whose photos are bound to it by its key, then carried their ref, address and seal, and
the station posted the customer's prints to them. Each order whose seal as made before (its address and
method, without the key) holds, under SECRET_KEY or one of SECRET_KEY_FALLBACKS, is sealed again with its key;
an order refused before (its seal holding in no format) is left as it is, refused, and so is one whose seal is
still of the address alone (a previous version's, which `manage.py order_seals_upgrade` takes). Going
backwards seals again the other way round, so the previous version takes the orders this one sealed.

Not atomic, as orders/0013: batches of BATCH orders by primary key, each read locked (FOR UPDATE) and written
in its own transaction, so a row is locked only while its batch is sealed and nothing waits on the whole
re-seal. No table lock is taken (no ALTER TABLE), so no lock_timeout: a batch waits only for the transactions
holding one of its rows (a packer's, a webhook's), as any write of the lab does. A run stopped part-way runs
again as it is: an order sealed with its key no longer holds in the old format and is passed over.

An order a web process of the previous version places after this ran is sealed the old way, which the new
check refuses: `manage.py order_seals_upgrade` (lab/staff/management/commands) runs `seal_with_the_row` again
once no such process is left (deploy/README.md, Upgrading).

Both formats are written out here, as they were when this was made, so that a later change of the seal's facts
does not change what this migration does; tests/orders/test_order_seal_pk_migration.py checks that the new one
is the one lab/orders/models.py makes.
"""

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import migrations, transaction

from lab.lib.seals import seal_holds, seal_of

BATCH = 500
ADDRESS_SEAL_SALT = "lab.orders.shipping_address"  # lab.orders.models._ADDRESS_SEAL_SALT
SEALED_FIELDS = ("pk", "ref", "customer_id", "shipping_address", "shipping_method", "address_sealed")


def _without_the_row(order: Any) -> str:
    """The facts the seal covered since 0013: its address and method (lab.orders.models._shipping_facts)."""
    address = json.dumps(order.shipping_address or {}, sort_keys=True, separators=(",", ":"))
    return f"{order.ref}|{order.customer_id or ''}|{address}|method:{order.shipping_method}"


def _with_the_row(order: Any) -> str:
    """The facts the seal covers now (lab.orders.models._row_facts)."""
    return f"order:{order.pk}|{_without_the_row(order)}"


def sealed_with_its_row(order: Any) -> bool:
    """Whether the order's seal holds as this version seals it (its row, address and method)."""
    return seal_holds(order.address_sealed, ADDRESS_SEAL_SALT, _with_the_row(order))


def sealed_without_its_row(order: Any) -> bool:
    """Whether the order's seal holds as the version before sealed it (its address and method, any row)."""
    return seal_holds(order.address_sealed, ADDRESS_SEAL_SALT, _without_the_row(order))


def _seal_again(
    orders: Any,
    *,
    holds: Callable[[Any], bool],
    already: Callable[[Any], bool],
    facts: Callable[[Any], str],
    using: str,
    on_left: Callable[[Any], None] | None,
) -> list[Any]:
    sealed: list[Any] = []
    after = None
    while True:
        with transaction.atomic(using=using):
            batch = orders.order_by("pk").only(*SEALED_FIELDS).select_for_update()
            if after is not None:
                batch = batch.filter(pk__gt=after)
            rows = list(batch[:BATCH])
            if not rows:
                return sealed
            after = rows[-1].pk
            changed = []
            for order in rows:
                if not order.shipping_address or already(order):
                    continue
                if not holds(order):
                    if on_left is not None:
                        on_left(order)
                    continue  # written outside the lab (or sealed the way before 0013): left as it is
                order.address_sealed = seal_of(ADDRESS_SEAL_SALT, facts(order), secret=settings.SECRET_KEY)
                changed.append(order)
            orders.model.objects.using(using).bulk_update(changed, ["address_sealed"], batch_size=BATCH)
        sealed.extend(changed)


def seal_with_the_row(
    orders: Any, *, using: str = "default", on_left: Callable[[Any], None] | None = None
) -> list[Any]:
    """Seal again, with its row, each order of the queryset `orders` whose seal without the row holds; returns
    them (ref and method loaded). Batches of BATCH orders by primary key, each read locked (FOR UPDATE) and
    written in its own transaction. An order sealed with its row already, or whose address is empty (an
    erased customer's: nothing is sent anywhere), is passed over; `on_left` is called with any other (its
    seal holds in neither format)."""
    return _seal_again(
        orders,
        holds=sealed_without_its_row,
        already=sealed_with_its_row,
        facts=_with_the_row,
        using=using,
        on_left=on_left,
    )


def seal_every_order_with_its_row(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    alias = schema_editor.connection.alias
    seal_with_the_row(Order.objects.using(alias), using=alias)


def seal_every_order_without_its_row(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    alias = schema_editor.connection.alias
    _seal_again(
        Order.objects.using(alias),
        holds=sealed_with_its_row,
        already=sealed_without_its_row,
        facts=_without_the_row,
        using=alias,
        on_left=None,
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("orders", "0015_guest_token_sealed"),
    ]

    operations = [
        migrations.RunPython(seal_every_order_with_its_row, seal_every_order_without_its_row),
    ]
