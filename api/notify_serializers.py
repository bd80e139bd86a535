"""Input/output serializers for customer webhook endpoints and their delivery log; no logic here."""

from __future__ import annotations

from rest_framework import serializers

from lab.notify.models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint


class WebhookEndpointInput(serializers.Serializer[None]):
    url = serializers.URLField(max_length=2000, help_text="https:// URL that receives signed POSTs.")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices), allow_empty=False, max_length=10
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class WebhookEndpointUpdateInput(serializers.Serializer[None]):
    url = serializers.URLField(max_length=2000, required=False)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        allow_empty=False,
        max_length=10,
        required=False,
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class WebhookEndpointOutput(serializers.ModelSerializer[WebhookEndpoint]):
    class Meta:
        model = WebhookEndpoint
        fields: tuple[str, ...] = (
            "id",
            "url",
            "event_types",
            "description",
            "is_active",
            "created_at",
            "updated_at",
        )


class WebhookEndpointCreatedOutput(WebhookEndpointOutput):
    secret = serializers.CharField(help_text="Shown once: verify X-Lab-Signature with it.")

    class Meta(WebhookEndpointOutput.Meta):
        fields = (*WebhookEndpointOutput.Meta.fields, "secret")


class WebhookAttemptOutput(serializers.ModelSerializer[WebhookAttempt]):
    class Meta:
        model = WebhookAttempt
        fields = ("number", "attempted_at", "status_code", "error_code", "duration_ms", "is_success")


class WebhookDeliveryOutput(serializers.ModelSerializer[WebhookDelivery]):
    event_id = serializers.UUIDField(source="event.pk")
    event_type = serializers.CharField(source="event.event_type")
    sequence = serializers.IntegerField(source="event.sequence")
    attempts = WebhookAttemptOutput(many=True)

    class Meta:
        model = WebhookDelivery
        fields = (
            "id",
            "event_id",
            "event_type",
            "sequence",
            "status",
            "attempt_count",
            "next_attempt_at",
            "give_up_at",
            "last_status_code",
            "last_error_code",
            "delivered_at",
            "created_at",
            "attempts",
        )
