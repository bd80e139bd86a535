"""Throttles for anonymous endpoints (registration, guest orders, webhooks come from anywhere)."""

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle


class _RateFromSettings(AnonRateThrottle):
    # DRF copies the rates into a class attribute at import; reading them per request keeps one source of
    # truth (settings), also when settings change at runtime.
    def get_rate(self) -> str | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "")
        return str(rate) if rate is not None else None


class AnonThrottle(_RateFromSettings):
    scope = "anon"


class RegistrationThrottle(_RateFromSettings):
    scope = "registration"
