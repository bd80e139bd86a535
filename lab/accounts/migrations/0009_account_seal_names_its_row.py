"""Accounts' seals name their row (lab/accounts/seal.py): the seal now covers the account's primary key too,
so the public id, password hash and seal of one account, moved together onto another's row, no longer hold
there.

Each account is sealed again with its key only if its seal as made before (without the key) holds, under
SECRET_KEY or one of SECRET_KEY_FALLBACKS: an account refused before the upgrade (a role, a password hash or
an activation written in the database) stays refused after it. Going back seals again the same way, the
other way round.

Both formats are written out here, as they were when this was made, so that a later change of the seal's facts
does not change what this migration did; tests/accounts/test_account_takeover.py checks that the new one is
the one lab/accounts/seal.py makes.
"""

import json

from django.conf import settings
from django.db import migrations

from lab.lib.seals import seal_holds, seal_of

BATCH = 500
SEAL_SALT = "lab.accounts.account_seal"
STAFF_ROLES = frozenset({"technician", "packer", "supervisor", "auditor", "admin"})


def _facts(user, roles, *, with_key):  # type: ignore[no-untyped-def]
    facts = [str(user.public_id), sorted(set(roles) & STAFF_ROLES), bool(user.is_active), user.password]
    return json.dumps([user.pk, *facts] if with_key else facts, separators=(",", ":"))


def _seal_again(apps, *, from_keyed):  # type: ignore[no-untyped-def]
    """Seal again, in the other format (under SECRET_KEY), each account whose seal holds in this one (with the
    key or without it); leave the rest as they are."""
    User = apps.get_model("accounts", "User")
    sealed = []
    for user in User.objects.prefetch_related("groups").iterator(chunk_size=BATCH):
        roles = [group.name for group in user.groups.all()]
        if not seal_holds(user.account_seal, SEAL_SALT, _facts(user, roles, with_key=from_keyed)):
            continue
        user.account_seal = seal_of(
            SEAL_SALT, _facts(user, roles, with_key=not from_keyed), secret=settings.SECRET_KEY
        )
        sealed.append(user)
        if len(sealed) == BATCH:
            User.objects.bulk_update(sealed, ["account_seal"])
            sealed = []
    User.objects.bulk_update(sealed, ["account_seal"])


def seal_with_the_key(apps, schema_editor):  # type: ignore[no-untyped-def]
    _seal_again(apps, from_keyed=False)


def seal_without_the_key(apps, schema_editor):  # type: ignore[no-untyped-def]
    _seal_again(apps, from_keyed=True)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0008_security_event_email_changed"),
    ]

    operations = [
        migrations.RunPython(seal_with_the_key, seal_without_the_key),
    ]
