"""Throttles counted per request: for anonymous endpoints (registration, sign-in, guest orders come from
anywhere) per client address, for changes to an account (My Account), and per signed-in customer for the
endpoints that cost real work per call (uploads, quotes, order requests and changes, photo bytes, proofs,
webhooks). Orders counted when created: api/order_throttles.py; the upload byte budget:
api/upload_throttle.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.throttle_rates import _customer_ident, _RateFromSettings


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
