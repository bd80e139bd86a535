"""Customer webhook API: register endpoints, read their delivery log, ask for a redelivery.

One view per resource; every lookup goes through lab.notify.selectors' owner checks (another's row is a 404).
"""

from __future__ import annotations

import uuid
from typing import cast

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import notify_serializers as s
from api.idempotency import idempotency_key_optional
from api.schema import problems, retry_after
from api.throttles import CustomerRedeliveryThrottle, WebhookEndpointChangeThrottle
from lab.accounts.authenticated import token_of_request
from lab.accounts.models import User
from lab.notify import selectors, webhooks
from lab.notify.models import WebhookDelivery, WebhookEndpoint


def _owner(request: Request) -> User:
    return cast(User, request.user)


REGISTRATION_IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    description="Optional, 1-200 printable characters: a retry with the same key and body returns the same "
    "endpoint and its secret (200); the key with another body is a 409.",
)


class WebhookEndpointListCreateView(generics.ListAPIView[WebhookEndpoint]):
    """Your webhook endpoints; POST registers one and returns its signing secret, once."""

    permission_classes = (IsAuthenticated,)
    throttle_classes = (WebhookEndpointChangeThrottle,)
    serializer_class = s.WebhookEndpointOutput

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return WebhookEndpoint.objects.none()
        return selectors.webhook_endpoints_for_owner(owner=_owner(self.request))

    @extend_schema(
        request=s.WebhookEndpointInput,
        responses={
            201: s.WebhookEndpointCreatedOutput,
            200: s.WebhookEndpointCreatedOutput,
            **problems(400, 409, 422),
        },
        parameters=[REGISTRATION_IDEMPOTENCY_HEADER],
    )
    def post(self, request: Request) -> Response:
        key = idempotency_key_optional(request)
        data = s.WebhookEndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        owner = _owner(request)
        result = webhooks.webhook_endpoint_register(
            owner=owner, by_token=token_of_request(owner), idempotency_key=key, **data.validated_data
        )
        return Response(
            s.WebhookEndpointCreatedOutput(result.endpoint).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class WebhookEndpointDetailView(APIView):
    permission_classes = (IsAuthenticated,)
    throttle_classes = (WebhookEndpointChangeThrottle,)

    @extend_schema(responses=s.WebhookEndpointOutput)
    def get(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        endpoint = selectors.webhook_endpoint_for_owner(endpoint_id=endpoint_id, owner=_owner(request))
        return Response(s.WebhookEndpointOutput(endpoint).data)

    @extend_schema(
        request=s.WebhookEndpointUpdateInput, responses={200: s.WebhookEndpointOutput, **problems(422)}
    )
    def patch(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        endpoint = selectors.webhook_endpoint_for_owner(endpoint_id=endpoint_id, owner=_owner(request))
        data = s.WebhookEndpointUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = webhooks.webhook_endpoint_update(
            endpoint=endpoint, by_token=token_of_request(_owner(request)), **data.validated_data
        )
        return Response(s.WebhookEndpointOutput(endpoint).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        endpoint = selectors.webhook_endpoint_for_owner(endpoint_id=endpoint_id, owner=_owner(request))
        webhooks.webhook_endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListView(generics.ListAPIView[WebhookDelivery]):
    """The delivery log of one of your endpoints, newest first, each delivery with all its attempts."""

    permission_classes = (IsAuthenticated,)
    serializer_class = s.WebhookDeliveryOutput

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        if getattr(self, "swagger_fake_view", False):
            return WebhookDelivery.objects.none()
        endpoint = selectors.webhook_endpoint_for_owner(
            endpoint_id=self.kwargs["endpoint_id"], owner=_owner(self.request)
        )
        return selectors.webhook_deliveries_for_endpoint(endpoint=endpoint)


class WebhookRedeliverView(APIView):
    """Send a delivery's event again now (same event id and sequence), with a fresh retry window."""

    permission_classes = (IsAuthenticated,)
    throttle_classes = (CustomerRedeliveryThrottle,)

    @extend_schema(
        request=None,
        responses={202: s.WebhookDeliveryOutput, **problems(409)},
        parameters=[retry_after(409)],  # `redelivery_too_soon`
    )
    def post(self, request: Request, delivery_id: uuid.UUID) -> Response:
        delivery = selectors.webhook_delivery_for_owner(delivery_id=delivery_id, owner=_owner(request))
        delivery = webhooks.webhook_redeliver(delivery=delivery)
        delivery = selectors.webhook_deliveries_for_endpoint(endpoint=delivery.endpoint).get(pk=delivery.pk)
        return Response(s.WebhookDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)
