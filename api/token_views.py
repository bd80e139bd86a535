"""My tokens: a customer lists their API tokens (never the keys) and revokes one (`me/tokens`)."""

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
from api.views import client_address, my_account
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
        trim_whitespace=False,
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
