"""Products in the lab admin: a size no printer media exists for (as `product_save` refuses it) or a currency
not the lab's is refused; what a product prints (size, paper, minimum dpi) is fixed once an order holds it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from lab.catalog.currency import currency_code, lab_currency
from lab.catalog.models import Product
from lab.catalog.services import product_media_check
from lab.lib.errors import DomainError
from lab.orders.errors import OrderError
from lab.orders.models import OrderItem
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        asked = kwargs.get("initial") or {}
        super().__init__(*args, **kwargs)
        if self.instance._state.adding and "currency" not in asked:
            # The model's default is "usd", whatever the lab sells in.
            self.initial["currency"] = lab_currency()

    def clean_currency(self) -> str:
        """The lab's currency only: shipping is priced in it, and a quote refuses any other
        (`currency_not_sold`). Before, a product left at "usd" in a lab in forints was sold in dollars."""
        currency = currency_code(str(self.cleaned_data.get("currency") or ""))
        if currency != lab_currency():
            raise forms.ValidationError(
                f"This lab sells in {settings.LAB_CURRENCY.upper()} (LAB_CURRENCY); a product priced in "
                f"{currency.upper()} could not be ordered.",
                code=OrderError.CURRENCY_NOT_SOLD,
            )
        return currency

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        width, height = cleaned.get("width_in"), cleaned.get("height_in")
        if width is not None and height is not None:
            try:
                product_media_check(width_in=width, height_in=height)
            except DomainError as error:
                raise forms.ValidationError(error.message, code=error.code) from error
        return cleaned


# What an order item prints: it holds the product, not a copy of these, and rasterizing and routing read them
# as they are when the job runs. Changed under a paid order, the customer's 4x6 lustre would print 5x7 glossy.
PRINTED_FIELDS = ("width_in", "height_in", "paper", "min_dpi")


class ProductAdmin(LabModelAdmin[Product]):
    form = ProductForm
    list_display = ("sku", "name", "size_label", "paper", "price_minor", "currency", "min_dpi", "is_active")
    list_filter = ("paper", "is_active")
    search_fields = ("sku", "name")

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """A save that `save_model` refused because an order took the product since the page's checks: its
        transaction (Django's, around the whole form) is rolled back, and the admin is told so, back on the
        page, which now shows the size, paper and dpi as fixed."""
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except OrderedMeanwhile:
            self.message_user(
                request,
                "Not saved: an order took this product while you were editing it, so its size, paper and "
                "minimum dpi are now fixed. Nothing of this form was kept; for another size or paper, create "
                "a new product instead.",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())

    def save_model(
        self, request: HttpRequest, obj: Product, form: forms.ModelForm[Product], change: bool
    ) -> None:
        """The page's checks that no order holds the product ran unlocked: an order could commit after them,
        and one still uncommitted was not seen at all. So the product is locked here, FOR UPDATE (an order's
        quote reads its products FOR SHARE: this waits for an order in flight, and an order's commit waits for
        this save), and asked again: a new size, paper or dpi of a product an order now holds is refused.
        SQLite ignores the lock and runs one writer at a time."""
        if change:
            current = Product.objects.select_for_update().get(pk=obj.pk)
            changed = [name for name in PRINTED_FIELDS if getattr(obj, name) != getattr(current, name)]
            if changed and product_is_ordered(current):
                raise OrderedMeanwhile(changed)
        super().save_model(request, obj, form, change)

    def get_readonly_fields(self, request: HttpRequest, obj: Product | None = None) -> tuple[str, ...]:
        return PRINTED_FIELDS if obj is not None and product_is_ordered(obj) else ()

    def get_fieldsets(self, request: HttpRequest, obj: Product | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or not product_is_ordered(obj):
            return fieldsets
        (name, options), *others = fieldsets
        description = (
            "Size, paper and minimum dpi are fixed: orders hold this product and print it as it is. For"
            " another size or paper, create a new product instead (and deactivate this one)."
        )
        return [(name, {**options, "description": description}), *others]


class OrderedMeanwhile(Exception):
    """An order took the product after the admin's page checked that none held it: nothing is saved."""


def product_is_ordered(product: Product) -> bool:
    return OrderItem.objects.filter(product=product).exists()


def register(site: admin.AdminSite) -> None:
    site.register(Product, ProductAdmin)
