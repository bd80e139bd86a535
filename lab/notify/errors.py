"""Error codes of notifications: customer webhook endpoints and deliveries, order e-mails.

Their HTTP statuses are mapped in api/errors.py; the values are the API's public `code` strings.
"""

from __future__ import annotations

from enum import StrEnum


class NotifyError(StrEnum):
    WEBHOOK_ENDPOINT_NOT_FOUND = "webhook_endpoint_not_found"
    WEBHOOK_DELIVERY_NOT_FOUND = "webhook_delivery_not_found"
    TOO_MANY_WEBHOOK_ENDPOINTS = "too_many_webhook_endpoints"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"  # details: the unknown and the allowed event types
    EVENT_TYPES_REQUIRED = "event_types_required"  # an endpoint subscribes to at least one event type
    DELIVERY_IN_PROGRESS = "delivery_in_progress"  # a redelivery asked for while an attempt is running
    # Asked for within REDELIVERY_INTERVAL of the delivery's last attempt (details: `retry_after_seconds`).
    REDELIVERY_TOO_SOON = "redelivery_too_soon"
    # A redelivery asked for while the delivery is pending and due: it already waits to be sent.
    DELIVERY_ALREADY_QUEUED = "delivery_already_queued"
    # Raised to the notification tasks, never to a person: the order event to notify is missing.
    ORDER_EVENT_NOT_FOUND = "order_event_not_found"
    UNKNOWN_ORDER_STATUS = "unknown_order_status"
