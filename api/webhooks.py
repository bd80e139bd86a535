"""Stripe webhooks in: verify the signature over the raw body, then hand the event to the service."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import problems
from lab.orders import stripe_events


class StripeWebhookView(APIView):
    """Stripe events: payment succeeded/failed, charge refunded or disputed, a refund's status changed.
    Forged or stale payloads get 400."""

    permission_classes = (AllowAny,)
    authentication_classes = ()
    parser_classes = ()  # the signature covers the raw body: it is read as bytes, never parsed first

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, **problems(400, 503)})
    def post(self, request: Request) -> Response:
        payload = request.body
        event = stripe_events.webhook_event_verify(
            payload=payload, signature_header=request.headers.get("Stripe-Signature", "")
        )
        outcome = stripe_events.webhook_event_handle(event=event)
        return Response({"received": True, "outcome": outcome})
