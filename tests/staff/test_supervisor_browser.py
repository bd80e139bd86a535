"""The supervisor's view in headless Chromium at 1440x900: charts render under the CSP, no console errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Page, expect
from pytest_playwright.pytest_playwright import CreateContextCallback

from lab.production.models import JobEvent, PrintJob
from tests.builders import hotfolder_printer, person, released_order
from tests.support.browser import sign_in

pytestmark = [
    pytest.mark.e2e,
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


def test_supervisor_sees_charts_and_figures_at_1440(wide_page: Page, screenshots: Path) -> None:
    hotfolder_printer("alpha", sizes=["4x6"])
    order = released_order(
        lines=[("PRINT-4X6-LUSTRE", 2)] * 3, promised_by=timezone.now() + timedelta(hours=2)
    )
    for minutes, job in enumerate(PrintJob.objects.filter(order=order)):
        JobEvent.objects.create(
            job=job,
            kind="printed",
            to_status="printed",
            created_at=timezone.now() - timedelta(minutes=minutes * 70),
        )
    supervisor = person("supervisor")

    sign_in(wide_page, email=supervisor.email, next_url="/lab/supervisor/")

    expect(wide_page.locator("svg.chart")).to_have_count(2)  # throughput and queue (nothing shipped yet)
    expect(wide_page.locator("#table-at_risk a", has_text=order.ref)).to_have_count(1)
    expect(wide_page.locator("#table-queue tr[data-stage='queued'] td.count").first).to_have_text("3")
    assert wide_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    wide_page.screenshot(path=screenshots / "supervisor-view-1440.png", full_page=True)
