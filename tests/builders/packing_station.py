"""The packing station's page as a browser posts it: each form's hidden fields (its page token among them).

A count, a pack, an unpack, a ship or a handover carries the token of what its page showed; tests read it
from the page's HTML, as the packer's browser sends it, never by calling the station's token function.
"""

from __future__ import annotations

from html.parser import HTMLParser

from django.test import Client
from django.urls import reverse

from lab.accounts.models import User
from lab.orders.models import Order


class _Forms(HTMLParser):
    """Each form's action and its hidden inputs, in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fields = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((fields.get("action", ""), {}))
        elif tag == "input" and fields.get("type") == "hidden" and self.forms and "name" in fields:
            self.forms[-1][1][fields["name"]] = fields.get("value", "")


def station_form(page: str, *, order: Order, step: str, position: int | None = None) -> dict[str, str]:
    """The hidden fields of the page's form for `step` (confirm, pack, …; for confirm, item `position`'s)."""
    action = reverse(f"staff:packing_{step}", args=[order.ref])
    parser = _Forms()
    parser.feed(page)
    for form_action, hidden in parser.forms:
        if form_action == action and (position is None or hidden.get("position") == str(position)):
            hidden.pop("csrfmiddlewaretoken", None)
            return hidden
    raise AssertionError(f"the station page of {order.ref} has no {step} form for {position or 'the order'}")


def station_page(client: Client, order: Order) -> str:
    return client.get(reverse("staff:packing_order", args=[order.ref])).content.decode()


def page_token(page: str, *, order: Order, step: str = "confirm", position: int | None = None) -> str:
    """The token a form of the page posts (`seen`): what the page showed of the item, or of the order."""
    return station_form(page, order=order, step=step, position=position)["seen"]


def station_token(order: Order, *, packer: User, step: str = "confirm", position: int | None = None) -> str:
    """The token the station page shows `packer` now, for a caller that posts to the station's services."""
    client = Client()
    client.force_login(packer)
    return page_token(station_page(client, order), order=order, step=step, position=position)


def station_confirm(client: Client, order: Order, *, position: int, copies: int, follow: bool = True):
    """The packer counts item `position` from the order's page as it is now, and posts the count."""
    fields = station_form(station_page(client, order), order=order, step="confirm", position=position)
    url = reverse("staff:packing_confirm", args=[order.ref])
    return client.post(url, {**fields, "copies": str(copies)}, follow=follow)


def station_pack(client: Client, order: Order, *, follow: bool = True):
    """The packer presses "Mark packed" on the order's page as it is now."""
    fields = station_form(station_page(client, order), order=order, step="pack")
    return client.post(reverse("staff:packing_pack", args=[order.ref]), fields, follow=follow)


def station_post(
    client: Client, order: Order, *, step: str, data: dict[str, str] | None = None, follow: bool = True
):
    """The packer posts the form of `step` (unpack, ship, hand_over, …) from the order's page as it is now,
    with its hidden fields (the page's token) and `data` (a carrier, a tracking number)."""
    fields = station_form(station_page(client, order), order=order, step=step)
    return client.post(
        reverse(f"staff:packing_{step}", args=[order.ref]), {**fields, **(data or {})}, follow=follow
    )
