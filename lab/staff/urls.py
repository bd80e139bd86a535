"""Routes of the staff pages, mounted at /lab/ by lab/urls.py."""

from __future__ import annotations

from django.urls import path, register_converter

from lab.orders.models import REF_REGEX
from lab.staff.views import auth, floor, packing, supervisor


class OrderRefConverter:
    """Only a well-formed order reference reaches a view: anything else (NUL bytes included) is a 404."""

    regex = REF_REGEX

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(OrderRefConverter, "ref")

app_name = "staff"

urlpatterns = [
    path("", auth.home_view, name="home"),
    path("login/", auth.login_view, name="login"),
    path("logout/", auth.logout_view, name="logout"),
    path("assets/<str:name>", auth.asset_view, name="asset"),
    path("board/", floor.board_view, name="board"),
    path("board/live/", floor.board_live_view, name="board_live"),
    path("printers/<int:printer_id>/pause/", floor.printer_pause_view, name="printer_pause"),
    path("printers/<int:printer_id>/resume/", floor.printer_resume_view, name="printer_resume"),
    path("batches/<int:batch_id>/hold/", floor.batch_hold_view, name="batch_hold"),
    path("batches/<int:batch_id>/release/", floor.batch_release_view, name="batch_release"),
    path("jobs/<int:job_id>/", floor.job_view, name="job"),
    path("jobs/<int:job_id>/reroute/", floor.job_reroute_view, name="job_reroute"),
    path("jobs/<int:job_id>/cancel/", floor.job_cancel_view, name="job_cancel"),
    path("jobs/<int:job_id>/reprint/", floor.job_reprint_view, name="job_reprint"),
    path("jobs/<int:job_id>/resolve/", floor.job_resolve_view, name="job_resolve"),
    path("jobs/<int:job_id>/verify/", floor.job_verify_view, name="job_verify"),
    path("jobs/<int:job_id>/tickets/", floor.ticket_open_view, name="ticket_open"),
    path("jobs/<int:job_id>/tickets/<int:ticket_id>/close/", floor.ticket_close_view, name="ticket_close"),
    path(
        "jobs/<int:job_id>/tickets/<int:ticket_id>/approve/", floor.ticket_approve_view, name="ticket_approve"
    ),
    path("orders/<ref:ref>/", floor.order_view, name="order"),
    path("orders/<ref:ref>/hold/", floor.order_hold_view, name="order_hold"),
    path("orders/<ref:ref>/release-hold/", floor.order_release_hold_view, name="order_release_hold"),
    path("orders/<ref:ref>/cancel/", floor.order_cancel_view, name="order_cancel"),
    path("supervisor/", supervisor.supervisor_view, name="supervisor"),
    path("supervisor/behind/", supervisor.supervisor_behind_view, name="supervisor_behind"),
    path("packing/", packing.packing_view, name="packing"),
    path("packing/scan/", packing.packing_scan_view, name="packing_scan"),
    path("packing/slips.pdf", packing.day_slips_view, name="day_slips"),
    path("packing/<ref:ref>/", packing.packing_order_view, name="packing_order"),
    path("packing/<ref:ref>/confirm/", packing.packing_confirm_view, name="packing_confirm"),
    path("packing/<ref:ref>/pack/", packing.packing_pack_view, name="packing_pack"),
    path("packing/<ref:ref>/ship/", packing.packing_ship_view, name="packing_ship"),
    path("packing/<ref:ref>/unpack/", packing.packing_unpack_view, name="packing_unpack"),
    path("packing/<ref:ref>/hand-over/", packing.packing_hand_over_view, name="packing_hand_over"),
    path("packing/<ref:ref>/slip.pdf", packing.slip_view, name="slip"),
]
