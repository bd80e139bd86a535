"""Throttles for anonymous endpoints (registration, guest orders, webhooks come from anywhere)."""

from rest_framework.throttling import AnonRateThrottle


class AnonThrottle(AnonRateThrottle):
    scope = "anon"


class RegistrationThrottle(AnonRateThrottle):
    scope = "registration"
