"""One parcel, one order: a tracking number is on at most one order (lab/packing/station.py)."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import Count


def refuse_shared_tracking_numbers(apps, schema_editor):
    """An upgrade over boxes shipped under one label (the station allowed it before) stops with their refs,
    rather than with the database's bare unique violation: a person decides which order keeps the number."""
    Order = apps.get_model("orders", "Order")
    shared = (
        Order.objects.exclude(tracking_number="")
        .values("tracking_number")
        .annotate(orders=Count("pk"))
        .filter(orders__gt=1)
        .values_list("tracking_number", flat=True)
    )
    refs = sorted(Order.objects.filter(tracking_number__in=list(shared)).values_list("ref", flat=True))
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
                condition=models.Q(("tracking_number", ""), _negated=True),
                fields=("tracking_number",),
                name="order_tracking_number_unique",
            ),
        ),
    ]
