"""Sign-in defence for the API token exchange and the staff login: failed sign-ins are counted per account
and per client address in the shared cache (Redis in production), so every web process sees one count.

After `SIGNIN_ACCOUNT_FAILURES` failures for one account, or `SIGNIN_ADDRESS_FAILURES` from one address,
within `SIGNIN_WINDOW_SECONDS`, sign-ins for that account / from that address are refused for
`SIGNIN_WINDOW_SECONDS`, whatever the password: a guesser learns nothing more. Each failure and each lock is
a `SecurityEvent`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest
from redis.exceptions import RedisError

from lab.accounts.erased import account_is_erased
from lab.accounts.errors import AccountError
from lab.accounts.models import SecurityEvent, User
from lab.lib.errors import DomainError, UpstreamError

logger = logging.getLogger(__name__)
_PREFIX = "signin"


class SignInLocked(DomainError):
    """Too many failed sign-ins for the account or the client address; `retry_after_seconds` says when."""

    def __init__(self, *, retry_after_seconds: int) -> None:
        super().__init__(
            AccountError.SIGN_IN_LOCKED,
            "Too many failed sign-ins for this account or from this address. Try again later.",
            retry_after_seconds=retry_after_seconds,
        )
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class SignInAttempt:
    email: str
    client_ip: str | None
    channel: SecurityEvent.Channel

    @property
    def email_sha256(self) -> str:
        return hashlib.sha256(self.email.strip().lower().encode()).hexdigest()

    def counters(self) -> list[tuple[str, str, int]]:
        """(scope, cache key, limit) for each thing this attempt is counted against."""
        scopes = [("account", f"{_PREFIX}:account:{self.email_sha256}", settings.SIGNIN_ACCOUNT_FAILURES)]
        if self.client_ip:
            scopes.append(
                ("address", f"{_PREFIX}:address:{self.client_ip}", settings.SIGNIN_ADDRESS_FAILURES)
            )
        return scopes


def sign_in_check(*, attempt: SignInAttempt) -> None:
    """Raise SignInLocked while the account or the address is locked; call it before checking the password."""
    now = time.time()
    locked_until = [cache.get(f"{key}:locked_until") for _, key, _ in attempt.counters()]
    latest = max((until for until in locked_until if isinstance(until, int | float)), default=0.0)
    if latest > now:
        raise SignInLocked(retry_after_seconds=max(1, math.ceil(latest - now)))


def sign_in_failed(*, attempt: SignInAttempt, user: User | None) -> None:
    window = settings.SIGNIN_WINDOW_SECONDS
    user = _record_failure(attempt=attempt, user=user, kind=SecurityEvent.Kind.SIGN_IN_FAILED)
    # The shared cache's counters outside any transaction: a slow cache must not hold the account's row.
    for scope, key, limit in attempt.counters():
        failures = _count(key, window)
        # cache.add is atomic: of several processes crossing the limit together, one records the lock.
        if failures >= limit and cache.add(f"{key}:locked_until", time.time() + window, timeout=window):
            user = _record_failure(
                attempt=attempt,
                user=user,
                kind=SecurityEvent.Kind.SIGN_IN_LOCKED,
                detail={"scope": scope, "failures": failures, "seconds": window},
            )
            logger.warning(
                "sign-in locked scope=%s channel=%s user=%s failures=%s",
                scope,
                attempt.channel,
                user.public_id if user else "-",
                failures,
            )


def _record_failure(
    *, attempt: SignInAttempt, user: User | None, kind: str, detail: dict[str, object] | None = None
) -> User | None:
    """Record one sign-in event; the account it names, or None when it was erased meanwhile (found by its
    e-mail just before its erasure committed: recorded as for an unknown address, not under the erased
    account, where its client address would outlive the erasure)."""
    with transaction.atomic():
        if user is not None and account_is_erased(user.pk):
            user = None
        SecurityEvent.objects.create(
            kind=kind,
            channel=attempt.channel,
            user=user,
            email_sha256="" if user else attempt.email_sha256,
            client_ip=attempt.client_ip,
            detail=detail or {},
        )
    return user


def sign_in_succeeded(*, attempt: SignInAttempt) -> None:
    # The account's own count starts again; the address's does not, or one valid account would let its
    # holder reset the count of every guess made from that address.
    cache.delete(f"{_PREFIX}:account:{attempt.email_sha256}")


def _count(key: str, window: int) -> int:
    cache.add(key, 0, timeout=window)  # the window starts at the first failure
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)
        return 1


def sign_in(*, request: HttpRequest, attempt: SignInAttempt, password: str) -> User | None:
    """The person whose e-mail and password match, or None; SignInLocked while a limit holds.

    One count for both doors: a failure at the API and one at the staff login count against the same account.
    Without the shared cache nobody signs in (503 `sign_in_unavailable`): an uncounted guess is what the
    limits exist to prevent.
    """
    try:
        sign_in_check(attempt=attempt)
        user = authenticate(request, username=attempt.email.strip().lower(), password=password)
        if user is None:
            known = User.objects.filter(email=attempt.email.strip().lower()).first()
            sign_in_failed(attempt=attempt, user=known)
            return None
        sign_in_succeeded(attempt=attempt)
    except RedisError as error:
        logger.error("sign-in refused: the shared cache is unreachable error=%s", type(error).__name__)
        raise UpstreamError(
            AccountError.SIGN_IN_UNAVAILABLE, "Signing in is unavailable for a moment; try again shortly."
        ) from error
    return user
