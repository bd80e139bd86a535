"""Limits on orders that count only the orders created: per signed-in customer, and per guest e-mail address
(each order mails it). They look before the view and count in the order's own transaction (`admit`)."""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.utils.crypto import salted_hmac
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.utils import html

from api.idempotency import idempotency_key_look
from api.throttle_rates import _customer_ident, _RateFromSettings, _user_ident
from api.throttles import _PerCustomer
from lab.lib.email_address import email_canonical
from lab.orders import intake
from lab.orders.models import IdempotencyKey

if TYPE_CHECKING:
    from lab.accounts.models import User

logger = logging.getLogger(__name__)


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
        # The salt names the module the class was first written in, kept: another salt would start every
        # address's count over (and, during a rolling upgrade, count it twice).
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
