"""Proofs: a small sRGB JPEG of exactly what an item prints, for the photo's owner only.
The original comes through the gate's owner path; pixels from the rasterizer; the owner's access is recorded
with the SHA-256 of the proof sent (a proof the rasterizer refuses: recorded as denied, nothing sent)."""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageCms

from lab.accounts.models import User
from lab.audit.records import RequestMeta
from lab.catalog.models import Product
from lab.catalog.placement import PlacementOptions, Sizing
from lab.gate.errors import GateError
from lab.gate.owner import owner_delivery_record, owner_original_read, owner_refusal_record
from lab.gate.refusals import ImageGone
from lab.lib.errors import DomainError, NotFound
from lab.orders.errors import OrderError
from lab.orders.models import Asset, Order, OrderItem
from lab.orders.pricing import MAX_ITEMS_PER_ORDER, line_placement
from lab.orders.quotes import asset_not_ready
from lab.orders.selectors import asset_for_owner
from lab.production.imaging.colour import SRGB_PROFILE
from lab.production.models import PrintJob
from lab.production.raster import RasterError, RasterSpec, rasterize

logger = logging.getLogger(__name__)

# A screen's worth: the print's long side in pixels is at most this, at a whole DPI (4x6 at 166 DPI: 996 px).
PROOF_LONG_SIDE_PX: Final = 1000
PROOF_JPEG_QUALITY: Final = 85
PROOF_MEDIA_TYPE: Final = "image/jpeg"
PROOF_ACTION: Final = "image.view.proof"
# The rule of the denied record a proof the rasterizer refuses leaves (the problem's code).
PROOF_NOT_PRINTABLE: Final = "photo_not_printable"
# From a printer's own profile to the screen: the colours the print measures, the paper's white as the
# screen's white (the usual soft proof; perceptual would re-stretch what the printer's gamut already cut).
SOFT_PROOF_INTENT: Final = ImageCms.Intent.RELATIVE_COLORIMETRIC


@dataclass(frozen=True)
class Proof:
    data: bytes
    width_px: int
    height_px: int
    dpi: int
    audit_seq: int
    media_type: str = PROOF_MEDIA_TYPE


def proof_dpi(*, width_in: float, height_in: float) -> int:
    """The whole DPI at which the print's long side is at most PROOF_LONG_SIDE_PX."""
    return max(1, math.floor(PROOF_LONG_SIDE_PX / max(width_in, height_in)))


def proof_for_quote_item(
    *,
    user: User | None,
    sku: str,
    asset_id: str,
    sizing: Sizing,
    options: PlacementOptions,
    meta: RequestMeta,
) -> Proof:
    """Before ordering: one item as a quote takes it, on the default (sRGB) printer profile.

    Someone else's photo (or nobody signed in) is asset_not_found; every refusal of the request comes before
    the photo is read, so only a photo that was read leaves an audit record. One the rasterizer refuses
    (RasterError, as its print job would) is known only once read: that read is recorded as denied (nothing
    was sent), as the photo was read on the owner's behalf.
    """
    asset = asset_for_owner(asset_id=asset_id, user=user)
    assert user is not None  # asset_for_owner found it theirs
    product = Product.objects.filter(sku=sku, is_active=True).first()
    if product is None:
        raise DomainError(OrderError.UNKNOWN_SKU, f"There is no product {sku}.", sku=sku)
    _check_readable(asset)
    line_placement(product=product, asset=asset, sizing=sizing, options=options)  # PlacementError: 400
    return _proof(
        user=user, asset=asset, product=product, sizing=sizing, options=options, printer_icc=None, meta=meta
    )


def proof_for_order_item(*, user: User | None, order: Order, position: int, meta: RequestMeta) -> Proof:
    """An ordered item, with the options it was ordered with; once it is routed to a printer with its own
    ICC profile, through that profile (the printer's gamut, soft-proofed to sRGB)."""
    if user is None or order.customer_id != user.pk:
        raise NotFound(OrderError.ORDER_NOT_FOUND, "No such order.")
    item = (
        OrderItem.objects.select_related("product", "asset__data_key")
        .filter(order=order, position=position)
        .first()
        if 1 <= position <= MAX_ITEMS_PER_ORDER  # a position the database's small integer can hold
        else None
    )
    if item is None:
        raise NotFound(GateError.ORDER_ITEM_NOT_FOUND, "This order has no item at that position.")
    _check_readable(item.asset)
    return _proof(
        user=user,
        asset=item.asset,
        product=item.product,
        sizing="fit" if item.sizing == OrderItem.Sizing.FIT else "fill",
        options=item.placement_options,
        printer_icc=_printer_profile(item),
        meta=meta,
    )


def _check_readable(asset: Asset) -> None:
    if asset.status == Asset.Status.PURGED:
        raise ImageGone(GateError.IMAGE_UNAVAILABLE, "This photo no longer exists.")
    if asset.status != Asset.Status.READY:
        raise asset_not_ready(asset=asset, asset_id=str(asset.pk))  # pending or failed, and why, as a quote


def _printer_profile(item: OrderItem) -> bytes | None:
    """The ICC profile of the printer the item's latest job is routed to; None: not routed yet, or sRGB."""
    profile = (
        PrintJob.objects.filter(item=item, printer__isnull=False)
        .order_by("-created_at", "-pk")
        .values_list("printer__icc_profile", flat=True)
        .first()
    )
    return bytes(profile) if profile else None


def _proof(
    *,
    user: User,
    asset: Asset,
    product: Product,
    sizing: Sizing,
    options: PlacementOptions,
    printer_icc: bytes | None,
    meta: RequestMeta,
) -> Proof:
    # The gate's owner checks and read, recorded nowhere yet; rendering runs outside any transaction, so no
    # slow work holds a lock; then the record names the proof's own bytes, before they are handed over.
    original = owner_original_read(user=user, asset=asset)
    width_in, height_in = float(product.width_in), float(product.height_in)
    dpi = proof_dpi(width_in=width_in, height_in=height_in)
    # The rasterizer itself, with the item's geometry, at the proof's DPI: lossless out, encoded once below.
    try:
        raster = rasterize(
            data=original,
            spec=RasterSpec(
                width_in=width_in,
                height_in=height_in,
                dpi=dpi,
                sizing=sizing,
                output_format="tiff",
                output_icc=printer_icc,
                placement=options,
            ),
            orientation=asset.exif_orientation,  # as the quote, and the worker that prints it
        )
    except RasterError as error:
        # What the print job would fail with too: the API answers it as a problem (422
        # `photo_not_printable` with this `raster_code`), where it was a 500. The photo was read on the
        # owner's behalf, so the read is recorded: denied, with no content hash, as nothing is sent.
        logger.warning("proof refused by the rasterizer asset=%s code=%s", asset.pk, error.code)
        owner_refusal_record(user=user, asset=asset, meta=meta, action=PROOF_ACTION, rule=PROOF_NOT_PRINTABLE)
        raise
    with Image.open(io.BytesIO(raster.data)) as decoded:
        printed = decoded.copy()
    if printer_icc is not None:
        printed = _soft_proof(printed, printer_icc=printer_icc)
    buffer = io.BytesIO()
    printed.save(
        buffer, "JPEG", quality=PROOF_JPEG_QUALITY, icc_profile=SRGB_PROFILE, dpi=(dpi, dpi), optimize=True
    )
    # Fail closed: the record cannot be written, nothing is sent (AuditUnavailable, 503).
    delivery = owner_delivery_record(
        user=user,
        asset=asset,
        meta=meta,
        action=PROOF_ACTION,
        data=buffer.getvalue(),
        content_type=PROOF_MEDIA_TYPE,
    )
    logger.info("proof rendered asset=%s seq=%s", asset.pk, delivery.audit_seq)
    return Proof(
        data=delivery.data,
        width_px=printed.width,
        height_px=printed.height,
        dpi=dpi,
        audit_seq=delivery.audit_seq,
    )


def _soft_proof(printed: Image.Image, *, printer_icc: bytes) -> Image.Image:
    converted = ImageCms.profileToProfile(
        printed,
        ImageCms.ImageCmsProfile(io.BytesIO(printer_icc)),
        ImageCms.ImageCmsProfile(io.BytesIO(SRGB_PROFILE)),
        renderingIntent=SOFT_PROOF_INTENT,
        outputMode="RGB",
    )
    assert converted is not None  # profileToProfile returns None only when converting in place
    return converted
