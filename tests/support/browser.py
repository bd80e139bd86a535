"""Headless Debian Chromium for the staff-page tests, through pytest-playwright: its `new_context`, `context`
and `page` fixtures, its options (--headed, --slowmo, --tracing, --screenshot) and its failure artifacts.

Two things differ from the plugin's defaults. The browser is the Debian package's (`/usr/bin/chromium`: the
test command downloads no browser). And Playwright runs for one test module at a time, not for the session:
while its sync API is started it keeps an asyncio loop marked running in the main thread, and Django refuses
ORM calls from a thread with a running loop (SynchronousOnlyOperation) unless DJANGO_ALLOW_ASYNC_UNSAFE is
set. So that switch is on exactly while a browser module's Playwright runs, never for the rest of the suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserType, Page, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Replaces the plugin's session-wide Playwright: one per browser module, with Django's async guard off
    only while it runs (see the module docstring)."""
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as running:
            yield running


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return getattr(playwright, browser_name)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """The plugin's launch options (--headed, --slowmo) with the Debian Chromium."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="module")
def browser(browser_type: BrowserType, browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    browser = browser_type.launch(**browser_type_launch_args)
    yield browser
    browser.close()


@pytest.fixture
def browser_context_args(live_server) -> dict[str, Any]:
    """Every context opens the live test server; a test module picks another viewport in `new_context`."""
    return {"base_url": live_server.url, "viewport": {"width": 1280, "height": 900}}


@pytest.fixture
def screenshots(artifacts_dir: Path) -> Path:
    """Where the browser tests keep their screenshots of each page (var/test-artifacts/screenshots/)."""
    folder = artifacts_dir / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sign_in(page: Page, *, email: str, next_url: str) -> None:
    """Sign a staff person in at /lab/login/ with the builders' password and wait for `next_url`."""
    from tests.builders import PASSWORD  # not at import: this plugin loads before Django is set up

    page.goto(f"/lab/login/?next={next_url}")
    page.fill("#id_email", email)
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"**{next_url}")
