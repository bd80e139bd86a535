"""Throttles for anonymous endpoints (registration, guest orders, webhooks come from anywhere), for the
signed-in endpoint that costs real CPU per call (proofs), and for changes to an account (My Account)."""

import logging
from typing import Any

from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle

from lab.lib.client_ip import address_for_limits, client_ip

logger = logging.getLogger(__name__)


class _RateFromSettings(AnonRateThrottle):
    # DRF copies the rates into a class attribute at import; reading them per request keeps one source of
    # truth (settings), also when settings change at runtime.
    def get_rate(self) -> str | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "")
        return str(rate) if rate is not None else None

    # DRF's own get_ident believes any client's X-Forwarded-For (a fresh one per request passed every limit);
    # the lab's helper believes only TRUSTED_PROXIES. An IPv6 client is counted by its /64, as sign-in
    # failures are: each of its addresses its own count let it pass every limit by changing address.
    def get_ident(self, request: Any) -> str:
        return address_for_limits(client_ip(request._request if hasattr(request, "_request") else request))

    # The counters live in the shared cache (Redis). If it is down, requests pass unthrottled (logged): a
    # paid order's webhook or a customer's status check must not fail because a rate counter is out of
    # reach. Sign-in, whose limits are a security control, fails closed instead (lab/accounts/signin.py).
    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return bool(super().allow_request(request, view))
        except RedisError as error:
            logger.warning("throttle skipped: the shared cache is unreachable error=%s", type(error).__name__)
            return True


class AnonThrottle(_RateFromSettings):
    scope = "anon"


class RegistrationThrottle(_RateFromSettings):
    scope = "registration"


class ProofThrottle(_RateFromSettings):
    """Proofs are rendered per request (a raster at proof resolution, about 0.1 to 0.5 s of CPU): counted
    per customer when signed in, per client address otherwise, so one account cannot keep the web workers
    busy."""

    scope = "proofs"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = getattr(request, "user", None)
        ident = f"user-{user.pk}" if user is not None and user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AccountChangeThrottle(_RateFromSettings):
    """Changes to an account (PATCH me), counted per signed-in customer (per client address otherwise). Each
    change may answer whether another account has an e-mail address (409 `email_taken`): unlimited, that was
    an oracle for which addresses have an account here."""

    scope = "account_changes"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = getattr(request, "user", None)
        ident = f"user-{user.pk}" if user is not None and user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
