"""My tokens: a customer lists their API tokens (never the keys) and revokes one (`me/tokens`); and confirms
the new e-mail address My Account's change mailed a token to (`me/email/confirm`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import serializers as s
from api.schema import problems
from api.throttles import AccountChangeThrottle
from api.views import client_address, my_account
from lab.accounts import services as accounts
from lab.accounts import tokens


class MeTokenListView(APIView):
    """Your API tokens, newest first: name, key prefix, when created and last used (to the minute)."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses={200: s.TokenOutput(many=True), **problems(403)})
    def get(self, request: Request) -> Response:
        found = tokens.api_tokens_of(user=my_account(request))
        # The stubs type the instance of one serializer only; many=True takes (and DRF lists) many of them.
        return Response(s.TokenOutput(found, many=True).data)  # type: ignore[arg-type]


class TokenRevokeInput(serializers.Serializer[Any]):
    password = serializers.CharField(
        required=False,
        max_length=200,
        write_only=True,
        help_text="Your current password: needed to revoke any token but the one this request uses.",
    )


class MeTokenDetailView(APIView):
    permission_classes = (IsAuthenticated,)

    @extend_schema(request=TokenRevokeInput, responses={204: None, **problems(403, 404, 429)})
    def delete(self, request: Request, token_id: str) -> Response:
        """Revoke one of your tokens; it stops working at once. The token this request uses needs nothing
        more; any other needs your current password as a JSON body, `{"password": "..."}`, so a stolen
        token cannot end its owner's others."""
        data = TokenRevokeInput(data=request.data)
        data.is_valid(raise_exception=True)
        tokens.api_token_revoke(
            user=my_account(request),
            token_id=str(token_id),
            client_ip=client_address(request),
            password=data.validated_data.get("password"),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class EmailConfirmInput(serializers.Serializer[Any]):
    token = serializers.CharField(
        max_length=100, write_only=True, help_text="The token mailed to the new address."
    )


class MeEmailConfirmView(APIView):
    permission_classes = (IsAuthenticated,)
    throttle_classes = (AccountChangeThrottle,)  # a change to the account, as PATCH me

    @extend_schema(
        request=EmailConfirmInput,
        responses={200: s.AccountOutput, **problems(400, 403, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        """Confirm the new e-mail address that `PATCH me` mailed a token to (its `pending_email`): it becomes
        the account's e-mail, the one to sign in with, and the address the account had is told. 400
        `email_confirmation_invalid` for a token that is wrong, was used, or was voided by a later password or
        e-mail change; 400 `email_confirmation_expired` after `LAB_EMAIL_CONFIRM_HOURS`; 409 `email_taken`
        when another account took the address meanwhile."""
        data = EmailConfirmInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = accounts.customer_email_confirm(
            user=my_account(request), token=data.validated_data["token"], client_ip=client_address(request)
        )
        return Response(s.AccountOutput(user).data)
