"""The replay window in-process: its answers equal the database's, its range has no hole, its memory is bounded."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.broker.base import Row
from service.streaming.dispatch import frame_for
from service.streaming.window import ROW_OVERHEAD, ReplayWindow

NOW = 1_000_000.0


def row(
    id_: int,
    recipient: str | None = "u1",
    topic: str | None = None,
    broadcast: bool = False,
    expires_at: float = NOW + 3600,
    data: str = '{"n":1}',
) -> Row:
    return Row(id_, recipient, topic, broadcast, None, "2026-11-30T12:00:00.000000Z", data, expires_at)


def database_replay(
    rows: list[Row], last_id: int, recipient: str, topics: tuple[str, ...], limit: int
) -> Any:
    """What ``Store.replay`` + the endpoint's rules answer, over the same committed rows."""
    live = [r for r in rows if r.expires_at is not None and r.expires_at > NOW]
    wanted = [
        r for r in live if r.id > last_id and (r.recipient == recipient or r.broadcast or r.topic in topics)
    ]
    if len(wanted) > limit:
        return "too_far_behind"
    return [frame_for(r) for r in wanted]


def window_answer(window: ReplayWindow, *args: Any) -> Any:
    answer = window.replay("s", *args, now=NOW)
    if answer is None:
        return None
    return answer.reset or [frame for _, frame in answer.frames]


def test_rows_with_gaps_in_their_ids_are_served_from_the_window() -> None:
    window = ReplayWindow(100, 10**6)
    window.advance("s", None, None, 10)  # position known, no rows yet
    committed = [
        row(11),
        row(12, "u2"),
        row(15, topic="news", recipient=None),
        row(16, broadcast=True, recipient=None),
    ]
    window.advance("s", 10, committed[:2], 12)
    window.advance("s", 12, committed[2:], 16)  # 13 and 14 rolled back: the listener read the hole as empty
    assert window.covered("s") == (10, 16)
    for last in range(10, 17):
        assert window_answer(window, last, "u1", ("news",), 100) == database_replay(
            committed, last, "u1", ("news",), 100
        )
    assert window.replay("s", 9, "u1", (), 100, now=NOW) is None  # below the range: the database answers
    assert window.replay("s", 17, "u1", (), 100, now=NOW) is None  # above: not announced here yet
    assert window.replay("other", 12, "u1", (), 100, now=NOW) is None


def test_a_transition_without_rows_or_out_of_line_empties_the_tenant() -> None:
    window = ReplayWindow(100, 10**6)
    window.advance("s", 0, [row(1), row(2)], 2)
    window.advance("s", 2, None, 5)  # a range announcement nobody here fetched
    assert window.covered("s") == (5, 5) and window.replay("s", 2, "u1", (), 10, now=NOW) is None
    window.advance("s", 7, [row(8)], 8)  # does not continue what the window holds
    assert window.covered("s") == (7, 8)
    window.advance("s", 8, [row(9, expires_at=None)], 9)  # type: ignore[arg-type]  # an older publisher
    assert window.covered("s") == (9, 9)


def test_expired_rows_are_skipped() -> None:
    window = ReplayWindow(100, 10**6)
    rows = [row(1, expires_at=NOW - 1), row(2, expires_at=NOW - 1), row(3), row(4)]
    window.advance("s", 0, rows, 4)
    for last in range(5):
        assert window_answer(window, last, "u1", (), 10) == database_replay(rows, last, "u1", (), 10)


def test_too_far_behind_as_the_database_decides() -> None:
    window = ReplayWindow(100, 10**6)
    rows = [row(i) for i in range(1, 21)]
    window.advance("s", 0, rows, 20)
    assert (
        window_answer(window, 5, "u1", (), 10) == "too_far_behind" == database_replay(rows, 5, "u1", (), 10)
    )
    assert window_answer(window, 10, "u1", (), 10) == database_replay(rows, 10, "u1", (), 10)


def test_memory_bound_holds_and_the_range_moves_up_with_evictions() -> None:
    budget = 50 * (len(frame_for(row(1, data='"' + "x" * 500 + '"'))) + ROW_OVERHEAD)
    window = ReplayWindow(1_000_000, budget)
    high = 0
    for start in range(0, 5000, 100):
        batch = [row(i, data='"' + "x" * 500 + '"') for i in range(start + 1, start + 101)]
        window.advance("s", high, batch, start + 100)
        high = start + 100
        assert window.bytes <= budget
    low, top = window.covered("s") or (0, 0)
    assert top == 5000 and 0 < len(window) <= 50 and low == 5000 - len(window)
    assert window.replay("s", low - 1, "u1", (), 1000, now=NOW) is None
    # Per tenant count bound, and tenants fed least recently give way first when the worker is over bytes.
    small = ReplayWindow(10, 10**9)
    small.advance("s", 0, [row(i) for i in range(1, 101)], 100)
    assert len(small) == 10 and small.covered("s") == (90, 100)
    shared = ReplayWindow(1000, 40 * (len(frame_for(row(1))) + ROW_OVERHEAD))
    shared.advance("a", 0, [row(i) for i in range(1, 31)], 30)
    shared.advance("b", 0, [row(i) for i in range(1, 31)], 30)
    assert shared.bytes <= shared.max_bytes and len(shared) <= 40
    assert (shared.covered("b") or (0, 0))[0] == 0  # b, fed last, kept whole


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3),  # ids skipped (rolled back) before this transaction
            st.lists(
                st.tuples(
                    st.sampled_from(["u1", "u2", None]),
                    st.sampled_from([None, "news", "x"]),
                    st.booleans(),
                    st.booleans(),
                ),
                min_size=0,
                max_size=4,
            ),
        ),
        max_size=30,
    ),
    max_events=st.integers(min_value=1, max_value=40),
    last_id=st.integers(min_value=0, max_value=150),
    limit=st.integers(min_value=1, max_value=20),
)
def test_any_answer_from_the_window_is_the_databases(
    steps: Any, max_events: int, last_id: int, limit: int
) -> None:
    window = ReplayWindow(max_events, 10**9)
    committed: list[Row] = []
    newest = 0
    window.advance("s", None, None, 0)
    for skipped, specs in steps:
        next_id = newest + skipped
        rows = []
        for recipient, topic, broadcast, expired in specs:
            next_id += 1
            target = None if broadcast or topic else (recipient or "u1")
            rows.append(
                row(
                    next_id, target, None if broadcast else topic, broadcast, NOW - 1 if expired else NOW + 60
                )
            )
        committed.extend(rows)
        window.advance("s", newest, rows, next_id)
        newest = next_id
    answer = window_answer(window, last_id, "u1", ("news",), limit)
    if answer is not None:
        assert answer == database_replay(committed, last_id, "u1", ("news",), limit)
    low, high = window.covered("s") or (0, 0)
    assert (answer is not None) == (low <= last_id <= high)  # inside the range: never a query


def test_rows_from_publishers_without_expires_at_still_decode() -> None:
    from service.broker.payload import decode

    old = '{"s":"acme","t":1.5,"n":[[7,"u1",null,0,null,"2026-11-30T12:00:00.000000Z","{}"]]}'
    (decoded,) = decode(old).rows
    assert decoded.id == 7 and decoded.expires_at is None
    window = ReplayWindow(10, 10**6)
    window.advance("acme", 6, [decoded], 7)  # the window cannot tell when it expires: it holds nothing
    assert window.covered("acme") == (7, 7)
