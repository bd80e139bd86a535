"""Input/output serializers of accounts: registration, sign-in tokens, the account itself; no logic
here."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.contact_serializers import AddressJSONField, AddressSerializer, SignInEmailField, StoredEmailField
from lab.accounts.models import ApiToken, User


class RegistrationInput(serializers.Serializer[None]):
    email = StoredEmailField()
    password = serializers.CharField(write_only=True, min_length=1, max_length=200)
    full_name = serializers.CharField(max_length=200)
    address = AddressSerializer()
    birth_date = serializers.DateField(help_text="Age check: nobody under 13 may register.")
    privacy_policy_version = serializers.CharField(max_length=32, help_text="The policy version agreed to.")
    marketing_opt_in = serializers.BooleanField(default=False)


class AccountOutput(serializers.ModelSerializer[User]):
    id = serializers.UUIDField(source="public_id")
    address = AddressJSONField()
    pending_email = serializers.CharField(
        read_only=True,
        help_text="A new e-mail address asked for with `PATCH me`, waiting for the token mailed to it"
        " (`POST me/email/confirm`); until then `email` is unchanged. Empty when none waits.",
    )

    class Meta:
        model = User
        fields: tuple[str, ...] = (
            "id",
            "email",
            "pending_email",
            "full_name",
            "address",
            "marketing_opt_in",
            "date_joined",
        )
        read_only_fields: tuple[str, ...] = fields  # all sent, always: required in the schema


class RegistrationOutput(AccountOutput):
    token = serializers.SerializerMethodField(
        help_text="API token: send it as `Authorization: Token <token>`."
    )

    class Meta(AccountOutput.Meta):
        fields = (*AccountOutput.Meta.fields, "token")

    def get_token(self, user: User) -> str:
        return str(self.context["token"])


class TokenInput(serializers.Serializer[None]):
    email = SignInEmailField()
    password = serializers.CharField(max_length=200)
    name = serializers.CharField(
        max_length=100, required=False, default="api", help_text="A label to tell your tokens apart."
    )


class TokenOutput(serializers.Serializer[ApiToken]):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    key_prefix = serializers.CharField(help_text="The first 8 characters of the key.")
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="To the minute.")


class TokenCreatedOutput(TokenOutput):
    token = serializers.SerializerMethodField(
        help_text="Shown once: send it as `Authorization: Token <token>`. Only its hash is stored."
    )

    def get_token(self, token: ApiToken) -> str:
        return str(self.context["key"])


class TokenRevokeInput(serializers.Serializer[None]):
    password = serializers.CharField(
        required=False,
        max_length=200,
        write_only=True,
        help_text="Your current password: needed to revoke any token but the one this request uses.",
    )


class MeUpdateInput(serializers.Serializer[None]):
    full_name = serializers.CharField(max_length=200, required=False)
    email = StoredEmailField(
        required=False,
        help_text="A new address waits as `pending_email` (answered 200) until the token mailed to it is"
        " confirmed (`POST me/email/confirm`); the address the account has is told once it changes.",
    )
    address = AddressSerializer(required=False)
    marketing_opt_in = serializers.BooleanField(required=False)
    current_password = serializers.CharField(max_length=200, required=False)
    new_password = serializers.CharField(max_length=200, required=False)


class EmailConfirmInput(serializers.Serializer[None]):
    token = serializers.CharField(
        max_length=100, write_only=True, help_text="The token mailed to the new address."
    )


class MeUpdatedOutput(AccountOutput):
    orders_keeping_their_address = serializers.SerializerMethodField(
        help_text="With a new `address`: the refs of your orders still to ship that keep the address they"
        " were placed with (an order's address is its own): change one with `PATCH /api/v1/orders/{ref}`"
        " while it is not yet at the packing stage. Empty when the request changes no address."
    )

    class Meta(AccountOutput.Meta):
        fields = (*AccountOutput.Meta.fields, "orders_keeping_their_address")

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_orders_keeping_their_address(self, user: User) -> list[str]:
        return list(self.context["orders_keeping_their_address"])
