"""Throttles for anonymous endpoints (registration, guest orders, webhooks come from anywhere), for the
signed-in endpoints that cost real work per call (uploads, quotes, orders, photo bytes, proofs), for changes
to an account (My Account), and for guest orders to one e-mail address."""

from __future__ import annotations

import abc
import contextlib
import ipaddress
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.crypto import salted_hmac
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle
from rest_framework.utils import html

from api.errors import ApiError
from api.idempotency import idempotency_key_look
from lab.lib.client_ip import address_for_limits, client_ip, parse_address
from lab.lib.email_address import email_canonical
from lab.lib.errors import DomainError
from lab.orders import intake
from lab.orders.models import IdempotencyKey

if TYPE_CHECKING:
    from lab.accounts.models import User

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


class AnonThrottle(_RateFromSettings):
    scope = "anon"


class ClientAddressThrottle(_RateFromSettings):
    """AnonThrottle's limit (its rate and its count per client address), counting signed-in callers too: for
    the endpoints a guest's token opens (export, erasure, receipts, cancel), where an account gives no more
    right than none. AnonThrottle counts nobody signed in (DRF's cache key is None for them): a caller with
    any account's token exported a guest order without limit, each export appending an audit record."""

    scope = "anon"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class RegistrationThrottle(_RateFromSettings):
    scope = "registration"


class SignInThrottle(_RateFromSettings):
    """The token exchange (POST auth/token), per client address: a scope of its own. It shared
    registration's, and 19 right sign-ins from one address (an office behind one NAT, a script that signs
    in on each run) used up the registrations from there. Wrong passwords are limited by the sign-in's own
    counts (lab/accounts/signin.py); this bounds the password checks one address can ask for."""

    scope = "sign_in"


class EmailChangeAddressThrottle(_RateFromSettings):
    """My Account's e-mail changes (PATCH me with an `email` other than the account's), per client address,
    beside AccountChangeThrottle's count per account. Each answers whether another account has the address
    (409 `email_taken`), and accounts are free to make: counted per account alone, one address asked as many
    accounts as it registered times each one's count. Counted per address, the oracle is bounded per address
    as registration's own 409 is."""

    scope = "email_changes"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.method != "PATCH" or not self._changes_email(request):
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    @staticmethod
    def _changes_email(request: Any) -> bool:
        # A body that does not parse raises here, answered 400 as the view would (DRF keeps no data after
        # it: caught, the view would have seen an empty change).
        data = request.data
        email = data.get("email") if isinstance(data, Mapping) else None
        if not isinstance(email, str):
            return False
        user = getattr(request, "user", None)
        current = getattr(user, "email", None) if user is not None and user.is_authenticated else None
        # The same address again (a form sending every field) is no change, as My Account judges it.
        return email.strip().lower() != current


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


def _customer_ident(request: Any) -> str | None:
    user = getattr(request, "user", None)
    return _user_ident(user) if user is not None and user.is_authenticated else None


def _user_ident(user: Any) -> str:
    return f"user-{user.pk}"


class _PerCustomer(_RateFromSettings):
    """Counted per signed-in customer, by the account (whatever address or token it comes from); anonymous
    callers are not counted here but by AnonThrottle, which counts nobody signed in. Before, a token holder
    had no limit at all on these views (AnonThrottle's key is None for a signed-in caller)."""

    methods: frozenset[str] | None = None  # only requests of these methods count; None: all

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        ident = _customer_ident(request)
        if ident is None or (self.methods is not None and request.method not in self.methods):
            return None
        return self.cache_format % {"scope": self.scope, "ident": ident}


class CustomerUploadThrottle(_PerCustomer):
    """Photo uploads and URL photos (POST assets): each decodes a whole photo (up to ASSET_MAX_PIXELS)."""

    scope = "customer_uploads"


class CustomerQuoteThrottle(_PerCustomer):
    """Quotes (POST quotes): a preflight per item, nothing stored."""

    scope = "customer_quotes"


class CustomerOrderChangeThrottle(_PerCustomer):
    """Changes to an order's shipping address by its signed-in owner (PATCH orders/{ref}; a guest's are
    AnonThrottle's, by client address): each takes the order's lock, seals it again and adds an
    `address_changed` event to its timeline. Before, AnonThrottle on the view counted nobody signed in, and a
    token's changes were unlimited: the timeline grew without bound."""

    scope = "customer_order_changes"
    methods = frozenset({"PATCH"})


class CustomerOrderRequestThrottle(_PerCustomer):
    """Every POST orders of one signed-in customer, whatever it answers: a loose count beside
    CustomerOrderThrottle, which counts only the orders created. Each request costs a quote of up to 500
    lines, and a replay of a key whose order has no PaymentIntent asks Stripe again (up to 3 x
    STRIPE_TIMEOUT_SECONDS). Counting only orders created left those unlimited: replays of a 502'd key, and
    fresh keys on baskets refused at validation, as often as a customer liked (`POST quotes`, the same work,
    is 60/min). Loose enough that the retries a 502 asks for pass."""

    scope = "customer_order_requests"
    methods = frozenset({"POST"})


class CustomerReadThrottle(_PerCustomer):
    """Reads that cost more than a row: a photo's bytes (decrypted, and an audit record appended each)."""

    scope = "customer_reads"


class CustomerRedeliveryThrottle(_PerCustomer):
    """Webhook redeliveries (POST webhook-deliveries/{id}/redeliver): each may hold a webhooks worker for the
    whole 10 s of its POST, and a customer has many deliveries, each redeliverable every 30 s. Unlimited, one
    customer's loop over deliveries to an endpoint that drops SYNs kept every webhooks worker waiting, and
    every other customer's deliveries waited behind it."""

    scope = "customer_redeliveries"


class WebhookEndpointChangeThrottle(_PerCustomer):
    """Registrations and changes of webhook endpoints (POST webhook-endpoints, PATCH webhook-endpoints/{id})
    together: each has the lab resolve the URL's host (up to URL_CHECK_TIMEOUT_SECONDS). Unlimited, a customer
    could have the lab look up names as fast as they liked; reads and deletes are not counted."""

    scope = "webhook_endpoint_changes"
    methods = frozenset({"POST", "PATCH"})


def _guest_email(data: Any) -> str | None:
    """`guest.email` of an order body as the order serializer reads it (a JSON object, or a form's
    `guest.email` field), or None."""
    if html.is_html_input(data):
        guest: Any = html.parse_html_dict(data, prefix="guest")
    else:
        guest = data.get("guest") if isinstance(data, Mapping) else None
    email = guest.get("email") if isinstance(guest, Mapping) else None
    return email if isinstance(email, str) and email.strip() else None


class _CountedWhenCreated(_RateFromSettings, abc.ABC):
    """A limit on orders that counts only the orders created. Before the view it only looks: a window already
    full refuses the request (429 at once, no quote, no Stripe) unless it is a retry of an order the caller
    has (`_a_retry`: its Idempotency-Key), and nothing is counted. The view counts the order when
    `intake.order_create` creates it, through `admit` (`intake.Admission`), in the transaction that inserts
    it: the count is an atomic INCR, and the one past the limit is refused and rolled back (429), so orders
    at once from several web processes never get past the limit; `release` gives the count back when the
    order is undone after all."""

    admitted = False  # `admit` counted an order that `release` may give back

    def _a_retry(self, request: Any) -> bool:
        """Whether the request's Idempotency-Key is one the caller already made an order with: a retry
        (after a 502 `payment_provider_unavailable`, a lost answer) gets its order again, it creates none.
        Asked only when the window is full."""
        key = idempotency_key_look(request)  # None: the view refuses the request, nothing to look up
        scope = self._idempotency_scope(request)
        if key is None or scope is None:
            return False
        return IdempotencyKey.objects.filter(scope=scope, key=key).exists()

    @abc.abstractmethod
    def _idempotency_scope(self, request: Any) -> str | None:
        """The scope the caller's Idempotency-Keys are kept under (intake), or None: no order is theirs."""

    def _within(self, request: Any) -> bool:
        """Looks, counts nothing (the order is counted when it is created, `admit`): refused only when the
        window is already full and the request is no retry."""
        assert self.num_requests is not None
        count = self.cache.get(self._counter)
        return count is None or int(count) < self.num_requests or self._a_retry(request)

    def admit(self) -> None:
        """Count the order being created; Throttled (429) if that is one past the limit, the count given
        back (the order is rolled back). Unthrottled, logged, when the shared cache is out of reach."""
        self.admitted = False
        if self.num_requests is None or self.duration is None or self.key is None:
            return
        try:
            self.now = self.timer()
            self.window_started = None
            if self._count_one() <= self.num_requests:
                self.admitted = True
                return
            self._count_back()
            self._refused()
        except RedisError as error:
            logger.warning("throttle skipped: the shared cache is unreachable error=%s", type(error).__name__)
            return
        raise exceptions.Throttled(wait=self.wait())

    def release(self) -> None:
        """Give back what `admit` counted: the order was not created after all."""
        if not self.admitted:
            return
        self.admitted = False
        try:
            self._count_back()
        except RedisError as error:
            logger.warning(
                "throttle count not given back: the shared cache is unreachable error=%s",
                type(error).__name__,
            )

    def _count_back(self) -> None:
        # Its window may have ended meanwhile (the key expired): then there is nothing to give back.
        with contextlib.suppress(ValueError):
            self.cache.decr(self._counter)


class CustomerOrderThrottle(_CountedWhenCreated, _PerCustomer):
    """Orders created by one signed-in customer (POST orders, not the list): each asks Stripe for a
    PaymentIntent and sends an e-mail, so unlimited orders used up the lab's Stripe rate limit (every
    customer's order a 502) and its mail.

    Only orders created count (`_CountedWhenCreated`; the view passes `for_customer` to
    `intake.order_create`). Before, every POST was counted before the view ran: requests without an
    Idempotency-Key (400), a key reused for another body (409), replays, and the retry with the same key
    that a 502 `payment_provider_unavailable` asks for. With the window full that retry was 429, and the
    order kept without its payment could never get its PaymentIntent (only a POST orders makes it)."""

    scope = "customer_orders"
    methods = frozenset({"POST"})

    def _idempotency_scope(self, request: Any) -> str | None:
        return intake.idempotency_scope(customer=request.user, guest=None)

    @classmethod
    def for_customer(cls, customer: User) -> CustomerOrderThrottle:
        """The admission of an order by `customer` (`intake.order_create`'s `admission`)."""
        throttle = cls()
        throttle.key = throttle.cache_format % {"scope": throttle.scope, "ident": _user_ident(customer)}
        return throttle


class GuestOrderEmailThrottle(_CountedWhenCreated):
    """Guest orders to one e-mail address, from any client address: each order (and its cancellation) mails
    that address, so without it anyone could mail anyone from the lab, a few requests per message. Counted
    by a keyed hash of the address in the form its mail goes to (`email_canonical`: the domain IDNA-encoded
    as Django's mail sends it, lower-cased): never the address itself in the cache. Orders by signed-in
    customers go to their own address and are not counted. A body that does not parse is the view's 400
    (read here first, the same answer).

    Only orders created count (`_CountedWhenCreated`: an address already at its limit is refused before the
    view unless the request is a retry of an order it has). Before, every request was counted before the
    view ran: five bodies without an Idempotency-Key (each a 400) locked the address out of guest checkout
    for an hour, and so did the retries with the same key that a 502 `payment_provider_unavailable` asks
    for."""

    scope = "guest_order_emails"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.method != "POST" or _customer_ident(request) is not None:
            return None
        email = _guest_email(request.data)
        if email is None:
            return None
        return self._key_for(email)

    def _key_for(self, email: str) -> str:
        try:
            address = email_canonical(email)
        except ValueError:  # no mail can go to it: the order's validation refuses it, and nothing is counted
            address = email.strip().lower()
        digest = salted_hmac("api.throttles.GuestOrderEmailThrottle", address, algorithm="sha256").hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": digest}

    def _idempotency_scope(self, request: Any) -> str | None:
        email = _guest_email(request.data)
        if email is None:
            return None
        try:
            return intake.guest_scope(email=email_canonical(email))
        except ValueError:
            return None

    @classmethod
    def for_guest(cls, email: str) -> GuestOrderEmailThrottle:
        """The admission of a guest order to `email` (`intake.order_create`'s `admission`)."""
        throttle = cls()
        throttle.key = throttle._key_for(email)
        return throttle


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
