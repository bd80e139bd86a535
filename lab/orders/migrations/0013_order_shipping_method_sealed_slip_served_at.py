"""An order's address seal covers its shipping method too (lab/orders/models.py: shipping_seal), and an order
records when its packing slip was first served to a person at the packing station (`slip_served_at`, after
which the customer no longer changes its address: lab/orders/address.py).

Before, the seal covered the address alone: a database administrator who set a packed express order's method
to "pickup" had the station hand the box over at the counter to whoever gave the name on its slip. Each
order whose seal of the address alone holds is sealed again, with its method, as it is found (the upgrade
trusts the state it finds, as 0008 did). An order whose seal does not hold (its address written in the
database alone) is left as it is: it stays refused at the station until a supervisor looks at it. Going
backwards seals nothing again; the orders' seals of the new kind are then refused until this runs again.

Not atomic: in one transaction the re-seal held the lock of the column's ALTER TABLE (ACCESS EXCLUSIVE) on
orders_order until its last row, and every read of an order on every host waited past gunicorn's timeout. The
column is added first, alone, and only if it is not there yet (a run stopped after adding it is not recorded,
and runs again); on PostgreSQL it waits at most LOCK_TIMEOUT for its lock, and fails the migrate rather than
queue every read of an order behind it: exit status 75 (EX_TEMPFAIL, run it again later), which
printlab-migrate.service does not restart (RestartPreventExitStatus=75: restarted every 10 s while a backup
held the lock, each run stalled every read of an order for LOCK_TIMEOUT again). The re-seal runs only once the
column is there, each batch of orders committed in its own transaction (their rows locked only while it is
sealed). The other way round, an ALTER that failed (its lock not granted, a deadlock, the connection dropped)
left 0013 unrecorded with every order already sealed with its method, which the previous version, still
serving (or rolled back to), refuses: no slip, no change of address. A run stopped part-way is run again as it
is: the column there is not added again, and an order already sealed with its method no longer passes the
check of the address alone and is skipped.

An order a web process of the previous version places after this ran is sealed the old way (the address
alone), which the new check refuses: `manage.py order_seals_upgrade` (lab/staff/management/commands) runs
`seal_the_method_too` again once no such process is left (deploy/README.md).
"""

import json
import sys
from collections.abc import Callable
from typing import Any

from django.db import OperationalError, migrations, models, transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from lab.lib.seals import seal_holds
from lab.orders.models import shipping_seal

BATCH = 500
LOCK_TIMEOUT = "5s"  # the longest the column's ALTER TABLE waits for its lock on orders_order (PostgreSQL)
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout passes (psycopg's LockNotAvailable)
EX_TEMPFAIL = 75  # sysexits.h: a temporary failure, run it again later (printlab-migrate.service)
COLUMN = "slip_served_at"
ADDRESS_SEAL_SALT = "lab.orders.shipping_address"  # lab.orders.models._ADDRESS_SEAL_SALT
SEALED_FIELDS = ("pk", "ref", "customer_id", "shipping_address", "shipping_method", "address_sealed")


def _address_alone(order: Any) -> str:
    """The facts the seal covered before (lab.orders.models._address_facts), as 0008 sealed them."""
    address = json.dumps(order.shipping_address or {}, sort_keys=True, separators=(",", ":"))
    return f"{order.ref}|{order.customer_id or ''}|{address}"


def _address_and_method(order: Any) -> str:
    """The facts the seal covers now (lab.orders.models._shipping_facts)."""
    return f"{_address_alone(order)}|method:{order.shipping_method}"


def sealed_with_its_method(order: Any) -> bool:
    """Whether the order's seal holds as this version seals it (its address and its method)."""
    return seal_holds(order.address_sealed, ADDRESS_SEAL_SALT, _address_and_method(order))


def sealed_the_old_way(order: Any) -> bool:
    """Whether the order's seal holds as the version before sealed it (its address alone: any method)."""
    return seal_holds(order.address_sealed, ADDRESS_SEAL_SALT, _address_alone(order))


def seal_the_method_too(
    orders: Any, *, using: str = "default", on_left: Callable[[Any], None] | None = None
) -> list[Any]:
    """Seal again, with its shipping method, each order of the queryset `orders` whose seal of the address
    alone holds; returns them (ref and method loaded). Batches of BATCH orders by primary key, each read
    locked (FOR UPDATE) and written in its own transaction. An order whose seal holds with its method, or
    whose address is empty (an erased customer's: nothing is sent anywhere), is passed over; `on_left` is
    called with any other (its seal holds in neither format)."""
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
                if not order.shipping_address or sealed_with_its_method(order):
                    continue
                if not sealed_the_old_way(order):
                    if on_left is not None:
                        on_left(order)
                    continue  # written outside the lab: left as it is
                order.address_sealed = shipping_seal(
                    ref=order.ref,
                    customer_id=order.customer_id,
                    address=order.shipping_address,
                    shipping_method=order.shipping_method,
                )
                changed.append(order)
            orders.model.objects.using(using).bulk_update(changed, ["address_sealed"], batch_size=BATCH)
        sealed.extend(changed)


def _slip_served_at() -> models.DateTimeField:  # type: ignore[type-arg]
    return models.DateTimeField(blank=True, db_default=None, null=True)


def _column_of(model: Any) -> models.DateTimeField:  # type: ignore[type-arg]
    """The column's field, bound to the historical `model` (which, in the database operations, lacks it)."""
    field = _slip_served_at()
    field.set_attributes_from_name(COLUMN)
    field.model = model
    return field


def _has_the_column(schema_editor: BaseDatabaseSchemaEditor, model: Any) -> bool:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, model._meta.db_table)
    return any(column.name == COLUMN for column in columns)


def add_column(schema_editor: BaseDatabaseSchemaEditor, model: Any) -> None:
    """ALTER TABLE … ADD COLUMN, in a transaction of its own; on PostgreSQL waiting at most LOCK_TIMEOUT for
    the table's lock (then the migrate exits with EX_TEMPFAIL: run it again later)."""
    connection = schema_editor.connection
    try:
        with transaction.atomic(using=connection.alias):
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
            schema_editor.add_field(model, _column_of(model))
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise  # a deadlock, a dropped connection: an ordinary failure, which systemd retries
        sys.stderr.write(
            f"orders/0013: the lock of {model._meta.db_table} was not granted within {LOCK_TIMEOUT} "
            "(a backup or a long transaction holds one on it); nothing was changed. Run the migrations again "
            f"later (exit status {EX_TEMPFAIL}: printlab-migrate is not restarted on it).\n"
        )
        raise SystemExit(EX_TEMPFAIL) from error


def add_the_column_unless_there(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    if not _has_the_column(schema_editor, Order):
        add_column(schema_editor, Order)


def remove_the_column_if_there(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    if _has_the_column(schema_editor, Order):
        schema_editor.remove_field(Order, _column_of(Order))


def seal_the_shipping_method_too(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    alias = schema_editor.connection.alias
    seal_the_method_too(Order.objects.using(alias), using=alias)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("orders", "0012_shipped_event_notes_without_tracking_numbers"),
    ]

    operations = [
        # The column first, and only if it is missing (a run stopped after it runs again); then the re-seal.
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddField(model_name="order", name=COLUMN, field=_slip_served_at())],
            database_operations=[
                migrations.RunPython(add_the_column_unless_there, remove_the_column_if_there),
            ],
        ),
        migrations.RunPython(seal_the_shipping_method_too, migrations.RunPython.noop),
    ]
