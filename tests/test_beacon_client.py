"""beacon.js in real headless Chromium, embedded in a page on another origin than Beacon.

The page's origin (another port) is a tiny "SaaS": a static page that loads ``<beacon>/v1/beacon.js`` and a
``/token`` endpoint, its backend, that mints subscriber tokens with the tenant's API key through
``POST /v1/tokens``. The tenant allows that origin. One Chromium serves the whole module; every test gets its
own browser context (its own Web Locks and BroadcastChannel space) and its own recipient.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Api, Server, free_port, launch_chromium, unique, wait_until

pytestmark = pytest.mark.skipif(
    not shutil.which("chromium"), reason="Debian's chromium is not installed (see COMMON.md)"
)

WAIT_MS = 20_000

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A SaaS page embedding Beacon</title></head>
<body><p>Status: <span id="status">loading</span>; unread: <b id="badge">?</b></p>
<script>
  // Everything the page saw, for the test to read; the page's own backend mints the tokens.
  const q = new URLSearchParams(location.search);
  const beacon = q.get("beacon");
  window.log = {ids: [], unread: [], resets: [], statuses: [], tokens: 0, errors: []};
  const script = document.createElement("script");
  script.src = beacon + "/v1/beacon.js";
  script.onerror = () => log.errors.push("beacon.js did not load");
  script.onload = () => {
    window.client = Beacon.connect({
      url: beacon,
      token: async () => {
        log.tokens++;
        const response = await fetch("/token?" + q);  // the page's own query: beacon, recipient, ttl...
        if (!response.ok) throw new Error("token endpoint answered " + response.status);
        return response.text();
      },
      onNotification: (n) => log.ids.push(n.id),
      onUnread: (count) => { log.unread.push(count); document.getElementById("badge").textContent = count; },
      onReset: (reset) => log.resets.push(reset),
      onStatus: (status, detail) => {
        log.statuses.push(status);
        if (status === "closed") log.closed = detail && {name: detail.name, status: detail.status, code: detail.code};
        document.getElementById("status").textContent = status;
      },
    });
  };
  document.head.append(script);
</script></body></html>
"""


class SaasOrigin:
    """A page origin of its own (a port): ``/`` is PAGE, ``/token`` mints a token with the registered key."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}  # Beacon base URL -> the tenant's API key
        self.minted = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path == "/":
                    self._send(200, "text/html; charset=utf-8", PAGE.encode())
                elif (
                    url.path == "/token" and "forge" in query
                ):  # signed with a secret that is not the tenant's
                    owner.minted += 1
                    claims = {
                        "sub": query["recipient"],
                        "tid": query["forge"],
                        "exp": int(time.time()) + 3600,
                    }
                    self._send(200, "text/plain", jwt.encode(claims, "not-the-signing-secret-" * 2).encode())
                elif url.path == "/token":
                    beacon = query["beacon"]
                    response = httpx.post(
                        beacon + "/v1/tokens",
                        json={"recipient": query["recipient"], "ttl": int(query.get("ttl", "3600"))},
                        headers={"Authorization": f"Bearer {owner.keys[beacon]}"},
                        timeout=10,
                    )
                    if response.status_code != 201:
                        self._send(502, "text/plain", response.content)
                        return
                    owner.minted += 1
                    self._send(200, "text/plain", response.json()["token"].encode())
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def page(self, beacon: str, recipient: str, ttl: int = 3600, **extra: str) -> str:
        return f"{self.origin}/?{urlencode({'beacon': beacon, 'recipient': recipient, 'ttl': ttl, **extra})}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Metrics:
    """Beacon's Prometheus metrics (the master's aggregate over all workers), for one tenant label."""

    def __init__(self, server: Server, tenant: str) -> None:
        self.url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        self.tenant = tenant

    def value(self, name: str, **labels: str) -> float:
        text = httpx.get(self.url, timeout=5).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def open_streams(self) -> float:
        return self.value("beacon_connections", tenant=self.tenant)

    def opened(self) -> float:
        return self.value("beacon_connections_opened_total", tenant=self.tenant)


class Publisher:
    """Publishes to one recipient from a thread, every ``interval`` seconds, until stopped; keeps the ids."""

    def __init__(self, api: Api, recipient: str, interval: float = 0.1) -> None:
        self.api, self.recipient, self.interval = api, recipient, interval
        self.ids: list[str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.ids += [n["id"] for n in self.api.publish_ok({"recipient": self.recipient, "data": {}})]
            self.stopped.wait(self.interval)

    def __enter__(self) -> Publisher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(30)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A fresh browser profile: Web Locks and BroadcastChannel are shared by its tabs only. No page may throw."""
    ctx = chromium.new_context()
    errors: list[str] = []
    ctx.on("page", lambda page: page.on("pageerror", lambda error: errors.append(str(error))))
    yield ctx
    ctx.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def saas() -> Iterator[SaasOrigin]:
    origin = SaasOrigin()
    yield origin
    origin.close()


@pytest.fixture(scope="module")
def stranger() -> Iterator[SaasOrigin]:
    """A page origin the tenant does not allow."""
    origin = SaasOrigin()
    yield origin
    origin.close()


@pytest.fixture(scope="module")
def embedding(server: Server, make_tenant: Callable[..., Any], saas: SaasOrigin) -> tuple[Api, Metrics]:
    tenant, key = make_tenant(allowed_origins=[saas.origin])
    saas.keys[server.url] = key
    return Api(server.url, key), Metrics(server, tenant.slug)


def open_tab(context: Any, url: str) -> Any:
    tab = context.new_page()
    tab.goto(url)
    tab.wait_for_function("window.log && log.statuses.at(-1) === 'open'", timeout=WAIT_MS)
    return tab


def ids_of(tab: Any) -> list[str]:
    return list(tab.evaluate("log.ids"))


def wait_for_ids(tab: Any, count: int) -> list[str]:
    tab.wait_for_function("n => log.ids.length >= n", arg=count, timeout=WAIT_MS)
    return ids_of(tab)


def test_three_tabs_hold_one_stream_and_each_gets_every_notification_once(server, embedding, saas, context):
    api, metrics = embedding
    user = unique()
    opened_before = metrics.opened()
    tabs = [open_tab(context, saas.page(server.url, user)) for _ in range(3)]
    wait_until(lambda: metrics.open_streams() == 1, message="one open stream")
    published = [api.publish_ok({"recipient": user, "data": {"i": i}})[0]["id"] for i in range(10)]
    for tab in tabs:
        assert wait_for_ids(tab, 10) == published
    assert metrics.open_streams() == 1
    assert metrics.opened() - opened_before == 1  # no tab ever opened a second one
    for tab in tabs:  # the badge is right in every tab, the leader's and the followers'
        tab.wait_for_function("log.unread.at(-1) === 10", timeout=WAIT_MS)


def test_closing_the_leader_tab_hands_the_stream_over_without_loss_or_repeat(
    server, embedding, saas, context
):
    api, metrics = embedding
    user = unique()
    opened_before = metrics.opened()
    leader = open_tab(context, saas.page(server.url, user))  # the first tab takes the lock
    followers = [open_tab(context, saas.page(server.url, user)) for _ in range(2)]
    with Publisher(api, user, interval=0.05) as publisher:
        wait_until(lambda: len(publisher.ids) >= 5, message="some notifications before the hand-over")
        leader.close()
        closed_at = time.monotonic()
        wait_until(lambda: metrics.opened() - opened_before == 2, message="a new leader's stream")
        takeover = time.monotonic() - closed_at
        count = len(publisher.ids)
        wait_until(lambda: len(publisher.ids) >= count + 5, message="notifications after the hand-over")
    print(f"hand-over: a new stream opened {takeover:.2f}s after the leader tab closed")
    for tab in followers:
        assert wait_for_ids(tab, len(publisher.ids)) == publisher.ids
    wait_until(lambda: metrics.open_streams() == 1, message="one open stream after the hand-over")


def test_a_five_second_token_is_refreshed_while_notifications_flow_each_delivered_once(
    server, embedding, saas, context
):
    api, metrics = embedding
    user = unique()
    opened_before = metrics.opened()
    tab = open_tab(context, saas.page(server.url, user, ttl=5))
    with Publisher(api, user, interval=0.2) as publisher:
        # The first token plus at least two refreshes (at about 4 s and 8 s).
        tab.wait_for_function("log.tokens >= 3", timeout=15_000)
    ids = wait_for_ids(tab, len(publisher.ids))
    assert ids == publisher.ids
    # Each refresh switched streams (the last switch may still be under way when the third token arrives).
    wait_until(lambda: metrics.opened() - opened_before >= 3, message="a stream per token")
    statuses = tab.evaluate("log.statuses")
    assert "reconnecting" not in statuses, statuses


def test_sigterm_drain_and_restart_on_the_same_port_resume_without_loss(
    server, embedding, saas, context, django_db_setup, tmp_path
):
    import os

    from tests.conftest import TEST_SERVER_ENV

    api, _ = embedding
    env = {**TEST_SERVER_ENV, "DATABASE_URL": os.environ["BEACON_TEST_DATABASE_URL"]}
    pod = Server(env=env).start(tmp_path / "first", workers=1)
    restarted: Server | None = None
    try:
        saas.keys[pod.url] = api.key
        pod_api = Api(pod.url, api.key)
        user = unique()
        tab = open_tab(context, saas.page(pod.url, user))
        published = [pod_api.publish_ok({"recipient": user})[0]["id"] for _ in range(3)]
        assert wait_for_ids(tab, 3) == published
        pod.stop()  # SIGTERM: drain, then exit
        tab.wait_for_function("log.statuses.at(-1) === 'reconnecting'", timeout=WAIT_MS)
        # Committed while the page's Beacon is down, through another server on the same database.
        published += [api.publish_ok({"recipient": user})[0]["id"] for _ in range(3)]
        restarted = Server(env=env, port=pod.port).start(tmp_path / "second", workers=1)
        assert wait_for_ids(tab, 6) == published
        tab.wait_for_function("log.statuses.at(-1) === 'open'", timeout=WAIT_MS)
        published += [pod_api.publish_ok({"recipient": user})[0]["id"]]
        assert wait_for_ids(tab, 7) == published
    finally:
        pod.stop()
        if restarted is not None:
            restarted.stop()


def test_inbox_from_the_cross_origin_page_and_a_badge_right_on_load(server, embedding, saas, context):
    api, _ = embedding
    user = unique()
    ids = [api.publish_ok({"recipient": user, "data": {"i": i}})[0]["id"] for i in range(3)]
    tab = open_tab(context, saas.page(server.url, user))
    tab.wait_for_function("log.unread[0] === 3", timeout=WAIT_MS)  # before any change
    assert tab.text_content("#badge") == "3"
    page = tab.evaluate("client.inbox.list({limit: 50})")
    assert [n["id"] for n in page["notifications"]] == ids[::-1]
    assert all(
        n["read_at"] is None and n["data"] == {"i": i}
        for n, i in zip(page["notifications"], (2, 1, 0), strict=True)
    )
    assert page["next"] is None
    assert tab.evaluate("client.inbox.list({limit: 2})")["next"] == ids[1]
    assert [
        n["id"] for n in tab.evaluate(f"client.inbox.list({{before: '{ids[2]}'}})")["notifications"]
    ] == ids[1::-1]
    read = tab.evaluate(f"client.inbox.markRead('{ids[0]}')")
    assert read["id"] == ids[0] and read["read_at"]
    tab.wait_for_function("log.unread.at(-1) === 2", timeout=WAIT_MS)
    assert tab.evaluate("client.inbox.unreadCount()") == {"unread": 2}
    unread_page = tab.evaluate("client.inbox.list({unread: true})")
    assert [n["id"] for n in unread_page["notifications"]] == ids[:0:-1]
    assert tab.evaluate("client.inbox.markAllRead()") == {"updated": 2, "unread": 0}
    tab.wait_for_function("log.unread.at(-1) === 0", timeout=WAIT_MS)
    assert tab.evaluate("client.inbox.list({unread: true})")["notifications"] == []
    error = tab.evaluate(
        "client.inbox.markRead('999999999').then(() => null, e => ({name: e.name, status: e.status, code: e.code}))"
    )
    assert error == {"name": "BeaconError", "status": 404, "code": "not_found"}


def test_an_origin_that_is_not_allowed_is_refused_and_nothing_leaks(
    server, embedding, saas, stranger, context, chromium
):
    api, metrics = embedding
    stranger.keys[server.url] = api.key  # its backend could even mint tokens: the browser still refuses
    user = unique()
    refused_before = metrics.value("beacon_connections_rejected_total", reason="origin_not_allowed")
    failed: list[str] = []
    tab = context.new_page()
    tab.on("requestfailed", lambda request: failed.append(f"{request.method} {request.url}"))
    tab.goto(stranger.page(server.url, user))
    tab.wait_for_function("window.client !== undefined", timeout=WAIT_MS)
    # The inbox call needs a preflight (Authorization header); Beacon answers it without CORS headers.
    outcome = tab.evaluate("client.inbox.list().then(() => 'read', e => e.name + ': ' + e.message)")
    assert outcome.startswith("TypeError"), outcome
    preflight = httpx.options(
        server.url + "/v1/inbox",
        headers={
            "Origin": stranger.origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    # The stream request is a simple GET: Beacon refuses it for the origin, and the page cannot read even that.
    wait_until(
        lambda: (
            metrics.value("beacon_connections_rejected_total", reason="origin_not_allowed") > refused_before
        ),
        message="the stream refused for the origin",
    )
    # A page of the allowed origin (another profile) gets a notification; the stranger's page gets nothing.
    friend_context = chromium.new_context()
    try:
        friend = open_tab(friend_context, saas.page(server.url, user))
        sent = api.publish_ok({"recipient": user, "data": {"secret": "s3cr3t"}})[0]["id"]
        assert wait_for_ids(friend, 1) == [sent]
    finally:
        friend_context.close()
    assert ids_of(tab) == []
    assert tab.evaluate("log.statuses").count("open") == 0
    assert "s3cr3t" not in tab.content()
    assert any("/v1/inbox" in f for f in failed), failed
    leak = tab.evaluate(
        "fetch(new URLSearchParams(location.search).get('beacon') + '/v1/inbox/unread-count',"
        " {headers: {Authorization: 'Bearer x'}}).then(r => 'read ' + r.status, e => e.name)"
    )
    assert leak == "TypeError"
    assert json.dumps(tab.evaluate("log")).count("s3cr3t") == 0


def test_a_token_that_a_fresh_one_does_not_fix_ends_in_closed_not_a_loop(server, embedding, saas, context):
    _, metrics = embedding
    tab = context.new_page()
    to_beacon: list[str] = []
    tab.on("request", lambda r: to_beacon.append(r.url) if r.url.startswith(server.url + "/v1/") else None)
    tab.goto(saas.page(server.url, unique(), forge=metrics.tenant))
    tab.wait_for_function("log.statuses.at(-1) === 'closed'", timeout=WAIT_MS)
    # The refusal is readable cross-origin (CORS on errors), so the page knows why it stopped.
    assert tab.evaluate("log.closed") == {"name": "BeaconError", "status": 401, "code": "invalid_token"}
    assert tab.evaluate("log.tokens") == 2  # the first token and one fresh one
    tried = len(to_beacon)
    assert 2 <= tried <= 4, to_beacon  # beacon.js, then the first token's request and the fresh one's
    assert tab.evaluate("client.status") == "closed"
    # Any inbox call still works on its own (and fails the same way, readable).
    error = tab.evaluate("client.inbox.unreadCount().then(() => null, e => e.code)")
    assert error == "invalid_token"
    assert tab.evaluate("log.tokens") == 3
    assert len([u for u in to_beacon if "/v1/stream" in u]) <= 2
