"""Alert rules pass ``promtool`` (syntax and unit tests); dashboard queries are valid PromQL on our metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.helpers import exported_metric_names, grafana_to_promql, promql_metric_names
from tests.support import ROOT

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "beacon-dashboard.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return found


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    _run(promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))


def test_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    _run(promtool, "test", "rules", str(PROMETHEUS_DIR / "alerts.test.yml"))


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alerts_cover_the_required_conditions_and_name_only_beacon_metrics() -> None:
    rules = _alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {
        "BeaconReconnectStorm", "BeaconDeliveryLatencyHigh", "BeaconStreamRejectionsHigh", "BeaconListenerDown",
        "BeaconTenantIngestionStopped", "BeaconHigh5xx",
    } <= names  # fmt: skip
    tested = (PROMETHEUS_DIR / "alerts.test.yml").read_text()
    assert "alertname: BeaconReconnectStorm" in tested and "alertname: BeaconDeliveryLatencyHigh" in tested
    exported = exported_metric_names()
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert promql_metric_names(rule["expr"]) <= exported, rule["alert"]
    documented = (ROOT / "docs" / "operations.md").read_text()
    assert all(name in documented for name in names)


def _dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            found.extend((panel["title"], target["expr"]) for target in panel.get("targets", []))

    walk(dashboard["panels"])
    return found


def test_dashboard_covers_the_required_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"]
    text = " ".join(expr for _, expr in _dashboard_targets())
    for needle in (
        "sum by (tenant) (beacon_connections",
        "beacon_connections_opened_total",
        "sum by (reason) (rate(beacon_connections_rejected_total",
        "beacon_notifications_ingested_total",
        "beacon_events_delivered_total",
        "histogram_quantile(0.99, sum by (le) (rate(beacon_delivery_latency_seconds_bucket",
        "beacon_slow_consumer_disconnects_total",
        "beacon_listener_reconnects_total",
        "beacon_ready",
        'beacon_http_requests_total{status=~"5.."}',
    ):
        assert needle in text, needle
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_dashboard_query_is_valid_promql_naming_beacon_metrics(promtool: str, tmp_path: Path) -> None:
    targets = _dashboard_targets()
    assert len(targets) >= 15
    exported = exported_metric_names()
    rules = []
    for index, (title, expr) in enumerate(targets):
        promql = grafana_to_promql(expr)
        assert "$" not in promql, (title, promql)
        unknown = promql_metric_names(promql) - exported
        assert not unknown, f"panel {title!r} queries metrics Beacon does not export: {unknown}"
        rules.append({"record": f"dashboard:query_{index}", "expr": promql})
    # promtool parses every expression of a rule file: one recording rule per dashboard query.
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run(promtool, "check", "rules", str(rule_file))

    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    for variable in variables:
        if variable["type"] == "query":
            definition = variable["definition"]
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", definition)
            assert match and match.group(1) in exported, definition


def test_the_metric_name_extractor_is_not_fooled() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, tenant) (rate(beacon_a_bucket{tenant=~"x|y", route!="sum"}[5m])))'
        " / ignoring(reason) group_left sum without (pid) (beacon_b_total offset 1d) > bool 2 and on() vector(1)"
        ' or label_replace(beacon_c, "dst", "$1", "src", "(.*)")'
    )
    assert promql_metric_names(expr) == {"beacon_a_bucket", "beacon_b_total", "beacon_c"}
