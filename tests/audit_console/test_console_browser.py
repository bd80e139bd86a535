"""The auditor console in real headless Chromium at 1440x900: no page scrolls sideways, long ids are cut
short on screen with the whole value on hover and in a copy, flagged and sampled review items look different.
Screenshots go to var/test-artifacts/screenshots/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page
from pytest_playwright.pytest_playwright import CreateContextCallback

from lab.audit.models import AuditRecord, ReviewItem
from lab.audit.records import Entry, RequestMeta, audit_append
from tests.builders import PASSWORD, person

WIDTH, HEIGHT = 1440, 900
pytestmark = [
    pytest.mark.e2e(stack="web"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.browser_context_args(viewport={"width": WIDTH, "height": HEIGHT}),
]
PAGES = {
    "records": "/lab/audit/",
    "review": "/lab/audit/review/",
    "anomalies": "/lab/audit/anomalies/",
    "summary": "/lab/audit/summary/",
    "record": "/lab/audit/records/{seq}/",
}


@pytest.fixture
def page(new_context: CreateContextCallback) -> Iterator[Page]:
    context = new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    # A CSP-blocked inline script or style shows up as a console error; a failed load as a 4xx/5xx response
    # (the browser's own favicon request aside: the console has none, on purpose).
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    failed: list[str] = []
    page.on(
        "response",
        lambda response: (
            failed.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )
    yield page
    context.close()
    assert failed == []
    assert [text for text in problems if "Failed to load resource" not in text] == []


def a_busy_day() -> AuditRecord:
    """Records with the longest values the console shows: uuids, long e-mails, maintenance contexts."""
    people = [
        person("technician", email=f"a.rather.long.name.number.{n}@print-lab-night-shift.example")
        for n in range(3)
    ]
    last = None
    for n in range(30):
        who = people[n % 3]
        is_maintenance = n % 4 == 0
        last = audit_append(
            Entry(
                action="image.download" if n % 5 == 0 else "image.view.preview",
                actor_id=str(who.public_id),
                actor_role="technician",
                outcome="denied" if n % 7 == 0 else "granted",
                rule="maintenance_full_resolution_needs_approval"
                if n % 7 == 0
                else "open_maintenance_ticket",
                purpose="maintenance" if is_maintenance else "order_clarification",
                justification="compare the banding pattern with the original photo",
                asset_id=str(uuid.uuid4()),
                order_ref=f"PL-{n:012d}",
                context_type="maintenance_ticket" if is_maintenance else "clarification_case",
                context_id=str(uuid.uuid4()) if n % 3 == 0 else str(1000 + n),
                meta=RequestMeta(client_ip="10.0.0.7", user_agent="pytest", request_id=uuid.uuid4().hex),
            )
        )
    seqs = list(AuditRecord.objects.order_by("seq").values_list("seq", flat=True))
    for seq in seqs[:6]:
        ReviewItem.objects.create(record_id=seq, reason="maintenance_view")
    for seq in seqs[6:10]:
        ReviewItem.objects.create(record_id=seq, reason="sample")
    assert last is not None
    return last


def sign_in(page: Page, email: str) -> None:
    page.goto("/lab/login/?next=/lab/audit/")
    page.fill("#id_email", email)
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/lab/audit/")


def test_the_console_fits_a_1440_px_screen(page: Page, artifacts_dir: Path) -> None:
    screenshots = artifacts_dir / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    last = a_busy_day()
    auditor = person("auditor", email="auditor.with.a.long.address@print-lab-audit.example")
    sign_in(page, auditor.email)

    widths = {}
    for name, url in PAGES.items():
        page.goto(url.format(seq=last.seq))
        page.screenshot(path=screenshots / f"audit-console-{name}-1440.png", full_page=True)
        widths[name] = page.evaluate("document.documentElement.scrollWidth")

    assert max(widths.values()) <= WIDTH, widths


def test_ids_are_short_on_screen_and_whole_on_hover_and_copy(page: Page) -> None:
    asset_id = a_busy_day().asset_id
    sign_in(page, person("auditor").email)

    first_id = page.locator(f'table.records code.id[title="{asset_id}"]')
    full = first_id.get_attribute("title")
    shown = first_id.evaluate("element => [element.clientWidth, element.scrollWidth]")
    first_id.click()
    selected = page.evaluate("window.getSelection().toString()")

    assert full == asset_id
    assert shown[0] < shown[1]  # cut short on screen
    assert first_id.text_content() == full
    assert selected == full  # one click selects the whole id, ready to copy


def test_flagged_and_sampled_review_items_look_different(page: Page) -> None:
    a_busy_day()
    sign_in(page, person("auditor").email)
    page.goto("/lab/audit/review/")

    def look(selector: str) -> list[str]:
        colours: list[str] = page.locator(selector).first.evaluate(
            "element => { const s = getComputedStyle(element); return [s.backgroundColor, s.color]; }"
        )
        return colours

    flagged, sampled = look("tbody .reason-flagged"), look("tbody .reason-sampled")

    assert flagged != sampled
    assert page.locator("tbody .reason-flagged").count() == 6
    assert page.locator("tbody .reason-sampled").count() == 4
