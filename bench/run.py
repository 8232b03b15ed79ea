"""``python -m bench [--quick] [--scenarios ...] [--peers ...]``: the whole benchmark, one JSON line per result.

Order: PostgreSQL (embedded unless DATABASE_URL is set) -> a fresh database, migrated, with the bench
tenant and an API key -> Beacon under gunicorn (deploy/gunicorn.conf.py, 2 uvicorn workers) -> idle streams
at each N, broadcast to the largest N, latency, reconnect storm, ingestion with NOTIFY on, then restarted with
PUBLISH_ANNOUNCE=0 for ingestion with NOTIFY off -> each peer under the same gunicorn settings -> tables.
Progress goes to stderr; results (JSON lines, then markdown tables) to stdout; everything to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import infra, plot, report, scenarios
from bench.client import ClientPool
from bench.scenarios import Config

ALL_SCENARIOS = ["idle", "broadcast", "latency", "storm", "ingest", "listeners"]  # ingest: paced run too
ALL_PEERS = ["tutorial", "starlette", "django"]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N (500), short windows: about 2 minutes")
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)}",
    )
    parser.add_argument(
        "--peers",
        default=",".join(ALL_PEERS),
        help=f"comma-separated subset of {','.join(ALL_PEERS)} ('' for none)",
    )
    parser.add_argument("--levels", help="idle stream counts, e.g. 1000,5000,10000")
    parser.add_argument("--latency-streams", type=int)
    parser.add_argument("--storm-streams", help="storm sizes, e.g. 5000,10000")
    parser.add_argument("--latency-runs", help="streams:rate pairs, e.g. 1000:200,10000:1000")
    parser.add_argument("--tutorial-cap", type=int, help="streams attempted against the tutorial peer")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument(
        "--out",
        default=str(infra.ROOT / ".data" / "bench" / "latest.json"),
        help="where to write all results as JSON (default .data/bench/latest.json)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    parser.add_argument(
        "--beacon-config",
        help="gunicorn config for Beacon instead of deploy/gunicorn.conf.py "
        "(experiments, e.g. bench/experiments/gc_tuned.conf.py)",
    )
    args = parser.parse_args(argv)
    cfg = Config.make(args.quick)
    cfg.scenarios = [s for s in args.scenarios.split(",") if s]
    cfg.peers = [p for p in args.peers.split(",") if p]
    for name in cfg.scenarios:
        if name not in ALL_SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    for name in cfg.peers:
        if name not in ALL_PEERS:
            parser.error(f"unknown peer {name!r}")
    if args.levels:
        cfg.idle_levels = sorted(int(x) for x in args.levels.split(","))
    if args.latency_streams:
        cfg.latency_streams = args.latency_streams
        cfg.latency_runs = [(args.latency_streams, cfg.latency_rate)]
    if args.latency_runs:
        cfg.latency_runs = [
            (int(a), float(b)) for a, b in (x.split(":") for x in args.latency_runs.split(","))
        ]
    if args.storm_streams:
        cfg.storm_levels = [int(x) for x in args.storm_streams.split(",")]
    if args.tutorial_cap:
        cfg.tutorial_cap = args.tutorial_cap
    cfg.client_procs = max(1, args.client_procs)
    cfg.beacon_config = args.beacon_config
    return cfg, args


def relative(path: Path) -> str:
    return os.path.relpath(path, infra.ROOT)


def beacon_server(name: str, workdir: Path, env: dict[str, str], config: str | None) -> infra.Gunicorn:
    server = infra.Gunicorn(name, workdir, env, ready_path="/readyz")
    if config:
        server.config = Path(config).resolve()
    return server


def beacon_env(tenant: infra.BeaconTenant, announce: bool = True, broker_url: str = "") -> dict[str, str]:
    return {
        "BROKER_URL": broker_url,
        "DATABASE_URL": tenant.url,
        "WORKER_MAX_CONNECTIONS": "100000",
        "PUBLISH_ANNOUNCE": "1" if announce else "0",
        "DRAIN_SECONDS": "1",  # restarts between runs; no streams are open when the bench stops it
        "DEMO": "0",
        "DEBUG": "0",
    }


async def run_beacon(
    cfg: Config, pg: infra.Postgres, pool: ClientPool, workdir: Path, emit: Any, servers: list[infra.Gunicorn]
) -> None:
    log("creating the Beacon database (migrate_schemas --shared, create_tenant, create_api_key)")
    tenant = infra.setup_beacon(pg)
    server = beacon_server("beacon", workdir, beacon_env(tenant), cfg.beacon_config)
    servers.append(server)
    log(f"starting Beacon (gunicorn -c {relative(server.config)}, 2 uvicorn workers)")
    server.start()
    target = scenarios.BeaconTarget(server, tenant)
    try:
        if "idle" in cfg.scenarios or "broadcast" in cfg.scenarios:
            levels = cfg.idle_levels if "idle" in cfg.scenarios else cfg.idle_levels[-1:]
            log(
                f"beacon: idle streams {levels}"
                + (", then broadcast" if "broadcast" in cfg.scenarios else "")
            )
            await scenarios.idle_and_broadcast(
                cfg, pg, pool, target, levels, emit, "broadcast" in cfg.scenarios
            )
        if "latency" in cfg.scenarios:
            for streams, rate in cfg.latency_runs:
                log(f"beacon: latency over {streams} streams at {rate}/s")
                await scenarios.latency(cfg, pg, pool, target, streams, emit, rate)
        if "storm" in cfg.scenarios:
            cap = infra.somaxconn()
            for size in cfg.storm_levels:
                log(f"beacon: reconnect storm of {size}")
                if cap is not None and size > cap:
                    log(
                        f"  note: net.core.somaxconn is {cap}: handshakes past the listen queue wait on TCP "
                        "retransmits (docs/deploy.md, Sizing: raise it as the chart's sysctls would)"
                    )
                await scenarios.storm(cfg, pg, pool, target, emit, size)
        if "ingest" in cfg.scenarios:
            log(f"beacon: single publishes offered at {cfg.paced_ingest_rate}/s (request latency)")
            await scenarios.paced_ingest(cfg, pg, target, emit)
        if "listeners" in cfg.scenarios:
            log("beacon: NOTIFY cost as listening processes grow (2 to 64)")
            await scenarios.notify_listeners(cfg, pg, pool, target, emit)
        if "ingest" in cfg.scenarios:
            # NOTIFY, none, Redis, NOTIFY, ...: alternating rounds so that other work on the machine biases
            # no side; the report averages each side over its rounds.
            redis_server = infra.RedisServer(workdir).start()
            try:
                for round_ in range(cfg.ingest_rounds):
                    for broker in ("notify", "none", "redis"):
                        if round_ or broker != "notify":
                            await target.close()
                            server.stop()
                            env = beacon_env(
                                tenant, broker != "none", redis_server.url if broker == "redis" else ""
                            )
                            server = beacon_server(f"beacon-{broker}", workdir, env, cfg.beacon_config)
                            servers.append(server)
                            server.start()
                            target = scenarios.BeaconTarget(server, tenant)
                        log(f"beacon: ingestion round {round_ + 1}/{cfg.ingest_rounds}, broker {broker}")
                        await scenarios.ingest(cfg, pg, pool, target, broker != "none", emit, round_, broker)
            finally:
                redis_server.stop()
    finally:
        await target.close()
        server.stop()


async def run_peer(
    name: str,
    cfg: Config,
    pg: infra.Postgres,
    pool: ClientPool,
    workdir: Path,
    emit: Any,
    servers: list[infra.Gunicorn],
) -> None:
    if name == "tutorial":
        if not {"idle", "latency"} & set(cfg.scenarios):
            return
        database, url = pg.create_database("tutorial_bench")
        count = max(cfg.tutorial_cap, 1)
        log(f"tutorial: migrating and creating {count} users with sessions")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.peers.tutorial.settings",
            "TUTORIAL_DATABASE_URL": url,
        }
        out = await asyncio.to_thread(
            __import__("subprocess").run,
            [sys.executable, "-m", "bench.peers.tutorial.setup", str(count)],
            cwd=infra.ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"tutorial setup failed:\n{out.stderr[-3000:]}")
        users = [(int(u), s) for u, s in json.loads(out.stdout.strip().splitlines()[-1])["users"]]
        server = infra.Gunicorn(
            "tutorial",
            workdir,
            {"DJANGO_SETTINGS_MODULE": "bench.peers.tutorial.settings", "TUTORIAL_DATABASE_URL": url},
            app="bench.peers.tutorial.asgi:application",
        )
        servers.append(server)
        server.start()
        target: scenarios.Target = scenarios.TutorialPeer(server, database, url, users)
        await target.connect()  # type: ignore[attr-defined]
        try:
            if "idle" in cfg.scenarios:
                levels = [min(cfg.tutorial_cap, cfg.idle_levels[0])]
                log(f"tutorial: idle streams {levels} (expected to run out of database connections)")
                await scenarios.idle_and_broadcast(cfg, pg, pool, target, levels, emit, broadcast=False)
                await wait_db_released(pg, database)
            if "latency" in cfg.scenarios:
                streams = min(cfg.tutorial_cap, cfg.latency_streams)
                log(f"tutorial: latency over {streams} attempted streams at {cfg.latency_rate}/s")
                await scenarios.latency(cfg, pg, pool, target, streams, emit)
        finally:
            await target.close()
            server.stop()
        return
    if not {"idle", "broadcast"} & set(cfg.scenarios):
        return
    control = workdir / f"control-{name}"
    control.mkdir(parents=True, exist_ok=True)
    if name == "starlette":
        server = infra.Gunicorn(
            "starlette",
            workdir,
            # deploy/gunicorn.conf.py insists on DATABASE_URL (for Beacon); the peer never uses it
            {"PEER_CONTROL_DIR": str(control), "DATABASE_URL": "postgresql://unused@127.0.0.1:9/unused"},
            app="bench.peers.starlette_app:app",
        )
    else:
        server = infra.Gunicorn(
            "django-minimal",
            workdir,
            {
                "PEER_CONTROL_DIR": str(control),
                "DATABASE_URL": "postgresql://unused@127.0.0.1:9/unused",  # required by the config, unused
                "DJANGO_SETTINGS_MODULE": "bench.peers.django_minimal.settings",
            },
            app="bench.peers.django_minimal.asgi:application",
        )
    servers.append(server)
    server.start()
    target = scenarios.InProcessPeer(name, server, control)
    try:
        levels = cfg.idle_levels if "idle" in cfg.scenarios else cfg.idle_levels[-1:]
        log(f"{name}: idle streams {levels}" + (", then broadcast" if "broadcast" in cfg.scenarios else ""))
        await scenarios.idle_and_broadcast(cfg, pg, pool, target, levels, emit, "broadcast" in cfg.scenarios)
    finally:
        await target.close()
        server.stop()


async def wait_db_released(pg: infra.Postgres, database: str, wait_s: float = 20.0) -> None:
    deadline = time.monotonic() + wait_s
    while pg.connections(database) > 1 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))


async def amain(cfg: Config, args: argparse.Namespace) -> int:
    fd_limit = infra.raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    results: list[dict[str, Any]] = []

    def emit(result: dict[str, Any]) -> None:
        results.append(result)
        print(json.dumps(result), flush=True)

    started = time.monotonic()
    meta: dict[str, Any] = {
        "machine": infra.machine(),
        "fd_limit": fd_limit,
        "loadavg_at_start": os.getloadavg(),
        "quick": cfg.quick,
        "config": {k: v for k, v in vars(cfg).items()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    log(f"machine: {meta['machine']}; fd limit {fd_limit}; work dir {workdir}")
    pg = infra.Postgres(workdir)
    meta["postgres"] = {
        "version": pg.version,
        "max_connections": pg.setting("max_connections"),
        "embedded": pg.server is not None,
    }
    log(f"PostgreSQL {meta['postgres']['version']} (max_connections {meta['postgres']['max_connections']})")
    pool = ClientPool(cfg.client_procs)
    servers: list[infra.Gunicorn] = []
    failed = False
    try:
        if set(cfg.scenarios):
            await run_beacon(cfg, pg, pool, workdir, emit, servers)
        for peer in cfg.peers:
            try:
                await run_peer(peer, cfg, pg, pool, workdir, emit, servers)
            except Exception as exc:  # a peer's failure is data; go on with the others
                log(f"{peer}: failed: {exc}")
                emit({"scenario": "error", "target": peer, "error": str(exc)[:2000]})
                await pool.close()
    except Exception as exc:
        failed = True
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
        for server in servers:
            tail = server.log_tail(15)
            if tail:
                log(f"--- {server.name} log tail ---\n{tail}")
        raise
    finally:
        for server in servers:
            server.stop()
        pool.shutdown()
        pg.close()
        meta["seconds"] = round(time.monotonic() - started, 1)
        if args.keep or failed:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        write_json(Path(args.out), {"meta": meta, "results": results})
    png = Path(args.out).with_suffix(".png")
    try:
        plot.plot(results, png)
        log(f"plot written to {png}")
    except Exception as exc:  # the tables matter more than the picture
        log(f"no plot: {type(exc).__name__}: {exc}")
    text = report.tables(results)
    m = meta["machine"]
    print(
        f"\n## Beacon benchmark{' (--quick)' if cfg.quick else ''}: {m['nproc']} x {m['cpu_model']}, "
        f"{m['mem_gib']} GiB, PostgreSQL {meta['postgres']['version']}, {cfg.client_procs} client processes, "
        f"{meta['seconds']} s, net.core.somaxconn {m['somaxconn']}\n"
    )
    print(text, flush=True)
    log(f"results written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse(argv)
    # A plain SIGTERM must still run the cleanup (servers, client processes, the embedded PostgreSQL).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(amain(cfg, args))
