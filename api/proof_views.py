"""Proofs: `POST proofs` for one quote item before ordering, `GET orders/{ref}/items/{position}/proof` for an
ordered one; a JPEG of exactly what prints, for the photo's owner only, never kept by a cache."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from api import order_serializers as s
from api.order_views import item_placement
from api.parsers import JSONParser
from api.schema import problems
from api.throttles import AnonThrottle, ProofThrottle
from api.views import customer_of
from lab.audit.records import request_meta
from lab.gate.proofs import PROOF_LONG_SIDE_PX, Proof, proof_for_order_item, proof_for_quote_item
from lab.orders import selectors
from lab.orders.pricing import MAX_COPIES_PER_ITEM

PROOF_DESCRIPTION = (
    "JPEG (sRGB) of the whole print, at a whole DPI that keeps its long side at most "
    f"{PROOF_LONG_SIDE_PX} px: "
    "crop, border, fit margins and print orientation exactly as the rasterizer prints them. The photo's "
    "owner only; the view is recorded in the audit log as the owner's access."
)
PROOF_HEADERS = [
    OpenApiParameter(
        "Cache-Control",
        location=OpenApiParameter.HEADER,
        response=[200],
        description="`private, no-store`: neither a shared cache nor the browser keeps a proof.",
    ),
    OpenApiParameter(
        "X-Content-Type-Options", location=OpenApiParameter.HEADER, response=[200], description="`nosniff`."
    ),
]


class ProofInput(s.ItemInput):
    """One item as `POST quotes` takes it; `copies` may be sent (a quote item as it is) and is ignored."""

    sku = serializers.CharField(max_length=40, help_text="A product's sku (`GET products`).")
    asset = serializers.CharField(
        max_length=64,
        help_text="Your photo's id (`POST assets`); anyone else's photo answers 404 `asset_not_found`.",
    )
    copies = serializers.IntegerField(
        min_value=1, max_value=MAX_COPIES_PER_ITEM, required=False, help_text="Ignored: a proof is one print."
    )


def _jpeg(proof: Proof) -> HttpResponse:
    response = HttpResponse(proof.data, content_type=proof.media_type)
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


class ProofCreateView(APIView):
    """The proof of one item before ordering: what `POST quotes` would print for it."""

    permission_classes = (AllowAny,)
    throttle_classes = (AnonThrottle, ProofThrottle)
    parser_classes = (JSONParser,)  # crop and focal point are objects: JSON only

    @extend_schema(
        request=ProofInput,
        responses={
            (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description=PROOF_DESCRIPTION),
            **problems(404, 409, 410, 422, 503),
        },
        parameters=PROOF_HEADERS,
    )
    def post(self, request: Request) -> HttpResponse:
        data = ProofInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        proof = proof_for_quote_item(
            user=customer_of(request),
            sku=values["sku"],
            asset_id=values["asset"],
            sizing=values["sizing"],
            options=item_placement(values),
            meta=request_meta(request._request),
        )
        return _jpeg(proof)


class OrderItemProofView(APIView):
    """The proof of an ordered item, with the options it was ordered with (signed-in owner only)."""

    permission_classes = (AllowAny,)
    throttle_classes = (AnonThrottle, ProofThrottle)

    @extend_schema(
        responses={
            (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description=PROOF_DESCRIPTION),
            **problems(409, 410, 422, 503),
        },
        parameters=[
            OpenApiParameter("ref", location=OpenApiParameter.PATH, description="The order's reference."),
            OpenApiParameter(
                "position",
                int,
                location=OpenApiParameter.PATH,
                description="The item's `position` in the order (from 1).",
            ),
            *PROOF_HEADERS,
        ],
    )
    def get(self, request: Request, ref: str, position: int) -> HttpResponse:
        customer = customer_of(request)
        # Not the guest token: the gate names who saw a photo by account, and a guest has none.
        order = selectors.order_for_reader(ref=ref, user=customer, guest_token=None)
        proof = proof_for_order_item(
            user=customer, order=order, position=position, meta=request_meta(request._request)
        )
        return _jpeg(proof)
