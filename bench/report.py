"""Tables, ratios and the target verdicts, built from the scenario results (markdown, readable as text)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

Result = dict[str, Any]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pick(results: list[Result], scenario: str, **match: Any) -> list[Result]:
    return [
        r for r in results if r.get("scenario") == scenario and all(r.get(k) == v for k, v in match.items())
    ]


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def tables(results: list[Result]) -> str:
    out: list[str] = []
    idle = _pick(results, "idle")
    if idle:
        out.append("### 1. Idle streams\n")
        out.append(
            table(
                [
                    "target",
                    "streams",
                    "accepted",
                    "connect s",
                    "new streams/s",
                    "KB/stream",
                    "server RSS MB",
                    "server CPU % idle",
                    "PG CPU % idle",
                    "DB statements/s idle",
                    "DB conns",
                    "client CPU % connect",
                    "other CPU % idle",
                    "refusals",
                ],
                [
                    [
                        r["target"],
                        r["streams"],
                        r["accepted"],
                        r["connect_s"],
                        r["connect_per_s"],
                        r["rss_per_stream_kb"],
                        r["server_rss_mb"],
                        r["server_cpu_idle_pct"],
                        r["pg_cpu_idle_pct"],
                        r.get("db_statements_per_s_idle"),
                        r.get("db_connections"),
                        r["connect_cpu"]["client_cpu_pct"],
                        r.get("other_cpu_idle_pct"),
                        ", ".join(f"{k}x{v}" for k, v in r["refusals"].items()) or "-",
                    ]
                    for r in idle
                ],
            )
        )
    lat = _pick(results, "latency")
    if lat:
        out.append("\n### 2. Publish-to-receive latency\n")
        out.append(
            table(
                [
                    "target",
                    "streams",
                    "accepted",
                    "rate/s",
                    "published",
                    "received",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "max ms",
                    "server CPU %",
                    "PG CPU %",
                    "client CPU %",
                    "other CPU %",
                ],
                [
                    [
                        r["target"],
                        r["streams"],
                        r["accepted"],
                        r.get("achieved_rate"),
                        r.get("published"),
                        r.get("received"),
                        r.get("p50_ms"),
                        r.get("p90_ms"),
                        r.get("p99_ms"),
                        r.get("max_ms"),
                        r.get("server_cpu_pct"),
                        r.get("pg_cpu_pct"),
                        r.get("client_cpu_pct"),
                        r.get("other_cpu_pct"),
                    ]
                    for r in lat
                ],
            )
        )
    bc = _pick(results, "broadcast")
    if bc:
        out.append("\n### 3. Broadcast fan-out (one event to every open stream)\n")
        out.append(
            table(
                [
                    "target",
                    "subscribers",
                    "last received ms (median of reps)",
                    "worst rep ms",
                    "p50 ms",
                    "all received",
                    "reps",
                ],
                [
                    [
                        r["target"],
                        r["subscribers"],
                        r["last_ms_median"],
                        r["last_ms_max"],
                        r["p50_ms_median"],
                        r["all_received"],
                        len(r["reps"]),
                    ]
                    for r in bc
                ],
            )
        )
    ing = _pick(results, "ingest")
    if ing:
        out.append("\n### 4. Ingestion (mean over the alternating NOTIFY on / off rounds)\n")
        rows = []
        for mode in ("single", "batch"):
            on, off = ingest_side(ing, mode, True), ingest_side(ing, mode, False)
            base = on or off
            if base is None:
                continue
            rows.append(
                [
                    mode,
                    base["concurrency"],
                    base["batch_size"],
                    on and on["notifications_per_s"],
                    off and off["notifications_per_s"],
                    _ratio(on and on["notifications_per_s"], off and off["notifications_per_s"]),
                    on and on["rounds_text"],
                    off and off["rounds_text"],
                    on and on["request_p50_ms"],
                    on and on["request_p99_ms"],
                    on and on["server_cpu_pct"],
                    on and on["pg_cpu_pct"],
                    on and on["other_cpu_pct"],
                    off and off["other_cpu_pct"],
                ]
            )
        out.append(
            table(
                [
                    "mode",
                    "in flight",
                    "batch",
                    "notif/s NOTIFY on",
                    "notif/s NOTIFY off",
                    "on/off",
                    "rounds on",
                    "rounds off",
                    "request p50 ms (on)",
                    "request p99 ms (on)",
                    "server CPU % (on)",
                    "PG CPU % (on)",
                    "other CPU % (on)",
                    "other CPU % (off)",
                ],
                rows,
            )
        )
    st = _pick(results, "storm")
    if st:
        out.append(
            "\n### 5. Reconnect storm (all drop at once, resume with Last-Event-ID, publishing throughout)\n"
        )
        out.append(
            table(
                [
                    "streams",
                    "resumed",
                    "all live s",
                    "accepted/s",
                    "resume p50 ms",
                    "resume p99 ms",
                    "events checked",
                    "lost",
                    "duplicates",
                    "out of order",
                    "server CPU %",
                    "PG CPU %",
                    "other CPU %",
                    "first-connect events lost",
                    "failures",
                ],
                [
                    [
                        r["streams"],
                        r["resumed"],
                        r["all_live_s"],
                        r["accept_per_s"],
                        r["resume_p50_ms"],
                        r["resume_p99_ms"],
                        r["expected_events"],
                        r["lost"],
                        r["duplicates"],
                        r["out_of_order"],
                        r["server_cpu_pct"],
                        r["pg_cpu_pct"],
                        r.get("other_cpu_pct"),
                        r.get("first_connect_lost"),
                        ", ".join(f"{k}x{v}" for k, v in r["resume_failures"].items()) or "-",
                    ]
                    for r in st
                ],
            )
        )
    ratios = ratio_rows(results)
    if ratios:
        out.append("\n### Beacon against the peers (ratio = Beacon / peer)\n")
        out.append(table(["comparison", "Beacon", "peer", "ratio"], ratios))
    brokers = broker_rows(results)
    if brokers:
        out.append("\n### Brokers: ingestion with NOTIFY, Redis and none; NOTIFY as listeners grow\n")
        out.append(table(["run", "broker", "notifications/s", "request p99 ms"], brokers))
    verdicts = target_rows(results)
    if verdicts:
        out.append("\n### Targets\n")
        out.append(table(["target", "goal", "measured", "verdict"], verdicts))
    return "\n".join(out)


def broker_rows(results: list[Result]) -> list[list[Any]]:
    """Ingestion by broker (NOTIFY, Redis, none) and NOTIFY's throughput as listeners grow."""
    rows: list[list[Any]] = []
    ing = [r for r in _pick(results, "ingest") if "listeners" not in r]
    for mode in ("single", "batch"):
        for broker in ("notify", "redis", "none"):
            runs = [
                r
                for r in ing
                if r["mode"] == mode and r.get("broker", "notify" if r["announce"] else "none") == broker
            ]
            if runs:
                mean = sum(r["notifications_per_s"] for r in runs) / len(runs)
                p99 = [r["request_p99_ms"] for r in runs if r.get("request_p99_ms") is not None]
                rows.append([f"ingest {mode}", broker, round(mean, 1), max(p99) if p99 else None])
    for r in sorted((r for r in _pick(results, "ingest") if "listeners" in r), key=lambda r: r["listeners"]):
        rows.append(
            [
                f"ingest single, {r['listeners']} extra listeners",
                "notify",
                r["notifications_per_s"],
                r.get("request_p99_ms"),
            ]
        )
    return rows


def ingest_side(ing: list[Result], mode: str, announce: bool) -> Result | None:
    """The mean of one side (NOTIFY on or off) of one mode over its rounds."""
    runs = [
        r
        for r in ing
        if r["mode"] == mode
        and r["announce"] == announce
        and r.get("broker", "notify") != "redis"
        and "listeners" not in r
    ]
    if not runs:
        return None

    def mean(key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return round(sum(values) / len(values), 1) if values else None

    return {
        **runs[0],
        **{
            k: mean(k)
            for k in (
                "notifications_per_s",
                "request_p50_ms",
                "request_p99_ms",
                "server_cpu_pct",
                "pg_cpu_pct",
                "other_cpu_pct",
            )
        },
        "rounds_text": " / ".join(f"{r['notifications_per_s']:,.0f}" for r in runs),
    }


def ratio_rows(results: list[Result]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    beacon_idle = {r["streams"]: r for r in _pick(results, "idle", target="beacon")}
    for peer in ("tutorial", "starlette", "django"):
        for r in _pick(results, "idle", target=peer):
            b = beacon_idle.get(r["streams"])
            if b is None:
                continue
            n = r["streams"]
            rows.append(
                [
                    f"idle {n}: streams accepted vs {peer}",
                    b["accepted"],
                    r["accepted"],
                    _ratio(b["accepted"], r["accepted"]),
                ]
            )
            rows.append(
                [
                    f"idle {n}: KB/stream vs {peer}",
                    b["rss_per_stream_kb"],
                    r["rss_per_stream_kb"],
                    _ratio(b["rss_per_stream_kb"], r["rss_per_stream_kb"]),
                ]
            )
            rows.append(
                [
                    f"idle {n}: new streams/s vs {peer}",
                    b["connect_per_s"],
                    r["connect_per_s"],
                    _ratio(b["connect_per_s"], r["connect_per_s"]),
                ]
            )
            rows.append(
                [
                    f"idle {n}: server CPU % vs {peer}",
                    b["server_cpu_idle_pct"],
                    r["server_cpu_idle_pct"],
                    _ratio(b["server_cpu_idle_pct"], r["server_cpu_idle_pct"]),
                ]
            )
            if peer == "tutorial":
                rows.append(
                    [
                        f"idle {n}: DB statements/s vs {peer}",
                        b.get("db_statements_per_s_idle"),
                        r.get("db_statements_per_s_idle"),
                        _ratio(b.get("db_statements_per_s_idle"), r.get("db_statements_per_s_idle")),
                    ]
                )
                rows.append(
                    [
                        f"idle {n}: DB connections held vs {peer}",
                        b.get("db_connections"),
                        r.get("db_connections"),
                        _ratio(b.get("db_connections"), r.get("db_connections")),
                    ]
                )
    b_lat = next(iter(_pick(results, "latency", target="beacon")), None)
    t_lat = next(iter(_pick(results, "latency", target="tutorial")), None)
    if b_lat and t_lat:
        for key in ("p50_ms", "p99_ms"):
            rows.append(
                [
                    f"latency {key.split('_')[0]} vs tutorial",
                    b_lat.get(key),
                    t_lat.get(key),
                    _ratio(b_lat.get(key), t_lat.get(key)),
                ]
            )
    b_bc = next(iter(_pick(results, "broadcast", target="beacon")), None)
    for peer in ("starlette", "django"):
        p_bc = next(iter(_pick(results, "broadcast", target=peer)), None)
        if b_bc and p_bc:
            rows.append(
                [
                    f"broadcast to {b_bc['subscribers']}: last ms vs {peer} (peer: no storage, no broker)",
                    b_bc["last_ms_median"],
                    p_bc["last_ms_median"],
                    _ratio(b_bc["last_ms_median"], p_bc["last_ms_median"]),
                ]
            )
    return rows


def _verdict(ok: bool | None, measured: Any, goal: Any, better: str) -> str:
    if ok is None or measured is None:
        return "not measured"
    if ok:
        return "met"
    if isinstance(measured, (int, float)) and isinstance(goal, (int, float)) and goal:
        factor = measured / goal if better == "lower" else goal / measured if measured else float("inf")
        return f"MISSED ({factor:.1f}x {'over' if better == 'lower' else 'short'})"
    return "MISSED"


def target_rows(results: list[Result]) -> list[list[Any]]:
    rows: list[list[Any]] = []

    def add(
        name: str,
        goal_text: str,
        measured: Any,
        goal: Any,
        better: str,
        check: Callable[[Any], bool] | None = None,
    ) -> None:
        if measured is None:
            rows.append([name, goal_text, "-", "not measured"])
            return
        ok = check(measured) if check else (measured <= goal if better == "lower" else measured >= goal)
        rows.append([name, goal_text, _fmt(measured), _verdict(ok, measured, goal, better)])

    idle = _pick(results, "idle", target="beacon")
    top = max(idle, key=lambda r: r["streams"]) if idle else None
    if top:
        n = top["streams"]
        add(f"{n:,} idle streams accepted (2 workers)", f"{n:,}", top["accepted"], n, "higher")
        add(f"memory per idle stream at {n:,}", "≤ 25 KB", top["rss_per_stream_kb"], 25, "lower")
        add(
            f"idle server CPU at {n:,}",
            "< 5 % of a core",
            top["server_cpu_idle_pct"],
            5,
            "lower",
            lambda m: m < 5,
        )
        add(
            f"DB statements while {n:,} streams idle",
            "0",
            top.get("db_statements_idle"),
            0,
            "lower",
            lambda m: m == 0,
        )
    lat = next(iter(_pick(results, "latency", target="beacon")), None)
    if lat:
        add(
            f"latency p50 ({lat.get('achieved_rate')}/s over {lat['streams']:,} streams)",
            "≤ 5 ms",
            lat.get("p50_ms"),
            5,
            "lower",
        )
        add("latency p99", "≤ 50 ms", lat.get("p99_ms"), 50, "lower")
    bc = next(iter(_pick(results, "broadcast", target="beacon")), None)
    if bc:
        add(
            f"broadcast to {bc['subscribers']:,}: last one has it",
            "≤ 500 ms",
            bc["last_ms_median"],
            500,
            "lower",
        )
    st = next(iter(_pick(results, "storm")), None)
    if st:
        add("new streams accepted during the storm", "≥ 1,000/s", st["accept_per_s"], 1000, "higher")
        add(
            f"storm: {st['streams']:,} resumed",
            "≤ 15 s",
            st["all_live_s"],
            15,
            "lower",
            lambda m: m <= 15 and st["resumed"] == st["streams"],
        )
        add(
            "storm: events lost / duplicated / out of order",
            "0",
            st["lost"] + st["duplicates"] + st["out_of_order"],
            0,
            "lower",
            lambda m: m == 0,
        )
    ing = _pick(results, "ingest")
    single_on, single_off = ingest_side(ing, "single", True), ingest_side(ing, "single", False)
    batch_on, batch_off = ingest_side(ing, "batch", True), ingest_side(ing, "batch", False)
    if single_on:
        add("ingestion, single publishes", "≥ 1,000/s", single_on["notifications_per_s"], 1000, "higher")
    if batch_on:
        add(
            f"ingestion, batches of {batch_on['batch_size']}",
            "≥ 10,000/s",
            batch_on["notifications_per_s"],
            10000,
            "higher",
        )
    for name, on, off in (("single", single_on, single_off), ("batch", batch_on, batch_off)):
        if on and off:
            add(
                f"announcing on / off ({name})",
                "≥ 0.9x",
                _ratio(on["notifications_per_s"], off["notifications_per_s"]),
                0.9,
                "higher",
            )
    return rows
