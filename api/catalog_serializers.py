"""Output serializers of the catalog (its products); no logic here."""

from __future__ import annotations

from rest_framework import serializers

from api.output_serializers import ModelOutput
from lab.catalog.models import Product


class ProductOutput(ModelOutput[Product]):
    size = serializers.CharField(source="size_label")

    class Meta:
        model = Product
        fields = (
            "sku",
            "name",
            "size",
            "width_in",
            "height_in",
            "paper",
            "price_minor",
            "currency",
            "min_dpi",
        )
