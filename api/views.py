"""Customer API views: one view per operation, each a thin call into lab services/selectors, in a module per
concept (account_views, asset_views, order_views, proof_views, privacy_views, notify_views, audit_views).

This one holds the catalog (`products`) and the request helpers the view modules share."""

from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from rest_framework import generics
from rest_framework.permissions import AllowAny
from rest_framework.request import Request

from api import catalog_serializers as s
from api.throttles import AnonThrottle
from lab.accounts.models import User
from lab.catalog import selectors as catalog_selectors
from lab.catalog.models import Product
from lab.lib.client_ip import client_ip


def client_address(request: Request) -> str | None:
    return client_ip(request._request) or None  # behind TRUSTED_PROXIES, the client's, not the proxy's


def customer_of(request: Request) -> User | None:
    """The signed-in customer of a request; None for a guest."""
    user = request.user
    return user if user and user.is_authenticated else None


# django-filter has no types (its stub package stops in 2023), so FilterSet is Any to mypy.
class ProductFilter(filters.FilterSet):  # type: ignore[misc]
    class Meta:
        model = Product
        fields = ("paper",)


class ProductListView(generics.ListAPIView[Product]):
    """The catalog: every print size and paper on sale with its price and minimum DPI. Only products priced
    in LAB_CURRENCY: a quote refuses any other (`currency_not_sold`), and listing them offered what no order
    could hold (the system check `catalog.W001` names them)."""

    permission_classes = (AllowAny,)
    throttle_classes = (AnonThrottle,)
    serializer_class = s.ProductOutput
    filterset_class = ProductFilter

    def get_queryset(self) -> QuerySet[Product]:
        return catalog_selectors.products_on_sale()
