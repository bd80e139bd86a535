"""Customers' API tokens: issue (the key is shown once), authenticate by the key's hash, the row's binding
to its owner and the owner's account seal, list, revoke.

Staff never hold API tokens: their work is on the /lab/ pages, under the staff pages' idle rule.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from lab.accounts.authenticated import token_of_request, token_of_request_set
from lab.accounts.erased import account_is_erased
from lab.accounts.errors import AccountError
from lab.accounts.models import ApiToken, SecurityEvent, User
from lab.accounts.roles import is_staff_member, roles_known
from lab.accounts.seal import account_seal_holds, account_seal_required
from lab.accounts.signin import password_confirm
from lab.lib.errors import Conflict, NotFound, PermissionDenied
from lab.lib.seals import seal_holds, seal_of

logger = logging.getLogger(__name__)
TOKEN_KEY = re.compile(r"[0-9a-f]{40}")  # 20 random bytes in hex, the shape DRF's tokens had
# last_used_at is a hint for the owner, not an audit trail: one write a minute per token is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    key: str  # never stored; the caller shows it once


def token_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


TOKEN_BINDING_SALT = "lab.accounts.api_token"


def token_binding(*, owner_public_id: object, key_sha256: str) -> str:
    """What binds a token row to its owner, a seal (lab/lib/seals.py): a database administrator can neither
    make up a token (they could store the SHA-256 of a key of their own) nor move one of theirs to another
    account."""
    return seal_of(TOKEN_BINDING_SALT, f"{owner_public_id}:{key_sha256}")


def _is_bound(token: ApiToken) -> bool:
    return seal_holds(token.binding, TOKEN_BINDING_SALT, f"{token.user.public_id}:{token.key_sha256}")


def api_token_issue(*, user: User, name: str, client_ip: str | None = None) -> IssuedToken:
    if is_staff_member(user):
        raise PermissionDenied(
            AccountError.STAFF_TOKENS_NOT_ISSUED,
            "Staff accounts do not get API tokens: staff work on the lab pages (/lab/).",
        )
    # Its password or status was set in the database alone (a password hash someone made): no token.
    account_seal_required(user, client_ip=client_ip, refused="no token is issued for it")
    key = secrets.token_hex(20)
    digest = token_key_digest(key)
    with transaction.atomic():
        # One issuer at a time counts the cap; and the password the sign-in checked must still be the
        # account's: a change committed since (which revoked every token) would not end a token issued here.
        locked = User.objects.select_for_update().only("pk", "password", "is_active").get(pk=user.pk)
        if locked.password != user.password or not locked.is_active:
            raise Conflict(
                AccountError.PASSWORD_CHANGED_MEANWHILE,
                "The account's password changed while you signed in, so no token was issued. Sign in again.",
            )
        token = ApiToken.objects.create(
            user=user,
            name=name,
            key_sha256=digest,
            key_prefix=key[:8],
            binding=token_binding(owner_public_id=user.public_id, key_sha256=digest),
        )
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.TOKEN_ISSUED,
            channel=SecurityEvent.Channel.API,
            user=user,
            client_ip=client_ip,
            detail={"token": str(token.public_id)},
        )
        _tokens_over_cap_revoke(user=user, client_ip=client_ip)
    return IssuedToken(token=token, key=key)


def _tokens_over_cap_revoke(*, user: User, client_ip: str | None) -> None:
    # A script that signs in on every run must not grow the table without end: the least recently used
    # tokens beyond the cap are revoked, and each revocation is on the account's security log.
    surplus = list(
        ApiToken.objects.filter(user=user)
        .order_by(Coalesce("last_used_at", "created_at").desc(), "-pk")
        .values_list("pk", "public_id")[settings.API_TOKENS_PER_USER :]
    )
    if not surplus:
        return
    ApiToken.objects.filter(pk__in=[pk for pk, _ in surplus]).delete()
    deactivated = {
        public_id: _webhook_endpoints_of_token_end(user=user, token_id=str(public_id))
        for _, public_id in surplus
    }
    SecurityEvent.objects.bulk_create(
        SecurityEvent(
            kind=SecurityEvent.Kind.TOKEN_REVOKED,
            channel=SecurityEvent.Channel.API,
            user=user,
            client_ip=client_ip,
            detail=_revoked_detail(
                token_id=str(public_id), reason="token_limit", deactivated=deactivated[public_id]
            ),
        )
        for _, public_id in surplus
    )


def _revoked_detail(*, token_id: str, reason: str, deactivated: int) -> dict[str, str | int]:
    """The `token_revoked` event's detail; the endpoints' count only when there were any (as a password
    change records it: services.AccessEnded)."""
    detail: dict[str, str | int] = {"token": token_id, "reason": reason}
    if deactivated:
        detail["webhook_endpoints_deactivated"] = deactivated
    return detail


def _webhook_endpoints_of_token_end(*, user: User, token_id: str) -> int:
    """Turn off the account's active webhook endpoints whose URL the token set (WebhookEndpoint.set_by_token):
    a stolen token's endpoint, or one it pointed at its own URL, went on receiving the account's tracking
    numbers and hold questions after the token was revoked. Those another token (still live) or a session set
    stay on; the owner turns on again the ones they recognise (PATCH `webhook-endpoints/{id}` `is_active`).
    The count goes on the revocation's record; never a URL (the customer's own text).

    lab.notify sits above lab.accounts (the layers contract): its endpoints are reached through the
    account's reverse relation, with no import of it (as services.account_access_end). A change made with
    the token takes the account's row FOR UPDATE (lab/notify/webhooks.py), so it is either seen here or
    refused for the token being gone."""
    return user.webhook_endpoints.filter(is_active=True, set_by_token=token_id).update(
        is_active=False, updated_at=timezone.now()
    )


def api_token_authenticate(*, key: str, client_ip: str | None = None) -> tuple[User, ApiToken] | None:
    """The token's active customer, or None: unknown keys, inactive users, staff, a token not bound to its
    owner and an account whose seal does not hold (lab/accounts/seal.py) are all refused."""
    if TOKEN_KEY.fullmatch(key) is None:
        return None
    # The token, its user and the user's roles in one query (a row per role, one row when there is none):
    # every signed-in API request starts here, and the role lookup used to be a second round trip.
    rows = list(
        ApiToken.objects.select_related("user")
        .filter(key_sha256=token_key_digest(key))
        .annotate(role_name=F("user__groups__name"))
    )
    if not rows:
        return None
    token = rows[0]
    roles = [row.role_name for row in rows if row.role_name is not None]
    roles_known(token.user, roles)
    if not token.user.is_active or is_staff_member(token.user):
        return None
    if not _is_bound(token):
        logger.error("api token not bound to its owner refused token=%s", token.public_id)
        return None
    # The binding covers the owner's public id, a column a DBA can write: moved to another account with the
    # token, it would hold for that account. That account's seal (of its public id) then does not, so the
    # token is refused like a bad one, on the record as the sign-in refuses it (no query when the seal holds).
    if not account_seal_holds(token.user, roles=roles):
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.ACCOUNT_SEAL_BROKEN,
            channel=SecurityEvent.Channel.API,
            user=token.user,
            client_ip=client_ip,
        )
        logger.error(
            "api token of an account changed outside the lab refused token=%s user=%s",
            token.public_id,
            token.user.public_id,
        )
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    token_of_request_set(token.user, token)
    return token.user, token


def api_tokens_of(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by(F("created_at").desc(), "-pk")


def api_token_revoke(
    *, user: User, token_id: str, client_ip: str | None = None, password: str | None = None
) -> None:
    """End one of the user's tokens, and turn off the webhook endpoints whose URL it set. The token the
    request was made with ends with no more ado; any other needs the current `password` (counted and locked
    per token as every confirmation: signin.password_confirm; 403 `wrong_password`): with a token alone, a
    thief revoked the owner's tokens and kept their own."""
    calling = token_of_request(user)
    itself = calling is not None and str(calling.public_id) == token_id
    # Checked before the token is looked up: the check is slow, and no row is held while it runs.
    if not itself and (
        not password
        or not password_confirm(user=user, password=password, client_ip=client_ip, confirms="token_revoke")
    ):
        raise PermissionDenied(
            AccountError.WRONG_PASSWORD, "Revoking another token needs your current password."
        )
    with transaction.atomic():
        # The account's row first (FOR KEY SHARE, lab/accounts/erased.py), then the token's: the order the
        # erasure takes them in. Token first, a revoke racing the erasure held the token's row and waited for
        # the account at COMMIT (its SecurityEvent's foreign key) while the erasure, holding the account,
        # waited for the token: PostgreSQL killed one as a deadlock. Now it waits for the erasure, and the
        # token its erasure revoked is not found (tests/privacy/test_erasure_races.py).
        if account_is_erased(user.pk):
            raise NotFound(AccountError.TOKEN_NOT_FOUND, "No such token.")
        deleted, _ = ApiToken.objects.filter(user=user, public_id=token_id).delete()
        if not deleted:
            raise NotFound(AccountError.TOKEN_NOT_FOUND, "No such token.")
        # As the endpoints record it (the form a caller gave may differ: upper case, no hyphens).
        deactivated = _webhook_endpoints_of_token_end(user=user, token_id=str(uuid.UUID(token_id)))
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.TOKEN_REVOKED,
            channel=SecurityEvent.Channel.API,
            user=user,
            client_ip=client_ip,
            detail=_revoked_detail(token_id=token_id, reason="owner", deactivated=deactivated),
        )


def api_tokens_revoke_all(*, user: User) -> int:
    """Every token of the user ends (password change, erasure); the caller records why, in its transaction."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted
