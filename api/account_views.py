"""Accounts: register (`accounts`), sign in for a token (`auth/token`), My Account (`me`, read and change; its
DELETE is api/privacy_views.py's), confirm a new e-mail address (`me/email/confirm`), and a customer's API
tokens (`me/tokens`: listed, never their keys, and revoked)."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import account_serializers as s
from api.errors import ApiError
from api.schema import problems
from api.throttles import (
    AccountChangeThrottle,
    EmailChangeAddressThrottle,
    RegistrationThrottle,
    SignInThrottle,
)
from api.views import client_address
from lab.accounts import services as accounts
from lab.accounts import signin, tokens
from lab.accounts.errors import AccountError
from lab.accounts.models import SecurityEvent, User
from lab.accounts.roles import is_staff_member
from lab.audit.records import request_meta
from lab.audit.staff_seal import REFUSAL_MESSAGE, staff_seal_check
from lab.lib.errors import DomainError, PermissionDenied
from lab.orders import address as order_address


class AccountCreateView(APIView):
    permission_classes = (AllowAny,)
    authentication_classes = ()
    throttle_classes = (RegistrationThrottle,)

    @extend_schema(request=s.RegistrationInput, responses={201: s.RegistrationOutput, **problems(403, 409)})
    def post(self, request: Request) -> Response:
        data = s.RegistrationInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = accounts.customer_register(
            email=values["email"],
            password=values["password"],
            full_name=values["full_name"],
            address=values["address"],
            birth_date=values["birth_date"],
            policy_version=values["privacy_policy_version"],
            marketing_opt_in=values["marketing_opt_in"],
        )
        issued = tokens.api_token_issue(user=user, name="registration", client_ip=client_address(request))
        output = s.RegistrationOutput(user, context={"token": issued.key}).data
        return Response(output, status=status.HTTP_201_CREATED)


class TokenCreateView(APIView):
    """Exchange e-mail and password for a new named API token (customers only; the key is shown once).

    Failed attempts are limited per account and per address (429 `sign_in_locked`, with Retry-After); all
    attempts per address by a throttle of their own (`API_SIGN_IN_THROTTLE`), not registration's.
    """

    permission_classes = (AllowAny,)
    authentication_classes = ()
    throttle_classes = (SignInThrottle,)

    @extend_schema(request=s.TokenInput, responses={200: s.TokenCreatedOutput, **problems(401, 403, 409)})
    def post(self, request: Request) -> Response:
        data = s.TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        attempt = signin.SignInAttempt(
            email=values["email"], client_ip=client_address(request), channel=SecurityEvent.Channel.API
        )
        user = signin.sign_in(request=request._request, attempt=attempt, password=values["password"])
        if user is None:
            raise DomainError(ApiError.INVALID_CREDENTIALS, "E-mail or password is not correct.")
        issued = tokens.api_token_issue(user=user, name=values["name"], client_ip=attempt.client_ip)
        return Response(s.TokenCreatedOutput(issued.token, context={"key": issued.key}).data)


def my_account(request: Request) -> User:
    """The signed-in customer whose account My Account reads or changes; a staff member is refused.

    The API accepts a /lab/ session (the auditors' console reads `audit/*` with it), so without this a staff
    member reached the customers' password change, which sealed the account as it stood: a role a database
    administrator had granted became the lab's own. Staff accounts are a lab admin's to change (the lab
    admin's account and password forms, an admin's own "Change password"). A staff account whose seal does
    not hold is refused as on every /lab/ page, on the record (a security event and an audit record).
    """
    user = cast(User, request.user)
    if not is_staff_member(user):
        return user
    if not staff_seal_check(user, meta=request_meta(request._request), channel=SecurityEvent.Channel.API):
        raise PermissionDenied(AccountError.ACCOUNT_CHANGED_OUTSIDE_THE_LAB, REFUSAL_MESSAGE)
    raise PermissionDenied(
        AccountError.STAFF_ACCOUNT_NOT_A_CUSTOMER,
        "My Account is for customers; a lab admin changes staff accounts in the lab admin (/lab/admin/).",
    )


class MeView(APIView):
    """My Account: read and change name, e-mail, address, marketing opt-in and password (customers only). A
    new e-mail or password needs the current password; changes are throttled per customer."""

    permission_classes = (IsAuthenticated,)

    def get_throttles(self) -> list[Any]:
        # The changes only (PATCH's 429 is in its schema); reading one's own account is not limited. An
        # e-mail change is also counted per client address (EmailChangeAddressThrottle: 409 `email_taken`).
        if self.request.method != "PATCH":
            return []
        return [AccountChangeThrottle(), EmailChangeAddressThrottle()]

    @extend_schema(responses={200: s.AccountOutput, **problems(403)})
    def get(self, request: Request) -> Response:
        return Response(s.AccountOutput(my_account(request)).data)

    @extend_schema(
        request=s.MeUpdateInput,
        responses={200: s.MeUpdatedOutput, **problems(403, 409, 429)},
        description=(
            "A new `address` is the one for orders to come: an order keeps the address it was placed with. "
            "The answer's `orders_keeping_their_address` names your orders still to ship to another address; "
            "change one with `PATCH /api/v1/orders/{ref}`."
        ),
    )
    def patch(self, request: Request) -> Response:
        user = my_account(request)
        data = s.MeUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = accounts.customer_update(user=user, client_ip=client_address(request), **data.validated_data)
        address = data.validated_data.get("address")
        keeping = (
            order_address.orders_keeping_their_address(customer=user, address=address)
            if address is not None
            else []
        )
        return Response(s.MeUpdatedOutput(user, context={"orders_keeping_their_address": keeping}).data)


class MeEmailConfirmView(APIView):
    permission_classes = (IsAuthenticated,)
    throttle_classes = (AccountChangeThrottle,)  # a change to the account, as PATCH me

    @extend_schema(
        request=s.EmailConfirmInput,
        responses={200: s.AccountOutput, **problems(400, 403, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        """Confirm the new e-mail address that `PATCH me` mailed a token to (its `pending_email`): it becomes
        the account's e-mail, the one to sign in with, and the address the account had is told. 400
        `email_confirmation_invalid` for a token that is wrong, was used, or was voided by a later password or
        e-mail change; 400 `email_confirmation_expired` after `LAB_EMAIL_CONFIRM_HOURS`; 409 `email_taken`
        when another account took the address meanwhile."""
        data = s.EmailConfirmInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = accounts.customer_email_confirm(
            user=my_account(request), token=data.validated_data["token"], client_ip=client_address(request)
        )
        return Response(s.AccountOutput(user).data)


class MeTokenListView(APIView):
    """Your API tokens, newest first: name, key prefix, when created and last used (to the minute)."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses={200: s.TokenOutput(many=True), **problems(403)})
    def get(self, request: Request) -> Response:
        found = tokens.api_tokens_of(user=my_account(request))
        # The stubs type the instance of one serializer only; many=True takes (and DRF lists) many of them.
        return Response(s.TokenOutput(found, many=True).data)  # type: ignore[arg-type]


class MeTokenDetailView(APIView):
    permission_classes = (IsAuthenticated,)

    @extend_schema(request=s.TokenRevokeInput, responses={204: None, **problems(403, 404, 429)})
    def delete(self, request: Request, token_id: str) -> Response:
        """Revoke one of your tokens; it stops working at once. The token this request uses needs nothing
        more; any other needs your current password as a JSON body, `{"password": "..."}`, so a stolen
        token cannot end its owner's others."""
        data = s.TokenRevokeInput(data=request.data)
        data.is_valid(raise_exception=True)
        tokens.api_token_revoke(
            user=my_account(request),
            token_id=str(token_id),
            client_ip=client_address(request),
            password=data.validated_data.get("password"),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
