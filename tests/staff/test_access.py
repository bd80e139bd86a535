"""Who may open the staff pages: sign-in, roles, 403 for customers, idle expiry, logout, headers."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.models import Session
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django.utils.crypto import RANDOM_STRING_CHARS, get_random_string

from api import errors as api_errors
from lab.accounts.sessions import stored_key
from lab.orders.models import Order
from lab.production.maintenance import maintenance_ticket_open
from lab.production.models import Batch, MaintenanceTicket, Printer, PrintJob
from lab.staff.middleware import CONTENT_SECURITY_POLICY, LAST_ACTIVITY_KEY
from lab.staff.views.auth import csrf_failure_view
from tests.builders import (
    PASSWORD,
    client_as,
    floor_state,
    hotfolder_printer,
    job_walk,
    person,
    ready_to_pack_order,
    released_order,
)

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Floor:
    printer: Printer
    order: Order
    job: PrintJob
    batch: Batch
    packable: Order


@pytest.fixture
def floor() -> Floor:
    """One printer, a released order whose job is printed, and a ready-to-pack order."""
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    job = job_walk(PrintJob.objects.get(order=order), "printed")
    packable = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    assert job.batch is not None
    return Floor(printer=printer, order=order, job=job, batch=job.batch, packable=packable)


def get_urls(floor: Floor) -> list[str]:
    job, order, packable = floor.job, floor.order, floor.packable
    return [
        reverse("staff:home"),
        reverse("staff:board"),
        reverse("staff:board_live"),
        reverse("staff:job", args=[job.pk]),
        reverse("staff:order", args=[order.ref]),
        reverse("staff:packing"),
        reverse("staff:packing_order", args=[packable.ref]),
        reverse("staff:slip", args=[packable.ref]),
        reverse("staff:day_slips"),
    ]


def post_urls(floor: Floor) -> list[tuple[str, dict[str, str]]]:
    printer, job, batch, order, packable = floor.printer, floor.job, floor.batch, floor.order, floor.packable
    return [
        (reverse("staff:printer_pause", args=[printer.pk]), {}),
        (reverse("staff:printer_resume", args=[printer.pk]), {}),
        (reverse("staff:batch_hold", args=[batch.pk]), {}),
        (reverse("staff:batch_release", args=[batch.pk]), {}),
        (reverse("staff:job_reroute", args=[job.pk]), {}),
        (reverse("staff:job_cancel", args=[job.pk]), {}),
        (reverse("staff:job_reprint", args=[job.pk]), {"reason": "damaged", "copies": "1"}),
        (reverse("staff:job_resolve", args=[job.pk]), {"outcome": "printed"}),
        (reverse("staff:job_verify", args=[job.pk]), {"copies": "2"}),
        (reverse("staff:order_hold", args=[order.ref]), {"message": "Which crop?"}),
        (reverse("staff:order_release_hold", args=[order.ref]), {}),
        (reverse("staff:packing_scan"), {"code": packable.ref}),
        (reverse("staff:packing_confirm", args=[packable.ref]), {"position": "1", "copies": "1"}),
        (reverse("staff:packing_pack", args=[packable.ref]), {}),
        (reverse("staff:packing_ship", args=[packable.ref]), {"carrier": "ups", "tracking_number": "1Z999"}),
    ]


def test_anonymous_visitor_is_sent_to_the_login_page(client, floor):
    for url in get_urls(floor):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/lab/login/?next={url.replace('/', '%2F')}", url


def test_anonymous_htmx_poll_is_told_to_navigate_to_login(client):
    def poll(current_url: str | None) -> str:
        headers = {"HX-Request": "true"} | ({"HX-Current-URL": current_url} if current_url else {})
        response = client.get(reverse("staff:board_live"), headers=headers)
        assert response.status_code == 200
        return str(response["HX-Redirect"])

    # back to the page the poll came from, never the fragment (no page around it, no polling, no sign-out)
    assert poll("http://testserver/lab/board/") == "/lab/login/?next=%2Flab%2Fboard%2F"
    # a page of another site, the photo gate or no page at all: the home page
    assert poll("https://evil.example/lab/board/") == "/lab/login/"
    assert poll("http://testserver/lab/photos/1/") == "/lab/login/"
    assert poll(None) == "/lab/login/"


def test_an_anonymous_form_is_sent_to_the_login_page_without_a_next(client, floor):
    # the action views answer a GET with 405: after the sign-in the person goes home instead
    for url, data in post_urls(floor):
        response = client.post(url, data)
        assert response.status_code == 302, url
        assert response["Location"] == "/lab/login/", url


def test_customer_gets_403_on_every_staff_url_and_nothing_changes(floor):
    client, _ = client_as("customer")
    before = floor_state()

    for url in [*get_urls(floor), reverse("staff:login")]:
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"Not allowed" in response.content, url
    for url, data in post_urls(floor):
        response = client.post(url, data)
        assert response.status_code == 403, url

    assert floor_state() == before


def test_customer_cannot_sign_in_on_the_staff_login_page(client):
    customer = person("customer")

    response = client.post(reverse("staff:login"), {"email": customer.email, "password": PASSWORD})

    assert response.status_code == 403
    assert "This account cannot use the lab pages." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_staff_member_signs_in_with_email_and_password(client):
    technician = person("technician", email="tech@lab.example")

    response = client.post(
        reverse("staff:login"), {"email": "TECH@lab.example", "password": PASSWORD, "next": "/lab/board/"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/lab/board/"
    assert client.session["_auth_user_id"] == str(technician.pk)
    assert abs(client.session[LAST_ACTIVITY_KEY] - time.time()) < 5


def test_wrong_password_is_refused_without_a_session(client):
    technician = person("technician")

    response = client.post(reverse("staff:login"), {"email": technician.email, "password": "wrong password"})

    assert response.status_code == 401
    assert "The e-mail address or the password is not correct." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_login_ignores_a_next_url_off_the_staff_pages(client):
    technician = person("technician")

    response = client.post(
        reverse("staff:login"),
        {"email": technician.email, "password": PASSWORD, "next": "https://evil.example/lab/"},
    )

    assert response["Location"] == "/lab/"


def test_roles_decide_which_pages_open(floor):
    expected = {
        "technician": {"/lab/board/": 200, "/lab/packing/": 403},
        "packer": {"/lab/board/": 403, "/lab/packing/": 200},
        "supervisor": {"/lab/board/": 200, "/lab/packing/": 200},
        "auditor": {"/lab/board/": 200, "/lab/packing/": 403},
        "admin": {"/lab/board/": 200, "/lab/packing/": 200},
    }
    for role, pages in expected.items():
        client, _ = client_as(role)
        assert client.get("/lab/").status_code == 200
        for url, status in pages.items():
            assert client.get(url).status_code == status, (role, url)


def test_auditor_sees_the_board_without_actions_and_cannot_act(floor):
    client, _ = client_as("auditor")
    before = floor_state()

    page = client.get(reverse("staff:board")).content.decode()
    response = client.post(reverse("staff:printer_pause", args=[floor.printer.pk]))

    assert "minilab" in page
    assert "<form" not in page.split("<main>")[1]
    assert response.status_code == 403
    assert floor_state() == before


def test_packer_cannot_do_technician_actions(floor):
    client, _ = client_as("packer")
    before = floor_state()

    for url, data in post_urls(floor):
        if "/packing/" in url or url.endswith("/verify/"):
            continue  # the packer's own work
        assert client.post(url, data).status_code == 403, url

    assert floor_state() == before


def test_every_staff_page_is_no_store_with_a_strict_content_security_policy(floor):
    client, _ = client_as("admin")
    anonymous = Client()

    responses = [client.get(url) for url in get_urls(floor)]
    responses += [anonymous.get(reverse("staff:login")), anonymous.get(reverse("staff:board"))]
    responses.append(client_as("customer")[0].get(reverse("staff:board")))

    for response in responses:
        assert response["Cache-Control"] == "no-store", response.request["PATH_INFO"]
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy


def test_pages_have_no_inline_script_no_inline_style_and_no_images(floor):
    client, _ = client_as("admin")

    for url in get_urls(floor)[:7]:
        html = client.get(url).content.decode()
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert scripts == [
            '<script src="/lab/assets/htmx.min.js" defer>',
            '<script src="/lab/assets/staff.js" defer>',
        ] or url.endswith("/live/"), url
        assert re.search(r"<script\b[^>]*>(?!</script>)", html) is None, url  # no script body
        assert " style=" not in html and "<style" not in html, url
        assert "<img" not in html, url  # the floor shows placeholders, never photos


def test_every_form_carries_a_csrf_token(floor):
    client, _ = client_as("admin")

    for url in get_urls(floor)[:7]:
        html = client.get(url).content.decode()
        forms = re.findall(r"<form\b.*?</form>", html, flags=re.S)
        assert forms, url
        for form in forms:
            assert 'name="csrfmiddlewaretoken"' in form, (url, form[:80])


def test_post_without_csrf_token_is_refused_and_changes_nothing(floor):
    technician = person("technician")
    client = Client(enforce_csrf_checks=True)
    client.force_login(technician)
    before = floor_state()

    response = client.post(reverse("staff:printer_pause", args=[floor.printer.pk]))

    assert response.status_code == 403
    assert floor_state() == before


# The staff routes a GET opens (pages, PDFs, the sign-in form and its assets); every other route of the staff
# URLconf changes something and takes a POST only, so a route added there is held to that until it is
# named here. The sign-in form also takes the POST that signs in.
GET_ROUTES = frozenset(
    {
        "home",
        "login",
        "asset",
        "board",
        "board_live",
        "job",
        "order",
        "supervisor",
        "supervisor_behind",
        "packing",
        "packing_order",
        "day_slips",
        "slip",
    }
)
SIGN_IN = "login"


def _walk(patterns: Sequence[URLPattern | URLResolver], prefix: str) -> Iterator[tuple[str, str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            namespace = f"{entry.namespace}:" if entry.namespace else ""
            yield from _walk(entry.url_patterns, f"{prefix}{namespace}")
        else:
            assert entry.name, f"a staff route without a name: {entry.pattern}"
            yield f"{prefix}{entry.name}", str(entry.pattern), entry


def staff_routes(floor: Floor, ticket: MaintenanceTicket) -> dict[str, str]:
    """Every route the staff namespace resolves (lab/staff/urls.py and whatever it includes), by name, each
    with a URL naming real rows of the floor."""
    _, staff = get_resolver().namespace_dict["staff"]
    routes = {}
    for name, route, entry in _walk(staff.url_patterns, "staff:"):
        values: dict[str, object] = {
            "printer_id": floor.printer.pk,
            "batch_id": floor.batch.pk,
            "job_id": floor.job.pk,
            "ticket_id": ticket.pk,
            "ref": floor.packable.ref if route.startswith("packing/") else floor.order.ref,
            "name": "staff.css",
        }
        converters = entry.pattern.converters
        assert set(converters) <= set(values), f"{name}: name a row for {set(converters) - set(values)}"
        routes[name] = reverse(name, kwargs={key: values[key] for key in converters})
    return routes


def _actions(routes: dict[str, str]) -> dict[str, str]:
    assert {f"staff:{name}" for name in GET_ROUTES} <= set(routes), "a GET route that is gone"
    return {name: url for name, url in routes.items() if name.removeprefix("staff:") not in GET_ROUTES}


def _ticket(floor: Floor) -> MaintenanceTicket:
    return maintenance_ticket_open(printer_id=floor.printer.pk, actor=person("technician"), description="jam")


def _everything(client: Client) -> tuple[object, ...]:
    tickets = list(MaintenanceTicket.objects.order_by("pk").values_list("pk", "approved_by", "closed_at"))
    return (floor_state(), tickets, client.session.get("_auth_user_id"))


def test_every_staff_route_that_changes_something_refuses_a_get_and_changes_nothing(floor):
    """Built from the URL resolver: a route added to the staff pages is an action until it is named a page."""
    client, _ = client_as("admin", "supervisor")  # every role a staff action asks for
    routes = staff_routes(floor, _ticket(floor))
    actions = _actions(routes)
    assert {"staff:printer_pause", "staff:order_cancel", "staff:ticket_approve", "staff:logout"} <= set(
        actions
    )
    before = _everything(client)

    answers = {name: client.get(url).status_code for name, url in actions.items()}

    assert answers == dict.fromkeys(actions, 405)
    assert _everything(client) == before
    # and what is named a page is one: a GET opens it
    for name in GET_ROUTES - {"asset"}:
        assert client.get(routes[f"staff:{name}"]).status_code != 405, name


def test_every_staff_form_posted_without_a_csrf_token_is_refused_and_changes_nothing(floor):
    user = person("admin", "supervisor")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(reverse("staff:order", args=[floor.order.ref])).status_code == 200  # the csrf cookie
    routes = staff_routes(floor, _ticket(floor))
    forms = {**_actions(routes), f"staff:{SIGN_IN}": routes[f"staff:{SIGN_IN}"]}
    # what each form sends, but the token: each would act were it let through
    data = {
        "message": "Which crop?",
        "reason": "damaged",
        "copies": "1",
        "outcome": "printed",
        "description": "jam",
        "code": floor.packable.ref,
        "position": "1",
        "carrier": "ups",
        "tracking_number": "1Z999",
        "email": user.email,
        "password": PASSWORD,
    }
    before = _everything(client)

    answers = {name: client.post(url, data).status_code for name, url in forms.items()}

    assert answers == dict.fromkeys(forms, 403)
    assert _everything(client) == before


def test_idle_session_is_refused_and_ended(floor):
    client, _ = client_as("technician")
    assert client.get(reverse("staff:board")).status_code == 200
    session = client.session
    session[LAST_ACTIVITY_KEY] = time.time() - 15 * 60 - 1
    session.save()

    response = client.get(reverse("staff:board"))

    assert response.status_code == 302
    assert response["Location"] == "/lab/login/?next=%2Flab%2Fboard%2F"
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("staff:board")).status_code == 302  # still signed out


def test_session_past_its_expiry_date_is_refused(floor):
    client, _ = client_as("technician")
    assert client.get(reverse("staff:board")).status_code == 200
    key = client.session.session_key
    assert key is not None
    Session.objects.filter(session_key=stored_key(key)).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )

    response = client.get(reverse("staff:board"))

    assert response.status_code == 302
    assert response["Location"].startswith("/lab/login/")


def test_idle_age_follows_the_setting(settings, floor):
    settings.SESSION_COOKIE_AGE = 60
    client, _ = client_as("technician")
    client.get(reverse("staff:board"))
    session = client.session
    session[LAST_ACTIVITY_KEY] = time.time() - 61
    session.save()

    assert client.get(reverse("staff:board")).status_code == 302


def test_board_polling_is_not_activity_and_an_idle_poll_goes_to_login(floor):
    client, _ = client_as("technician")
    client.get(reverse("staff:board"))
    session = client.session
    started = time.time() - 600
    session[LAST_ACTIVITY_KEY] = started
    session.save()

    poll = client.get(reverse("staff:board_live"), headers={"HX-Request": "true"})
    assert poll.status_code == 200
    assert client.session[LAST_ACTIVITY_KEY] == started  # the poll did not extend the idle clock
    session = client.session
    session[LAST_ACTIVITY_KEY] = time.time() - 901
    session.save()
    expired = client.get(
        reverse("staff:board_live"),
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/lab/board/"},
    )

    assert expired["HX-Redirect"] == "/lab/login/?next=%2Flab%2Fboard%2F"
    assert "_auth_user_id" not in client.session


def go_idle(client: Client) -> None:
    session = client.session
    session[LAST_ACTIVITY_KEY] = time.time() - 15 * 60 - 1
    session.save()


def sign_in_from(client: Client, login_url: str, email: str) -> Any:
    """Open `login_url`, send its form with the `next` it carries, follow the redirects."""
    page = client.get(login_url)
    assert page.status_code == 200
    next_field = re.search(r'name="next" value="([^"]*)"', page.content.decode())
    data = {"email": email, "password": PASSWORD}
    if next_field:
        data["next"] = html.unescape(next_field.group(1))
    return client.post(reverse("staff:login"), data, follow=True)


def test_an_unattended_board_logged_out_by_its_poll_signs_in_back_to_the_board(floor):
    client, technician = client_as("technician")
    client.get(reverse("staff:board"))
    go_idle(client)

    expired = client.get(
        reverse("staff:board_live"),
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/lab/board/"},
    )
    assert "_auth_user_id" not in client.session
    back = sign_in_from(client, expired["HX-Redirect"], technician.email)

    assert back.status_code == 200
    assert back.request["PATH_INFO"] == reverse("staff:board") == "/lab/board/"
    assert 'hx-get="/lab/board/live/"' in back.content.decode()  # the whole page, polling again


def test_a_form_sent_after_the_idle_timeout_signs_in_to_a_page_not_a_405(floor):
    client, technician = client_as("technician")
    client.get(reverse("staff:board"))
    go_idle(client)
    before = floor_state()

    refused = client.post(reverse("staff:printer_pause", args=[floor.printer.pk]))
    assert refused.status_code == 302
    back = sign_in_from(client, refused["Location"], technician.email)

    assert back.status_code == 200
    assert back.request["PATH_INFO"] == reverse("staff:home")
    assert floor_state() == before  # the pause was not sent again by the sign-in


def test_logout_is_post_only_and_clears_the_session(floor):
    client, _ = client_as("technician")
    client.get(reverse("staff:board"))

    assert client.get(reverse("staff:logout")).status_code == 405
    response = client.post(reverse("staff:logout"))

    assert response.status_code == 302
    assert response["Location"] == "/lab/login/"
    assert "_auth_user_id" not in client.session
    assert LAST_ACTIVITY_KEY not in client.session
    assert client.get(reverse("staff:board")).status_code == 302


def test_customer_on_the_403_page_can_sign_out():
    client, _ = client_as("customer")

    page = client.get(reverse("staff:board")).content.decode()
    client.post(reverse("staff:logout"))

    assert 'action="/lab/logout/"' in page
    assert client.get(reverse("staff:login")).status_code == 200


def test_vendored_scripts_are_served_and_nothing_else(client):
    htmx = client.get("/lab/assets/htmx.min.js")

    assert htmx.status_code == 200
    assert htmx["Content-Type"] == "text/javascript; charset=utf-8"
    assert htmx.content.startswith(b"var htmx=function()")
    assert client.get("/lab/assets/staff.css")["Content-Type"] == "text/css; charset=utf-8"
    assert client.get("/lab/assets/..%2Fapps.py").status_code == 404
    assert client.get("/lab/assets/missing.js").status_code == 404


def csrf_tokens(html: str) -> list[str]:
    return re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)


def sign_out_forms(html: str) -> list[str]:
    return [
        form for form in re.findall(r"<form\b.*?</form>", html, flags=re.S) if 'action="/lab/logout/"' in form
    ]


def test_a_refused_sign_out_says_the_person_is_still_signed_in_and_offers_a_fresh_one():
    """Signing in again in another tab rotates the CSRF token, so "Sign out" on an older page failed with
    Django's own unstyled English page (its inline style blocked by the policy) and left the person signed in
    on a shared terminal without saying so."""
    packer = person("packer")
    client = Client(enforce_csrf_checks=True)
    client.force_login(packer)
    page = client.get(reverse("staff:packing")).content.decode()
    stale = csrf_tokens(page)[0]
    client.cookies["csrftoken"] = get_random_string(32, allowed_chars=RANDOM_STRING_CHARS)

    refused = client.post(reverse("staff:logout"), {"csrfmiddlewaretoken": stale})

    body = refused.content.decode()
    assert refused.status_code == 403
    assert refused["Content-Type"] == "text/html; charset=utf-8"
    assert refused["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "/lab/assets/staff.css" in body and "<style" not in body
    assert "You are still signed in" in body and packer.email in body
    assert "_auth_user_id" in client.session
    forms = sign_out_forms(body)
    assert forms
    fresh = csrf_tokens(forms[-1])[0]
    signed_out = client.post(reverse("staff:logout"), {"csrfmiddlewaretoken": fresh})
    assert (signed_out.status_code, signed_out["Location"]) == (302, "/lab/login/")
    assert "_auth_user_id" not in client.session


def test_a_refused_form_of_a_signed_out_person_says_so_in_the_labs_look():
    """A sign-in form left open while another tab signed in and out: the page says nothing was done."""
    browser = Client(enforce_csrf_checks=True)
    browser.get(reverse("staff:login"))
    browser.cookies["csrftoken"] = get_random_string(32, allowed_chars=RANDOM_STRING_CHARS)

    refused = browser.post(reverse("staff:login"), {"email": "x@lab.example", "password": "nope"})

    body = refused.content.decode()
    assert refused.status_code == 403
    assert "/lab/assets/staff.css" in body
    assert "You are not signed in" in body and not sign_out_forms(body)


def test_a_refused_form_under_the_api_is_problem_json_in_the_apis_shape():
    request = RequestFactory().post("/api/v1/orders")
    request.user = AnonymousUser()

    response = csrf_failure_view(request, reason="CSRF cookie not set.")

    expected = api_errors.problem_page(code=api_errors.ApiError.PERMISSION_DENIED, detail="")
    assert (response.status_code, response["Content-Type"]) == (403, "application/problem+json")
    body, shape = json.loads(response.content), json.loads(expected.content)
    assert {name: value for name, value in body.items() if name != "detail"} == {
        name: value for name, value in shape.items() if name != "detail"
    }
    assert body["detail"]


def test_auditors_and_admins_find_the_audit_console_and_the_admin_on_the_home_page():
    # A link to them pasted in a chat is refused as from another site: the lab's own pages are the way in.
    audit = f'href="{reverse("audit_console:records")}"'
    admin = f'href="{reverse("lab_admin:index")}"'
    expected = {
        "auditor": {audit},
        "admin": {audit, admin},
        "technician": set(),
        "packer": set(),
    }
    for role, links in expected.items():
        client, _ = client_as(role)
        page = client.get(reverse("staff:home")).content.decode()
        home = page.split("<main>")[1]
        nav = page.split("<nav>")[1].split("</nav>")[0]
        for link in (audit, admin):
            assert (link in home) == (link in links), (role, link)
            assert (link in nav) == (link in links), (role, link)
        assert "Your role has no floor pages here." not in page, role
        for link in links:  # the link opens the page it names
            assert client.get(link.split('"')[1]).status_code == 200, (role, link)
