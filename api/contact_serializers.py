"""A postal address and an e-mail address as the API takes and sends them (an account's, an order's, a
guest's); no business logic here."""

from __future__ import annotations

from typing import Any

import pycountry
from django.conf import settings
from django.core.mail.message import sanitize_address
from django.db.models import Field
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from lab.accounts.models import User
from lab.lib.email_address import email_canonical
from lab.orders.models import Order

# The columns an e-mail address is stored in: User.email and Order.guest_email.
EMAIL_MAX_LENGTH = min(
    int(field.max_length or 0)
    for field in (User._meta.get_field("email"), Order._meta.get_field("guest_email"))
    if isinstance(field, Field)
)


class AddressSerializer(serializers.Serializer[None]):
    name = serializers.CharField(max_length=200)
    line1 = serializers.CharField(max_length=200)
    line2 = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    city = serializers.CharField(max_length=100)
    region = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    postal_code = serializers.CharField(max_length=20)
    country = serializers.CharField(
        min_length=2, max_length=2, help_text="ISO 3166-1 alpha-2 code, e.g. US, DE (case-insensitive)."
    )

    def validate_country(self, value: str) -> str:
        code = value.upper()
        if not code.isascii() or pycountry.countries.get(alpha_2=code) is None:
            raise serializers.ValidationError("Not an ISO 3166-1 alpha-2 country code.")
        return code


class AddressOutput(serializers.Serializer[dict[str, str]]):
    """A postal address as it was given (`Address`); empty (`{}`) once the personal data is erased."""

    name = serializers.CharField(required=False)
    line1 = serializers.CharField(required=False)
    line2 = serializers.CharField(required=False)
    city = serializers.CharField(required=False)
    region = serializers.CharField(required=False)
    postal_code = serializers.CharField(required=False)
    country = serializers.CharField(required=False, help_text="ISO 3166-1 alpha-2 code, upper case.")


@extend_schema_field(AddressOutput)
class AddressJSONField(serializers.JSONField):
    """A stored address (a JSON column), sent as it is stored; typed in the schema as `AddressOutput`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, **kwargs)


class StoredEmailField(serializers.EmailField):
    """An e-mail address as the lab stores it: in the form its mail goes to (`email_canonical`: the domain
    IDNA-encoded as Django's mail sends it, in lower-case ASCII; the local part lower-cased), so that every
    spelling of one mailbox (a domain in fullwidth letters, or with soft hyphens, or a script "e") is one
    account and one guest address; before, each spelling was stored as typed, an account and a guest
    order limit of its own. No longer than its column in that form (some letters grow, "İ".lower() is two
    characters, and so does a domain in Punycode), so an address the database cannot hold is a 400, not a
    500; and one Django can write into a message. EmailValidator passes "x@" + 60 * "ä" + ".com", whose
    domain IDNA cannot encode (a label over 63 characters once encoded): every e-mail to it raised in Django's
    sanitize_address, and the erasure that mails its receipts after it commits answered 500."""

    default_error_messages = {
        "not_encodable": "No e-mail can be sent to this address: it cannot be encoded (a part of its"
        " domain is too long once encoded, for example)."
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", EMAIL_MAX_LENGTH)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            value = email_canonical(value)
        except ValueError:  # UnicodeError is one
            return str(value)  # as given, for the validators' refusal (malformed, or not encodable)
        if len(value) > EMAIL_MAX_LENGTH:
            self.fail("max_length", max_length=EMAIL_MAX_LENGTH)
        return value

    def run_validators(self, value: Any) -> None:
        super().run_validators(value)  # a malformed address gets EmailValidator's message, and only that
        try:
            email_canonical(value)
            sanitize_address(value, settings.DEFAULT_CHARSET)  # what every send of a message does
        except ValueError:  # UnicodeError is one
            self.fail("not_encodable")


class SignInEmailField(serializers.EmailField):
    """The e-mail address of a sign-in, looked up in the form accounts store it (`email_canonical`); as
    given if it has none (no account has it, and the sign-in fails as for any unknown address)."""

    def to_internal_value(self, data: Any) -> str:
        value = str(super().to_internal_value(data))
        try:
            return email_canonical(value)
        except ValueError:
            return value
