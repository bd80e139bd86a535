"""One parcel, one order: a tracking number is on at most one order (lab/packing/station.py)."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import Count, F, Value
from django.db.models.functions import Replace


def _parcel():
    """lab.orders.models.tracking_key as of this migration: the number without spaces and dashes."""
    return Replace(Replace(F("tracking_number"), Value(" "), Value("")), Value("-"), Value(""))


def refuse_shared_tracking_numbers(apps, schema_editor):
    """An upgrade over boxes shipped under one label (the station allowed it before) stops with their refs,
    rather than with the database's bare unique violation: a person decides which order keeps the number."""
    Order = apps.get_model("orders", "Order")
    parcels = Order.objects.exclude(tracking_number="").annotate(parcel=_parcel())
    shared = parcels.values("parcel").annotate(orders=Count("pk")).filter(orders__gt=1).values_list("parcel")
    refs = sorted(parcels.filter(parcel__in=[parcel for (parcel,) in shared]).values_list("ref", flat=True))
    if refs:
        raise RuntimeError(
            "these orders share a tracking number; correct them before this upgrade: " + ", ".join(refs)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0008_order_address_sealed"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(refuse_shared_tracking_numbers, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="order",
            constraint=models.UniqueConstraint(
                _parcel(),
                condition=models.Q(("tracking_number", ""), _negated=True),
                name="order_tracking_number_unique",
            ),
        ),
    ]
