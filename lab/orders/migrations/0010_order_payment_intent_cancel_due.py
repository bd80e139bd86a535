"""Orders record an owed cancel of their PaymentIntent (lab/orders/payments.py: payment_cancel_decide). Orders
cancelled unpaid before this ran may still have a payable intent at Stripe (the cancel rested on one task
message): each is marked owed, and the payments sweep asks Stripe once for each."""

from django.db import migrations, models

UNPAID_PAYMENT_STATUSES = ("none", "requires_payment", "failed")  # payments.UNPAID_PAYMENT_STATUSES


def mark_cancelled_intents_owed(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    Order.objects.filter(status="cancelled", payment_status__in=UNPAID_PAYMENT_STATUSES).exclude(
        payment_intent_id=""
    ).update(payment_intent_cancel_due=True)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0009_order_tracking_number_unique"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="payment_intent_cancel_due",
            # db_default too: a row inserted by SQL that does not name the column (bench/) is not owed one.
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddIndex(
            model_name="order",
            index=models.Index(
                condition=models.Q(("payment_intent_cancel_due", True)),
                fields=["payment_intent_cancel_due"],
                name="order_intent_cancel_due",
            ),
        ),
        migrations.RunPython(mark_cancelled_intents_owed, migrations.RunPython.noop),
    ]
