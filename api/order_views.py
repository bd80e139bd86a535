"""Quotes and orders: price a basket (`quotes`), create and list orders (`orders`), read one and change its
shipping address (`orders/{ref}`), cancel one (`orders/{ref}/cancel`); for a customer or a guest with the
order's token. An order's export, erasure and proofs are api/privacy_views.py's and api/proof_views.py's."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from django.utils.cache import patch_vary_headers
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import order_serializers as s
from api.errors import ApiError
from api.idempotency import idempotency_key_required
from api.order_throttles import CustomerOrderThrottle, GuestOrderEmailThrottle
from api.schema import problems
from api.throttles import (
    AnonThrottle,
    ClientAddressThrottle,
    CustomerOrderChangeThrottle,
    CustomerOrderRequestThrottle,
    CustomerQuoteThrottle,
)
from api.views import customer_of
from lab.accounts.models import User
from lab.catalog.placement import CropRect, FocalPoint, PlacementOptions
from lab.lib.errors import DomainError
from lab.orders import cancellation, intake, quotes, selectors
from lab.orders import selectors as order_selectors
from lab.orders.models import Order
from lab.packing.services import shipping_address_change


def item_placement(item: dict[str, Any]) -> PlacementOptions:
    crop, focal_point = item.get("crop"), item.get("focal_point")
    return PlacementOptions(
        crop=CropRect(**crop) if crop else None,
        focal_point=FocalPoint(**focal_point) if focal_point else None,
        orientation=item["orientation"],
        border_mm=item["border_mm"],
    )


def _items(values: dict[str, Any]) -> list[quotes.ItemRequest]:
    return [
        quotes.ItemRequest(
            sku=i["sku"],
            asset_id=i["asset"],
            copies=i["copies"],
            sizing=i["sizing"],
            placement=item_placement(i),
        )
        for i in values["items"]
    ]


class QuoteView(APIView):
    """Prices and preflight for a basket, computed by the server; nothing is stored."""

    permission_classes = (AllowAny,)
    throttle_classes = (AnonThrottle, CustomerQuoteThrottle)

    @extend_schema(request=s.QuoteInput, responses={200: s.QuoteOutput, **problems(404, 409)})
    def post(self, request: Request) -> Response:
        data = s.QuoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        quote = quotes.quote_compute(
            customer=customer_of(request),
            items=_items(data.validated_data),
            shipping_method=data.validated_data["shipping_method"],
        )
        return Response(s.QuoteOutput(quote).data)


class OrderFilter(filters.FilterSet):  # type: ignore[misc]  # untyped django-filter, as views.ProductFilter
    class Meta:
        model = Order
        fields = ("status",)


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=True,
    description="A unique key per order attempt; a retry with the same key and body returns the same order.",
)
ORDER_TOKEN_HEADER = OpenApiParameter(
    "X-Order-Token",
    location=OpenApiParameter.HEADER,
    required=False,
    description="Guests: the token returned when the order was created.",
)


def _order_admission(*, customer: User | None, guest: intake.GuestDetails | None) -> intake.Admission | None:
    """An order counts for its customer (CustomerOrderThrottle), a guest order for its address
    (GuestOrderEmailThrottle), only once it is created: not a replay, a retry or a request refused before."""
    if customer is not None:
        return CustomerOrderThrottle.for_customer(customer)
    return GuestOrderEmailThrottle.for_guest(guest.email) if guest is not None else None


class PrivateOrderAnswers(APIView):
    """An order's answer carries its shipping address, payment.client_secret and a guest's token: no cache
    keeps it (a shared one would serve a guest's page to anyone who knows the ref printed on the slip), and
    it varies with who asks."""

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "private, no-store"
        patch_vary_headers(response, ["X-Order-Token", "Authorization"])
        return response


class OrderListCreateView(PrivateOrderAnswers, generics.ListAPIView[Order]):
    permission_classes = (AllowAny,)
    # All but AnonThrottle count POSTs only: every request of a customer (CustomerOrderRequestThrottle), the
    # orders they create (CustomerOrderThrottle), a guest's orders per address (GuestOrderEmailThrottle).
    throttle_classes = (
        AnonThrottle,
        CustomerOrderRequestThrottle,
        CustomerOrderThrottle,
        GuestOrderEmailThrottle,
    )
    serializer_class = s.OrderSummaryOutput
    filterset_class = OrderFilter

    def get_queryset(self) -> QuerySet[Order]:
        customer = customer_of(self.request)
        if customer is None:
            return Order.objects.none()
        return Order.objects.filter(customer=customer)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if customer_of(request) is None:
            raise DomainError(ApiError.NOT_AUTHENTICATED, "Log in to list your orders.")
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=s.OrderInput,
        responses={201: s.OrderCreatedOutput, 200: s.OrderCreatedOutput, **problems(404, 409, 502, 503)},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request: Request) -> Response:
        key = idempotency_key_required(request)
        data = s.OrderInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        customer = customer_of(request)
        guest_values = values.get("guest")
        guest = (
            intake.GuestDetails(
                email=guest_values["email"],
                birth_date=guest_values["birth_date"],
                policy_version=guest_values["privacy_policy_version"],
            )
            if guest_values
            else None
        )
        # The body itself, canonical: intake stores only a keyed hash of it with the scope, key and order.
        fingerprint = json.dumps(request.data, sort_keys=True, default=str, separators=(",", ":"))
        result = intake.order_create(
            customer=customer,
            guest=guest if customer is None else None,
            items=_items(values),
            shipping_address=values["shipping_address"],
            shipping_method=values["shipping_method"],
            idempotency_key=key,
            request_fingerprint=fingerprint,
            admission=_order_admission(customer=customer, guest=guest),
        )
        order = order_selectors.order_with_lines(order=result.order)
        body = s.OrderCreatedOutput(order).data | {"guest_token": result.guest_token}
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class OrderDetailView(PrivateOrderAnswers):
    permission_classes = (AllowAny,)
    throttle_classes = (AnonThrottle, CustomerOrderChangeThrottle)  # the last: PATCH

    @extend_schema(responses=s.OrderOutput, parameters=[ORDER_TOKEN_HEADER])
    def get(self, request: Request, ref: str) -> Response:
        order = selectors.order_for_reader(
            ref=ref, user=customer_of(request), guest_token=request.headers.get("X-Order-Token")
        )
        return Response(s.OrderOutput(order_selectors.order_with_lines(order=order)).data)

    @extend_schema(
        request=s.OrderAddressInput,
        responses={200: s.OrderOutput, **problems(409)},
        parameters=[ORDER_TOKEN_HEADER],
        description=(
            "Change the order's shipping address (its owner, or a guest with the order's X-Order-Token) "
            "while it awaits payment, is paid, in production or on hold. Refused with 409 "
            "`order_address_locked` from ready to pack on (its slip may be printed), once shipped or "
            "cancelled; a pickup order has none to change (409 `pickup_order_has_no_address`). The timeline "
            "records the change."
        ),
    )
    def patch(self, request: Request, ref: str) -> Response:
        customer = customer_of(request)
        order = selectors.order_for_reader(
            ref=ref, user=customer, guest_token=request.headers.get("X-Order-Token")
        )
        data = s.OrderAddressInput(data=request.data)
        data.is_valid(raise_exception=True)
        order = shipping_address_change(
            order=order,
            address=data.validated_data["shipping_address"],
            actor=customer,
            actor_kind="customer" if customer else "guest",
        )
        order = order_selectors.order_with_lines(order=Order.objects.get(pk=order.pk))
        return Response(s.OrderOutput(order).data)


class OrderCancelView(PrivateOrderAnswers):
    permission_classes = (AllowAny,)
    throttle_classes = (ClientAddressThrottle,)  # signed in or not: AnonThrottle counts nobody signed in

    @extend_schema(
        request=None,
        responses={200: s.OrderOutput, **problems(409, 502, 503)},
        parameters=[ORDER_TOKEN_HEADER],
    )
    def post(self, request: Request, ref: str) -> Response:
        customer = customer_of(request)
        order = selectors.order_for_reader(
            ref=ref, user=customer, guest_token=request.headers.get("X-Order-Token")
        )
        order = cancellation.order_cancel(
            order=order, actor=customer, actor_kind="customer" if customer else "guest"
        )
        order = order_selectors.order_with_lines(order=Order.objects.get(pk=order.pk))
        return Response(s.OrderOutput(order).data)
