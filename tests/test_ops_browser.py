"""Production static files and the API docs page, in real headless Chromium against gunicorn with DEBUG=0."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Server, launch_chromium, manage_process

pytestmark = pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``collectstatic`` as the image runs it: hashed, compressed copies and a manifest."""
    root = tmp_path_factory.mktemp("static")
    done = manage_process("collectstatic", "--noinput", "-v", "0", STATIC_ROOT=str(root))
    assert done.returncode == 0, done.stderr
    assert (root / "staticfiles.json").exists()
    return root


@pytest.fixture(scope="module")
def production_server(start_module_server: Any, static_root: Path) -> Server:
    """gunicorn with DEBUG=0 serving the collected static files, shared by this file's tests. One worker:
    what is served does not depend on which worker answers."""
    return start_module_server(workers=1, STATIC_ROOT=str(static_root), DEBUG="0")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = launch_chromium(playwright)
        try:
            yield instance
        finally:
            instance.close()


def record_requests(page: Any, server: Server) -> list[str]:
    """Every URL the page asks for; anything not on Beacon's own origin is aborted (and recorded)."""
    seen: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        seen.append(url)
        if url.startswith(server.url + "/") or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", handle)
    return seen


def test_admin_is_styled_under_gunicorn_without_debug(production_server, browser, tmp_path):
    server = production_server
    page = browser.new_page()
    seen = record_requests(page, server)
    response = page.goto(server.url + "/admin/login/")
    assert response is not None and response.status == 200
    sheets = page.eval_on_selector_all("link[rel=stylesheet]", "links => links.map(l => l.href)")
    base = next(href for href in sheets if "/admin/css/base." in href)
    assert re.search(r"/static/admin/css/base\.[0-9a-f]{12}\.css$", base), base  # a hashed name
    # Computed styles that only base.css gives: no body margin, the admin's blue header.
    assert page.evaluate("getComputedStyle(document.body).marginTop") == "0px"
    header = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
    assert header == "rgb(65, 118, 144)", header
    shot = tmp_path / "admin-login.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(url.startswith(server.url) for url in seen), seen
    # WhiteNoise: compressed, cached for good (the name changes with the content).
    css = httpx.get(base, headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert css.status_code == 200 and css.headers["content-encoding"] == "gzip"
    assert "immutable" in css.headers["cache-control"]


def test_api_docs_page_renders_with_nothing_leaving_the_machine(production_server, browser):
    server = production_server
    page = browser.new_page()
    seen = record_requests(page, server)
    response = page.goto(server.url + "/v1/docs")
    assert response is not None and response.status == 200
    page.wait_for_selector(".swagger-ui .info .title:has-text('Beacon')", timeout=20000)
    page.wait_for_selector(".opblock-summary-path:has-text('/v1/notifications')", timeout=20000)
    assert any(url.endswith("/v1/openapi.json") for url in seen)
    outside = [
        url for url in seen if not url.startswith(server.url) and not url.startswith(("data:", "blob:"))
    ]
    assert outside == [], outside
