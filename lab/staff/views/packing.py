"""The packing station: scan an order, confirm its items, pack, then ship, hand over or unpack; the slips."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from lab.accounts.models import User
from lab.accounts.roles import PACKING_ROLES
from lab.gate.views import started_outside_the_lab
from lab.lib.errors import DomainError
from lab.orders.errors import OrderError
from lab.orders.states import OrderStatus
from lab.packing import station
from lab.packing.checklist import page_token_required
from lab.packing.errors import PackingError
from lab.packing.selectors import orders_packed_not_shipped, orders_waiting_to_pack
from lab.staff.access import staff_page
from lab.staff.errors import StaffError
from lab.staff.forms import ConfirmItemForm, PackForm, ScanForm, ShipForm, form_problem

# Refusals that mean "this order is not at the station": go back to the scan box, not to the order.
_LEAVE_ORDER_CODES = frozenset(
    {OrderError.ORDER_NOT_FOUND, PackingError.NOT_AN_ORDER_CODE, PackingError.ORDER_NOT_READY_TO_PACK}
)


def _actor(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _station_url() -> str:
    return reverse("staff:packing")


def _order_url(ref: str) -> str:
    return reverse("staff:packing_order", args=[ref])


def _form_checked(form: forms.Form, *, step: str) -> None:
    """A form posted without its page's token is refused as the station refuses it (page_token_required, with
    what to do), before anything else it lacks; any other bad input as invalid."""
    if form.has_error("seen", "required"):
        page_token_required(None, step=step)
    if not form.is_valid():
        raise DomainError(StaffError.INVALID_INPUT, form_problem(form))


@staff_page(*PACKING_ROLES)
@require_GET
def packing_view(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "staff/packing.html",
        {"waiting": orders_waiting_to_pack(), "packed": orders_packed_not_shipped(), "form": ScanForm()},
    )


@staff_page(*PACKING_ROLES)
@require_POST
def packing_scan_view(request: HttpRequest) -> HttpResponse:
    form = ScanForm(request.POST)
    try:
        if not form.is_valid():
            raise DomainError(StaffError.INVALID_INPUT, "Scan or type an order code.")
        order = station.station_order(code=form.cleaned_data["code"], actor=_actor(request))
    except DomainError as error:
        messages.error(request, error.message)
        return HttpResponseRedirect(_station_url())
    return HttpResponseRedirect(_order_url(order.ref))


@staff_page(*PACKING_ROLES)
@require_GET
def packing_order_view(request: HttpRequest, ref: str) -> HttpResponse:
    try:
        order = station.station_order(code=ref, actor=_actor(request))
    except DomainError as error:
        messages.error(request, error.message)
        return HttpResponseRedirect(_station_url())
    checklist = station.order_checklist(order=order)
    return render(
        request,
        "staff/packing_order.html",
        {
            "order": order,
            "checklist": checklist,
            "order_seen": station.order_seen(checklist),
            "is_all_confirmed": all(line.is_confirmed for line in checklist),
            "is_ready_to_pack": order.status == OrderStatus.READY_TO_PACK,
            "is_packed": order.status == OrderStatus.PACKED,
            "is_collected_at_the_counter": station.is_collected_at_the_counter(order),
            "carriers": station.Carrier.choices,
            "scan_form": ScanForm(),
        },
    )


@staff_page(*PACKING_ROLES)
@require_POST
def packing_confirm_view(request: HttpRequest, ref: str) -> HttpResponse:
    form = ConfirmItemForm(request.POST)

    def act() -> str:
        _form_checked(form, step="count")
        line = station.item_confirm(
            code=ref,
            position=form.cleaned_data["position"],
            copies_counted=form.cleaned_data["copies"],
            actor=_actor(request),
            seen=form.cleaned_data["seen"],
        )
        return f"Item {line.position} confirmed: {line.copies} copies."

    return _station_action(request, ref, act)


@staff_page(*PACKING_ROLES)
@require_POST
def packing_pack_view(request: HttpRequest, ref: str) -> HttpResponse:
    form = PackForm(request.POST)

    def act() -> str:
        _form_checked(form, step="pack")
        order = station.order_pack(code=ref, actor=_actor(request), seen=form.cleaned_data["seen"])
        if station.is_collected_at_the_counter(order):
            return f"Order {order.ref} packed. Hand it over at the counter when the customer comes."
        return f"Order {order.ref} packed. Enter the carrier and tracking number to ship it."

    return _station_action(request, ref, act)


@staff_page(*PACKING_ROLES)
@require_POST
def packing_ship_view(request: HttpRequest, ref: str) -> HttpResponse:
    form = ShipForm(request.POST)

    def act() -> str:
        _form_checked(form, step="ship")
        order = station.order_ship(
            code=ref,
            actor=_actor(request),
            carrier=form.cleaned_data["carrier"],
            tracking_number=form.cleaned_data["tracking_number"],
            seen=form.cleaned_data["seen"],
        )
        return (
            f"Order {order.ref} shipped with {station.Carrier(order.carrier).label} {order.tracking_number}."
        )

    return _station_action(request, ref, act, success_url=_station_url())


@staff_page(*PACKING_ROLES)
@require_POST
def packing_hand_over_view(request: HttpRequest, ref: str) -> HttpResponse:
    form = PackForm(request.POST)  # the page's token of the order, as a pack posts it

    def act() -> str:
        _form_checked(form, step="hand_over")
        order = station.order_hand_over(code=ref, actor=_actor(request), seen=form.cleaned_data["seen"])
        return f"Order {order.ref} handed over at the counter."

    return _station_action(request, ref, act, success_url=_station_url())


@staff_page(*PACKING_ROLES)
@require_POST
def packing_unpack_view(request: HttpRequest, ref: str) -> HttpResponse:
    form = PackForm(request.POST)  # the page's token of the order, as a pack posts it

    def act() -> str:
        _form_checked(form, step="unpack")
        order = station.order_unpack(code=ref, actor=_actor(request), seen=form.cleaned_data["seen"])
        return f"Order {order.ref} unpacked: count its items again, then pack it."

    return _station_action(request, ref, act)


def _station_action(
    request: HttpRequest, ref: str, action: Callable[[], str], *, success_url: str | None = None
) -> HttpResponse:
    try:
        success = action()
    except DomainError as error:
        messages.error(request, error.message)
        if error.code in _LEAVE_ORDER_CODES:
            return HttpResponseRedirect(_station_url())
        return HttpResponseRedirect(_order_url(ref))
    messages.success(request, success)
    return HttpResponseRedirect(success_url or _order_url(ref))


# A slip opens in the browser's own PDF viewer: the pages' policy would block it (Chromium shows the PDF
# through an <embed> its object-src 'none' refuses, and styles the page around it inline), so a PDF gets a
# policy of its own. The PDF is the lab's own file: no HTML, nothing of the customer's but text in it.
PDF_CONTENT_SECURITY_POLICY = "; ".join(
    ["script-src 'self'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"]
)


def _pdf(data: bytes, filename: str) -> HttpResponse:
    """A slip PDF shown inline, never an attachment: a download leaves every customer's name and address
    in the shared station's Downloads folder for good, past the slip window and past erasure."""
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["Content-Security-Policy"] = PDF_CONTENT_SECURITY_POLICY
    return response


def _started_by_another_site(request: HttpRequest) -> HttpResponse | None:
    """Serving a slip marks its order's address as on paper (`slip_served_at`: the customer may no longer
    change it), so a slip GET another site started (a link in a chat or an e-mail, which carries the packer's
    session) is sent back to the station unserved: the packer did not ask for it. So is one handed to the
    browser by another application (`none`: a link in a desktop chat or mail client); only the station's own
    links (`same-origin`) serve a slip, or a request without the header."""
    if not started_outside_the_lab(request):
        return None
    messages.error(request, "That slip link was opened from outside the lab; print slips from the station.")
    return HttpResponseRedirect(_station_url())


@staff_page(*PACKING_ROLES)
@require_GET
def slip_view(request: HttpRequest, ref: str) -> HttpResponse:
    if refused := _started_by_another_site(request):
        return refused
    try:
        data = station.slip_pdf(code=ref, actor=_actor(request))
    except DomainError as error:
        messages.error(request, error.message)
        return HttpResponseRedirect(_station_url())
    return _pdf(data, f"packing-slip-{ref}.pdf")


@staff_page(*PACKING_ROLES)
@require_GET
def day_slips_view(request: HttpRequest) -> HttpResponse:
    if refused := _started_by_another_site(request):
        return refused
    try:
        day = station.day_slips_pdf(actor=_actor(request))
    except DomainError as error:
        messages.error(request, error.message)
        return HttpResponseRedirect(_station_url())
    if day.refused:
        # Shown at the station when the packer is back from the PDF.
        messages.error(
            request,
            f"No slip for {', '.join(day.refused)}: its shipping address was changed outside the lab. "
            "Ask a supervisor.",
        )
    response = _pdf(day.pdf, "packing-slips.pdf")
    response["X-Slip-Count"] = str(day.count)
    response["X-Slips-Refused"] = ",".join(day.refused)
    return response
