"""Sign-in defence for the API token exchange, the staff login and the password My Account asks for again (a
password change, an erasure): attempts are counted per account and per client address (an IPv6 client's /64)
in the shared cache (Redis in production), so every web process sees one count.

After `SIGNIN_ACCOUNT_FAILURES` failures for one account, or `SIGNIN_ADDRESS_FAILURES` from one address,
within `SIGNIN_WINDOW_SECONDS`, sign-ins for that account / from that address are refused for
`SIGNIN_WINDOW_SECONDS`, whatever the password: a guesser learns nothing more. Each failure and each lock is
a `SecurityEvent`.

An attempt is counted before its password is checked, and one over a limit is refused unchecked. Counted
only once it had failed, every attempt of a burst sent together had its (slow) password check before any was
counted: eight at once were eight guesses against a limit of five. A success clears the account's count
and takes its own back from the address's.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from redis.exceptions import RedisError

from lab.accounts.authenticated import token_of_request
from lab.accounts.erased import account_is_erased
from lab.accounts.errors import AccountError
from lab.accounts.models import SecurityEvent, User
from lab.accounts.seal import email_as_stored
from lab.lib.client_ip import address_for_limits
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
    # What the password was asked for when it is not a sign-in ("password_change", "erasure"): named in its
    # events' detail, so the account's security log tells them from sign-ins.
    confirms: str = ""
    # The API token a confirmation was made with (its public id): the attempt is then counted and locked per
    # token, not per account (password_confirm), and the token is named in its events' detail.
    token_id: str = ""

    @property
    def email_sha256(self) -> str:
        # The account's count, whatever the spelling of its address (the staff login passes it as typed):
        # counted per spelling, fullwidth letters or soft hyphens in the domain were a fresh count each.
        return hashlib.sha256(email_as_stored(self.email).encode()).hexdigest()

    def counters(self) -> list[tuple[str, str, int]]:
        """(scope, cache key, limit) for each thing this attempt is counted against."""
        scopes = [self.holder()]
        if self.client_ip:
            address = address_for_limits(self.client_ip)
            scopes.append(("address", f"{_PREFIX}:address:{address}", settings.SIGNIN_ADDRESS_FAILURES))
        return scopes

    def holder(self) -> tuple[str, str, int]:
        """The count of who makes the attempt: the token's for a confirmation made with one, else the
        account's. A success starts it again."""
        if self.token_id:
            return ("token", f"{_PREFIX}:token:{self.token_id}", settings.SIGNIN_ACCOUNT_FAILURES)
        return ("account", f"{_PREFIX}:account:{self.email_sha256}", settings.SIGNIN_ACCOUNT_FAILURES)


@dataclass(frozen=True)
class AttemptCount:
    """One counter an attempt was counted against, and the count it made there (itself included)."""

    scope: str
    key: str
    limit: int
    count: int


def sign_in_check(*, attempt: SignInAttempt) -> None:
    """Raise SignInLocked while the account or the address is locked."""
    now = time.time()
    locked_until = [cache.get(f"{key}:locked_until") for _, key, _ in attempt.counters()]
    latest = max((until for until in locked_until if isinstance(until, int | float)), default=0.0)
    if latest > now:
        raise SignInLocked(retry_after_seconds=max(1, math.ceil(latest - now)))


# Seconds an attempt refused because the limit is taken by checks still in flight is told to wait: they end
# within a second or two (a lock, if one follows, says its own time).
IN_FLIGHT_RETRY_SECONDS = 5


def sign_in_count(*, attempt: SignInAttempt) -> list[AttemptCount]:
    """Count the attempt against each of its limits; call it before checking the password, and give what it
    returns to sign_in_failed or sign_in_succeeded. SignInLocked (and nothing counted) while a lock holds, or
    when the attempt is over a limit: the attempts before it, failed or still being checked, have used the
    limit up, and a count is atomic (INCR), so of any number sent at once only as many as the limit allows
    get a check."""
    sign_in_check(attempt=attempt)
    window = settings.SIGNIN_WINDOW_SECONDS
    counts: list[AttemptCount] = []
    try:
        for scope, key, limit in attempt.counters():
            counts.append(AttemptCount(scope=scope, key=key, limit=limit, count=_count(key, window)))
    except BaseException:
        _uncount(counts)
        raise
    if any(counted.count > counted.limit for counted in counts):
        # Taken back: a refused attempt is no failure (as a locked one never was), and the count stays what
        # it means, the failures plus the checks in flight.
        _uncount(counts)
        sign_in_check(attempt=attempt)  # locked meanwhile by a check in flight: its lock's own time
        # No lock (yet): the checks in flight decide, within seconds; a right password is then let in.
        raise SignInLocked(retry_after_seconds=min(window, IN_FLIGHT_RETRY_SECONDS))
    return counts


def sign_in_failed(
    *, attempt: SignInAttempt, user: User | None, counts: Sequence[AttemptCount] | None = None
) -> None:
    """Record a failed password check; lock the account or the address it brought to its limit. `counts`:
    what sign_in_count counted for this attempt before its check; without them it is counted now."""
    window = settings.SIGNIN_WINDOW_SECONDS
    user = _record_failure(attempt=attempt, user=user, kind=SecurityEvent.Kind.SIGN_IN_FAILED)
    # The shared cache's counters outside any transaction: a slow cache must not hold the account's row.
    if counts is None:
        counts = [
            AttemptCount(scope=scope, key=key, limit=limit, count=_count(key, window))
            for scope, key, limit in attempt.counters()
        ]
    for counted in counts:
        # The lock is decided by the failures alone: the attempt count also holds the checks still in flight,
        # and a person's own right passwords in flight (an integration starting several workers) must not
        # lock the account on one typo.
        failures = _count(f"{counted.key}:failures", window)
        # cache.add is atomic: of several processes crossing the limit together, one records the lock.
        if failures >= counted.limit and cache.add(
            # Whole seconds, an integer: read alike by this cache's serializer and by Django's own, which a
            # previous version's web processes on the same Redis use during a rolling upgrade (a float
            # written as JSON made their sign-in answer 500).
            f"{counted.key}:locked_until",
            int(time.time()) + window,
            timeout=window,
        ):
            user = _record_failure(
                attempt=attempt,
                user=user,
                kind=SecurityEvent.Kind.SIGN_IN_LOCKED,
                detail={"scope": counted.scope, "failures": failures, "seconds": window},
            )
            logger.warning(
                "sign-in locked scope=%s channel=%s user=%s failures=%s",
                counted.scope,
                attempt.channel,
                user.public_id if user else "-",
                failures,
            )


def _record_failure(
    *, attempt: SignInAttempt, user: User | None, kind: str, detail: dict[str, object] | None = None
) -> User | None:
    """Record one sign-in event; the account it names, or None when it was erased meanwhile (found by its
    e-mail just before its erasure committed). Such an event names nobody: not the erased account, and
    neither the e-mail's hash nor the client's address, which the erasure that has just run would never
    find, nor the token (of the erased account). The limits count in the shared cache, never from these rows,
    so they are unchanged by it."""
    detail = {**(detail or {}), **({"confirms": attempt.confirms} if attempt.confirms else {})}
    with transaction.atomic():
        erased_meanwhile = user is not None and account_is_erased(user.pk)
        if erased_meanwhile:
            user = None
        SecurityEvent.objects.create(
            kind=kind,
            channel=attempt.channel,
            user=user,
            email_sha256="" if user or erased_meanwhile else attempt.email_sha256,
            client_ip=None if erased_meanwhile else attempt.client_ip,
            detail={**detail, "token": attempt.token_id} if attempt.token_id and user else detail,
        )
    return user


def sign_in_succeeded(*, attempt: SignInAttempt, counts: Sequence[AttemptCount]) -> None:
    # The account's (or the token's) own count starts again; the address's does not, or one valid account
    # would let its holder reset the count of every guess made from that address: only this attempt's
    # count, taken before its check, is taken back there.
    scope, holder, _ = attempt.holder()
    cache.delete_many([holder, f"{holder}:failures"])
    _uncount([counted for counted in counts if counted.scope != scope])


def _count(key: str, window: int) -> int:
    cache.add(key, 0, timeout=window)  # the window starts at the first attempt counted
    try:
        count = int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)
        return 1
    if count == 1:
        # Expired between incr's existence check and its INCR, the key was made anew with no expiry, and a
        # count that never ends would lock for good: the first count sets the window.
        cache.touch(key, window)
    return count


def _uncount(counts: Sequence[AttemptCount]) -> None:
    """Take back the counts of an attempt that was no failure (refused unchecked, succeeded, not judged)."""
    for counted in counts:
        try:
            if int(cache.decr(counted.key)) < 0:
                cache.delete(counted.key)  # it had expired, and DECR made it anew, with no expiry
        except ValueError:  # expired meanwhile: nothing left to take back
            continue
        except RedisError as error:
            # Left counted until its window ends: an error on the side of the limit, never past it.
            logger.warning(
                "sign-in count not taken back scope=%s error=%s", counted.scope, type(error).__name__
            )


def _counted_check(
    *, attempt: SignInAttempt, check: Callable[[], User | None], account: Callable[[], User | None]
) -> User | None:
    """`check()`'s person, or None (a failure, recorded); counted and limited as the module says. Without the
    shared cache it answers UpstreamError (503 `sign_in_unavailable`): an uncounted guess is what the limits
    exist to prevent."""
    try:
        counts = sign_in_count(attempt=attempt)
        try:
            user = check()
        except BaseException:
            _uncount(counts)  # not judged (the database failed it): no failure of the person's
            raise
        if user is None:
            sign_in_failed(attempt=attempt, user=account(), counts=counts)
            return None
        sign_in_succeeded(attempt=attempt, counts=counts)
    except RedisError as error:
        logger.error("sign-in refused: the shared cache is unreachable error=%s", type(error).__name__)
        raise UpstreamError(
            AccountError.SIGN_IN_UNAVAILABLE, "Signing in is unavailable for a moment; try again shortly."
        ) from error
    return user


def sign_in(*, request: HttpRequest, attempt: SignInAttempt, password: str) -> User | None:
    """The person whose e-mail and password match, or None; SignInLocked while a limit holds.

    One count for both doors: a failure at the API and one at the staff login count against the same account.
    """
    email = email_as_stored(attempt.email)  # as stored: anna@bücher.example is anna@xn--bcher-kva.example
    return _counted_check(
        attempt=attempt,
        check=lambda: authenticate(request, username=email, password=password),
        account=lambda: User.objects.filter(email=email).first(),
    )


def password_confirm(*, user: User, password: str, client_ip: str | None, confirms: str) -> bool:
    """Whether `password` is the signed-in person's own, asked for again before what a token alone must not
    do (`confirms`: "password_change", "email_change", "erasure", "token_revoke"). Counted and limited like a
    sign-in (SignInLocked, 429 `sign_in_locked`): checked on its own, a stolen token was a licence for
    unlimited guesses at the password, unrecorded.

    Made with an API token (`user` as the token authenticated it: lab.accounts.authenticated), it
    is counted and locked per token and per address, not per account. The account's lock is set by anyone
    with wrong passwords for its e-mail at the token exchange: counted per account, it also refused the
    owner's right password here, so a token thief kept the owner from the password change that ends the
    thief's token, while the token itself went on working. A thief's wrong guesses lock the thief's token's
    confirmations, not the owner's (tests/accounts/test_token_confirmation_locks.py)."""
    token = token_of_request(user)
    attempt = SignInAttempt(
        email=user.email,
        client_ip=client_ip,
        channel=SecurityEvent.Channel.API,
        confirms=confirms,
        token_id=str(token.public_id) if token is not None else "",
    )
    confirmed = _counted_check(
        attempt=attempt,
        check=lambda: user if user.check_password(password) else None,
        account=lambda: user,
    )
    return confirmed is not None


def email_digest(email: str) -> str:
    """The SHA-256 a failed sign-in that found no account records for `email` (normalised as the sign-in
    normalises it)."""
    return SignInAttempt(email=email, client_ip=None, channel=SecurityEvent.Channel.API).email_sha256


# The key of an `email_changed` event's detail that holds the address the account had before, as its digest.
PREVIOUS_EMAIL_DIGEST = "previous_email_sha256"


def sign_ins_with_address(*, email: str) -> QuerySet[SecurityEvent]:
    """Failed sign-ins that found no account for this e-mail address (before it was registered, or typed by
    someone else): recorded by the address's SHA-256, normalised as the sign-in normalises it."""
    return SecurityEvent.objects.filter(user=None, email_sha256=email_digest(email))


def account_email_digests(*, user: User) -> list[str]:
    """The digest of every address the account has had: its own, and each earlier one its `email_changed`
    events recorded (changes made before they did so name none)."""
    earlier = (
        SecurityEvent.objects.filter(user=user, kind=SecurityEvent.Kind.EMAIL_CHANGED)
        .order_by("pk")
        .values_list(f"detail__{PREVIOUS_EMAIL_DIGEST}", flat=True)
    )
    digests = [email_digest(user.email)] if user.email else []
    return [*digests, *(digest for digest in earlier if isinstance(digest, str) and digest not in digests)]


@dataclass(frozen=True)
class EmailPeriod:
    """A time the account had an earlier address: from `since` (None: no start known) until `until`, when an
    `email_changed` event recorded that it gave the address up."""

    since: datetime | None
    until: datetime


def account_earlier_email_periods(*, user: User) -> dict[str, tuple[EmailPeriod, ...]]:
    """The digest of each address the account had before, with every period it had it: an address given up
    and taken back later has a period for each time. A period ends at the `email_changed` event that gave the
    address up, and starts at the change before it (the account's start, `date_joined`, for the first): the
    address was someone else's, or no one's, outside them. A change made before the events named the earlier
    address (no digest) still starts the period after it."""
    changes = SecurityEvent.objects.filter(user=user, kind=SecurityEvent.Kind.EMAIL_CHANGED).order_by(
        "created_at", "pk"
    )
    periods: dict[str, tuple[EmailPeriod, ...]] = {}
    since = user.date_joined
    for digest, until in changes.values_list(f"detail__{PREVIOUS_EMAIL_DIGEST}", "created_at"):
        if isinstance(digest, str):
            periods[digest] = (*periods.get(digest, ()), EmailPeriod(since=since, until=until))
        since = until
    return periods


def sign_ins_with_addresses_of(*, user: User) -> QuerySet[SecurityEvent]:
    """Failed sign-ins that found no account for any address the account has had (account_email_digests):
    after an e-mail change, those typed with the earlier address are still the account's to export and
    erase."""
    return SecurityEvent.objects.filter(user=None, email_sha256__in=account_email_digests(user=user))
