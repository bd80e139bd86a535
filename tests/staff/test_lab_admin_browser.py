"""The lab admin in real headless Chromium under the staff pages' CSP: the pages load their own styles and
scripts with no CSP violation, and a lab admin edits a product through the browser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page
from pytest_playwright.pytest_playwright import CreateContextCallback

from lab.catalog.demo import catalog_seed_demo
from lab.catalog.models import Product
from tests.builders import PASSWORD, hotfolder_printer, person
from tests.support.browser import WAIT_MS

pytestmark = [pytest.mark.e2e(stack="web"), pytest.mark.django_db(transaction=True)]
# Every CSP refusal the page sees, reported by the browser itself.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__csp.push(event.violatedDirective + ' ' + (event.blockedURI || 'inline'));
});
"""


@pytest.fixture
def admin_page(new_context: CreateContextCallback) -> Iterator[tuple[Page, list[str]]]:
    context = new_context()  # the live server, 1280x900 (tests/support/browser.py)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    # A failed load is reported by URL below (the browser's own /favicon.ico probe is not the admin's).
    page.on(
        "response",
        lambda response: (
            errors.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )
    admin = person("admin")
    page.goto("/lab/login/?next=/lab/admin/")
    page.fill("#id_email", admin.email)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/lab/admin/")
    yield page, errors
    context.close()


def test_admin_pages_run_under_the_csp_and_a_product_is_edited_in_the_browser(admin_page):
    page, errors = admin_page
    catalog_seed_demo()
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    product = Product.objects.get(sku="PRINT-4X6-LUSTRE")
    pages = [
        "/lab/admin/",
        "/lab/admin/catalog/product/",
        f"/lab/admin/catalog/product/{product.pk}/change/",
        f"/lab/admin/production/printer/{printer.pk}/change/",
        "/lab/admin/accounts/user/add/",
    ]
    violations = {}
    for url in pages:
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        assert "script-src 'self'" in response.headers["content-security-policy"]
        # the admin's stylesheet applied: its header bar is not the browser's default transparent one
        header = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
        assert header != "rgba(0, 0, 0, 0)", url
        violations[url] = page.evaluate("window.__csp")

    page.goto(f"/lab/admin/catalog/product/{product.pk}/change/")
    page.fill("#id_name", "4x6 lustre (browser)")
    page.click("input[name=_save]")
    page.wait_for_url("**/lab/admin/catalog/product/")

    assert violations == {url: [] for url in pages}
    assert [error for error in errors if not error.startswith("Failed to load resource")] == []
    product.refresh_from_db()
    assert product.name == "4x6 lustre (browser)"
