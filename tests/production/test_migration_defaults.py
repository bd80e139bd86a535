"""A column a migration adds NOT NULL keeps a database default (`db_default`): through an upgrade, a process
of the previous version still runs (the other app hosts, a worker not yet restarted) and inserts rows without
naming the columns it does not know. Django adds a column with the field's `default` and then drops it, so
without `db_default` each such insert fails until that process is replaced. Before, production/0016 added
`copies_rejected` that way (every release of the previous version failed through the upgrade), and 0012
`title_token`; production/0019 gives both the database default, as 0017, 0018 and orders/0010 do."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import (
    AddField,
    AlterModelManagers,
    AlterModelOptions,
    RunPython,
    RunSQL,
    SeparateDatabaseAndState,
)
from django.db.migrations.operations.base import Operation
from django.db.models import NOT_PROVIDED

from lab.production.models import PrintJob
from tests.builders.production import hotfolder_printer, released_order

# Seal columns: a row without its seal is refused as not the lab's, for good (an account, an API token, an
# audit record, a photo, an order's address, a printer's destination, a ticket), so an insert by a process
# of a version before the seal is better refused than stored as a row the lab then refuses. No database
# default, on purpose. (A packing slip without a seal is only rendered again: it has one, packing/0003.)
SEALS = {
    ("accounts", "user", "account_seal"),
    ("accounts", "apitoken", "binding"),
    ("audit", "auditrecord", "mac"),
    ("orders", "asset", "sealed"),
    ("orders", "order", "address_sealed"),
    ("production", "printer", "destination_sealed"),
    ("production", "maintenanceticket", "sealed"),
}
# Columns added before the database default was the convention, left as they are here (each is for a
# migration of its own app): not to be extended. One given its default leaves the list (the test says so).
BEFORE_THE_CONVENTION = {
    ("audit", "accessgrant", "is_full_resolution"),
    ("audit", "auditcheckpoint", "lanes"),
    ("audit", "auditrecord", "lane"),
    ("orders", "orderitem", "border_mm"),
    ("orders", "orderitem", "orientation"),
    ("orders", "orderitem", "print_orientation"),
    ("orders", "asset", "fetch_attempts"),
    ("production", "printjob", "cancel_at_printer"),
    ("production", "printjob", "backend_restarted"),
    ("production", "printer", "server_event_sequence"),
    ("production", "printjob", "reprint_request_key"),
}
EXEMPT = SEALS | BEFORE_THE_CONVENTION


def columns_added() -> Iterator[tuple[str, str, str, str]]:
    """(app, migration, model, field) of every AddField in the lab's own apps' migrations."""
    lab_apps = {config.label for config in apps.get_app_configs() if config.name.startswith("lab.")}
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for (app_label, name), migration in sorted(loader.disk_migrations.items()):
        if app_label in lab_apps:
            for operation in migration.operations:
                if isinstance(operation, AddField):
                    yield app_label, name, operation.model_name_lower, operation.name_lower


def test_every_column_a_migration_added_not_null_has_a_database_default():
    # given the schema every migration makes (the state after the last one of each app)
    state = MigrationLoader(None, ignore_no_migrations=True).project_state()
    missing, exempt_in_vain = [], []

    # when each column a migration added is looked at as it ends up
    for app_label, migration, model, name in columns_added():
        model_state = state.models.get((app_label, model))
        field = model_state.fields.get(name) if model_state is not None else None
        if field is None or field.many_to_many:
            continue  # removed later, or no column
        defaulted = field.null or field.db_default is not NOT_PROVIDED
        if (app_label, model, name) in EXEMPT:
            if defaulted:
                exempt_in_vain.append(f"{app_label}.{model}.{name}")
        elif not defaulted:
            missing.append(f"{app_label}/{migration}: {model}.{name}")

    # then each allows NULL or has a database default (before, production's copies_rejected and title_token
    # and packing's seal had neither), and the exemptions are all still needed
    assert missing == []
    assert exempt_in_vain == []


@pytest.mark.django_db
def test_a_job_a_previous_version_inserts_without_the_new_columns_is_stored_with_their_defaults():
    # given a released job
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))

    # when a process of a version before production/0012 inserts one, naming only the columns it knows
    unknown = {"id", "copies_rejected", "copies_rejected_at_check", "title_token"}
    known = ", ".join(str(f.column) for f in PrintJob._meta.concrete_fields if f.column not in unknown)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO production_printjob ({known}) SELECT {known} FROM production_printjob"
            " WHERE id = %s RETURNING id",
            [job.pk],
        )
        (inserted,) = cursor.fetchone()

    # then it is stored (before, it failed: NOT NULL without a default), untokened as such a version titles
    # its jobs, nothing rejected
    stored = PrintJob.objects.get(pk=inserted)
    assert (stored.copies_rejected, stored.copies_rejected_at_check) == (0, 0)
    assert (stored.title_token, stored.title) == ("", f"lab-job-{inserted}")


# Migrations that change the orders' or the photos' table and run Python in one transaction (on PostgreSQL a
# migration is one transaction unless `atomic = False`): the lock the schema change takes (ACCESS EXCLUSIVE
# for an ALTER TABLE) is held until the Python has gone through the table, and every read of an order or a
# photo on every host waits for it (past gunicorn's timeout on a large table: orders/0013 did). Each one here
# ran once, long ago, on every lab's database, and is not run again there; not to be extended.
ONE_TRANSACTION_WITH_THE_ORDERS_TABLES = {
    # They fill the column they add: not atomic, a run stopped part-way could not add it again. They write
    # batch by batch (no list of every row in memory).
    ("orders", "0007_asset_sealed"): "fills the photos' seal column it adds",
    ("orders", "0008_order_address_sealed"): "fills the orders' seal column it adds",
    # Its Python only reads (refuses an upgrade over shared tracking numbers), before the constraint's lock.
    ("orders", "0009_order_tracking_number_unique"): "reads only, before the constraint is added",
    # One UPDATE of the orders cancelled unpaid with an intent, a few rows, filling the column it adds.
    ("orders", "0010_order_payment_intent_cancel_due"): "one UPDATE of a few rows into the column it adds",
}
ORDERS_TABLES = {("orders", "order"), ("orders", "asset")}


def _database_operations(operations: Iterable[Operation]) -> Iterator[Operation]:
    for operation in operations:
        if isinstance(operation, SeparateDatabaseAndState):
            yield from _database_operations(operation.database_operations)
        else:
            yield operation


def _changes_the_orders_tables(app_label: str, operation: Operation) -> bool:
    if isinstance(operation, RunSQL):
        return bool(re.search(r"\borders_(order|asset)\b", str(operation.sql)))
    if isinstance(operation, RunPython | AlterModelOptions | AlterModelManagers):
        return False  # no schema change
    model = getattr(operation, "model_name_lower", None) or getattr(operation, "name_lower", None)
    return (app_label, model) in ORDERS_TABLES


def test_no_migration_runs_python_while_it_holds_a_schema_lock_on_the_orders_or_photos_table():
    # given every migration of the lab's own apps
    lab_apps = {config.label for config in apps.get_app_configs() if config.name.startswith("lab.")}
    loader = MigrationLoader(None, ignore_no_migrations=True)
    combined = set()

    # when those that are one transaction are looked at
    for (app_label, name), migration in sorted(loader.disk_migrations.items()):
        if app_label not in lab_apps or not migration.atomic:
            continue
        operations = list(_database_operations(migration.operations))
        if any(isinstance(operation, RunPython) for operation in operations) and any(
            _changes_the_orders_tables(app_label, operation) for operation in operations
        ):
            combined.add((app_label, name))

    # then none changes the orders' or photos' table and runs Python in it but those named (before,
    # orders/0013 re-sealed every order under its ALTER TABLE's lock), and each named still does
    assert combined == set(ONE_TRANSACTION_WITH_THE_ORDERS_TABLES)
