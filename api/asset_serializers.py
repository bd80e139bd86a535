"""Input/output serializers of photos (assets): an upload by file or by URL, and the photo as checked; no
logic here."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.output_serializers import ModelOutput
from lab.orders.models import Asset

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
