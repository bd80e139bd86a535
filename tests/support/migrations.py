"""Moving the test database's schema back and forth, for the tests of a data migration."""

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_to(targets: list[tuple[str, str]]) -> None:
    """Migrate the test database to `targets` (app label, migration name), forwards or backwards."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def leaf_migrations(app_label: str) -> list[tuple[str, str]]:
    """The app's leaf migrations: where `migrate_to` takes the schema back to after a test."""
    leaves: list[tuple[str, str]] = MigrationExecutor(connection).loader.graph.leaf_nodes(app_label)
    return leaves
