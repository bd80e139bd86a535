"""The staff pages in real headless Chromium (Playwright) against the live test server.

A technician watches a job turn printed without reloading and asks for a reprint; the board says when it
stops updating; a packer scans, counts and ships; a customer is refused. Screenshots of each page go to
var/test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Page, expect
from pytest_playwright.pytest_playwright import CreateContextCallback

from lab.orders.models import Order
from lab.production import jobs, tracking
from lab.production.models import PrintJob
from tests.builders import PASSWORD, hotfolder_printer, job_walk, person, ready_to_pack_order, released_order
from tests.support.browser import WAIT_MS, sign_in

pytestmark = [pytest.mark.e2e(stack="web"), pytest.mark.django_db(transaction=True)]


@pytest.fixture
def console_errors_expected() -> list[str]:
    """Console errors a test provokes on purpose (parts of their text), beyond the refusals any may see."""
    return []


@pytest.fixture
def page(new_context: CreateContextCallback, console_errors_expected: list[str]) -> Iterator[Page]:
    context = new_context()  # the live server, 1280x900 (tests/support/browser.py)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A blocked inline script or style, or a failed htmx request, shows up as a console error.
        if message.type == "error":
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    context.close()
    expected = ["403", "401", *console_errors_expected]
    assert [p for p in problems if not any(text in p for text in expected)] == []


def test_technician_sees_a_job_print_live_and_requests_a_reprint(page: Page, screenshots: Path) -> None:
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    job = job_walk(PrintJob.objects.get(order=order), "submitted")
    technician = person("technician")

    sign_in(page, email=technician.email, next_url="/lab/board/")
    status = page.locator(f"#job-{job.pk} .status")
    expect(status).to_have_text("submitted")
    page.evaluate("window.labMarker = 'same page'")
    page.screenshot(path=screenshots / "board-submitted.png", full_page=True)

    # The printer reports completion: the poll's own services move the job and the order.
    assert jobs.job_move(
        job_id=job.pk, from_statuses={"submitted"}, to_status="printed", printed_at=timezone.now()
    )
    assert tracking.order_check_printed(order_id=order.pk)

    expect(status).to_have_text("printed")
    expect(page.locator(f"#printer-{job.printer_id} [data-count='printed']")).to_have_text("1")
    assert page.evaluate("window.labMarker") == "same page"  # updated in place, no reload
    page.screenshot(path=screenshots / "board-printed.png", full_page=True)

    page.click(f"#job-{job.pk} a.ref")
    page.wait_for_url(f"**/lab/jobs/{job.pk}/")
    expect(page.locator("#job-status")).to_have_text("printed")
    page.select_option("#reprint-reason", "colour")
    page.fill("#reprint-copies", "1")
    page.fill("#reprint-note", "magenta cast")
    page.click("button:has-text('Request reprint')")

    expect(page.locator(".message.success")).to_contain_text("Reprint requested: job")
    page.screenshot(path=screenshots / "job-reprint-requested.png", full_page=True)
    reprint = PrintJob.objects.get(reprint_of=job)
    order.refresh_from_db()
    assert (reprint.reprint_reason, reprint.copies, reprint.status) == ("colour", 1, "queued")
    assert order.status == "in_production"


BOARD_LIVE = "**/lab/board/live/"


def test_the_board_says_when_it_stops_updating_and_reloads_when_refused(
    page: Page, screenshots: Path, console_errors_expected: list[str]
) -> None:
    # What the browser and htmx log for the failed polls this test makes on purpose.
    console_errors_expected += [
        "net::ERR_FAILED",
        "htmx:sendError",
        "htmx:afterRequest",
        "status of 503",
        "Error Code 503",
    ]
    technician = person("technician")
    sign_in(page, email=technician.email, next_url="/lab/board/")
    live = page.locator("#board-live")
    updated = page.locator("#board-live .updated time")
    banner = page.locator(".stale-banner")
    expect(updated).to_be_visible()
    expect(banner).to_have_count(0)
    page.evaluate("window.labMarker = 'same page'")

    # Web restarting: the poll gets no answer at all. Before, the last state stayed up, saying nothing.
    page.route(BOARD_LIVE, lambda route: route.abort())
    expect(banner).to_be_visible()
    expect(banner).to_have_text(f"Not updated since {updated.inner_text()} UTC: the server did not answer")
    expect(live).to_have_class(re.compile(r"\bstale\b"))
    page.screenshot(path=screenshots / "board-stale.png", full_page=True)

    # The server is back: the next poll clears the banner.
    page.unroute(BOARD_LIVE)
    expect(banner).to_have_count(0)
    expect(live).not_to_have_class(re.compile(r"\bstale\b"))

    # The database is down: /lab/ answers 503, which htmx does not swap.
    page.route(
        BOARD_LIVE,
        lambda route: route.fulfill(
            status=503, content_type="text/html", body="<h1>Service unavailable</h1>"
        ),
    )
    expect(banner).to_be_visible()
    expect(banner).to_have_text(f"Not updated since {updated.inner_text()} UTC: the server did not answer")
    page.unroute(BOARD_LIVE)
    expect(banner).to_have_count(0)
    assert page.evaluate("window.labMarker") == "same page"  # all of it in place

    # Refused (role removed, seal refused): the page reloads, so the page's own refusal or the login shows.
    with page.expect_event("load"):
        page.route(
            BOARD_LIVE,
            lambda route: route.fulfill(status=403, content_type="text/html", body="<h1>Not allowed</h1>"),
        )
    page.unroute(BOARD_LIVE)
    assert page.url.endswith("/lab/board/")
    assert page.evaluate("window.labMarker") is None  # a new document


def test_the_board_says_when_its_poll_hangs_unanswered(
    page: Page, screenshots: Path, console_errors_expected: list[str]
) -> None:
    console_errors_expected += ["htmx:timeout", "htmx:afterRequest"]
    technician = person("technician")
    sign_in(page, email=technician.email, next_url="/lab/board/")
    live = page.locator("#board-live")
    updated = page.locator("#board-live .updated time")
    banner = page.locator(".stale-banner")
    expect(updated).to_be_visible()
    expect(banner).to_have_count(0)

    # A database stall or a frozen web host: the poll is sent and never answered. Before, htmx waited for it
    # with no timeout (and queued the next poll behind it): the last state stayed up, saying nothing.
    page.route(BOARD_LIVE, lambda route: None)
    expect(banner).to_be_visible(timeout=20_000)
    expect(banner).to_have_text(f"Not updated since {updated.inner_text()} UTC: the server did not answer")
    expect(live).to_have_class(re.compile(r"\bstale\b"))
    page.screenshot(path=screenshots / "board-stale-hung.png", full_page=True)

    # The server answers again: the next poll clears the banner.
    page.unroute(BOARD_LIVE)
    expect(banner).to_have_count(0, timeout=20_000)
    expect(live).not_to_have_class(re.compile(r"\bstale\b"))


def test_packer_scans_checks_items_and_ships(page: Page, screenshots: Path) -> None:
    hotfolder_printer("minilab", sizes=["4x6", "5x7"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 2), ("PRINT-5X7-GLOSSY", 1)])
    packer = person("packer")

    sign_in(page, email=packer.email, next_url="/lab/packing/")
    page.screenshot(path=screenshots / "packing-station.png", full_page=True)
    # A keyboard-wedge scanner types into whatever has focus, then presses Enter.
    expect(page.locator("#scan-code")).to_be_focused()
    page.keyboard.type(order.ref)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/lab/packing/{order.ref}/")

    expect(page.locator("#count-1")).to_be_focused()
    page.keyboard.type("1")  # one copy short
    page.keyboard.press("Enter")
    expect(page.locator(".message.error")).to_have_text(
        "Item 1 needs 2 copies; you counted 1. Nothing was confirmed."
    )
    assert set(PrintJob.objects.filter(order=order).values_list("copies_verified", flat=True)) == {0}
    page.screenshot(path=screenshots / "packing-count-mismatch.png", full_page=True)

    expect(page.locator("#count-1")).to_be_focused()
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    expect(page.locator("#item-1")).to_have_class("confirmed")
    expect(page.locator("#count-2")).to_be_focused()
    page.keyboard.type("1")
    page.keyboard.press("Enter")
    expect(page.locator("#item-2")).to_have_class("confirmed")
    page.screenshot(path=screenshots / "packing-checklist-confirmed.png", full_page=True)
    page.click("#pack")
    expect(page.locator("#order-status")).to_have_text("packed")

    page.select_option("#carrier", "fedex")
    page.fill("#tracking", "7946 1234 5678")
    page.click("#ship")

    expect(page.locator(".message.success")).to_have_text(
        f"Order {order.ref} shipped with FedEx 7946 1234 5678."
    )
    page.screenshot(path=screenshots / "packing-shipped.png", full_page=True)
    order.refresh_from_db()
    assert (order.status, order.carrier, order.tracking_number) == ("shipped", "fedex", "7946 1234 5678")


def test_customer_is_refused_the_staff_pages(page: Page, screenshots: Path, live_server) -> None:
    customer = person("customer")

    page.goto("/lab/login/")
    page.fill("#id_email", customer.email)
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    expect(page.locator("p.error")).to_have_text("This account cannot use the lab pages.")
    page.screenshot(path=screenshots / "login-customer-refused.png", full_page=True)

    # A customer who holds a session anyway (e.g. from the API's session login) gets 403, not a loop.
    client = Client()
    client.force_login(customer)
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session_key, "url": live_server.url}]
    )
    response = page.goto("/lab/board/")

    assert response is not None and response.status == 403
    assert page.url.endswith("/lab/board/")
    expect(page.locator("h1")).to_have_text("Not allowed")
    page.screenshot(path=screenshots / "customer-403.png", full_page=True)
    assert Order.objects.count() == 0
