from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notify", "0003_notification_told_refund_made"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookendpoint",
            name="set_by_token",
            # Empty for the endpoints registered before: which token set their URL was never recorded, so a
            # revocation leaves them on (a password change still turns every endpoint off). Nothing else of
            # theirs changes: an active endpoint stays active.
            field=models.CharField(blank=True, db_default="", default="", max_length=36),
        ),
    ]
