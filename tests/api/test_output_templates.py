"""Output serializers render through a per-class template (api/output_serializers.py): the same answer DRF's
own rendering gives, no fields built per answer, and no context to lean on."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework import serializers

from api import order_serializers as s
from api import output_serializers
from lab.accounts.services import policy_current
from lab.catalog.demo import catalog_seed_demo
from lab.orders import quotes
from lab.orders.models import Order
from lab.orders.selectors import order_with_lines
from tests.builders import basket_of, customer_with_photos, order_post

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def lab_data() -> None:
    catalog_seed_demo()
    policy_current()  # a transactional test before this one may have flushed the published policy


def drf_rendering(serializer_class: type[serializers.Serializer[Any]], instance: Any) -> dict[str, Any]:
    """What DRF itself answers: a fresh serializer that builds its own fields, no template."""
    fresh = serializer_class(instance)
    return dict(serializers.Serializer.to_representation(fresh, instance))


def test_a_quote_and_an_order_answer_exactly_what_drf_renders(api, monkeypatch, stripe_api):
    client, asset_ids = customer_with_photos(api, 5)
    items = basket_of(asset_ids)
    items[0] |= {"crop": {"x": 0.1, "y": 0.1, "width": 0.5, "height": 0.5}}
    items[1] |= {"sizing": "fit", "border_mm": 3.5, "orientation": "landscape"}
    items[2] |= {"focal_point": {"x": 0.2, "y": 0.8}}
    computed: list[quotes.Quote] = []

    def quote_compute(**kwargs: Any) -> quotes.Quote:
        computed.append(real_quote_compute(**kwargs))
        return computed[-1]

    real_quote_compute = quotes.quote_compute
    monkeypatch.setattr(quotes, "quote_compute", quote_compute)

    quoted = client.post("/api/v1/quotes", {"items": items, "shipping_method": "express"}, format="json")
    created = order_post(client, items, "k-templates")

    assert quoted.status_code == 200, quoted.json()
    assert created.status_code == 201, created.json()
    (quote,) = computed
    assert quoted.json() == drf_rendering(s.QuoteOutput, quote)
    assert {line["sizing"] for line in quoted.json()["items"]} == {"fill", "fit"}
    order = order_with_lines(order=Order.objects.get())
    assert s.OrderOutput(order).data == drf_rendering(s.OrderOutput, order)
    assert s.OrderSummaryOutput(order).data == drf_rendering(s.OrderSummaryOutput, order)
    assert len(s.OrderOutput(order).data["items"]) == 5


def test_answers_after_the_first_build_no_fields(api, monkeypatch):
    client, asset_ids = customer_with_photos(api, 3)
    body = {"items": basket_of(asset_ids), "shipping_method": "standard"}
    assert client.post("/api/v1/quotes", body, format="json").status_code == 200  # templates built
    built: list[str] = []
    real_get_fields = serializers.Serializer.get_fields

    def counting_get_fields(self: serializers.Serializer[Any]) -> Any:
        built.append(type(self).__name__)
        return real_get_fields(self)

    monkeypatch.setattr(serializers.Serializer, "get_fields", counting_get_fields)

    for _ in range(3):
        assert client.post("/api/v1/quotes", body, format="json").status_code == 200

    # Only the request's input is validated with fields of its own; the answer builds none.
    assert "QuoteOutput" not in built and "QuoteLineOutput" not in built and "PreflightOutput" not in built
    assert built  # the counter sees DRF's builds (the input's)


def test_an_output_that_reads_its_context_fails_loudly():
    class Leaky(output_serializers.Output[dict[str, str]]):
        name = serializers.SerializerMethodField()

        def get_name(self, value: dict[str, str]) -> str:
            return str(self.context["secret"])

    with pytest.raises(ImproperlyConfigured, match="without a context"):
        _ = Leaky({"a": "b"}, context={"secret": "x"}).data
