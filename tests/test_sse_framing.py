"""The pure SSE framing functions, and the hub's bookkeeping, without any server."""

from __future__ import annotations

import asyncio
import json

import pytest

from service.broker.base import Announcement, Row
from service.broker.payload import MAX_PAYLOAD, decode, encode
from service.streaming import sse
from service.streaming.hub import Hub, Item, Subscription, keys_for


def test_event_with_id_and_name():
    assert sse.event('{"a":1}', id=7, name="invoice.paid") == b'id: 7\nevent: invoice.paid\ndata: {"a":1}\n\n'


def test_event_without_name_has_no_event_line():
    assert sse.event("x", id=1) == b"id: 1\ndata: x\n\n"


def test_multiline_data_cannot_inject_fields():
    frame = sse.event("line1\nid: 999\r\nevent: evil", id=1)
    assert frame == b"id: 1\ndata: line1\ndata: id: 999\ndata: event: evil\n\n"


def test_event_name_must_be_single_line():
    with pytest.raises(ValueError):
        sse.event("x", name="a\nb")


def test_control_events_never_carry_an_id():
    frame = sse.control("beacon.reset", {"reason": "unknown_id", "resume_from": "5"})
    assert frame == b'event: beacon.reset\ndata: {"reason":"unknown_id","resume_from":"5"}\n\n'
    assert b"id:" not in frame


def test_retry_ping_and_comment():
    assert sse.retry(2500) == b"retry: 2500\n\n"
    assert sse.PING == b": ping\n\n"
    assert sse.comment("a\nb") == b": a\n: b\n\n"


def test_notification_payload_is_valid_json_around_encoded_data():
    data = sse.notification_json(12, None, '{"k":[1,"two"]}', 'u"1', None, "2026-11-25T12:00:00.000000Z")
    assert json.loads(data) == {
        "id": "12",
        "event": None,
        "data": {"k": [1, "two"]},
        "recipient": 'u"1',
        "topic": None,
        "created_at": "2026-11-25T12:00:00.000000Z",
    }


def test_announcements_round_trip_and_fall_back_to_ranges_when_large():
    rows = [Row(i, "u", None, False, None, "2026-11-25T12:00:00.000000Z", '{"n":1}') for i in (5, 6)]
    small = decode(encode(Announcement("t_acme", rows, sent_at=1.5)))
    assert small.rows == tuple(rows) and small.schema == "t_acme" and small.id_range is None
    big_rows = [Row(i, "u", None, False, None, "x", '"' + "y" * 500 + '"') for i in range(100, 130)]
    payload = encode(Announcement("t_acme", big_rows))
    assert len(payload.encode()) <= MAX_PAYLOAD
    assert decode(payload).id_range == (100, 129) and decode(payload).rows == ()
    unread = decode(encode(Announcement("t_acme", unread={"u": 3})))
    assert unread.unread == {"u": 3} and unread.rows == ()


def test_hub_keys_include_the_tenant_schema():
    hub = Hub()
    a = Subscription("t_a", "u1", keys_for("t_a", "u1", ["news"]), 10)
    b = Subscription("t_b", "u1", keys_for("t_b", "u1", []), 10)
    hub.add(a)
    hub.add(b)
    assert hub.matching(("t_a", "r", "u1")) == {a}
    assert hub.matching(("t_b", "r", "u1")) == {b}
    assert hub.matching(("t_a", "t", "news")) == {a}
    assert hub.has_schema("t_a") and hub.schemas() == {"t_a", "t_b"} and hub.in_schema("t_b") == [b]
    hub.remove(a)
    hub.remove(b)
    assert len(hub) == 0 and hub.key_count() == 0 and not hub.has_schema("t_a") and hub.schemas() == set()


def test_subscription_is_bounded_and_closes_as_slow():
    sub = Subscription("t", "u", (), limit=2)
    assert sub.push(Item(1, b"a")) and sub.push(Item(2, b"b"))
    assert not sub.push(Item(3, b"c"))
    assert sub.closed == "slow_consumer"


def test_subscription_wait_wakes_on_push_and_times_out():
    async def scenario() -> None:
        sub = Subscription("t", "u", (), limit=5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await sub.wait(0.05)
        assert loop.time() - started >= 0.04
        loop.call_later(0.01, sub.push, Item(1, b"x"))
        await sub.wait(5)
        assert sub.pop() == Item(1, b"x")

    asyncio.run(scenario())
