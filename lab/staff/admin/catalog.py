"""Products in the lab admin: a size no printer media exists for is refused, as `product_save` refuses it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from lab.catalog.models import Product
from lab.catalog.services import product_media_check
from lab.lib.errors import DomainError
from lab.staff.admin.base import LabModelAdmin


class ProductForm(forms.ModelForm[Product]):
    class Meta:
        model = Product
        fields = (
            "sku",
            "name",
            "width_in",
            "height_in",
            "paper",
            "price_minor",
            "currency",
            "min_dpi",
            "is_active",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        width, height = cleaned.get("width_in"), cleaned.get("height_in")
        if width is not None and height is not None:
            try:
                product_media_check(width_in=width, height_in=height)
            except DomainError as error:
                raise forms.ValidationError(error.message, code=error.code) from error
        return cleaned


class ProductAdmin(LabModelAdmin[Product]):
    form = ProductForm
    list_display = ("sku", "name", "size_label", "paper", "price_minor", "currency", "min_dpi", "is_active")
    list_filter = ("paper", "is_active")
    search_fields = ("sku", "name")


def register(site: admin.AdminSite) -> None:
    site.register(Product, ProductAdmin)
