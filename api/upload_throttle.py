"""The byte budget of photo uploads: the bytes of photos one uploader (an account, else a network) may store
in a day, counted as each valid photo is stored; past it, 429 `upload_budget_exhausted`."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from api.errors import ApiError
from api.throttle_rates import _customer_ident, _RateFromSettings
from lab.lib.client_ip import address_for_limits, client_ip, parse_address
from lab.lib.errors import DomainError

logger = logging.getLogger(__name__)


class UploadByteBudget(_RateFromSettings):
    """The bytes of photos (POST assets with a `file`) one uploader may store in a day
    (API_UPLOAD_BYTES_PER_DAY): a signed-in customer by the account, anyone else by their network (an IPv4
    /24, an IPv6 /64), so a guest cannot start over from the next address. Past it, 429
    `upload_budget_exhausted` with Retry-After. Before, only the rate of uploads was limited (30 a minute of
    up to ASSET_MAX_BYTES each), and one client could fill the photo store that rasters and readiness share.

    As the guest order throttle counts orders: only photos stored count. An uploader whose day is already
    spent is refused before the photo is decoded (`check`, counting nothing); a valid photo's bytes are
    counted as it is about to be stored (`admit`: an atomic INCRBY, the upload that goes past the budget
    refused and its bytes given back), and given back when it is not stored after all (`release`). An invalid
    or refused upload costs nothing. The day is a window from its first counted upload, as the throttles'. The
    shared cache out of reach: uploads pass (logged), as the throttles'."""

    scope = "upload_bytes"
    admitted = 0  # bytes `admit` counted that `release` may give back

    def get_rate(self) -> str | None:
        budget = int(settings.API_UPLOAD_BYTES_PER_DAY)
        return f"{budget}/day" if budget > 0 else None

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        ident = _customer_ident(request)
        if ident is None:
            address = client_ip(request._request if hasattr(request, "_request") else request)
            parsed = parse_address(address)
            ident = (
                str(ipaddress.ip_network((parsed, 24), strict=False))
                if isinstance(parsed, ipaddress.IPv4Address)
                else address_for_limits(address)  # an IPv6 client's /64
            )
        return self.cache_format % {"scope": self.scope, "ident": ident}

    @classmethod
    def for_request(cls, request: Any) -> UploadByteBudget:
        budget = cls()
        budget.key = budget.get_cache_key(request, None)
        return budget

    def check(self) -> None:
        """Refuse at once (429) an uploader whose budget is already spent; counts nothing."""
        if self.num_requests is None or self.duration is None or self.key is None:
            return
        try:
            self.now = self.timer()
            self.window_started = None
            spent = self.cache.get(self._counter)
            if spent is None or int(spent) < self.num_requests:
                return
            self._refused()
        except RedisError as error:
            logger.warning(
                "upload budget skipped: the shared cache is unreachable error=%s", type(error).__name__
            )
            return
        raise self._exhausted()

    def admit(self, size_bytes: int) -> None:
        """Count a valid photo's bytes as it is about to be stored; 429 if that goes past the budget (its
        bytes given back, nothing stored)."""
        self.admitted = 0
        if self.num_requests is None or self.duration is None or self.key is None:
            return
        try:
            self.now = self.timer()
            self.window_started = None
            if self._count_bytes(size_bytes) <= self.num_requests:
                self.admitted = size_bytes
                return
            self._bytes_back(size_bytes)
            self._refused()
        except RedisError as error:
            logger.warning(
                "upload budget skipped: the shared cache is unreachable error=%s", type(error).__name__
            )
            return
        raise self._exhausted()

    def release(self) -> None:
        """Give back what `admit` counted: the photo was not stored after all."""
        size, self.admitted = self.admitted, 0
        if not size:
            return
        try:
            self._bytes_back(size)
        except RedisError as error:
            logger.warning(
                "upload budget not given back: the shared cache is unreachable error=%s", type(error).__name__
            )

    def _count_bytes(self, size_bytes: int) -> int:
        """The photo's bytes added to the window's (atomic across web processes); the window's total."""
        assert self.duration is not None
        counter = self._counter
        self.cache.add(counter, 0, timeout=self.duration)  # the window starts at its first upload
        try:
            total = int(self.cache.incr(counter, size_bytes))
        except ValueError:  # expired between add and incr
            self.cache.set(counter, size_bytes, timeout=self.duration)
            total = size_bytes
        if total == size_bytes:  # the window's first: its expiry and its start (for Retry-After)
            self.cache.touch(counter, self.duration)
            self.cache.set(self._since, int(self.now), timeout=self.duration)  # an integer: see _since
        return total

    def _bytes_back(self, size_bytes: int) -> None:
        # Its window may have ended meanwhile (the key expired): then there is nothing to give back.
        with contextlib.suppress(ValueError):
            self.cache.decr(self._counter, size_bytes)

    def _exhausted(self) -> DomainError:
        wait = self.wait() or self.duration or 1
        return DomainError(
            ApiError.UPLOAD_BUDGET_EXHAUSTED,
            "You have uploaded as many photo bytes as one day allows; nothing was kept. Retry later, or "
            "order the photos already uploaded.",
            retry_after_seconds=max(1, int(wait)),
            budget_bytes=self.num_requests,
        )
