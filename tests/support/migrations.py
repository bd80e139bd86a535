"""Moving the test database's schema back and forth, for the tests of a data migration."""

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_to(targets: list[tuple[str, str]]) -> None:
    """Migrate the test database to `targets` (app label, migration name), forwards or backwards."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def leaf_migrations(app_label: str) -> list[tuple[str, str]]:
    """Where `migrate_to` takes the schema back to after a test of `app_label`'s migrations: every app's leaf
    migrations, not that app's alone. Migrating one app back also unapplies the other apps' migrations that
    depend on what it undoes (orders/0017 depends on production/0020): restored to production's leaves only,
    the test of a production migration left orders/0017 and 0018 unapplied for every test after it on its
    worker (the upload keys' table missing)."""
    del app_label  # named at each call for the reader: the schema restored is the whole one
    leaves: list[tuple[str, str]] = MigrationExecutor(connection).loader.graph.leaf_nodes()
    return leaves
