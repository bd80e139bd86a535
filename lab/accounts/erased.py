"""Whether an account was erased, read so that a write racing the erasure cannot outlive it.

An erasure (lab/customer_data/erasure.py) holds the account's row FOR UPDATE until it commits. A request of
the same customer's that began before (its token still valid, its row read) must not write the person back:
a My Account change, a photo, a webhook endpoint, a failed sign-in's record. Each takes the account's row
here, FOR KEY SHARE as a foreign key's own check takes it: that waits for an erasure in progress and then
reads it committed. (Django's foreign keys are deferred on PostgreSQL, checked only at COMMIT, after any
check the request makes: so the row is taken here, explicitly.) SQLite writes one transaction at a time: an
erasure has committed before the request's transaction began. Call these inside the request's transaction.
"""

from __future__ import annotations

from django.db import connection

from lab.accounts.errors import AccountError
from lab.accounts.models import User
from lab.lib.errors import Conflict

# The names are the model's, not input.
_KEY_SHARE_SQL = (
    f"SELECT erased_at IS NOT NULL FROM {User._meta.db_table}"  # noqa: S608
    f" WHERE {User._meta.pk.column} = %s FOR KEY SHARE"
)


def account_is_erased(user_id: int) -> bool:
    """True if the account is erased (or gone); waits for an erasure in progress (see the module)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_KEY_SHARE_SQL, [user_id])
            row = cursor.fetchone()
        return row is None or bool(row[0])
    return not User.objects.filter(pk=user_id, erased_at__isnull=True).exists()


def account_not_erased(user_id: int) -> None:
    """Refuse (409 `account_erased`) a write for an account erased while the request was on its way."""
    if account_is_erased(user_id):
        raise Conflict(AccountError.ACCOUNT_ERASED, "This account was erased.")
