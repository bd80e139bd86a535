"""Stored e-mail addresses in the form their mail goes to (lab/lib/email_address.py `email_canonical`):
the domain IDNA-encoded as Django's mail sends it, in lower-case ASCII; the local part lower-cased. Before,
the API stored an address as typed (lower-cased), so victim@example.com, and the same with its domain
in fullwidth letters, one mailbox, were two accounts.

Accounts (`User.email`) and guest orders (`Order.guest_email`). An account whose address, in that form, is
another account's (or the form of two accounts' addresses) is left as it is, both of them, and its id printed
for a lab admin to settle: nothing is merged or lost. So is one whose address has no such form (its domain
cannot be encoded: no mail could go to it), or whose form is longer than the column's 254 characters (the
previous version let in 254 characters of non-ASCII letters, longer in Punycode): guest orders too. Guest
orders' addresses need not be unique: each is rewritten.
Going back changes nothing (the form written is a valid address of the same mailbox).
"""

from collections import defaultdict

from django.db import migrations

from lab.lib.email_address import email_canonical

BATCH = 500
# The columns' length (`User.email`, `Order.guest_email`): the previous version checked only that the address,
# lower-cased, fitted; its domain IDNA-encoded can be twice as long and more (a 200-character address of
# non-ASCII letters, 491 in Punycode), and one such row failed the whole migration on PostgreSQL.
MAX_LENGTH = 254


def _canonical(address):  # type: ignore[no-untyped-def]
    try:
        return email_canonical(address)
    except ValueError:  # no mail can go to it: left as it is
        return None


def _fits(canonical):  # type: ignore[no-untyped-def]
    return len(canonical) <= MAX_LENGTH


def _accounts(apps):  # type: ignore[no-untyped-def]
    User = apps.get_model("accounts", "User")
    taken = set()
    wanted = defaultdict(list)  # the form → the accounts whose address changes to it
    unencodable, too_long = [], []
    for pk, address in User.objects.order_by("pk").values_list("pk", "email").iterator(chunk_size=BATCH):
        taken.add(address)
        canonical = _canonical(address)
        if canonical is None:
            unencodable.append(pk)
        elif not _fits(canonical):
            too_long.append(pk)
        elif canonical != address:
            wanted[canonical].append(pk)
    # A form is a fixed point (email_canonical of it is itself): an address that changes is no other one's
    # form as stored, so `taken` tells every collision.
    colliding, forms = [], []
    for canonical, pks in wanted.items():
        if len(pks) > 1 or canonical in taken:
            colliding.extend(pks)
            forms.append(canonical)
            continue
        User.objects.filter(pk=pks[0]).update(email=canonical)
    if colliding:
        holders = sorted(User.objects.filter(email__in=forms).values_list("pk", flat=True))
        print(
            "\n  accounts.0010: accounts left unchanged, the form their mail goes to is another account's"
            f" address or the form of another's (ids): {sorted(colliding)}; accounts that have one of those"
            f" forms already (ids): {holders}"
        )
    if unencodable:
        print(
            f"\n  accounts.0010: accounts left unchanged, no mail can be sent to their address (ids):"
            f" {sorted(unencodable)}"
        )
    if too_long:
        print(
            f"\n  accounts.0010: accounts left unchanged, the form their mail goes to is longer than"
            f" {MAX_LENGTH} characters (ids): {too_long}"
        )


def _guest_orders(apps):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    changed, too_long = [], []
    rows = Order.objects.exclude(guest_email="").order_by("pk").values_list("pk", "guest_email")
    for pk, address in rows.iterator(chunk_size=BATCH):
        canonical = _canonical(address)
        if canonical is not None and not _fits(canonical):
            too_long.append(pk)
        elif canonical is not None and canonical != address:
            changed.append(Order(pk=pk, guest_email=canonical))
        if len(changed) == BATCH:
            Order.objects.bulk_update(changed, ["guest_email"])
            changed = []
    Order.objects.bulk_update(changed, ["guest_email"])
    if too_long:
        print(
            f"\n  accounts.0010: guest orders left unchanged, the form their mail goes to is longer than"
            f" {MAX_LENGTH} characters (ids): {too_long}"
        )


def canonicalise(apps, schema_editor):  # type: ignore[no-untyped-def]
    _accounts(apps)
    _guest_orders(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0009_account_seal_names_its_row"),
        ("orders", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(canonicalise, migrations.RunPython.noop),
    ]
