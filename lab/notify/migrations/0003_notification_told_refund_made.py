from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notify", "0002_notification_kind_order_refunded"),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="told_refund_made",
            # False for the rows before it: a refund after one of their cancellation e-mails is mailed (at
            # worst told twice), never left untold after a "we are refunding" e-mail.
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
