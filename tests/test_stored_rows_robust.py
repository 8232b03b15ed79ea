"""A stored row that no longer passes validation (an ``event`` ending in a newline was accepted before
``validation.EVENT_RE`` was matched whole) must not break what reads it, and a failed resume gives its
slot back. In-process: the frame builder, ``_prepare`` with stub parts, and the listener's dispatch."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from service.broker.base import Announcement, Row
from service.notifications.tokens import Subscriber
from service.notifications.validation import event_problem
from service.streaming import endpoint, listener
from service.streaming.dispatch import frame_for
from service.streaming.hub import Subscription, keys_for
from service.streaming.slots import OK, Opening
from tenants.directory import TenantInfo
from tests.whatwg_sse import parse

BAD_NAMES = ["abc\n", "abc\r\n", "a\nb", "abc\r", "\n"]


@pytest.mark.parametrize("name", ["abc\n", "abc\r\n", "x\n", "beacon.x\n"])
def test_an_event_name_with_a_final_newline_is_refused(name: str):
    """Python's ``$`` also matches before a final newline: ``EVENT_RE.match`` took ``abc\\n``."""
    assert event_problem(name) is not None and event_problem(name.rstrip()) in (
        None,
        "names starting with beacon. are reserved",
    )


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_stored_event_name_that_is_not_one_line_is_delivered_unnamed(name: str):
    frame = frame_for(Row(7, "u1", None, False, name, "2026-12-01T00:00:00Z", '{"a":1}'))
    (event,) = parse(frame).events
    assert event.type == "message" and event.last_event_id == "7"
    assert json.loads(event.data)["event"] == name and json.loads(event.data)["data"] == {"a": 1}


TENANT = TenantInfo(1, "acme", "acme", True, "s", (), 10, 2, 100, 65536)


@dataclass
class _Slots:
    held: int = 0
    live: bool = True

    async def acquire(self, *args: Any) -> Opening:
        self.held += 1
        return Opening(OK, 10, 1, 0)

    def release(self, *args: Any) -> None:
        self.held -= 1


@dataclass
class _Store:
    rows: list[Row] = field(default_factory=list)

    async def replay(self, *args: Any) -> tuple[int, int, int, list[Row]]:
        return 10, 1, 0, self.rows


class _Listener:
    def replay(self, *args: Any) -> None:
        return None  # not in the window: the database replays


@dataclass
class _Runtime:
    slots: _Slots = field(default_factory=_Slots)
    store: _Store = field(default_factory=_Store)
    listener: _Listener = field(default_factory=_Listener)

    def newest_dispatched(self, schema: str) -> int | None:
        return None


def _prepare(runtime: _Runtime, last_id: int | None) -> list[bytes]:
    sub = Subscription("acme", "u1", keys_for("acme", "u1", ()), 10)
    subscriber = Subscriber(TENANT, "u1", (), 2**31)
    return asyncio.run(endpoint._prepare(runtime, sub, subscriber, last_id, "acme"))  # type: ignore[arg-type]


@pytest.mark.parametrize("last_id", [None, 0])
def test_a_resume_that_fails_after_its_slot_is_taken_gives_the_slot_back(monkeypatch, last_id: int | None):
    """A failed resume kept its slot: each one took another until the recipient's limit refused them all."""
    runtime = _Runtime(store=_Store([Row(5, "u1", None, False, None, "2026-12-01T00:00:00Z", "1")]))

    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("a bug while building frames")

    monkeypatch.setattr(endpoint, "frame_for", broken)
    monkeypatch.setattr(endpoint.sse, "unread", broken)
    with pytest.raises(RuntimeError):
        _prepare(runtime, last_id)
    assert runtime.slots.held == 0
    monkeypatch.undo()
    assert _prepare(runtime, last_id) and runtime.slots.held == 1  # a good resume keeps it


def test_a_bug_in_dispatching_one_announcement_does_not_stop_the_listener(monkeypatch, caplog):
    """Raised into the broker it was taken for a lost connection: reconnects in a loop, no live event."""
    target = listener.Listener.__new__(listener.Listener)
    target._catching_up = False
    target._lock = asyncio.Lock()

    async def broken(announcement: Announcement) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(target, "_dispatch", broken)
    asyncio.run(target.on_announcement(Announcement("acme")))  # does not raise
    assert "dispatching an announcement of acme failed" in caplog.text

    async def outage(announcement: Announcement) -> None:
        import psycopg

        raise psycopg.OperationalError("server closed the connection")

    monkeypatch.setattr(target, "_dispatch", outage)
    with pytest.raises(Exception, match="server closed"):  # an outage still reaches the broker: reconnect
        asyncio.run(target.on_announcement(Announcement("acme")))


def test_a_final_newline_is_refused_by_every_rule_written_as_a_pattern():
    """The whole kind: every ``^...$`` rule matched with ``re.match`` took a value plus ``\\n`` (an event name,
    a tenant slug that names a schema, an allowed origin, a request id, the CORS routes)."""
    import re

    from django.conf import settings
    from django.core.exceptions import ValidationError

    from service.http import new_request_id
    from service.streaming.app import route_label
    from tenants.models import validate_slug
    from tenants.origins import check_origin

    assert event_problem("abc") is None and event_problem("abc\n") is not None
    validate_slug("acme")
    with pytest.raises(ValidationError):
        validate_slug("acme\n")
    assert check_origin("https://app.example.com") == "https://app.example.com"
    for origin in ("https://app.example.com\n", "https://app.example\n.com", "http://127.0.0.1\n"):
        with pytest.raises(ValidationError):
            check_origin(origin)
    assert new_request_id("abc") == "abc" and new_request_id("abc\n") != "abc\n"
    assert re.match(settings.CORS_URLS_REGEX, "/v1/stream")
    assert not re.match(settings.CORS_URLS_REGEX, "/v1/stream\n")
    assert route_label("/v1/inbox/5/read") == "/v1/inbox/{id}/read"
    assert route_label("/v1/inbox/5\n/read") == "other"
    from service.errors import ApiError
    from service.notifications.tokens import Decoded

    assert Decoded(b"", b"", {"tid": "acme"}).tenant_slug == "acme"
    with pytest.raises(ApiError, match="names no tenant"):  # it reached the tenant lookup
        _ = Decoded(b"", b"", {"tid": "acme\n"}).tenant_slug
