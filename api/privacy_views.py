"""Customer privacy API: export everything held about me (GET me/export), erase me (DELETE me), and the signed
privacy receipts (GET receipts/{id} with the link's token or as their owner; GET me/receipts).

`AccountView` is My Account (GET/PATCH from api.account_views.MeView) plus DELETE, so `me` stays one route.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.account_views import MeView, my_account
from api.order_views import ORDER_TOKEN_HEADER
from api.schema import problems
from api.throttles import ClientAddressThrottle, CustomerReadThrottle
from api.views import client_address
from lab.accounts.models import User
from lab.customer_data.erasure import ErasureResult, GuestErasureResult, account_erase, guest_order_erase
from lab.customer_data.export import account_export, guest_order_export
from lab.customer_data.models import PrivacyReceipt
from lab.customer_data.receipts import (
    ReceiptLink,
    receipt_body,
    receipt_for_reader,
    receipt_url,
    receipts_of,
)
from lab.orders.models import Order
from lab.orders.selectors import order_for_reader


def _request_id(request: Request) -> str:
    return str(getattr(request._request, "request_id", ""))


class ErasureInput(serializers.Serializer[None]):
    password = serializers.CharField(
        max_length=200,
        help_text="Your current password: erasure cannot be undone, a token alone is not enough.",
    )


class ReceiptLinkOutput(serializers.Serializer[ReceiptLink]):
    id = serializers.UUIDField()
    order_ref = serializers.CharField(help_text="Empty for the receipt of photos that were in no order.")
    reason = serializers.ChoiceField(choices=PrivacyReceipt.Reason.choices)
    url = serializers.CharField(help_text="The receipt's link, with its token: whoever holds it can read it.")


class ErasureOutput(serializers.Serializer[ErasureResult]):
    erased_at = serializers.DateTimeField()
    photos_purged = serializers.IntegerField()
    orders_anonymized = serializers.IntegerField()
    orders_cancelled = serializers.IntegerField(help_text="Unpaid orders cancelled by the erasure.")
    receipts = ReceiptLinkOutput(
        many=True,
        help_text="A signed privacy receipt per order (and one for photos in no order); also e-mailed."
        " The links keep working after the account is gone.",
    )


class AccountView(MeView):
    """My Account: read, change, or erase (photos destroyed, personal data removed, orders anonymised)."""

    @extend_schema(
        request=ErasureInput,
        responses={200: ErasureOutput, **problems(403, 409, 429)},
        description=(
            'Erase your personal data. Send your current password as a JSON body: `{"password": "..."}`. '
            "Photos are destroyed, name, e-mail and addresses removed, orders kept anonymised for "
            "accounting; unpaid orders are cancelled. Refused (409 `erasure_blocked_by_open_orders`) "
            "while an order is paid, in production, on hold, ready to pack or packed, or its payment is "
            "disputed with your bank or waits for a refund."
        ),
    )
    def delete(self, request: Request) -> Response:
        data = ErasureInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = account_erase(
            user=cast(User, request.user),
            password=data.validated_data["password"],
            request_id=_request_id(request),
            client_ip=client_address(request),
        )
        response = Response(ErasureOutput(result).data)
        response["Cache-Control"] = "private, no-store"  # the receipts' links carry their tokens
        return response


class GuestErasureOutput(serializers.Serializer[GuestErasureResult]):
    erased_at = serializers.DateTimeField()
    photos_purged = serializers.IntegerField()
    order_cancelled = serializers.BooleanField(help_text="The order was unpaid and is cancelled.")
    receipt = ReceiptLinkOutput(
        allow_null=True,
        help_text="The order's signed privacy receipt; also e-mailed. The link keeps working.",
    )


def _guest_order(request: Request, ref: str) -> Order:
    # The token alone opens it: an account's order is the account's to export or erase (me/export, DELETE me).
    return order_for_reader(ref=ref, user=None, guest_token=request.headers.get("X-Order-Token"))


class GuestOrderExportView(APIView):
    """A guest's copy of everything held about their order, including every employee view of its photos."""

    permission_classes = (AllowAny,)
    throttle_classes = (ClientAddressThrottle,)  # signed in or not: a token opens these, not an account

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **problems(404)}, parameters=[ORDER_TOKEN_HEADER])
    def get(self, request: Request, ref: str) -> Response:
        document = guest_order_export(order=_guest_order(request, ref), request_id=_request_id(request))
        response = Response(document)
        response["Cache-Control"] = "no-store, private"
        response["Content-Disposition"] = f'attachment; filename="printlab-order-{ref}.json"'
        return response


class GuestOrderErasureView(APIView):
    """A guest erases their order's personal data (they have no account to erase)."""

    permission_classes = (AllowAny,)
    throttle_classes = (ClientAddressThrottle,)  # signed in or not: a token opens these, not an account

    @extend_schema(
        request=None,
        responses={200: GuestErasureOutput, **problems(404, 409)},
        parameters=[ORDER_TOKEN_HEADER],
        description=(
            "Erase a guest order's personal data with its X-Order-Token: photos destroyed, e-mail, "
            "address and messages removed, the order kept anonymised for accounting; unpaid, it is "
            "cancelled. Refused (409 `erasure_blocked_by_open_orders`) while it is paid, in production, "
            "on hold, ready to pack or packed, or its payment is disputed or waits for a refund."
        ),
    )
    def delete(self, request: Request, ref: str) -> Response:
        result = guest_order_erase(order=_guest_order(request, ref), request_id=_request_id(request))
        response = Response(GuestErasureOutput(result).data)
        response["Cache-Control"] = "private, no-store"  # the receipt's link carries its token
        return response


class AccountExportView(APIView):
    """Everything we hold about you as JSON, including every employee view of your photos (by role)."""

    permission_classes = (IsAuthenticated,)
    # Each export reads every photo's views and writes an audit record: counted per customer, as photo bytes.
    throttle_classes = (CustomerReadThrottle,)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **problems(403, 429)})
    def get(self, request: Request) -> Response:
        document = account_export(user=my_account(request), request_id=_request_id(request))
        response = Response(document)
        response["Cache-Control"] = "no-store, private"
        response["Content-Disposition"] = 'attachment; filename="printlab-export.json"'
        return response


RECEIPT_TOKEN_QUERY = OpenApiParameter(
    "token",
    location=OpenApiParameter.QUERY,
    required=False,
    description="The token of the receipt's link (in the e-mail and in the erasure's answer).",
)
RECEIPT_TOKEN_HEADER = OpenApiParameter(
    "X-Receipt-Token",
    location=OpenApiParameter.HEADER,
    required=False,
    description="The same token as a header, for clients that keep it out of URLs.",
)


class ReceiptOutput(serializers.Serializer[dict[str, Any]]):
    document = serializers.JSONField(
        help_text="The signed document (format `printlab.receipt.v1`): photos with their SHA-256 and when"
        " each data key was destroyed, every employee view (date, purpose, role), and its audit anchor."
    )
    signature = serializers.CharField(
        help_text="base64 Ed25519 signature over the document's canonical JSON."
    )
    key_id = serializers.CharField(
        help_text="The first 16 hex digits of the signing key's SHA-256 fingerprint."
    )


class ReceiptSummaryOutput(serializers.Serializer[PrivacyReceipt]):
    id = serializers.UUIDField()
    order_ref = serializers.CharField(help_text="Empty for the receipt of photos that were in no order.")
    reason = serializers.ChoiceField(choices=PrivacyReceipt.Reason.choices)
    created_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField(help_text="The receipt's link, with its token.")

    def get_url(self, receipt: PrivacyReceipt) -> str:
        return receipt_url(receipt)


class ReceiptView(APIView):
    """A signed privacy receipt: to the holder of its link's token (also after the account was erased), or
    to the signed-in customer it was issued to. Verify it offline: `python -m lab.audit.verify --receipt`."""

    permission_classes = (AllowAny,)
    throttle_classes = (ClientAddressThrottle,)  # signed in or not: a token opens these, not an account

    @extend_schema(responses=ReceiptOutput, parameters=[RECEIPT_TOKEN_QUERY, RECEIPT_TOKEN_HEADER])
    def get(self, request: Request, receipt_id: uuid.UUID) -> Response:
        user = request.user if request.user and request.user.is_authenticated else None
        receipt = receipt_for_reader(
            receipt_id=receipt_id,
            user=user,
            token=request.query_params.get("token") or request.headers.get("X-Receipt-Token"),
        )
        response = Response(ReceiptOutput(receipt_body(receipt)).data)
        response["Cache-Control"] = "private, no-store"
        response["Content-Disposition"] = f'inline; filename="receipt-{receipt.pk}.json"'
        return response


@extend_schema_view(get=extend_schema(responses={200: ReceiptSummaryOutput(many=True), **problems(403)}))
class MeReceiptListView(generics.ListAPIView[PrivacyReceipt]):
    """Your signed privacy receipts, newest first, each with its link."""

    permission_classes = (IsAuthenticated,)
    serializer_class = ReceiptSummaryOutput

    def get_queryset(self) -> QuerySet[PrivacyReceipt]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no signed-in customer
            return PrivacyReceipt.objects.none()
        return receipts_of(user=my_account(self.request))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        response["Cache-Control"] = "private, no-store"
        return response
