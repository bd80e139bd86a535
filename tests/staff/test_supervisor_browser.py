"""The supervisor's view in headless Chromium at 1440x900: every chart (printer states, queue history and
reprint rate included) renders under the CSP, no console errors; the screenshot is docs/supervisor.png."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Page, expect
from pytest_playwright.pytest_playwright import CreateContextCallback

from lab.production.models import JobEvent, Printer, PrintJob
from tests.builders import hotfolder_printer, person, released_order
from tests.support.browser import sign_in

pytestmark = [
    pytest.mark.e2e(stack="web"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.browser_context_args(viewport={"width": 1440, "height": 900}),
]


@pytest.fixture
def wide_page(new_context: CreateContextCallback) -> Iterator[Page]:
    context = new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    context.close()
    assert problems == []


def _printer_states(printer: Printer, *changes: tuple[float, str]) -> None:
    """(hours ago, state) of each printer_state event."""
    for hours_ago, state in changes:
        JobEvent.objects.create(
            printer=printer,
            kind="printer_state",
            to_status=state,
            created_at=timezone.now() - timedelta(hours=hours_ago),
        )


def test_supervisor_sees_charts_and_figures_at_1440(wide_page: Page, screenshots: Path) -> None:
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    beta = hotfolder_printer("beta", sizes=["5x7"])
    _printer_states(alpha, (30, "online"), (3, "error"), (2.5, "online"), (1, "paused"), (0.75, "online"))
    _printer_states(beta, (30, "offline"), (20, "online"))
    order = released_order(
        lines=[("PRINT-4X6-LUSTRE", 2)] * 3 + [("PRINT-5X7-GLOSSY", 1)] * 2,
        promised_by=timezone.now() + timedelta(hours=2),
    )
    for minutes, job in enumerate(PrintJob.objects.filter(order=order, printer=alpha)):
        for from_status, to_status, minutes_ago in (
            ("ready", "submitted", minutes * 70 + 25),
            ("submitted", "printed", minutes * 70),
        ):
            JobEvent.objects.create(
                job=job,
                kind=to_status,
                from_status=from_status,
                to_status=to_status,
                created_at=timezone.now() - timedelta(minutes=minutes_ago),
            )
    for offset, job in enumerate(PrintJob.objects.filter(order=order, printer=beta)):
        for from_status, to_status, hours_ago in (
            ("no_printer", "queued", 9 - offset),
            ("queued", "rasterizing", 4 - offset),
            ("rasterizing", "ready", 3.5 - offset),
        ):
            JobEvent.objects.create(
                job=job,
                kind=to_status,
                from_status=from_status,
                to_status=to_status,
                created_at=timezone.now() - timedelta(hours=hours_ago),
            )
    original = PrintJob.objects.filter(order=order, printer=alpha).first()
    assert original is not None
    reprint = PrintJob.objects.create(
        order=order, item=original.item, copies=1, reprint_of=original, reprint_reason="damaged"
    )
    JobEvent.objects.create(job=reprint, kind="reprint_requested", to_status="no_printer")
    supervisor = person("supervisor")

    sign_in(wide_page, email=supervisor.email, next_url="/lab/supervisor/")

    # throughput, queue now, printer states, queue depth and age (24 h), reprint rate (nothing shipped yet)
    expect(wide_page.locator("svg.chart")).to_have_count(6)
    expect(wide_page.locator("#table-printer_time tr[data-printer='alpha'] td.utilisation")).not_to_be_empty()
    expect(wide_page.locator("#table-queue_history tbody tr")).to_have_count(24)
    expect(wide_page.locator("#table-at_risk a", has_text=order.ref)).to_have_count(1)
    expect(wide_page.locator("#table-queue tr[data-stage='queued'] td.count").first).to_have_text(
        "6"
    )  # 5 jobs and the reprint
    assert wide_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    wide_page.screenshot(path=screenshots / "supervisor-view-1440.png", full_page=True)
