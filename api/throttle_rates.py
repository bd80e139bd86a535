"""The rate machinery every API throttle shares: the rate read from settings, the client's address as limits
count it, and a fixed window counted atomically in the shared cache (Redis), let through when it is out of
reach; and who a signed-in caller is counted as."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle

from lab.lib.client_ip import address_for_limits, client_ip

logger = logging.getLogger(__name__)


class _RateFromSettings(AnonRateThrottle):
    num_requests: int | None  # set by DRF's __init__ from the rate
    duration: int | None
    window_started: float | None = None  # when the current window's first request came (for Retry-After)

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
    #
    # Counted atomically, in a fixed window that starts at its first request (ADD, then INCR, as sign-in
    # counts: lab/accounts/signin.py `_count`). DRF's own check read the request history, judged it and wrote
    # it back: requests that arrived at once, on different web processes, each read the same history, all
    # passed, and each wrote over the others' (tests/api/test_throttling.py).
    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return self._counted(request, view)
        except RedisError as error:
            logger.warning("throttle skipped: the shared cache is unreachable error=%s", type(error).__name__)
            return True

    def _counted(self, request: Any, view: Any) -> bool:
        if self.rate is None or self.num_requests is None or self.duration is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        self.window_started = None
        return self._within(request) or self._refused()

    def _within(self, request: Any) -> bool:
        """The request counted in its window, and whether the window still allows it."""
        assert self.num_requests is not None
        return self._count_one() <= self.num_requests

    def _refused(self) -> bool:
        """False, with the window's start noted for Retry-After."""
        started = self.cache.get(self._since)
        self.window_started = float(started) if started is not None else None
        return bool(self.throttle_failure())

    # Keys of their own: DRF's history lists under self.key are no counter (INCR on one fails).
    @property
    def _counter(self) -> str:
        return f"{self.key}:count"

    @property
    def _since(self) -> str:
        # The window's start in whole seconds, an integer: read alike by this cache's serializer and by
        # Django's own, which a previous version's web processes on the same Redis use during a rolling
        # upgrade (a float written as JSON made their throttled requests answer 500).
        return f"{self.key}:since"

    def _count_one(self) -> int:
        """One more in the current window (atomic across web processes); the window's count with it."""
        assert self.duration is not None
        counter, since = self._counter, self._since
        self.cache.add(counter, 0, timeout=self.duration)  # the window starts at the first request
        try:
            count = int(self.cache.incr(counter))
        except ValueError:  # expired between add and incr
            self.cache.set(counter, 1, timeout=self.duration)
            count = 1
        if count == 1:
            # The window's first request sets its expiry (a key that expired between incr's existence check
            # and its INCR was made anew without one, and a count that never ended would refuse for good) and
            # notes when it started, for Retry-After.
            self.cache.touch(counter, self.duration)
            self.cache.set(since, int(self.now), timeout=self.duration)  # an integer: see _since
        return count

    def wait(self) -> float | None:
        """Seconds until the window ends (Retry-After): the whole window if its start is not known."""
        if self.duration is None:
            return None
        if self.window_started is None:
            return float(self.duration)
        remaining = self.duration - (self.now - self.window_started)
        return float(min(max(remaining, 1), self.duration))


def _customer_ident(request: Any) -> str | None:
    user = getattr(request, "user", None)
    return _user_ident(user) if user is not None and user.is_authenticated else None


def _user_ident(user: Any) -> str:
    return f"user-{user.pk}"
