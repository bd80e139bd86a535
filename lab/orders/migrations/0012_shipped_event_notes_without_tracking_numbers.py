"""The shipping events' notes keep the carrier only (lab/packing/station.py: order_ship). The station wrote
"<carrier> <tracking number>" into the note of every packed → shipped event, where the order page showed it to
every floor role for good, and the tracking number is personal data kept on the order row alone.

Only notes of exactly the station's format are rewritten: a staff "status_changed" event from packed to
shipped whose note is one of the station's carrier codes (ups, usps, fedex, dhl, other), one space, and a
number as the station accepted it (upper-case letters, digits, spaces and dashes, 5 to 64 characters,
starting and ending with a letter or digit). Such a note becomes the carrier code. Any other note is left as
it is. The numbers cannot be put back: going backwards changes nothing.
"""

from django.db import migrations

CARRIERS = ("ups", "usps", "fedex", "dhl", "other")  # lab.packing.station.Carrier's values
TRACKING_NUMBER = r"[A-Z0-9][A-Z0-9 -]{3,62}[A-Z0-9]"  # lab.packing.station._TRACKING


def keep_the_carrier_only(apps, schema_editor):  # type: ignore[no-untyped-def]
    OrderEvent = apps.get_model("orders", "OrderEvent")
    shipping_events = OrderEvent.objects.filter(
        kind="status_changed", from_status="packed", to_status="shipped", actor_kind="staff"
    )
    for carrier in CARRIERS:
        shipping_events.filter(note__regex=rf"^{carrier} {TRACKING_NUMBER}$").update(note=carrier)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0010_order_payment_intent_cancel_due"),
    ]

    operations = [
        migrations.RunPython(keep_the_carrier_only, migrations.RunPython.noop, elidable=True),
    ]
