"""People's pages: `/` says what this is and where to go; pages outside the API fail with HTML in the staff
look (never JSON), under the same Content-Security-Policy (no inline script)."""

from __future__ import annotations

import html as html_text
import re

import pytest
from django.test import Client

from lab.staff.middleware import CONTENT_SECURITY_POLICY
from tests.builders import client_as

pytestmark = pytest.mark.django_db


def scripts_are_files_only(html: str) -> bool:
    return all("src=" in tag for tag in re.findall(r"<script[^>]*>", html)) and "style=" not in html


def test_the_landing_page_links_to_the_api_docs_and_staff_sign_in(client):
    response = client.get("/")

    html = response.content.decode()
    assert (response.status_code, response["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert 'href="/api/v1/docs/"' in html
    assert 'href="/lab/login/"' in html
    assert "photo print lab" in html
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert scripts_are_files_only(html)


def test_the_landing_page_links_resolve(client):
    assert client.get("/api/v1/docs/").status_code == 200
    assert client.get("/lab/login/").status_code == 200


def test_the_api_docs_page_loads_only_the_lab_s_own_files_under_the_staff_csp(client):
    """The docs page is on the staff pages' origin: it loaded Swagger UI from a CDN (`@latest`) and ran an
    inline script holding the CSRF token, with no Content-Security-Policy. Now its files are the lab's own."""
    response = client.get("/api/v1/docs/")

    page = response.content.decode()
    assert (response.status_code, response["Content-Security-Policy"]) == (200, CONTENT_SECURITY_POLICY)
    assert "cdn.jsdelivr.net" not in page and "csrf" not in page.lower()
    assert scripts_are_files_only(page) and "<style" not in page
    urls = [html_text.unescape(url) for url in re.findall(r'(?:src|href)="([^"]+)"', page)]
    assert len(urls) == 5  # the favicon, the stylesheet, Swagger UI's two files and the page's own script
    for url in urls:
        assert url.startswith("/api/v1/docs/"), url
        fetched = client.get(url)
        assert fetched.status_code == 200, url
        body = b"".join(fetched.streaming_content) if fetched.streaming else fetched.content
        assert b"cdn.jsdelivr.net" not in body
    (script,) = [url for url in urls if "script=" in url]
    assert client.get(script)["Content-Type"].startswith("application/javascript")


@pytest.mark.parametrize("path", ["/lab/no-such-page/", "/lab/jobs/999999/", "/no-such-page"])
def test_missing_pages_outside_the_api_are_html_404s(path):
    client, _technician = client_as("technician")

    response = client.get(path)

    html = response.content.decode()
    assert (response.status_code, response["Content-Type"]) == (404, "text/html; charset=utf-8")
    assert "<h1>Page not found</h1>" in html
    assert "/lab/assets/staff.css" in html
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert scripts_are_files_only(html)


def test_a_foreign_host_on_a_staff_page_is_an_html_400(client):
    response = client.get("/lab/login/", HTTP_HOST="attacker.example")

    assert (response.status_code, response["Content-Type"]) == (400, "text/html; charset=utf-8")
    assert "<h1>Bad request</h1>" in response.content.decode()


@pytest.mark.urls("tests.api.crash_urls")
def test_a_crash_on_a_staff_page_is_an_html_500():
    response = Client(raise_request_exception=False).get("/lab/crash")

    html = response.content.decode()
    assert (response.status_code, response["Content-Type"]) == (500, "text/html; charset=utf-8")
    assert "<h1>Something went wrong</h1>" in html
    assert "a bug" not in html
