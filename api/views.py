"""Customer API views: one view per operation, each a thin call into lab services/selectors."""

from __future__ import annotations

import json
from typing import Any, cast

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils.cache import patch_vary_headers
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import serializers as s
from api.errors import ApiError
from api.idempotency import idempotency_key_optional, idempotency_key_required
from api.parsers import JSONParser
from api.schema import problems
from api.throttles import (
    AccountChangeThrottle,
    AnonThrottle,
    ClientAddressThrottle,
    CustomerOrderChangeThrottle,
    CustomerOrderRequestThrottle,
    CustomerOrderThrottle,
    CustomerQuoteThrottle,
    CustomerReadThrottle,
    CustomerUploadThrottle,
    EmailChangeAddressThrottle,
    GuestOrderEmailThrottle,
    RegistrationThrottle,
    SignInThrottle,
    UploadByteBudget,
)
from lab.accounts import services as accounts
from lab.accounts import signin, tokens
from lab.accounts.errors import AccountError
from lab.accounts.models import SecurityEvent, User
from lab.accounts.roles import is_staff_member
from lab.audit.records import request_meta
from lab.audit.staff_seal import REFUSAL_MESSAGE, staff_seal_check
from lab.catalog import selectors as catalog_selectors
from lab.catalog.models import Product
from lab.catalog.placement import CropRect, FocalPoint, PlacementOptions
from lab.lib.client_ip import client_ip
from lab.lib.errors import CommonError, DomainError, PermissionDenied
from lab.orders import address as order_address
from lab.orders import cancellation, intake, photos, quotes, selectors
from lab.orders import selectors as order_selectors
from lab.orders.models import Order
from lab.packing.services import shipping_address_change


def client_address(request: Request) -> str | None:
    return client_ip(request._request) or None  # behind TRUSTED_PROXIES, the client's, not the proxy's


def _customer(request: Request) -> User | None:
    user = request.user
    return user if user and user.is_authenticated else None


# django-filter has no types (its stub package stops in 2023), so FilterSet is Any to mypy.
class ProductFilter(filters.FilterSet):  # type: ignore[misc]
    class Meta:
        model = Product
        fields = ("paper",)


class ProductListView(generics.ListAPIView[Product]):
    """The catalog: every print size and paper on sale with its price and minimum DPI. Only products priced
    in LAB_CURRENCY: a quote refuses any other (`currency_not_sold`), and listing them offered what no order
    could hold (the system check `catalog.W001` names them)."""

    permission_classes = (AllowAny,)
    throttle_classes = (AnonThrottle,)
    serializer_class = s.ProductOutput
    filterset_class = ProductFilter

    def get_queryset(self) -> QuerySet[Product]:
        return catalog_selectors.products_on_sale()


class AccountCreateView(APIView):
    permission_classes = (AllowAny,)
    authentication_classes = ()
    throttle_classes = (RegistrationThrottle,)

    @extend_schema(request=s.RegistrationInput, responses={201: s.RegistrationOutput, **problems(403, 409)})
    def post(self, request: Request) -> Response:
        data = s.RegistrationInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = accounts.customer_register(
            email=values["email"],
            password=values["password"],
            full_name=values["full_name"],
            address=values["address"],
            birth_date=values["birth_date"],
            policy_version=values["privacy_policy_version"],
            marketing_opt_in=values["marketing_opt_in"],
        )
        issued = tokens.api_token_issue(user=user, name="registration", client_ip=client_address(request))
        output = s.RegistrationOutput(user, context={"token": issued.key}).data
        return Response(output, status=status.HTTP_201_CREATED)


class TokenCreateView(APIView):
    """Exchange e-mail and password for a new named API token (customers only; the key is shown once).

    Failed attempts are limited per account and per address (429 `sign_in_locked`, with Retry-After); all
    attempts per address by a throttle of their own (`API_SIGN_IN_THROTTLE`), not registration's.
    """

    permission_classes = (AllowAny,)
    authentication_classes = ()
    throttle_classes = (SignInThrottle,)

    @extend_schema(request=s.TokenInput, responses={200: s.TokenCreatedOutput, **problems(401, 403, 409)})
    def post(self, request: Request) -> Response:
        data = s.TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        attempt = signin.SignInAttempt(
            email=values["email"], client_ip=client_address(request), channel=SecurityEvent.Channel.API
        )
        user = signin.sign_in(request=request._request, attempt=attempt, password=values["password"])
        if user is None:
            raise DomainError(ApiError.INVALID_CREDENTIALS, "E-mail or password is not correct.")
        issued = tokens.api_token_issue(user=user, name=values["name"], client_ip=attempt.client_ip)
        return Response(s.TokenCreatedOutput(issued.token, context={"key": issued.key}).data)


def my_account(request: Request) -> User:
    """The signed-in customer whose account My Account reads or changes; a staff member is refused.

    The API accepts a /lab/ session (the auditors' console reads `audit/*` with it), so without this a staff
    member reached the customers' password change, which sealed the account as it stood: a role a database
    administrator had granted became the lab's own. Staff accounts are a lab admin's to change (the lab
    admin's account and password forms, an admin's own "Change password"). A staff account whose seal does
    not hold is refused as on every /lab/ page, on the record (a security event and an audit record).
    """
    user = cast(User, request.user)
    if not is_staff_member(user):
        return user
    if not staff_seal_check(user, meta=request_meta(request._request), channel=SecurityEvent.Channel.API):
        raise PermissionDenied(AccountError.ACCOUNT_CHANGED_OUTSIDE_THE_LAB, REFUSAL_MESSAGE)
    raise PermissionDenied(
        AccountError.STAFF_ACCOUNT_NOT_A_CUSTOMER,
        "My Account is for customers; a lab admin changes staff accounts in the lab admin (/lab/admin/).",
    )


class MeView(APIView):
    """My Account: read and change name, e-mail, address, marketing opt-in and password (customers only). A
    new e-mail or password needs the current password; changes are throttled per customer."""

    permission_classes = (IsAuthenticated,)

    def get_throttles(self) -> list[Any]:
        # The changes only (PATCH's 429 is in its schema); reading one's own account is not limited. An
        # e-mail change is also counted per client address (EmailChangeAddressThrottle: 409 `email_taken`).
        if self.request.method != "PATCH":
            return []
        return [AccountChangeThrottle(), EmailChangeAddressThrottle()]

    @extend_schema(responses={200: s.AccountOutput, **problems(403)})
    def get(self, request: Request) -> Response:
        return Response(s.AccountOutput(my_account(request)).data)

    @extend_schema(
        request=s.MeUpdateInput,
        responses={200: s.MeUpdatedOutput, **problems(403, 409, 429)},
        description=(
            "A new `address` is the one for orders to come: an order keeps the address it was placed with. "
            "The answer's `orders_keeping_their_address` names your orders still to ship to another address; "
            "change one with `PATCH /api/v1/orders/{ref}`."
        ),
    )
    def patch(self, request: Request) -> Response:
        user = my_account(request)
        data = s.MeUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = accounts.customer_update(user=user, client_ip=client_address(request), **data.validated_data)
        address = data.validated_data.get("address")
        keeping = (
            order_address.orders_keeping_their_address(customer=user, address=address)
            if address is not None
            else []
        )
        return Response(s.MeUpdatedOutput(user, context={"orders_keeping_their_address": keeping}).data)


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
        request=s.AssetUploadInput,
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
        owner = _customer(request)
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

        asset = selectors.asset_for_owner(asset_id=asset_id, user=_customer(request))
        delivery = owner_image_access(user=cast(User, request.user), asset=asset, meta=request_meta(request))
        response = HttpResponse(delivery.data, content_type=delivery.content_type)
        response["Cache-Control"] = "no-store, private"
        return response


class AssetDetailView(APIView):
    """A photo's metadata and processing state (never its bytes)."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses=s.AssetOutput)
    def get(self, request: Request, asset_id: str) -> Response:
        asset = selectors.asset_for_owner(asset_id=asset_id, user=_customer(request))
        return Response(s.AssetOutput(asset).data)


def _placement(item: dict[str, Any]) -> PlacementOptions:
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
            sku=i["sku"], asset_id=i["asset"], copies=i["copies"], sizing=i["sizing"], placement=_placement(i)
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
            customer=_customer(request),
            items=_items(data.validated_data),
            shipping_method=data.validated_data["shipping_method"],
        )
        return Response(s.QuoteOutput(quote).data)


class OrderFilter(filters.FilterSet):  # type: ignore[misc]  # untyped django-filter, as ProductFilter
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
        customer = _customer(self.request)
        if customer is None:
            return Order.objects.none()
        return Order.objects.filter(customer=customer)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if _customer(request) is None:
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
        customer = _customer(request)
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
            ref=ref, user=_customer(request), guest_token=request.headers.get("X-Order-Token")
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
        customer = _customer(request)
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
        customer = _customer(request)
        order = selectors.order_for_reader(
            ref=ref, user=customer, guest_token=request.headers.get("X-Order-Token")
        )
        order = cancellation.order_cancel(
            order=order, actor=customer, actor_kind="customer" if customer else "guest"
        )
        order = order_selectors.order_with_lines(order=Order.objects.get(pk=order.pk))
        return Response(s.OrderOutput(order).data)
