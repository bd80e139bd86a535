"""Small input/output serializers, one pair per operation; no business logic here."""

from __future__ import annotations

from typing import Any

import pycountry
from rest_framework import serializers

from lab.accounts.models import User
from lab.catalog.models import Paper, Product
from lab.orders.models import Asset, Order, OrderEvent, OrderItem
from lab.orders.pricing import MAX_COPIES_PER_ITEM, MAX_ITEMS_PER_ORDER


class AddressSerializer(serializers.Serializer):
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


class ProductOutput(serializers.ModelSerializer):
    size = serializers.CharField(source="size_label")

    class Meta:
        model = Product
        fields = (
            "sku",
            "name",
            "size",
            "width_in",
            "height_in",
            "paper",
            "price_minor",
            "currency",
            "min_dpi",
        )


class RegistrationInput(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, min_length=1, max_length=200)
    full_name = serializers.CharField(max_length=200)
    address = AddressSerializer()
    birth_date = serializers.DateField(help_text="Age check: nobody under 13 may register.")
    privacy_policy_version = serializers.CharField(max_length=32, help_text="The policy version agreed to.")
    marketing_opt_in = serializers.BooleanField(default=False)


class AccountOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")

    class Meta:
        model = User
        fields: tuple[str, ...] = ("id", "email", "full_name", "address", "marketing_opt_in", "date_joined")


class RegistrationOutput(AccountOutput):
    token = serializers.SerializerMethodField(
        help_text="API token: send it as `Authorization: Token <token>`."
    )

    class Meta(AccountOutput.Meta):
        fields = (*AccountOutput.Meta.fields, "token")

    def get_token(self, user: User) -> str:
        return str(self.context["token"])


class TokenInput(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(max_length=200)
    name = serializers.CharField(
        max_length=100, required=False, default="api", help_text="A label to tell your tokens apart."
    )


class TokenOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    key_prefix = serializers.CharField(help_text="The first 8 characters of the key.")
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="To the minute.")


class TokenCreatedOutput(TokenOutput):
    token = serializers.SerializerMethodField(
        help_text="Shown once: send it as `Authorization: Token <token>`. Only its hash is stored."
    )

    def get_token(self, token: object) -> str:
        return str(self.context["key"])


class MeUpdateInput(serializers.Serializer):
    full_name = serializers.CharField(max_length=200, required=False)
    email = serializers.EmailField(required=False)
    address = AddressSerializer(required=False)
    marketing_opt_in = serializers.BooleanField(required=False)
    current_password = serializers.CharField(max_length=200, required=False)
    new_password = serializers.CharField(max_length=200, required=False)


class AssetUploadInput(serializers.Serializer):
    file = serializers.FileField(required=False, allow_empty_file=True)
    url = serializers.URLField(required=False, max_length=2000)
    md5 = serializers.RegexField(r"^[0-9a-fA-F]{32}$", required=False)
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("file")) == bool(attrs.get("url")):
            raise serializers.ValidationError("Send exactly one of `file` (multipart) or `url`.")
        return attrs


class AssetOutput(serializers.ModelSerializer):
    failure = serializers.SerializerMethodField()

    class Meta:
        model = Asset
        fields = (
            "id",
            "status",
            "failure",
            "sha256",
            "size_bytes",
            "width_px",
            "height_px",
            "image_format",
            "color_mode",
            "has_icc_profile",
            "exif_orientation",
            "gps_stripped",
            "created_at",
        )

    def get_failure(self, asset: Asset) -> dict[str, str] | None:
        if asset.status != Asset.Status.FAILED:
            return None
        return {"code": asset.failure_code, "message": asset.failure_message}


class ItemInput(serializers.Serializer):
    sku = serializers.CharField(max_length=40)
    asset = serializers.CharField(max_length=64)
    copies = serializers.IntegerField(min_value=1, max_value=MAX_COPIES_PER_ITEM)
    sizing = serializers.ChoiceField(choices=OrderItem.Sizing.choices, default=OrderItem.Sizing.FILL)


class QuoteInput(serializers.Serializer):
    items = ItemInput(many=True, allow_empty=False, max_length=MAX_ITEMS_PER_ORDER)  # type: ignore[call-arg]
    shipping_method = serializers.ChoiceField(choices=Order.ShippingMethod.choices)


class GuestInput(serializers.Serializer):
    email = serializers.EmailField()
    birth_date = serializers.DateField()
    privacy_policy_version = serializers.CharField(max_length=32)


class OrderInput(QuoteInput):
    shipping_address = AddressSerializer()
    guest = GuestInput(required=False, help_text="Required when ordering without an account.")


class PreflightOutput(serializers.Serializer):
    state = serializers.CharField(required=False)
    effective_dpi = serializers.IntegerField(required=False)
    min_dpi = serializers.IntegerField(required=False)
    aspect_ratio_mismatch_percent = serializers.FloatField(required=False)
    cropped_percent = serializers.FloatField(required=False)
    border_percent = serializers.FloatField(required=False)
    color_note = serializers.CharField(required=False)
    warnings = serializers.ListField(child=serializers.CharField(), required=False)


class QuoteLineOutput(serializers.Serializer):
    position = serializers.IntegerField()
    sku = serializers.CharField(source="product.sku")
    asset = serializers.UUIDField(source="asset.pk")
    copies = serializers.IntegerField()
    sizing = serializers.CharField()
    unit_price_minor = serializers.IntegerField()
    line_total_minor = serializers.IntegerField()
    preflight = PreflightOutput()


class QuoteOutput(serializers.Serializer):
    items = QuoteLineOutput(many=True, source="lines")
    shipping_method = serializers.CharField()
    subtotal_minor = serializers.IntegerField()
    shipping_minor = serializers.IntegerField()
    total_minor = serializers.IntegerField()
    currency = serializers.CharField()


class OrderItemOutput(serializers.ModelSerializer):
    sku = serializers.CharField(source="product.sku")
    asset = serializers.UUIDField(source="asset_id")
    preflight = PreflightOutput()

    class Meta:
        model = OrderItem
        fields = (
            "position",
            "sku",
            "asset",
            "copies",
            "sizing",
            "unit_price_minor",
            "line_total_minor",
            "preflight",
        )


class OrderEventOutput(serializers.ModelSerializer):
    class Meta:
        model = OrderEvent
        fields = ("kind", "from_status", "to_status", "actor_kind", "created_at")


class OrderSummaryOutput(serializers.ModelSerializer):
    class Meta:
        model = Order
        fields = ("ref", "status", "payment_status", "total_minor", "currency", "created_at", "promised_by")


class OrderOutput(serializers.ModelSerializer):
    items = OrderItemOutput(many=True)
    timeline = OrderEventOutput(many=True, source="events")
    payment = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields: tuple[str, ...] = (
            "ref",
            "status",
            "shipping_method",
            "shipping_address",
            "subtotal_minor",
            "shipping_minor",
            "total_minor",
            "currency",
            "payment",
            "promised_by",
            "carrier",
            "tracking_number",
            "hold_message",
            "created_at",
            "items",
            "timeline",
        )

    def get_payment(self, order: Order) -> dict[str, str]:
        return {
            "status": order.payment_status,
            "payment_intent": order.payment_intent_id,
            "client_secret": order.payment_client_secret,
        }


class OrderCreatedOutput(OrderOutput):
    guest_token = serializers.CharField(allow_null=True, help_text="Shown once: send it as X-Order-Token.")

    class Meta(OrderOutput.Meta):
        fields = (*OrderOutput.Meta.fields, "guest_token")


PAPERS = Paper.choices
