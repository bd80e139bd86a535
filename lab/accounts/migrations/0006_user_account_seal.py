"""Accounts get their seal (lab/accounts/seal.py) and API tokens their binding (lab/accounts/tokens.py). The
accounts and tokens there are when this runs are sealed and bound as they are: the upgrade trusts the state it
finds, as the operator running it on the app host does."""

from django.db import migrations, models

from lab.accounts.seal import seal_value
from lab.accounts.tokens import token_binding

BATCH = 500


def seal_accounts_and_bind_tokens(apps, schema_editor):  # type: ignore[no-untyped-def]
    User = apps.get_model("accounts", "User")
    ApiToken = apps.get_model("accounts", "ApiToken")
    sealed = []
    for user in User.objects.prefetch_related("groups").iterator(chunk_size=BATCH):
        user.account_seal = seal_value(
            public_id=user.public_id,
            roles=[group.name for group in user.groups.all()],
            is_active=user.is_active,
            password=user.password,
        )
        sealed.append(user)
        if len(sealed) == BATCH:
            User.objects.bulk_update(sealed, ["account_seal"])
            sealed = []
    User.objects.bulk_update(sealed, ["account_seal"])
    bound = []
    for token in ApiToken.objects.select_related("user").iterator(chunk_size=BATCH):
        token.binding = token_binding(owner_public_id=token.user.public_id, key_sha256=token.key_sha256)
        bound.append(token)
    ApiToken.objects.bulk_update(bound, ["binding"], batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_api_tokens_and_security_events"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="account_seal",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="binding",
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
                    ("account_seal_broken", "Account Seal Broken"),
                ],
                max_length=32,
            ),
        ),
        migrations.RunPython(seal_accounts_and_bind_tokens, migrations.RunPython.noop),
    ]
