"""``beacon.unread`` right after a stream opens (contract, "Streaming"): once, after any replay, before live
events, with the count of this tenant's recipient only."""

from __future__ import annotations

import json
from collections.abc import Iterator

from httpx_sse import ServerSentEvent

from tests.support import Api, sse_stream, unique


def events_of(stream: Iterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    """The next ``count`` events that carry something (retry-only blocks skipped), control events included."""
    found: list[ServerSentEvent] = []
    for event in stream:
        if event.data:
            found.append(event)
        if len(found) == count:
            break
    return found


def unread_of(event: ServerSentEvent) -> int:
    assert event.event == "beacon.unread", event  # (its id is the sticky last event id of the stream)
    return int(json.loads(event.data)["unread"])


def test_the_count_comes_first_on_a_new_stream_then_live_events(server, make_tenant) -> None:
    acme = Api(server.url, make_tenant()[1])  # its own tenant: the broadcast below stays here
    user = unique()
    token = acme.token(user)
    first, second, _ = (acme.publish_ok({"recipient": user})[0] for _ in range(3))
    acme.client.post(f"/v1/inbox/{first['id']}/read", headers={"Authorization": f"Bearer {token}"})
    acme.publish_ok({"broadcast": True})  # a broadcast has no read state: not counted
    with sse_stream(acme.base_url, token) as stream:
        (opening,) = events_of(stream, 1)
        assert unread_of(opening) == 2
        (live,) = acme.publish_ok({"recipient": user, "event": "x.live"})
        after = events_of(stream, 2)
    assert after[0].id == live["id"] and unread_of(after[1]) == 3
    assert second["id"] != live["id"]


def test_after_a_replay_and_after_a_reset(acme: Api) -> None:
    user = unique()
    token = acme.token(user)
    ids = [acme.publish_ok({"recipient": user})[0]["id"] for _ in range(3)]
    with sse_stream(acme.base_url, token, last_event_id=ids[0]) as stream:
        got = events_of(stream, 3)
    assert [e.id for e in got[:2]] == ids[1:] and unread_of(got[2]) == 3
    with sse_stream(acme.base_url, token, last_event_id="999999999999") as stream:
        reset, opening = events_of(stream, 2)
    assert reset.event == "beacon.reset" and unread_of(opening) == 3


def until_unread(stream: Iterator[ServerSentEvent]) -> tuple[list[str], int]:
    """Notification ids replayed before the first ``beacon.unread``, and its count."""
    ids: list[str] = []
    for event in stream:
        if event.event == "beacon.unread":
            return ids, unread_of(event)
        if event.data and not event.event.startswith("beacon."):
            ids.append(event.id)
    raise AssertionError("the stream ended before beacon.unread")


def test_two_tenants_with_the_same_recipient_get_their_own_counts(acme: Api, globex: Api) -> None:
    user = unique()
    at_acme = [acme.publish_ok({"recipient": user})[0]["id"] for _ in range(2)]
    at_globex = [globex.publish_ok({"recipient": user})[0]["id"] for _ in range(5)]
    with (
        sse_stream(acme.base_url, acme.token(user)) as acme_stream,
        sse_stream(globex.base_url, globex.token(user)) as globex_stream,
    ):
        assert until_unread(acme_stream) == ([], 2)
        assert until_unread(globex_stream) == ([], 5)
    with (  # a resume reads the count in the replay's statement: the same isolation
        sse_stream(acme.base_url, acme.token(user), last_event_id=str(int(at_acme[0]) - 1)) as acme_stream,
        sse_stream(
            globex.base_url, globex.token(user), last_event_id=str(int(at_globex[0]) - 1)
        ) as globex_stream,
    ):
        assert until_unread(acme_stream) == (at_acme, 2)
        assert until_unread(globex_stream) == (at_globex, 5)
