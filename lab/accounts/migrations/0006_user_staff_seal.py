"""Staff accounts get their seal (lab/accounts/seal.py). The accounts that hold a staff role when this runs are
sealed as they are: the upgrade trusts the state it finds, as an operator running it on the app host would."""

from django.db import migrations, models

from lab.accounts.roles import STAFF_ROLES
from lab.accounts.seal import seal_value


def seal_staff_accounts(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    for user in User.objects.filter(groups__name__in=STAFF_ROLES).distinct():
        roles = list(user.groups.values_list("name", flat=True))
        user.staff_seal = seal_value(
            public_id=user.public_id, roles=roles, is_active=user.is_active, password=user.password
        )
        user.save(update_fields=["staff_seal"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_api_tokens_and_security_events"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="staff_seal",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AlterField(
            model_name="securityevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("sign_in_failed", "Sign In Failed"),
                    ("sign_in_locked", "Sign In Locked"),
                    ("token_issued", "Token Issued"),
                    ("token_revoked", "Token Revoked"),
                    ("password_changed", "Password Changed"),
                    ("staff_seal_broken", "Staff Seal Broken"),
                ],
                max_length=32,
            ),
        ),
        migrations.RunPython(seal_staff_accounts, migrations.RunPython.noop),
    ]
