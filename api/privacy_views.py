"""Customer privacy API: export everything held about me (GET me/export) and erase me (DELETE me).

`AccountView` is My Account (GET/PATCH from api.views.MeView) plus DELETE, so `me` stays one route.
"""

from __future__ import annotations

from typing import cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import problems
from api.views import MeView
from lab.accounts.models import User
from lab.customer_data.erasure import ErasureResult, account_erase
from lab.customer_data.export import account_export


def _request_id(request: Request) -> str:
    return str(getattr(request._request, "request_id", ""))


class ErasureInput(serializers.Serializer[None]):
    password = serializers.CharField(
        max_length=200,
        help_text="Your current password: erasure cannot be undone, a token alone is not enough.",
    )


class ErasureOutput(serializers.Serializer[ErasureResult]):
    erased_at = serializers.DateTimeField()
    photos_purged = serializers.IntegerField()
    orders_anonymized = serializers.IntegerField()
    orders_cancelled = serializers.IntegerField(help_text="Unpaid orders cancelled by the erasure.")


class AccountView(MeView):
    """My Account: read, change, or erase (photos destroyed, personal data removed, orders anonymised)."""

    @extend_schema(
        request=ErasureInput,
        responses={200: ErasureOutput, **problems(403, 409)},
        description=(
            'Erase your personal data. Send your current password as a JSON body: `{"password": "..."}`. '
            "Photos are destroyed, name, e-mail and addresses removed, orders kept anonymised for "
            "accounting; unpaid orders are cancelled. Refused (409 `erasure_blocked_by_open_orders`) "
            "while an order is paid, in production, on hold, ready to pack or packed."
        ),
    )
    def delete(self, request: Request) -> Response:
        data = ErasureInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = account_erase(
            user=cast(User, request.user),
            password=data.validated_data["password"],
            request_id=_request_id(request),
        )
        return Response(ErasureOutput(result).data)


class AccountExportView(APIView):
    """Everything we hold about you as JSON, including every employee view of your photos (by role)."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        document = account_export(user=cast(User, request.user), request_id=_request_id(request))
        response = Response(document)
        response["Cache-Control"] = "no-store, private"
        response["Content-Disposition"] = 'attachment; filename="printlab-export.json"'
        return response
