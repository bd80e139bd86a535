"""Photos: upload one or give a URL to fetch (`assets`), read its metadata and processing state
(`assets/{id}`), download the owner's own bytes (`assets/{id}/content`)."""

from __future__ import annotations

from typing import cast

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import asset_serializers as s
from api.idempotency import idempotency_key_optional
from api.parsers import JSONParser
from api.schema import problems
from api.throttles import AnonThrottle, CustomerReadThrottle, CustomerUploadThrottle
from api.upload_throttle import UploadByteBudget
from api.views import customer_of
from lab.accounts.models import User
from lab.lib.errors import CommonError, DomainError
from lab.orders import intake, photos, selectors

UPLOAD_IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Optional, a unique key per photo: a retry with the same key and photo (or URL) answers 200 with the "
        "same photo, storing and counting nothing; the same key with another photo is 409."
    ),
)


class AssetCreateView(APIView):
    """Upload a photo (multipart `file`) or give an https `url` that a worker fetches."""

    permission_classes = (AllowAny,)
    throttle_classes = (AnonThrottle, CustomerUploadThrottle)
    parser_classes = (MultiPartParser, FormParser, JSONParser)

    @extend_schema(
        # One body per media type (the parsers' own): a file is multipart, a URL is JSON or a form.
        request={
            "multipart/form-data": s.AssetFileUpload,
            "application/json": s.AssetUrlUpload,
            "application/x-www-form-urlencoded": s.AssetUrlUpload,
        },
        responses={
            201: s.AssetOutput,
            202: s.AssetOutput,
            200: s.AssetOutput,
            **problems(409, 413, 422, 429, 503, 507),
        },
        parameters=[UPLOAD_IDEMPOTENCY_HEADER],
    )
    def post(self, request: Request) -> Response:
        key = idempotency_key_optional(request)
        # One photo per request: a form with two `file` parts (or `<input type=file multiple>`) validated
        # the last one only, and the first was dropped without a word.
        files = request.FILES
        if len(files.getlist("file")) > 1 or set(files) - {"file"}:
            raise ValidationError({"file": ["Send one photo per request, as the part named `file`."]})
        data = s.AssetUploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        owner = customer_of(request)
        # The day's photo bytes per customer or network: a spent budget is refused before the photo is
        # decoded; a valid photo is counted as it is stored (UploadByteBudget).
        budget = UploadByteBudget.for_request(request)
        # A customer's keys are theirs (as their orders'); anyone else's are their network's, as the budget.
        scope = intake.idempotency_scope(customer=owner, guest=None) if owner else f"network:{budget.key}"
        if values.get("url"):
            url_key = _upload_key(scope=scope, key=key, request=photos.url_request(url=values["url"]))
            if (replay := _replay_answer(url_key)) is not None:
                return replay
            fetching = photos.asset_receive_url(owner=owner, url=values["url"], upload_key=url_key)
            accepted = status.HTTP_202_ACCEPTED if fetching.created else status.HTTP_200_OK
            return Response(s.AssetOutput(fetching.asset).data, status=accepted)
        upload = values["file"]
        if upload.size is not None and upload.size > settings.ASSET_MAX_BYTES:
            raise DomainError(CommonError.FILE_TOO_LARGE, "The file is too large.")
        photo, md5, sha256 = upload.read(), values.get("md5"), values.get("sha256")
        # The photo's SHA-256 only when a key is sent: an upload without one hashes nothing more.
        upload_key = (
            _upload_key(
                scope=scope, key=key, request=photos.upload_request(data=photo, md5=md5, sha256=sha256)
            )
            if key
            else None
        )
        # A retry is answered before the budget is asked: it stores and counts nothing, even on a spent day.
        if (replay := _replay_answer(upload_key)) is not None:
            return replay
        budget.check()
        received = photos.asset_receive_upload(
            owner=owner, data=photo, md5=md5, sha256=sha256, admission=budget, upload_key=upload_key
        )
        answer = status.HTTP_201_CREATED if received.created else status.HTTP_200_OK
        return Response(s.AssetOutput(received.asset).data, status=answer)


def _upload_key(*, scope: str, key: str | None, request: str) -> photos.UploadKey | None:
    return photos.UploadKey(scope=scope, key=key, request=request) if key else None


def _replay_answer(upload_key: photos.UploadKey | None) -> Response | None:
    """A photo's retry with its key, answered 200 with that photo: one indexed query, none without a key."""
    replayed = photos.asset_upload_replay(upload_key=upload_key) if upload_key else None
    return None if replayed is None else Response(s.AssetOutput(replayed).data, status=status.HTTP_200_OK)


class AssetContentView(APIView):
    """The owner's own photo bytes, recorded in the audit log as owner access."""

    permission_classes = (IsAuthenticated,)
    throttle_classes = (CustomerReadThrottle,)

    @extend_schema(responses={(200, "image/*"): bytes, **problems(403, 410, 503)})
    def get(self, request: Request, asset_id: str) -> HttpResponse:
        from lab.audit.records import request_meta
        from lab.gate.owner import owner_image_access

        asset = selectors.asset_for_owner(asset_id=asset_id, user=customer_of(request))
        delivery = owner_image_access(user=cast(User, request.user), asset=asset, meta=request_meta(request))
        response = HttpResponse(delivery.data, content_type=delivery.content_type)
        response["Cache-Control"] = "no-store, private"
        return response


class AssetDetailView(APIView):
    """A photo's metadata and processing state (never its bytes)."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses=s.AssetOutput)
    def get(self, request: Request, asset_id: str) -> Response:
        asset = selectors.asset_for_owner(asset_id=asset_id, user=customer_of(request))
        return Response(s.AssetOutput(asset).data)
