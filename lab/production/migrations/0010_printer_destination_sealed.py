"""Printers get their destination seal (lab/production/models.py). The printers there are when this runs are
sealed as they are: the upgrade trusts the state it finds, as the operator running it on the app host does."""

from django.db import migrations, models

from lab.production.models import destination_seal


def seal_destinations(apps, schema_editor):  # type: ignore[no-untyped-def]
    Printer = apps.get_model("production", "Printer")
    for printer in Printer.objects.all():
        printer.destination_sealed = destination_seal(
            name=printer.name,
            backend=printer.backend,
            target=printer.target,
            cups_server=printer.cups_server,
            host=printer.host,
        )
        printer.save(update_fields=["destination_sealed"])


class Migration(migrations.Migration):
    dependencies = [
        ("production", "0009_printjob_reprint_request_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="printer",
            name="destination_sealed",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(seal_destinations, migrations.RunPython.noop),
    ]
