"""What an erasure blanks since commits 06bea67 and b2fb49e, blanked on the orders erased before them.

An erased order (`is_anonymized`) keeps its idempotency keys only as rows naming it: scope `erased:<ref>`,
its own id as the key text, no request hash (lab/customer_data/erasure.py, `_anonymize_orders`). Before, a
guest's rows kept the scope `guest:` + the SHA-256 of the e-mail (anyone holding an address finds its orders),
every row the key text the client chose and the request hash (which covers the address, and a guest's e-mail
and birth date). The floor's own words on the orders' print jobs, a cancel's or a reprint's note that may
name the customer, give way to what the lab writes itself, as the erasure writes them now.

Before, only erasures made after those commits blanked them; every order erased before kept them for good.
In the database (one UPDATE for the keys, one for the cancels' notes; the reprints' notes BATCH at a time).
What was blanked cannot be put back: going backwards changes nothing. `manage.py erased_rows_blank` runs the
same step again for the orders a previous version's processes erase after this ran.
"""

from typing import Any

from django.db import migrations
from django.db.models import CharField, OuterRef, Subquery, Value
from django.db.models.functions import Cast, Concat

BATCH = 500
# lab.production.models, copied: a migration does not follow the app's code.
JOB_CANCELLED = "cancelled"
JOB_CANCELLED_NOTE = "cancelled by staff"  # what job_cancel writes when it is given no note
JOB_REPRINT_REQUESTED = "reprint_requested"
ERASED_SCOPE_PREFIX = "erased:"


def blank_erased_orders_keys_and_floor_notes(apps, schema_editor):  # type: ignore[no-untyped-def]
    erased_orders_keys_and_floor_notes_blank(apps)


def erased_orders_keys_and_floor_notes_blank(apps: Any) -> tuple[int, int]:
    """The step itself: how many key rows, and how many floor notes, it rewrote (the command prints them)."""
    Order = apps.get_model("orders", "Order")
    IdempotencyKey = apps.get_model("orders", "IdempotencyKey")
    JobEvent = apps.get_model("production", "JobEvent")

    erased = Order.objects.filter(is_anonymized=True)
    # As the erasure writes them (`_anonymize_orders`); a row already so written is passed over.
    ref = Subquery(Order.objects.filter(pk=OuterRef("order_id")).values("ref"))
    keys = (
        IdempotencyKey.objects.filter(order__is_anonymized=True)
        .exclude(
            scope=Concat(Value(ERASED_SCOPE_PREFIX), ref),
            key=Cast("pk", output_field=CharField()),
            request_sha256="",
        )
        .update(
            scope=Concat(Value(ERASED_SCOPE_PREFIX), ref),
            key=Cast("pk", output_field=CharField()),
            request_sha256="",
        )
    )

    events = JobEvent.objects.filter(job__order__in=erased)
    notes = events.filter(kind=JOB_CANCELLED).exclude(note=JOB_CANCELLED_NOTE).update(note=JOB_CANCELLED_NOTE)
    reprints = events.filter(kind=JOB_REPRINT_REQUESTED).select_related("job").order_by("pk")
    rewritten: list[Any] = []
    for event in reprints.iterator(chunk_size=BATCH):
        # As job_reprint writes it without a note: the reprinted job and the reason chosen from a list.
        note = f"reprint of job {event.job.reprint_of_id}: {event.job.reprint_reason}"
        if event.note == note:
            continue
        event.note = note
        rewritten.append(event)
        notes += 1
        if len(rewritten) >= BATCH:
            JobEvent.objects.bulk_update(rewritten, ["note"], batch_size=BATCH)
            rewritten = []
    JobEvent.objects.bulk_update(rewritten, ["note"], batch_size=BATCH)
    return keys, notes


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0016_order_address_seal_names_its_row"),
        ("production", "0020_sweeprun_work_left"),
    ]

    operations = [
        migrations.RunPython(
            blank_erased_orders_keys_and_floor_notes, migrations.RunPython.noop, elidable=True
        ),
    ]
