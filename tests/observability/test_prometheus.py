"""A real Prometheus scrapes Beacon's metrics port and loads Beacon's alert rules."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.observability.helpers import RawStream, open_stream, run_prometheus, wait_for
from tests.support import ROOT, Api, Server, unique

STREAMS = 3


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        pytest.skip(
            "/usr/bin/prometheus is missing (Debian package prometheus): no real Prometheus to scrape with"
        )
    return found


def test_prometheus_scrapes_the_aggregated_connection_gauge(
    prometheus_binary: str, server: Server, make_tenant: Callable[..., tuple[Any, str]], tmp_path: Path
) -> None:
    tenant, key = make_tenant()
    api = Api(server.url, key)
    rules = ROOT / "deploy" / "prometheus" / "alerts.yml"
    streams: list[RawStream] = []
    with run_prometheus(tmp_path, [f"127.0.0.1:{server.metrics_port}"], (rules,)) as prometheus:
        try:
            streams = [open_stream(server.url, api.token(unique())) for _ in range(STREAMS)]
            selector = f'sum(beacon_connections{{tenant="{tenant.slug}"}})'

            def value(expected: int) -> bool:
                result = prometheus.query(selector)
                return bool(result) and float(result[0]["value"][1]) == expected

            wait_for(lambda: value(STREAMS), timeout=30, message=f"{selector} == {STREAMS} in Prometheus")
            up = prometheus.query('up{job="beacon"}')
            assert [float(series["value"][1]) for series in up] == [1.0]
        finally:
            for stream in streams:
                stream.close()
        wait_for(
            lambda: value(0), timeout=30, message=f"{selector} == 0 in Prometheus after the streams closed"
        )

        def rules_loaded() -> list[dict[str, Any]] | None:
            groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
            loaded = [rule for group in groups for rule in group["rules"]]
            evaluated = loaded and all(rule.get("lastEvaluation", "").startswith("2") for rule in loaded)
            return loaded if evaluated and all(rule["health"] == "ok" for rule in loaded) else None

        loaded = wait_for(rules_loaded, timeout=30, message="Prometheus to evaluate Beacon's rules")
        assert {rule["name"] for rule in loaded} >= {"BeaconListenerDown", "BeaconReconnectStorm"}
        # Everything is healthy: the listener alert is inactive.
        (listener,) = [rule for rule in loaded if rule["name"] == "BeaconListenerDown"]
        assert listener["state"] == "inactive"
