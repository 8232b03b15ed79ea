"""docs/embed.md is copy-paste runnable: its page, its Python and Node backends and its token signers, run as
written against a real Beacon, in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT, Api, free_port, launch_chromium, wait_until

pytestmark = pytest.mark.skipif(
    not shutil.which("chromium") or not shutil.which("node"), reason="needs Debian's chromium and Node.js"
)

DOC = ROOT / "docs" / "embed.md"
WAIT_MS = 20_000


def block(language: str, containing: str) -> str:
    """The one fenced code block of ``language`` in docs/embed.md that contains ``containing``."""
    found = [
        body
        for lang, body in re.findall(r"^```(\w+)\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
        if lang == language and containing in body
    ]
    assert len(found) == 1, f"{len(found)} {language} blocks with {containing!r} in {DOC}"
    return found[0]


@pytest.fixture(scope="module")
def backends(server, make_tenant, tmp_path_factory) -> Iterator[tuple[Any, Api, dict[str, str]]]:
    """The doc's index.html with app.py and with server.js, each on its own localhost port."""
    ports = {"python": free_port(), "node": free_port()}
    tenant, key = make_tenant(allowed_origins=[f"http://localhost:{port}" for port in ports.values()])
    folder = tmp_path_factory.mktemp("embed")
    (folder / "index.html").write_text(block("html", "Beacon.connect"))
    (folder / "app.py").write_text(block("python", "ThreadingHTTPServer"))
    (folder / "server.js").write_text(block("js", "createServer"))
    commands = {"python": [sys.executable, "app.py"], "node": ["node", "server.js"]}
    processes = []
    urls = {}
    try:
        for name, port in ports.items():
            env = {
                "BEACON_URL": server.url,
                "BEACON_API_KEY": key,
                "PORT": str(port),
                "PATH": "/usr/bin:/bin",
            }
            processes.append(
                subprocess.Popen(
                    commands[name], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
            )
            urls[name] = f"http://localhost:{port}/"
            wait_until(lambda url=urls[name]: _answers(url), timeout=20, message=f"the {name} backend")
        yield tenant, Api(server.url, key), urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.mark.parametrize("backend", ["python", "node"])
def test_the_embed_page_shows_badge_list_and_live_arrivals(backend, backends, chromium):
    _, api, urls = backends
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(urls[backend])
        page.wait_for_function("document.title === 'My app (open)'", timeout=WAIT_MS)
        page.wait_for_function("/^\\d+$/.test(document.getElementById('badge').textContent)", timeout=WAIT_MS)
        before = int(page.text_content("#badge") or "0")
        text = f"hello from {backend}"
        api.publish_ok({"recipient": "demo-user", "event": "demo.message", "data": {"text": text}})
        item = page.locator("#list li", has_text=text)
        item.wait_for(timeout=WAIT_MS)
        assert item.evaluate("li => li.style.fontWeight") == "bold"
        page.wait_for_function(
            f"document.getElementById('badge').textContent === '{before + 1}'", timeout=WAIT_MS
        )
        item.click()
        page.wait_for_function(
            f"document.getElementById('badge').textContent === '{before}'", timeout=WAIT_MS
        )
        # The badge follows the server's beacon.unread push, which may arrive before markRead's own answer
        # (the click handler sets the weight once that answer is in): wait for the weight too.
        page.wait_for_function(
            "li => li.style.fontWeight === 'normal'", arg=item.element_handle(), timeout=WAIT_MS
        )
        assert item.evaluate("li => li.style.fontWeight") == "normal"
        page.click("#read-all")
        page.wait_for_function("document.getElementById('badge').textContent === '0'", timeout=WAIT_MS)
        # A reload lists the history from the inbox, read.
        page.reload()
        page.locator("#list li", has_text=text).wait_for(timeout=WAIT_MS)
        assert page.locator("#list li", has_text=text).evaluate("li => li.style.fontWeight") == "normal"
    finally:
        context.close()


def _inbox_status(api: Api, token: str) -> int:
    response = httpx.get(
        api.base_url + "/v1/inbox/unread-count", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


def test_the_python_signer_makes_tokens_beacon_accepts(backends):
    tenant, api, _ = backends
    namespace: dict[str, Any] = {}
    exec(block("python", "def sign_token"), namespace)
    token = namespace["sign_token"]("demo-user", tenant.slug, tenant.signing_secret)
    assert _inbox_status(api, token) == 200
    assert _inbox_status(api, namespace["sign_token"]("demo-user", tenant.slug, "not-the-secret-" * 4)) == 401


def test_the_node_signer_makes_tokens_beacon_accepts(backends):
    tenant, api, _ = backends
    script = block("js", "function signToken") + "\nconsole.log(signToken(...process.argv.slice(1)));"
    token = subprocess.run(
        ["node", "-e", script, "demo-user", tenant.slug, tenant.signing_secret],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert _inbox_status(api, token) == 200


def test_readme_links_the_embed_guide():
    assert "(docs/embed.md)" in (ROOT / "README.md").read_text()
    assert Path(DOC).exists()
