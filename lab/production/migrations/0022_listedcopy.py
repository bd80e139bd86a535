"""The copies a `late_copy_not_cancelled` event listed for a person, as rows (ListedCopy), one per copy of a
job at a printer: read by cancellation.copy_listed_already instead of a regex over those events' notes, which
missed a copy named past the note's 500 characters (listed and alerted again).

Existing events: each one's note is parsed once, with the form the regex read (`…: handle:state…`,
`…, handle:state…`), so that an upgraded lab does not list again a copy an event listed before it. An event
without a printer was never found by the regex (it asked for the printer), and is left out. Backwards, the
rows go with the table.
"""

import re

import django.db.models.deletion
import django.db.models.functions.datetime
import django.utils.timezone
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

# A handle as the regex found it: after `: ` or `, `, up to the `:` that follows it (a handle is a CUPS job id
# or a hot folder's hex id: no space, comma or colon in it). One cut off at 500 characters has no `:` after it.
_LISTED_HANDLE = re.compile(r"(?:: |, )([^\s:,]{1,100})(?=:)")
_BATCH = 1000


def listed_copies_from_notes(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    JobEvent = apps.get_model("production", "JobEvent")
    ListedCopy = apps.get_model("production", "ListedCopy")
    events = (
        JobEvent.objects.filter(kind="late_copy_not_cancelled", job__isnull=False, printer__isnull=False)
        .order_by("pk")  # the first event that listed a copy keeps it
        .values_list("pk", "job_id", "printer_id", "note")
    )
    rows = []
    for event_id, job_id, printer_id, note in events.iterator(chunk_size=_BATCH):
        rows.extend(
            ListedCopy(job_id=job_id, printer_id=printer_id, handle=handle, event_id=event_id)
            for handle in dict.fromkeys(_LISTED_HANDLE.findall(note))
        )
        if len(rows) >= _BATCH:
            ListedCopy.objects.bulk_create(rows, ignore_conflicts=True)
            rows = []
    ListedCopy.objects.bulk_create(rows, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("production", "0021_printjob_copies_packed"),
    ]

    operations = [
        migrations.CreateModel(
            name="ListedCopy",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("handle", models.CharField(max_length=100)),
                (
                    "created_at",
                    models.DateTimeField(
                        db_default=django.db.models.functions.datetime.Now(),
                        default=django.utils.timezone.now,
                    ),
                ),
                (
                    "event",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="listed_copies",
                        to="production.jobevent",
                    ),
                ),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="listed_copies",
                        to="production.printjob",
                    ),
                ),
                (
                    "printer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="listed_copies",
                        to="production.printer",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("job", "printer", "handle"), name="listed_copy_once")
                ],
            },
        ),
        migrations.RunPython(listed_copies_from_notes, migrations.RunPython.noop, elidable=True),
    ]
