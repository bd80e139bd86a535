"""Maintenance tickets get their seal (lab/production/models.py). The tickets there are when this runs are
sealed as they are: the upgrade trusts the state it finds, as the operator running it on the app host does."""

from django.db import migrations, models

from lab.production.models import ticket_seal


def seal_tickets(apps, schema_editor):  # type: ignore[no-untyped-def]
    Ticket = apps.get_model("production", "MaintenanceTicket")
    for ticket in Ticket.objects.all():
        ticket.sealed = ticket_seal(ticket, list(ticket.jobs.values_list("pk", flat=True)))
        ticket.save(update_fields=["sealed"])


class Migration(migrations.Migration):
    dependencies = [
        ("production", "0010_printer_destination_sealed"),
    ]

    operations = [
        migrations.AddField(
            model_name="maintenanceticket",
            name="sealed",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(seal_tickets, migrations.RunPython.noop),
    ]
