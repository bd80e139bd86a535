"""Input/output serializers of quotes and orders: items with their placement, the order and its
payment; no logic here."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.contact_serializers import AddressJSONField, AddressSerializer, StoredEmailField
from api.output_serializers import ModelOutput, Output
from lab.catalog.placement import CropRect, FocalPoint, PixelBox
from lab.orders.models import Order, OrderEvent, OrderItem
from lab.orders.pricing import MAX_COPIES_PER_ITEM, MAX_ITEMS_PER_ORDER
from lab.orders.quotes import Quote, QuoteLine


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
