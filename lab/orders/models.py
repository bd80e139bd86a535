"""Orders, their items, the customer photos (assets) they print, and the records around payment.

Statuses are written only by lab.orders.transitions.order_transition; every change leaves an OrderEvent.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from typing import Any, ClassVar, cast

from django.conf import settings
from django.db import models, router, transaction
from django.db.models.functions import Now, Replace
from django.utils import timezone

from lab.catalog.placement import CropRect, FocalPoint, Orientation, PlacementOptions
from lab.lib.seals import resealing, seal_holds, seal_of, stored_row_sealed
from lab.orders.guest_tokens import guest_token_seal
from lab.orders.states import OrderStatus

# Crockford-style alphabet: no I, L, O, U; 12 symbols = 60 bits, unguessable and readable on a slip.
_REF_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_order_ref() -> str:
    return "PL-" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(12))


REF_REGEX = rf"PL-[{_REF_ALPHABET}]{{12}}"
_REF_PATTERN = re.compile(REF_REGEX)


def is_order_ref(value: str) -> bool:
    """True for a well-formed reference; anything else (NUL bytes included) is looked up nowhere."""
    return _REF_PATTERN.fullmatch(value) is not None


# Which photo an Asset row's bytes are, and whose: a row re-pointed in the database alone (another customer's
# key and file under one's own photo, one's own account as another photo's owner) reads nothing.
ASSET_SEALED_FIELDS = frozenset(
    {"owner", "owner_id", "guest_order", "guest_order_id", "data_key", "data_key_id", "blob_name"}
)
_ASSET_SEAL_SALT = "lab.orders.asset"
_ADDRESS_SEAL_SALT = "lab.orders.shipping_address"


def _asset_facts(
    *, asset_id: object, owner_id: object, guest_order_id: object, data_key_id: object, blob_name: str
) -> str:
    return f"{asset_id}|{owner_id or ''}|{guest_order_id or ''}|{data_key_id or ''}|{blob_name}"


def asset_seal(
    *, asset_id: object, owner_id: object, guest_order_id: object, data_key_id: object, blob_name: str
) -> str:
    """The seal (lab/lib/seals.py) of what ties a photo's row to its bytes and to its customer."""
    facts = _asset_facts(
        asset_id=asset_id,
        owner_id=owner_id,
        guest_order_id=guest_order_id,
        data_key_id=data_key_id,
        blob_name=blob_name,
    )
    return seal_of(_ASSET_SEAL_SALT, facts)


# What an order's address seal covers: where its box goes, and how (a pickup is handed over at the counter to
# the person its slip names, a parcel is posted to its address), and on which order's row (its primary key:
# the photos, items and events of an order name it by that key, so the ref, address, method and seal of one
# order moved onto another's row in the database, with the guest's e-mail and token, would have had the other
# order's prints posted, or handed over, to the first order's customer). Written by the lab's code alone.
ADDRESS_SEALED_FIELDS = frozenset({"shipping_address", "shipping_method"})


def order_address_seal(
    *, order_id: object, ref: str, customer_id: object, address: dict[str, Any], shipping_method: str
) -> str:
    """The seal (lab/lib/seals.py) of an order's row, shipping address and shipping method: the one
    `Order.address_is_sealed` accepts (since migration 0016)."""
    facts = _row_facts(
        order_id=order_id,
        ref=ref,
        customer_id=customer_id,
        address=address,
        shipping_method=shipping_method,
    )
    return seal_of(_ADDRESS_SEAL_SALT, facts)


def _row_facts(
    *, order_id: object, ref: str, customer_id: object, address: dict[str, Any], shipping_method: str
) -> str:
    facts = _shipping_facts(
        ref=ref, customer_id=customer_id, address=address, shipping_method=shipping_method
    )
    return f"order:{order_id}|{facts}"


def shipping_seal(*, ref: str, customer_id: object, address: dict[str, Any], shipping_method: str) -> str:
    """The seal of the address and method without the order's row, as orders were sealed from migration 0013
    (which still writes it) until 0016, which seals again, with the row, the orders whose seal of this kind
    holds (then `manage.py order_seals_upgrade`). Checked by nothing else but the packing slips stored before
    (lab.packing.services: rendered again without a tamper alarm)."""
    facts = _shipping_facts(
        ref=ref, customer_id=customer_id, address=address, shipping_method=shipping_method
    )
    return seal_of(_ADDRESS_SEAL_SALT, facts)


def _shipping_facts(*, ref: str, customer_id: object, address: dict[str, Any], shipping_method: str) -> str:
    return f"{_address_facts(ref=ref, customer_id=customer_id, address=address)}|method:{shipping_method}"


def address_seal(*, ref: str, customer_id: object, address: dict[str, Any]) -> str:
    """The seal of the address alone, as orders were sealed before the shipping method was (migrations 0008,
    which made them, and 0013, which seals again, with their method, the orders whose seal of this kind
    holds). Not checked by anything else."""
    return seal_of(_ADDRESS_SEAL_SALT, _address_facts(ref=ref, customer_id=customer_id, address=address))


def _address_facts(*, ref: str, customer_id: object, address: dict[str, Any]) -> str:
    return f"{ref}|{customer_id or ''}|{json.dumps(address or {}, sort_keys=True, separators=(',', ':'))}"


class Asset(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        READY = "ready"
        FAILED = "failed"
        PURGED = "purged"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assets"
    )
    # A guest's photo is bound to the first order that uses it; nobody else may use it afterwards.
    guest_order = models.ForeignKey(
        "Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    source_url = models.URLField(max_length=2000, blank=True)
    # A URL photo's fetch (lab/orders/photos.py): when its last task message was sent, when a worker last
    # claimed it, and how many claims it has had.
    fetch_sent_at = models.DateTimeField(null=True, blank=True)
    fetch_claimed_at = models.DateTimeField(null=True, blank=True)
    fetch_attempts = models.PositiveSmallIntegerField(default=0)
    data_key = models.ForeignKey("privacy.DataKey", null=True, on_delete=models.PROTECT, related_name="+")
    blob_name = models.CharField(max_length=64, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    width_px = models.PositiveIntegerField(default=0)
    height_px = models.PositiveIntegerField(default=0)
    image_format = models.CharField(max_length=16, blank=True)
    color_mode = models.CharField(max_length=16, blank=True)
    has_icc_profile = models.BooleanField(default=False)
    icc_description = models.CharField(max_length=200, blank=True)
    exif_orientation = models.PositiveSmallIntegerField(default=1)
    gps_stripped = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    purged_at = models.DateTimeField(null=True, blank=True)
    # asset_seal() of its owner, guest order, data key and file as the lab's own code last saved them.
    sealed = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes: ClassVar[list[models.Index]] = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"asset:{self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Seal what ties the row to its bytes and its customer whenever the lab's code writes it."""
        reseal, update_fields = resealing(kwargs.get("update_fields"), ASSET_SEALED_FIELDS, "sealed")
        if reseal and stored_row_sealed(self, lambda stored: stored.is_sealed):
            self.sealed = seal_of(_ASSET_SEAL_SALT, self._facts())
            kwargs["update_fields"] = update_fields
        super().save(*args, **kwargs)

    def _facts(self) -> str:
        return _asset_facts(
            asset_id=self.pk,
            owner_id=self.owner_id,
            guest_order_id=self.guest_order_id,
            data_key_id=self.data_key_id,
            blob_name=self.blob_name,
        )

    @property
    def is_sealed(self) -> bool:
        """Whether its owner, guest order, key and file are as the lab's own code last wrote them."""
        return seal_holds(self.sealed, _ASSET_SEAL_SALT, self._facts())

    def belongs_to(self, order: Order) -> bool:
        """Whether the order may print it: its customer's photo, or the photo its guest sent with it."""
        if order.customer_id is not None:
            return self.owner_id == order.customer_id
        return self.owner_id is None and self.guest_order_id == order.pk

    @property
    def oriented_size(self) -> tuple[int, int]:
        """Pixel size after EXIF orientation (5-8 swap the axes)."""
        if self.exif_orientation in (5, 6, 7, 8):
            return self.height_px, self.width_px
        return self.width_px, self.height_px


def tracking_key(field: str = "tracking_number") -> Replace:
    """A tracking number as it names its parcel: without the spaces and dashes it is printed or typed with."""
    return Replace(
        Replace(models.F(field), models.Value(" "), models.Value("")), models.Value("-"), models.Value("")
    )


def tracking_key_of(number: str) -> str:
    return number.replace(" ", "").replace("-", "")


class Order(models.Model):
    class ShippingMethod(models.TextChoices):
        STANDARD = "standard"
        EXPRESS = "express"
        PICKUP = "pickup"

    class PaymentStatus(models.TextChoices):
        NONE = "none"
        REQUIRES_PAYMENT = "requires_payment"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        # Decided under the order's lock and committed; the refund task or the reconciler asks Stripe.
        REFUND_PENDING = "refund_pending"
        REFUNDED = "refunded"
        DISPUTED = "disputed"  # the customer's bank opened a dispute: the order waits for a person

    ref = models.CharField(max_length=20, unique=True, default=new_order_ref, editable=False)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    guest_email = models.EmailField(blank=True)
    # Not the token's bare SHA-256: a seal of the ref and that hash (lab.orders.guest_tokens), since
    # migration 0015; the column keeps its name so a previous version's queries still run in an upgrade.
    guest_token_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.AWAITING_PAYMENT
    )
    shipping_address = models.JSONField(default=dict)
    shipping_method = models.CharField(max_length=16, choices=ShippingMethod.choices)
    subtotal_minor = models.PositiveIntegerField()
    shipping_minor = models.PositiveIntegerField()
    total_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    payment_intent_id = models.CharField(max_length=64, blank=True, db_index=True)
    payment_client_secret = models.CharField(max_length=200, blank=True)
    payment_status = models.CharField(
        max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.NONE
    )
    # The order was cancelled unpaid and its PaymentIntent is not yet cancelled at Stripe: set with the
    # cancel, cleared when Stripe settles it (lab.orders.payments.payment_intent_cancel, and its beat sweep).
    payment_intent_cancel_due = models.BooleanField(default=False, db_default=False)
    promised_by = models.DateTimeField(null=True, blank=True)
    hold_message = models.CharField(max_length=1000, blank=True)
    carrier = models.CharField(max_length=40, blank=True)
    tracking_number = models.CharField(max_length=64, blank=True)
    is_anonymized = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    # order_address_seal() of its row, shipping address and method as the lab's own code last saved them
    # (lab/packing/services.py prints a slip, the box's label, and the station ships or hands a box over, only
    # for a sealed address and method).
    address_sealed = models.CharField(max_length=64, blank=True)
    # When its packing slip was first served to a person at the packing station (the order's slip, or the
    # day's slips), on the database's clock: set by lab.packing. From then on a paper slip may carry the
    # address, so the customer no longer changes it, even when the order goes back to the floor (a reprint, a
    # hold): lab/orders/address.py.
    slip_served_at = models.DateTimeField(null=True, blank=True, db_default=None)

    # Not columns: the items (each with its product) and events an answer shows, set by
    # lab.orders.selectors.order_with_lines, or by the intake from the rows it has just written.
    loaded_items: list[OrderItem]
    loaded_events: list[OrderEvent]

    class Meta:
        ordering: ClassVar[list[str]] = ["-created_at"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["customer", "status", "created_at"]),
            models.Index(fields=["status", "created_at"]),
            # The sweep's owed intent cancels: a few rows among every order ever cancelled.
            models.Index(
                fields=["payment_intent_cancel_due"],
                condition=models.Q(payment_intent_cancel_due=True),
                name="order_intent_cancel_due",
            ),
        ]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=models.Q(total_minor=models.F("subtotal_minor") + models.F("shipping_minor")),
                name="order_total_adds_up",
            ),
            # A tracking number names one parcel: a label scanned for a second box is refused, even by two
            # packers at once (lab/packing/station.py answers it first, with the other order's ref). Compared
            # without spaces and dashes: "7946 1234 5678" typed and "794612345678" scanned are one parcel.
            models.UniqueConstraint(
                tracking_key(),
                condition=~models.Q(tracking_number=""),
                name="order_tracking_number_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.ref

    # The plain token the intake issues a new guest order (never stored): save() seals it with the new row.
    issued_guest_token = ""

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Seal the shipping address and method whenever the lab's code writes either (the order's creation, a
        customer's change of address)."""
        reseal, update_fields = resealing(
            kwargs.get("update_fields"), ADDRESS_SEALED_FIELDS, "address_sealed"
        )
        if not (reseal and stored_row_sealed(self, lambda stored: stored.address_is_sealed)):
            super().save(*args, **kwargs)
        elif self.pk is not None:
            self.address_sealed = seal_of(_ADDRESS_SEAL_SALT, self._shipping_facts())
            kwargs["update_fields"] = update_fields
            super().save(*args, **kwargs)
        else:
            # A new row has its key only once inserted: sealed with it in the same transaction (an insert
            # whose seal was not written is not kept): one more query, the UPDATE, and no savepoint.
            using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
            with transaction.atomic(using=using, savepoint=False):
                self.address_sealed = ""
                super().save(*args, **kwargs)
                self.address_sealed = seal_of(_ADDRESS_SEAL_SALT, self._shipping_facts())
                sealed = {"address_sealed": self.address_sealed}
                if self.issued_guest_token:
                    # A guest's token is sealed with the row's key too (lab/orders/guest_tokens.py).
                    self.guest_token_hash = guest_token_seal(
                        order_id=self.pk, ref=self.ref, token=self.issued_guest_token
                    )
                    sealed["guest_token_hash"] = self.guest_token_hash
                rows = type(self)._base_manager.using(using).filter(pk=self.pk)
                rows.update(**sealed)

    @property
    def is_guest(self) -> bool:
        return self.customer_id is None

    @property
    def payable_client_secret(self) -> str:
        """The secret a browser confirms the payment with, only while the order awaits payment: a cancelled
        order's intent must not be offered for payment (nor a paid one's offered twice)."""
        return self.payment_client_secret if self.status == OrderStatus.AWAITING_PAYMENT else ""

    def customer_question(self) -> str:
        """What the customer is asked while their order is held for them: the question of its open
        clarification (lab.production.holds), else nothing; one query, only for a held order.

        Not `hold_message`, which is the floor's: a hold for money taken back at Stripe writes the
        supervisor's note there, alone or before a question already asked (lab/orders/stripe_events.py), and
        the customer was served that note as what they had to answer."""
        if self.status != OrderStatus.ON_HOLD:
            return ""
        questions = self.clarifications.filter(closed_at__isnull=True).order_by("-pk")
        return questions.values_list("question", flat=True).first() or ""

    def _shipping_facts(self) -> str:
        return _row_facts(
            order_id=self.pk,
            ref=self.ref,
            customer_id=self.customer_id,
            address=self.shipping_address,
            shipping_method=self.shipping_method,
        )

    @property
    def address_is_sealed(self) -> bool:
        """Whether the shipping address and method are as the lab's own code wrote them, on this row: a box is
        never labelled for an address written in the database alone (nor one moved here from another order's
        row with its seal), nor handed over at the counter (to whoever gives the name on its slip) when the
        customer paid for it to be posted. An empty address (an erased customer's) sends nothing anywhere."""
        if not self.shipping_address:
            return True
        return seal_holds(self.address_sealed, _ADDRESS_SEAL_SALT, self._shipping_facts())


class OrderItem(models.Model):
    class Sizing(models.TextChoices):
        FILL = "fill"
        FIT = "fit"

    class Orientation(models.TextChoices):
        AUTO = "auto"  # the print's long side follows the photo's (or the crop's) long side
        PORTRAIT = "portrait"
        LANDSCAPE = "landscape"

    class PrintOrientation(models.TextChoices):
        PORTRAIT = "portrait"
        LANDSCAPE = "landscape"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField()
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="+")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="items")
    copies = models.PositiveSmallIntegerField()
    sizing = models.CharField(max_length=8, choices=Sizing.choices)
    unit_price_minor = models.PositiveIntegerField()
    line_total_minor = models.PositiveIntegerField()
    preflight = models.JSONField(default=dict)
    # The customer's placement options (lab.catalog.placement): a crop rectangle or a focal point, each a
    # share 0..1 of the upright photo, or neither (centre crop); print orientation; a white border.
    crop_x = models.FloatField(null=True, blank=True)
    crop_y = models.FloatField(null=True, blank=True)
    crop_width = models.FloatField(null=True, blank=True)
    crop_height = models.FloatField(null=True, blank=True)
    focal_x = models.FloatField(null=True, blank=True)
    focal_y = models.FloatField(null=True, blank=True)
    orientation = models.CharField(max_length=10, choices=Orientation.choices, default=Orientation.AUTO)
    border_mm = models.FloatField(default=0.0)
    # What the placement gave when the order was taken (the rasterizer computes it again from the options
    # and the photo, with the same function). Blank/null for items taken before placement options existed.
    print_orientation = models.CharField(max_length=10, choices=PrintOrientation.choices, blank=True)
    crop_box_px = models.JSONField(null=True, blank=True)  # {x, y, width, height} in upright photo pixels
    effective_dpi = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["position"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["order", "position"], name="order_item_position_unique"),
            models.CheckConstraint(condition=models.Q(copies__gte=1), name="order_item_copies_positive"),
            models.CheckConstraint(
                condition=models.Q(
                    crop_x__isnull=True,
                    crop_y__isnull=True,
                    crop_width__isnull=True,
                    crop_height__isnull=True,
                )
                | models.Q(
                    crop_x__isnull=False,
                    crop_y__isnull=False,
                    crop_width__isnull=False,
                    crop_height__isnull=False,
                ),
                name="order_item_crop_complete",
            ),
            models.CheckConstraint(
                condition=models.Q(focal_x__isnull=True, focal_y__isnull=True)
                | models.Q(focal_x__isnull=False, focal_y__isnull=False),
                name="order_item_focal_point_complete",
            ),
            models.CheckConstraint(
                condition=models.Q(crop_x__isnull=True) | models.Q(focal_x__isnull=True),
                name="order_item_crop_or_focal_point",
            ),
            models.CheckConstraint(
                condition=models.Q(border_mm__gte=0), name="order_item_border_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}:{self.position}"

    @property
    def placement_options(self) -> PlacementOptions:
        crop = (
            CropRect(x=self.crop_x, y=self.crop_y, width=self.crop_width, height=self.crop_height)
            if self.crop_x is not None
            and self.crop_y is not None
            and self.crop_width is not None
            and self.crop_height is not None
            else None
        )
        focal_point = (
            FocalPoint(x=self.focal_x, y=self.focal_y)
            if self.focal_x is not None and self.focal_y is not None
            else None
        )
        return PlacementOptions(
            crop=crop,
            focal_point=focal_point,
            orientation=cast(Orientation, OrderItem.Orientation(self.orientation).value),
            border_mm=self.border_mm,
        )


class OrderEvent(models.Model):
    """The order's timeline: every status transition and notable fact, with who caused it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=40)  # "status_changed", "payment_failed", "refunded", ...
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_kind = models.CharField(max_length=16, default="system")  # customer, staff, system, stripe
    note = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar[list[str]] = ["created_at", "pk"]
        # The supervisor's turnaround finds the orders shipped in a range (bench/supervisor).
        indexes: ClassVar[list[models.Index]] = [models.Index(fields=["to_status", "created_at"])]


class IdempotencyKey(models.Model):
    """Remembers an order-creation request so a retried or doubled submit returns the same order."""

    scope = models.CharField(max_length=80)  # "user:<public id>" or "guest:<sha256 of the e-mail>"
    key = models.CharField(max_length=200)
    request_sha256 = models.CharField(max_length=64)
    order = models.ForeignKey(Order, null=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_key_unique")
        ]


class AssetUploadKey(models.Model):
    """Remembers a photo sent with an Idempotency-Key (POST assets), so that its retry answers the same photo
    and stores and counts nothing again (lab.orders.photos).

    Nothing here names anyone: the uploader's scope and the key are kept only as a keyed hash (`key_seal`),
    the request (the photo's SHA-256 and the form's fields, or the URL) only as a keyed hash naming the photo
    (`request_seal`). A photo deleted takes its key with it."""

    key_seal = models.CharField(max_length=64, unique=True)
    request_seal = models.CharField(max_length=64)
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())


class StripeEvent(models.Model):
    """Every Stripe webhook event id we accepted, so a replay is recognised and ignored."""

    event_id = models.CharField(max_length=100, unique=True)
    event_type = models.CharField(max_length=100)
    payment_intent_id = models.CharField(max_length=64, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=40, blank=True)

    class Meta:
        indexes: ClassVar[list[models.Index]] = [
            # A refund event reads its payment's other events (lab.orders.stripe_refund_reads), and the
            # orderless-payment alert a payment's refund: by PaymentIntent, not a scan of every event.
            models.Index(fields=["payment_intent_id", "event_type"], name="stripe_event_intent_type"),
            # The supervisors' alert reads the payments no order held, each alerts check
            # (lab.production.alerts._payments_without_order): only those rows are in this index.
            models.Index(
                fields=["event_type"],
                name="stripe_event_orderless",
                condition=models.Q(outcome="unknown_payment_intent"),
            ),
        ]


class ClarificationCase(models.Model):
    """A held order's question to its customer: the context an `order_clarification` photo view rests on,
    open until the hold is released (lab.production.holds)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="clarifications")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    question = models.CharField(max_length=1000)
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "audit_clarificationcase"  # created by the audit app, moved here without a table rename

    @property
    def is_open(self) -> bool:
        return self.closed_at is None
