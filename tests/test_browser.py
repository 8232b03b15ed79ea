"""The demo page in real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import shutil

import pytest

from tenants.models import Tenant
from tests.support import Api, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def demo_api(server, make_tenant) -> Api:
    tenant = Tenant.objects.filter(slug="demo").first()
    if tenant is None:
        _, key = make_tenant("demo", allowed_origins=[server.url])
    else:
        from tenants.models import ApiKey

        _, key = ApiKey.issue(tenant, name="browser-test")
    return Api(server.url, key)


@pytest.mark.skipif(
    not shutil.which("chromium"), reason="Debian's chromium is not installed (make test installs it)"
)
def test_demo_page_receives_a_notification_published_through_the_api(server, demo_api):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.wait_for_function(
                "document.getElementById('status').textContent === 'connected'", timeout=15000
            )
            demo_api.publish_ok(
                {"recipient": "demo-user", "event": "demo.message", "data": {"text": "from the API"}}
            )
            page.wait_for_selector("#events li:has-text('from the API')", timeout=15000)
            # The page's own form publishes through the server-side demo view (no API key in the browser).
            page.fill("#text", "typed in the page")
            page.click("button[type=submit]")
            page.wait_for_selector("#events li:has-text('typed in the page')", timeout=15000)
            wait_until(
                lambda: page.text_content("#unread") not in ("0", None), timeout=10, message="unread badge"
            )
            assert "bk_" not in page.content()
        finally:
            browser.close()
