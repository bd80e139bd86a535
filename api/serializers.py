"""Small input/output serializers, one pair per operation; no business logic here."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import pycountry
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.message import sanitize_address
from django.db.models import Field, Model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from lab.accounts.models import ApiToken, User
from lab.catalog.models import Paper, Product
from lab.catalog.placement import CropRect, FocalPoint, PixelBox
from lab.lib.email_address import email_canonical
from lab.orders.models import Asset, Order, OrderEvent, OrderItem
from lab.orders.pricing import MAX_COPIES_PER_ITEM, MAX_ITEMS_PER_ORDER
from lab.orders.quotes import Quote, QuoteLine

# The columns an e-mail address is stored in: User.email and Order.guest_email.
EMAIL_MAX_LENGTH = min(
    int(field.max_length or 0)
    for field in (User._meta.get_field("email"), Order._meta.get_field("guest_email"))
    if isinstance(field, Field)
)

# An input serializer is a Serializer[None]: it validates request data and is never given an instance.

_ModelT = TypeVar("_ModelT", bound=Model)
_InstanceT = TypeVar("_InstanceT")


# Output serializers render through a template: one instance per class whose fields are built and bound once.
# DRF builds a serializer's fields again for every serializer it makes (a deep copy of the declared fields
# that runs each field's __init__ again, nested serializers included; a ModelSerializer also introspects its
# model again): for a quote of three lines that was about a fifth of the request's CPU, and half of an
# order's answer. An output's fields depend on its class alone, so every instance renders with its class's
# template, with the same fields and the same `to_representation` code DRF runs. The template has no context
# (reading one raises): a serializer that needs its context (a token shown once) stays a plain Serializer.
# (Comments, not docstrings: the schema would show a docstring to API users.)
class _NoContext(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise ImproperlyConfigured(f"an output serializer renders without a context (asked for {key!r})")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_CONTEXT = _NoContext()
_TEMPLATES: dict[type[Any], serializers.Serializer[Any]] = {}
_TEMPLATES_LOCK = threading.Lock()


def _template_render(serializer: serializers.Serializer[Any], instance: Any) -> dict[str, Any]:
    cls = type(serializer)
    template = _TEMPLATES.get(cls)
    if template is None:
        with _TEMPLATES_LOCK:
            template = _TEMPLATES.get(cls)
            if template is None:
                template = cls()
                template._context = _NO_CONTEXT  # DRF's own attribute
                template.fields  # noqa: B018  # built and bound here, once
                _TEMPLATES[cls] = template
    rendered: dict[str, Any] = serializers.Serializer.to_representation(template, instance)
    return rendered


class Output(serializers.Serializer[_InstanceT]):
    def to_representation(self, instance: _InstanceT) -> dict[str, Any]:
        return _template_render(self, instance)


class ModelOutput(serializers.ModelSerializer[_ModelT]):
    # Every field read-only: an output renders each of its fields, so the schema lists each as required (a
    # model field with a default or blank=True was optional there, though always sent).
    def get_extra_kwargs(self) -> dict[str, Any]:
        extra: dict[str, Any] = super().get_extra_kwargs()
        for name in self.Meta.fields:
            extra[name] = {**extra.get(name, {}), "read_only": True}
        return extra

    def to_representation(self, instance: _ModelT) -> dict[str, Any]:
        return _template_render(self, instance)


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


class ProductOutput(ModelOutput[Product]):
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


MD5_HEX = r"^[0-9a-fA-F]{32}$"
SHA256_HEX = r"^[0-9a-fA-F]{64}$"
PHOTO_URL_MAX_LENGTH = 2000


# What `POST assets` validates, whichever way the photo comes; the schema declares a body per media type
# (AssetFileUpload, AssetUrlUpload), with the same rules.
class AssetUploadInput(serializers.Serializer[None]):
    file = serializers.FileField(required=False, allow_empty_file=True)
    url = serializers.URLField(required=False, max_length=PHOTO_URL_MAX_LENGTH)
    md5 = serializers.RegexField(MD5_HEX, required=False)
    sha256 = serializers.RegexField(SHA256_HEX, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("file")) == bool(attrs.get("url")):
            raise serializers.ValidationError("Send exactly one of `file` (multipart) or `url`.")
        return attrs


class AssetFileUpload(serializers.Serializer[None]):
    """`multipart/form-data`: the photo as the part named `file`, and optionally its digests (checked)."""

    file = serializers.FileField(allow_empty_file=True, help_text="The photo (JPEG, PNG, TIFF or HEIC).")
    md5 = serializers.RegexField(
        MD5_HEX, required=False, help_text="The photo's MD5, hex: refused if it differs."
    )
    sha256 = serializers.RegexField(
        SHA256_HEX, required=False, help_text="The photo's SHA-256, hex: refused if it differs."
    )


class AssetUrlUpload(serializers.Serializer[None]):
    """`application/json` (or a form without a file): an https URL of the photo, fetched by the lab."""

    url = serializers.URLField(
        max_length=PHOTO_URL_MAX_LENGTH, help_text="Where the lab fetches the photo from."
    )


class AssetFailureOutput(serializers.Serializer[None]):
    code = serializers.CharField(help_text="Why the photo failed, e.g. `corrupt_image`, `url_fetch_status`.")
    message = serializers.CharField(help_text="The same in words; may be empty.")


class AssetOutput(ModelOutput[Asset]):
    failure = serializers.SerializerMethodField(help_text="Why a failed photo failed; null unless `failed`.")

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

    @extend_schema_field(AssetFailureOutput(allow_null=True))
    def get_failure(self, asset: Asset) -> dict[str, str] | None:
        if asset.status != Asset.Status.FAILED:
            return None
        return {"code": asset.failure_code, "message": asset.failure_message}


class CropRectSerializer(serializers.Serializer[CropRect]):
    """A rectangle of the upright photo (after its EXIF orientation), each value a share 0..1 of its side."""

    x = serializers.FloatField(help_text="Left edge: 0..1 of the upright photo's width.")
    y = serializers.FloatField(help_text="Top edge: 0..1 of the upright photo's height.")
    width = serializers.FloatField(help_text="More than 0; x + width is at most 1.")
    height = serializers.FloatField(help_text="More than 0; y + height is at most 1.")


class FocalPointSerializer(serializers.Serializer[FocalPoint]):
    """A point of the upright photo that the automatic crop keeps at its centre where it can."""

    x = serializers.FloatField(help_text="0..1 of the upright photo's width (0 = left edge).")
    y = serializers.FloatField(help_text="0..1 of the upright photo's height (0 = top edge).")


class PixelBoxOutput(serializers.Serializer[PixelBox]):
    """A box of the upright photo in whole pixels; its aspect is the print image area's to within a pixel."""

    x = serializers.IntegerField(help_text="Left edge, in pixels from the upright photo's left.")
    y = serializers.IntegerField(help_text="Top edge, in pixels from the upright photo's top.")
    width = serializers.IntegerField(help_text="In pixels.")
    height = serializers.IntegerField(help_text="In pixels.")


class PrintOrientationField(serializers.ChoiceField):
    """`portrait` or `landscape`; null for an item ordered before placement options existed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=OrderItem.PrintOrientation.choices, allow_null=True, **kwargs)

    def to_representation(self, value: Any) -> Any:
        return super().to_representation(value) if value else None


CROP_HELP = (
    "Optional crop of the upright photo (0..1 per axis). Its aspect in the photo's pixels must be the print "
    "image area's (paper minus border, in the print orientation) within 1 % (`crop_aspect_mismatch`); the "
    "crop box is trimmed to the exact aspect inside it. `fill` only (`crop_requires_fill`); not with "
    "`focal_point` (`crop_and_focal_point`); outside 0..1, or under one of the photo's pixels on a side: "
    "`crop_out_of_bounds`."
)
FOCAL_POINT_HELP = (
    "Optional point (0..1 per axis) the automatic fill crop centres on, moved only as far as needed to stay "
    "inside the photo. `fill` only; outside 0..1: `focal_point_out_of_bounds`."
)
ORIENTATION_HELP = (
    "`auto` (default): the print's long side follows the long side of what is printed (the crop if given, "
    "else the photo; a square prints portrait). `portrait`/`landscape` force it."
)
BORDER_HELP = (
    "White border inside the paper, the same on all four sides, in millimetres: 0 (default) to a quarter of "
    "the paper's short side (25.4 mm on 4x6); otherwise `border_out_of_range`."
)
CROP_BOX_HELP = "The exact region of the upright photo that is printed, in its pixels."
PRINT_ORIENTATION_HELP = "The paper's orientation the print comes out in (what `orientation` resolved to)."
EFFECTIVE_DPI_HELP = "Photo pixels per printed inch: of the crop box (fill) or of the whole photo (fit)."


class ItemInput(serializers.Serializer[None]):
    sku = serializers.CharField(max_length=40)
    asset = serializers.CharField(max_length=64)
    copies = serializers.IntegerField(min_value=1, max_value=MAX_COPIES_PER_ITEM)
    sizing = serializers.ChoiceField(choices=OrderItem.Sizing.choices, default=OrderItem.Sizing.FILL)
    crop = CropRectSerializer(required=False, allow_null=True, help_text=CROP_HELP)
    focal_point = FocalPointSerializer(required=False, allow_null=True, help_text=FOCAL_POINT_HELP)
    orientation = serializers.ChoiceField(
        choices=OrderItem.Orientation.choices, default=OrderItem.Orientation.AUTO, help_text=ORIENTATION_HELP
    )
    border_mm = serializers.FloatField(default=0.0, help_text=BORDER_HELP)


class QuoteInput(serializers.Serializer[None]):
    items = ItemInput(many=True, allow_empty=False, max_length=MAX_ITEMS_PER_ORDER)  # type: ignore[call-arg]
    shipping_method = serializers.ChoiceField(choices=Order.ShippingMethod.choices)


class GuestInput(serializers.Serializer[None]):
    email = StoredEmailField()
    birth_date = serializers.DateField()
    privacy_policy_version = serializers.CharField(max_length=32)


class OrderInput(QuoteInput):
    shipping_address = AddressSerializer()
    guest = GuestInput(required=False, help_text="Required when ordering without an account.")


class OrderAddressInput(serializers.Serializer[None]):
    shipping_address = AddressSerializer(help_text="Validated as when the order was placed.")


class PreflightOutput(serializers.Serializer[dict[str, object]]):
    state = serializers.CharField(required=False)
    effective_dpi = serializers.IntegerField(required=False)
    min_dpi = serializers.IntegerField(required=False)
    aspect_ratio_mismatch_percent = serializers.FloatField(required=False)
    cropped_percent = serializers.FloatField(required=False)
    border_percent = serializers.FloatField(required=False)
    color_note = serializers.CharField(required=False)
    warnings = serializers.ListField(child=serializers.CharField(), required=False)


class QuoteLineOutput(serializers.Serializer[QuoteLine]):
    position = serializers.IntegerField()
    sku = serializers.CharField(source="product.sku")
    asset = serializers.UUIDField(source="asset.pk")
    copies = serializers.IntegerField()
    sizing = serializers.CharField()
    unit_price_minor = serializers.IntegerField()
    line_total_minor = serializers.IntegerField()
    preflight = PreflightOutput()
    crop = CropRectSerializer(source="options.crop", allow_null=True, help_text="The crop as sent, or null.")
    focal_point = FocalPointSerializer(
        source="options.focal_point", allow_null=True, help_text="The focal point as sent, or null."
    )
    orientation = serializers.ChoiceField(
        choices=OrderItem.Orientation.choices, source="options.orientation", help_text="As sent (or `auto`)."
    )
    border_mm = serializers.FloatField(source="options.border_mm", help_text="As sent (or 0).")
    print_orientation = serializers.ChoiceField(
        choices=OrderItem.PrintOrientation.choices,
        source="placement.print_orientation",
        help_text=PRINT_ORIENTATION_HELP,
    )
    crop_box_px = PixelBoxOutput(source="placement.crop_box", help_text=CROP_BOX_HELP)
    effective_dpi = serializers.IntegerField(source="placement.effective_dpi", help_text=EFFECTIVE_DPI_HELP)


class QuoteOutput(Output[Quote]):
    items = QuoteLineOutput(many=True, source="lines")
    shipping_method = serializers.CharField()
    subtotal_minor = serializers.IntegerField()
    shipping_minor = serializers.IntegerField()
    total_minor = serializers.IntegerField()
    currency = serializers.CharField()


class OrderItemOutput(ModelOutput[OrderItem]):
    sku = serializers.CharField(source="product.sku")
    asset = serializers.UUIDField(source="asset_id")
    preflight = PreflightOutput()
    crop = CropRectSerializer(
        source="placement_options.crop", allow_null=True, help_text="The crop as sent, or null."
    )
    focal_point = FocalPointSerializer(
        source="placement_options.focal_point", allow_null=True, help_text="The focal point as sent, or null."
    )
    print_orientation = PrintOrientationField(
        help_text=PRINT_ORIENTATION_HELP + " Null for an item ordered before placement options existed."
    )
    crop_box_px = PixelBoxOutput(
        allow_null=True,
        help_text=CROP_BOX_HELP + " Null for an item ordered before placement options existed.",
    )
    effective_dpi = serializers.IntegerField(allow_null=True, help_text=EFFECTIVE_DPI_HELP)

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
            "crop",
            "focal_point",
            "orientation",
            "border_mm",
            "print_orientation",
            "crop_box_px",
            "effective_dpi",
        )
        extra_kwargs = {
            "orientation": {"help_text": "As sent (or `auto`)."},
            "border_mm": {"help_text": "As sent (or 0)."},
        }


class OrderEventOutput(ModelOutput[OrderEvent]):
    class Meta:
        model = OrderEvent
        fields = ("kind", "from_status", "to_status", "actor_kind", "created_at")


# One enum component for a payment's status, wherever it is sent (`payment.status`, a summary's
# `payment_status`): drf-spectacular names enums by field name, and "status" is an order's and a photo's too.
@extend_schema_field(
    serializers.ChoiceField(choices=Order.PaymentStatus.choices), component_name="PaymentStatusEnum"
)
class PaymentStatusField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=Order.PaymentStatus.choices, **kwargs)


class OrderSummaryOutput(ModelOutput[Order]):
    payment_status = PaymentStatusField(read_only=True)

    class Meta:
        model = Order
        fields = ("ref", "status", "payment_status", "total_minor", "currency", "created_at", "promised_by")


class PaymentOutput(serializers.Serializer[None]):
    status = PaymentStatusField()
    payment_intent = serializers.CharField(
        help_text="The Stripe PaymentIntent's id; empty before it is made."
    )
    client_secret = serializers.CharField(
        help_text="What Stripe.js confirms the payment with, only while the order awaits payment; else empty."
    )


# An order as lab.orders.selectors.order_with_lines loads it: its items and events in two queries.
class OrderOutput(ModelOutput[Order]):
    items = OrderItemOutput(many=True, source="loaded_items")
    timeline = OrderEventOutput(many=True, source="loaded_events")
    shipping_address = AddressJSONField()
    payment = serializers.SerializerMethodField()
    # The question put to the customer while the order is held for them, never the staff's note of a hold
    # for money taken back at Stripe (Order.customer_question); empty otherwise.
    hold_message = serializers.CharField(
        source="customer_question",
        help_text="While the order is on hold for the customer: what they are asked. Empty otherwise.",
    )

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

    @extend_schema_field(PaymentOutput)
    def get_payment(self, order: Order) -> dict[str, str]:
        return {
            "status": order.payment_status,
            "payment_intent": order.payment_intent_id,
            "client_secret": order.payable_client_secret,
        }


class OrderCreatedOutput(OrderOutput):
    guest_token = serializers.CharField(allow_null=True, help_text="Shown once: send it as X-Order-Token.")

    class Meta(OrderOutput.Meta):
        fields = (*OrderOutput.Meta.fields, "guest_token")


PAPERS = Paper.choices
