"""The demo page (``DEMO=1``) in real headless Chromium (Debian's package, driven by Playwright): the demo
recipient's inbox and live stream through beacon.js."""

from __future__ import annotations

import shutil

import httpx
import pytest

from tenants.models import Tenant
from tests.support import Api, launch_chromium, unique

WAIT_MS = 15_000


@pytest.fixture
def demo_api(server, make_tenant) -> Api:
    tenant = Tenant.objects.filter(slug="demo").first()
    if tenant is None:
        _, key = make_tenant("demo", allowed_origins=[server.url])
    else:
        from tenants.models import ApiKey

        _, key = ApiKey.issue(tenant, name="browser-test")
    return Api(server.url, key)


def unread_count(api: Api) -> int:
    token = api.token("demo-user", ["news"])
    response = httpx.get(
        api.base_url + "/v1/inbox/unread-count", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return int(response.json()["unread"])


@pytest.mark.skipif(
    not shutil.which("chromium"), reason="Debian's chromium is not installed (make test installs it)"
)
def test_demo_page_shows_the_inbox_and_live_arrivals_and_marks_read(server, demo_api):
    from playwright.sync_api import sync_playwright

    older, newer = unique("older"), unique("newer")
    for text in (older, newer):
        demo_api.publish_ok({"recipient": "demo-user", "event": "demo.message", "data": {"text": text}})
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.wait_for_function(
                "document.getElementById('status').textContent === 'open'", timeout=WAIT_MS
            )
            # History on load: newest first, unread, and the badge equals the server's count.
            page.wait_for_selector(f"#events li.unread:has-text('{older}')", timeout=WAIT_MS)
            texts = page.locator("#events li span").all_text_contents()
            assert texts.index(newer) < texts.index(older)
            expected = str(unread_count(demo_api))
            page.wait_for_function(
                "n => document.getElementById('unread').textContent === n", arg=expected, timeout=WAIT_MS
            )

            # What the `curl` line of `make run` publishes (service/devserver.py: a recipient and
            # {"text": ...}, no event name) reads as a message, on top.
            hello = unique("hello")
            demo_api.publish_ok({"recipient": "demo-user", "data": {"text": hello}})
            page.wait_for_selector(f"#events li.unread:has-text('{hello}')", timeout=WAIT_MS)
            assert page.locator("#events li span").first.text_content() == hello
            page.wait_for_function(
                "n => document.getElementById('unread').textContent === n",
                arg=str(int(expected) + 1),
                timeout=WAIT_MS,
            )
            demo_api.publish_ok({"recipient": "demo-user", "data": {"amount": 12}})
            page.wait_for_selector("#events li:has-text('{\"amount\":12}')", timeout=WAIT_MS)

            # A click marks one read; the badge follows.
            page.click(f"#events li:has-text('{hello}')")
            page.wait_for_selector(f"#events li.read:has-text('{hello}')", timeout=WAIT_MS)
            page.wait_for_function(
                "n => document.getElementById('unread').textContent === n",
                arg=str(unread_count(demo_api)),
                timeout=WAIT_MS,
            )

            # The page's own form publishes through the server-side demo view (no API key in the browser).
            page.fill("#text", "typed in the page")
            page.click("button[type=submit]")
            page.wait_for_selector("#events li.unread:has-text('typed in the page')", timeout=WAIT_MS)

            # Mark all read.
            page.click("#read-all")
            page.wait_for_function("document.getElementById('unread').textContent === '0'", timeout=WAIT_MS)
            page.wait_for_function("!document.querySelector('#events li.unread')", timeout=WAIT_MS)
            assert unread_count(demo_api) == 0
            assert "bk_" not in page.content()

            # A reload shows the history from the inbox with its read state, and the right count.
            page.reload()
            page.wait_for_selector(f"#events li.read:has-text('{hello}')", timeout=WAIT_MS)
            page.wait_for_function("document.getElementById('unread').textContent === '0'", timeout=WAIT_MS)
            assert page.locator("#events li.unread").count() == 0
        finally:
            browser.close()


def test_demo_token_endpoint_mints_a_token_for_the_demo_recipient(server, demo_api):
    response = httpx.get(server.url + "/demo/token", timeout=10)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    inbox = httpx.get(
        server.url + "/v1/inbox/unread-count",
        headers={"Authorization": f"Bearer {body['token']}"},
        timeout=10,
    )
    assert inbox.status_code == 200
    assert "unread" in inbox.json()
