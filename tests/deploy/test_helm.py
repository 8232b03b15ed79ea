"""Deployment artefacts, tested for real.

- helm/beacon: strict lint, offline render of the defaults and every helm/beacon/ci scenario, every manifest
  validated against the Kubernetes schemas (kubernetes-validate), the properties that matter asserted, and
  values that break values.schema.json refused.
- deploy/gunicorn.conf.py: loaded through gunicorn's own config machinery, its hooks exercised, and a real
  gunicorn master with uvicorn workers serving aggregated multiprocess metrics.
- deploy/nginx/beacon.conf: `nginx -t` inside a minimal nginx.conf, and a live nginx proxying an SSE
  upstream without buffering.

No Django and no database: nothing here requests the `db` fixture.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.deploy

helm_python = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed"
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "beacon"
CI_VALUES = sorted((CHART_DIR / "ci").glob("*.yaml"))
GUNICORN_CONF = REPO_ROOT / "deploy" / "gunicorn.conf.py"
NGINX_CONF = REPO_ROOT / "deploy" / "nginx" / "beacon.conf"
NGINX = Path("/usr/sbin/nginx")

RELEASE = "beacon-test"
NAMESPACE = "notify"
FULLNAME = "beacon-test"  # the release name contains the chart name, so it is used alone
# Kubernetes versions the manifests must validate against: the chart's floor and the newest known.
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
# libyaml's parser when PyYAML has it: the pure-Python one took half of this file's CPU parsing renders.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Recognisable secret values: none of them may appear anywhere but in the Secret.
SECRET_VALUES = {
    "databaseUrl": "postgres://beacon:SEKRIT-db-password-31337@db.internal:5432/beacon",
    "secretKey": "SEKRIT-django-secret-key-8f2e6a1c9b7d4e5f",
    "sentryDsn": "https://SEKRIT-sentry-key-5521@sentry.example.com/7",
}

# --------------------------------------------------------------------------------------------------------
# Helm helpers


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    loaded = helm_python.Chart.load(CHART_DIR)
    try:
        yield loaded
    finally:
        loaded.close()


def load_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text()) or {}
    assert isinstance(values, dict), f"{path} is not a mapping"
    return values


def render(chart: Any, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Render offline and parse every manifest; each document gets `__template__` (its source file)."""
    rendered: dict[str, str] = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    documents: list[dict[str, Any]] = []
    for template, text in sorted(rendered.items()):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for document in yaml.load_all(text, Loader=YAML_LOADER):
            if document:
                documents.append({**document, "__template__": template})
    return documents


def manifest(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "__template__"}


def kinds(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        by_kind.setdefault(document["kind"], []).append(document)
    return by_kind


def one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = kinds(documents).get(kind, [])
    assert len(found) == 1, f"expected exactly one {kind}, got {len(found)}"
    return found[0]


def server_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["beacon"]
    return dict(containers[0])


def scenario_id(path: Path | None) -> str:
    return "defaults" if path is None else path.stem


SCENARIOS: list[Path | None] = [None, *CI_VALUES]


def scenario_values(path: Path | None) -> dict[str, Any]:
    return {} if path is None else load_values(path)


# --------------------------------------------------------------------------------------------------------
# Chart: lint, render, Kubernetes schemas


def test_ci_scenarios_exist() -> None:
    names = {path.name for path in CI_VALUES}
    assert {"ingress-hpa-pdb-values.yaml", "monitoring-values.yaml", "existing-secret-values.yaml"} <= names


@pytest.mark.parametrize("values_file", SCENARIOS, ids=scenario_id)
def test_lint_strict_has_no_errors(values_file: Path | None) -> None:
    report = helm_python.lint(
        CHART_DIR, scenario_values(values_file) or None, strict=True, namespace=NAMESPACE
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings fail under --strict too
    assert report["errors"] == [], report
    assert problems == [], report


@pytest.mark.parametrize("values_file", SCENARIOS, ids=scenario_id)
def test_rendered_manifests_match_kubernetes_schemas(chart: Any, values_file: Path | None) -> None:
    documents = render(chart, scenario_values(values_file))
    assert documents
    for document in documents:
        body = manifest(document)
        name = f"{document['__template__']} ({body['kind']})"
        assert body["metadata"]["name"].startswith(FULLNAME), name
        if body["kind"] in CRD_KINDS:
            # kubernetes-validate carries no prometheus-operator CRD schemas; their structure is asserted
            # in test_monitoring_resources.
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(body, KUBE_VERSIONS[-1], strict=True)
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(body, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(part) for part in error.path)
                pytest.fail(f"{name} is invalid for Kubernetes {version}: {path}: {error.message}")


def test_default_render_resources(chart: Any) -> None:
    by_kind = kinds(render(chart))
    assert set(by_kind) == {
        "ConfigMap",
        "CronJob",
        "Deployment",
        "Job",
        "Pod",
        "Secret",
        "Service",
        "ServiceAccount",
    }
    # Off by default: exposure, autoscaling, budgets, monitoring CRDs, network policy.
    for kind in (
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "NetworkPolicy",
    ):
        assert kind not in by_kind


# --------------------------------------------------------------------------------------------------------
# Chart: the properties that matter


@pytest.mark.parametrize("values_file", SCENARIOS, ids=scenario_id)
def test_deployment_probes_ports_and_rollout(chart: Any, values_file: Path | None) -> None:
    deployment = one(render(chart, scenario_values(values_file)), "Deployment")
    container = server_container(deployment)

    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000, "metrics": 9464}
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert container["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("values_file", SCENARIOS, ids=scenario_id)
def test_pods_are_locked_down(chart: Any, values_file: Path | None) -> None:
    documents = render(chart, scenario_values(values_file))
    pod_specs = (
        [
            (doc["__template__"], doc["spec"]["template"]["spec"])
            for doc in documents
            if doc["kind"] in {"Deployment", "Job"}
        ]
        + [(doc["__template__"], doc["spec"]) for doc in documents if doc["kind"] == "Pod"]
        + [
            (doc["__template__"], doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
            for doc in documents
            if doc["kind"] == "CronJob"
        ]
    )
    assert len(pod_specs) == 4  # server, migrations, helm test, purge
    for template, spec in pod_specs:
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True, template
        assert pod_context["runAsUser"] == 10001, template
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, template
        assert spec["automountServiceAccountToken"] is False, template
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, template
            assert context["runAsUser"] == 10001, template
            assert context["readOnlyRootFilesystem"] is True, template
            assert context["allowPrivilegeEscalation"] is False, template
            assert context["capabilities"] == {"drop": ["ALL"]}, template
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, template


@pytest.mark.parametrize(
    "values_file", [None, CHART_DIR / "ci" / "existing-secret-values.yaml"], ids=scenario_id
)
def test_tmp_is_the_only_writable_path(chart: Any, values_file: Path | None) -> None:
    documents = render(chart, scenario_values(values_file))
    for doc in documents:
        if doc["kind"] not in {"Deployment", "Job", "CronJob"}:
            continue
        template = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        spec = template["template"]["spec"]
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert set(volumes) == {"tmp"}
        assert "emptyDir" in volumes["tmp"]
        mounts = spec["containers"][0]["volumeMounts"]
        assert mounts == [{"name": "tmp", "mountPath": "/tmp"}]


@pytest.mark.parametrize("values_file", SCENARIOS, ids=scenario_id)
def test_grace_period_covers_prestop_and_drain(chart: Any, values_file: Path | None) -> None:
    values = chart.merge_values(scenario_values(values_file))
    documents = render(chart, scenario_values(values_file))
    deployment = one(documents, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    container = server_container(deployment)
    config = one(documents, "ConfigMap")["data"]

    drain = int(config["DRAIN_SECONDS"])
    assert drain == values["drainSeconds"]
    prestop = values["preStopSleepSeconds"]
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", str(prestop)]}}
    grace = spec["terminationGracePeriodSeconds"]
    assert grace == drain + prestop + 15
    # gunicorn's graceful_timeout is DRAIN_SECONDS + 10 and starts after the preStop sleep.
    assert grace > prestop + drain + 10 > drain


def test_grace_period_override_must_exceed_the_drain(chart: Any) -> None:
    deployment = one(render(chart, {"terminationGracePeriodSeconds": 120}), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 120
    with pytest.raises(helm_python.HelmRenderError, match="must exceed"):
        render(chart, {"drainSeconds": 30, "terminationGracePeriodSeconds": 40})


def test_configmap_holds_every_setting(chart: Any) -> None:
    data = one(render(chart), "ConfigMap")["data"]
    assert data == {
        "HEARTBEAT_SECONDS": "15",
        "REPLAY_LIMIT": "1000",
        "DRAIN_SECONDS": "20",
        "WEB_CONCURRENCY": "2",
        "METRICS_PORT": "9464",
        "WORKER_MAX_CONNECTIONS": "10000",
        "REPLAY_WINDOW_EVENTS": "20000",
        "REPLAY_WINDOW_BYTES": "33554432",
        "STREAM_BATCH_SECONDS": "0.02",
        "STREAM_DB_POOL_SIZE": "4",
        "PUBLISH_DB_POOL_SIZE": "4",
        "DB_THREADS": "4",
        "DB_POOL_WAIT_SECONDS": "5",
        "LISTEN_BACKLOG": "16384",
        "LOG_LEVEL": "INFO",
        "ALLOWED_HOSTS": "*",
        "SENTRY_ENVIRONMENT": "production",
        "METRICS_TENANT_LABELS": "true",
        "REQUIRE_SECRET_KEY": "true",
        "REQUIRE_DATABASE_URL": "true",
        "FORWARDED_ALLOW_IPS": "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.1",
    }
    custom = one(
        render(
            chart,
            {
                "config": {
                    "allowedHosts": ["a.example.com", "b.example.com"],
                    "metricsTenantLabels": False,
                    "workerMaxConnections": 1000000,
                    "replayWindowBytes": 4294967296,
                    "streamBatchSeconds": 0.005,
                    "dbPoolWaitSeconds": 2.5,
                    "extra": {"MAX_CONNECTION_AGE_SECONDS": "300"},
                },
            },
        ),
        "ConfigMap",
    )["data"]
    assert custom["ALLOWED_HOSTS"] == "a.example.com,b.example.com"
    assert custom["METRICS_TENANT_LABELS"] == "false"
    assert custom["WORKER_MAX_CONNECTIONS"] == "1000000"  # not 1e+06
    assert custom["REPLAY_WINDOW_BYTES"] == "4294967296"  # not 4.294967296e+09
    assert custom["STREAM_BATCH_SECONDS"] == "0.005"
    assert custom["DB_POOL_WAIT_SECONDS"] == "2.5"
    assert custom["MAX_CONNECTION_AGE_SECONDS"] == "300"


def test_secret_values_stay_in_the_secret(chart: Any) -> None:
    documents = render(chart, {"secrets": SECRET_VALUES})
    secret = one(documents, "Secret")
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded == {
        "DATABASE_URL": SECRET_VALUES["databaseUrl"],
        "SECRET_KEY": SECRET_VALUES["secretKey"],
        "SENTRY_DSN": SECRET_VALUES["sentryDsn"],
    }
    for document in documents:
        if document["kind"] == "Secret":
            continue
        text = yaml.safe_dump(manifest(document))
        assert "SEKRIT" not in text, f"a secret value leaked into {document['__template__']}"
    notes = chart.render({"secrets": SECRET_VALUES}, name=RELEASE, namespace=NAMESPACE)
    assert all("SEKRIT" not in text for name, text in notes.items() if not name.endswith("secret.yaml"))

    config = one(documents, "ConfigMap")["data"]
    assert not {"DATABASE_URL", "SECRET_KEY", "SENTRY_DSN"} & set(config)


def _secret_refs(env: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item["valueFrom"]["secretKeyRef"] for item in env if "valueFrom" in item}


def test_chart_secret_is_a_hook_created_before_the_migration_job(chart: Any) -> None:
    documents = render(chart, {"secrets": SECRET_VALUES})
    secret = one(documents, "Secret")
    job = one(documents, "Job")
    annotations = secret["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert int(annotations["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"

    deployment = one(documents, "Deployment")
    refs = _secret_refs(server_container(deployment)["env"])
    assert {ref["name"] for ref in refs.values()} == {FULLNAME}
    assert refs["SENTRY_DSN"]["optional"] is True
    assert "checksum/secret" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_existing_secret_renders_no_secret(chart: Any) -> None:
    values = load_values(CHART_DIR / "ci" / "existing-secret-values.yaml")
    existing = values["existingSecret"]
    # Secret values given alongside existingSecret are ignored, never rendered.
    documents = render(chart, {**values, "secrets": SECRET_VALUES})
    assert "Secret" not in kinds(documents)
    assert all("SEKRIT" not in yaml.safe_dump(manifest(doc)) for doc in documents)

    deployment = one(documents, "Deployment")
    job = one(documents, "Job")
    for env in (server_container(deployment)["env"], job["spec"]["template"]["spec"]["containers"][0]["env"]):
        refs = _secret_refs(env)
        assert set(refs) == {"DATABASE_URL", "SECRET_KEY", "SENTRY_DSN"}
        assert {ref["name"] for ref in refs.values()} == {existing}
        assert {name: ref["key"] for name, ref in refs.items()} == {name: name for name in refs}
    assert "checksum/secret" not in deployment["spec"]["template"]["metadata"]["annotations"]
    # serviceAccount.create false: the pods and the Job use the named, pre-existing account.
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "beacon-runtime"
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "beacon-runtime"


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(chart: Any) -> None:
    documents = render(chart, {"secrets": SECRET_VALUES})
    job = one(documents, "Job")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert int(annotations["helm.sh/hook-weight"]) == 0
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {
        "before-hook-creation",
        "hook-succeeded",
    }

    pod = job["spec"]["template"]
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    container = spec["containers"][0]
    assert container["command"][:3] == ["python", "manage.py", "migrate_schemas"]
    assert container["image"] == server_container(one(documents, "Deployment"))["image"]
    # The Job runs before the ConfigMap exists: same settings, inline.
    inline = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    assert inline == one(documents, "ConfigMap")["data"]
    assert "envFrom" not in container
    # A chart-created ServiceAccount does not exist yet on the first install.
    assert "serviceAccountName" not in spec
    # Its pods must not be selected by the Service.
    selector = one(documents, "Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    assert "Job" not in kinds(render(chart, {"migrations": {"enabled": False}}))


def test_service_exposes_http_and_a_separate_metrics_port(chart: Any) -> None:
    documents = render(chart)
    service = one(documents, "Service")
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert ports["http"]["port"] == 80 and ports["http"]["targetPort"] == "http"
    assert ports["metrics"]["port"] == 9464 and ports["metrics"]["targetPort"] == "metrics"
    pod_labels = one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_ingress_hpa_pdb_scenario(chart: Any) -> None:
    documents = render(chart, load_values(CHART_DIR / "ci" / "ingress-hpa-pdb-values.yaml"))
    by_kind = kinds(documents)

    ingress = one(documents, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"  # user annotations kept
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "beacon-tls", "hosts": ["notify.example.com"]}]
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}  # never the metrics port

    hpa = one(documents, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert "replicas" not in one(documents, "Deployment")["spec"]  # the HPA owns the count

    pdb = one(documents, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    policy = one(documents, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert {rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]} == {"http", "metrics"}
    assert "ServiceMonitor" not in by_kind


def test_ingress_annotations_can_be_overridden(chart: Any) -> None:
    values = {
        "ingress": {
            "enabled": True,
            "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "7200"},
        }
    }
    annotations = one(render(chart, values), "Ingress")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "7200"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


def test_pdb_min_available(chart: Any) -> None:
    pdb = one(
        render(chart, {"podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}}),
        "PodDisruptionBudget",
    )
    assert pdb["spec"] == {**pdb["spec"], "minAvailable": "50%"}
    assert "maxUnavailable" not in pdb["spec"]


def test_monitoring_resources(chart: Any) -> None:
    documents = render(chart, load_values(CHART_DIR / "ci" / "monitoring-values.yaml"))
    service = one(documents, "Service")

    monitor = one(documents, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}

    rule = one(documents, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    chart_rules = yaml.safe_load((CHART_DIR / "files" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == chart_rules["groups"]
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r}
    assert "beacon_listener_connected == 0" in alerts["BeaconListenerDown"]["expr"]
    assert 'beacon_http_requests_total{status=~"5.."}' in alerts["BeaconHigh5xx"]["expr"]
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["name"] and group["rules"]
        for entry in group["rules"]:
            assert ("alert" in entry) != ("record" in entry)
            assert isinstance(entry["expr"], str) and entry["expr"].strip()
            if "alert" in entry:
                assert entry["labels"]["severity"] in {"critical", "warning", "info"}
                assert entry["annotations"]["summary"]

    config = one(documents, "ConfigMap")["data"]
    assert config["METRICS_TENANT_LABELS"] == "false"
    assert all("SEKRIT" not in yaml.safe_dump(manifest(doc)) for doc in documents if doc["kind"] != "Secret")


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    result = subprocess.run(
        [promtool, "check", "rules", str(CHART_DIR / "files" / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_alerts_match_deploy_prometheus_rules() -> None:
    source = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
    assert source.exists(), "deploy/prometheus/alerts.yml is missing: the chart's rules are a copy of it"
    chart_copy = yaml.safe_load((CHART_DIR / "files" / "alerts.yml").read_text())
    assert chart_copy["groups"] == yaml.safe_load(source.read_text())["groups"], (
        "helm/beacon/files/alerts.yml differs from deploy/prometheus/alerts.yml: copy the latter over"
    )


def test_helm_test_pod_fetches_readyz(chart: Any) -> None:
    pod = one(render(chart), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    assert container["command"][0] in {"wget", "curl"}
    assert container["command"][-1] == f"http://{FULLNAME}:80/readyz"


def test_notes_render(chart: Any) -> None:
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)["beacon/templates/NOTES.txt"]
    assert "WARNING" in notes  # no secrets given
    assert "terminationGracePeriodSeconds 40" in notes
    ok = chart.render(load_values(CHART_DIR / "ci" / "existing-secret-values.yaml"), name=RELEASE)
    assert "WARNING" not in ok["beacon/templates/NOTES.txt"]
    assert "beacon-credentials" in ok["beacon/templates/NOTES.txt"]


# --------------------------------------------------------------------------------------------------------
# Chart: values.schema.json refuses what it should


BAD_VALUES = {
    "replicaCount as a string": {"replicaCount": "three"},
    "unknown top-level key": {"replicaCont": 3},
    "unknown nested key": {"ingress": {"enabeld": True}},
    "unknown key in a list item": {
        "ingress": {"hosts": [{"host": "a.example.com", "paths": [], "tls": True}]}
    },
    "heartbeat as a string": {"config": {"heartbeatSeconds": "15"}},
    "boolean as a string": {"metrics": {"serviceMonitor": {"enabled": "yes"}}},
    "unknown log level": {"config": {"logLevel": "VERBOSE"}},
    "root user": {"securityContext": {"runAsUser": 0}},
    "allowedHosts as a string": {"config": {"allowedHosts": "a.example.com"}},
    "negative drain": {"drainSeconds": -1},
    "bad memory quantity": {"resources": {"limits": {"memory": "lots"}}},
    "unknown resource": {"resources": {"limits": {"gpu": 1}}},
    "non-string annotation": {"podAnnotations": {"a": 1}},
    "bad ServiceMonitor interval": {"metrics": {"serviceMonitor": {"enabled": True, "interval": "often"}}},
    "purge schedule not cron": {"purge": {"schedule": "hourly"}},
    "purge batch of zero": {"purge": {"batchSize": 0}},
    "forwardedAllowIps as a string": {"config": {"forwardedAllowIps": "10.0.0.0/8"}},
    "listen backlog of zero": {"config": {"listenBacklog": 0}},
    "sysctl value as a number": {
        "securityContext": {"sysctls": [{"name": "net.core.somaxconn", "value": 1}]}
    },
    "sysctl without a value": {"securityContext": {"sysctls": [{"name": "net.core.somaxconn"}]}},
}


def test_pod_sysctls_raise_the_accept_queue_only_when_asked(chart: Any) -> None:
    """``securityContext.sysctls`` reaches the server pod (net.core.somaxconn bounds LISTEN_BACKLOG)."""
    spec = one(render(chart), "Deployment")["spec"]["template"]["spec"]
    assert "sysctls" not in spec["securityContext"]
    raised = {"securityContext": {"sysctls": [{"name": "net.core.somaxconn", "value": "16384"}]}}
    spec = one(render(chart, raised), "Deployment")["spec"]["template"]["spec"]
    assert spec["securityContext"]["sysctls"] == [{"name": "net.core.somaxconn", "value": "16384"}]
    jobs = [doc for doc in render(chart, raised) if doc["kind"] in {"Job", "CronJob"}]
    assert jobs and all("sysctls" not in json.dumps(doc) for doc in jobs)  # they accept no connections
    assert one(render(chart, {"config": {"listenBacklog": 65536}}), "ConfigMap")["data"][
        "LISTEN_BACKLOG"
    ] == ("65536")


def test_purge_cronjob_runs_purge_expired_on_the_values_schedule(chart: Any) -> None:
    documents = render(chart)
    cronjob = one(documents, "CronJob")
    assert cronjob["spec"]["schedule"] == "17 * * * *"  # on by default, hourly
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "manage.py", "purge_expired", "--batch-size", "5000"]
    config_name = one(documents, "ConfigMap")["metadata"]["name"]
    assert container["envFrom"] == [{"configMapRef": {"name": config_name}}]
    assert set(_secret_refs(container["env"])) >= {"DATABASE_URL", "SECRET_KEY"}
    custom = one(
        render(
            chart,
            {"purge": {"schedule": "*/10 * * * *", "batchSize": 200, "pushgateway": "http://pgw:9091"}},
        ),
        "CronJob",
    )
    assert custom["spec"]["schedule"] == "*/10 * * * *"
    assert custom["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-4:] == [
        "--batch-size",
        "200",
        "--pushgateway",
        "http://pgw:9091",
    ]
    assert "CronJob" not in kinds(render(chart, {"purge": {"enabled": False}}))


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_schema_rejects_bad_values(chart: Any, values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    report = helm_python.lint(CHART_DIR, values, strict=True)
    assert report["errors"], f"lint accepted {values}"


def _object_nodes(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for key, child in node.items():
            yield from _object_nodes(child, f"{path}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _object_nodes(child, f"{path}/{index}")


def test_schema_closes_every_object() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    nodes = list(_object_nodes(schema))
    assert len(nodes) > 30
    for path, node in nodes:
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
        elif "validated by the API server" not in node.get("description", ""):
            # Free-form maps (labels, annotations, extra env) still constrain their values.
            assert isinstance(node.get("additionalProperties"), dict), f"{path} is an unconstrained object"


def test_every_values_key_is_documented() -> None:
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    key_line = re.compile(r"^\s*(?:- )?[A-Za-z][\w.-]*:(?:\s|$)")
    previous = ""
    undocumented = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if key_line.match(line) and not previous.startswith("#") and " # " not in line and "  # " not in line:
            undocumented.append(f"{number}: {line}")
        if stripped:
            previous = stripped
    assert undocumented == []


# --------------------------------------------------------------------------------------------------------
# gunicorn: deploy/gunicorn.conf.py


def load_gunicorn_config(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    """Load the file the way `gunicorn -c deploy/gunicorn.conf.py` does and return gunicorn's Config."""
    from gunicorn.app.base import Application

    for name in ("BIND", "PORT", "WEB_CONCURRENCY", "DRAIN_SECONDS", "METRICS_PORT", "GUNICORN_CMD_ARGS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    class ConfigOnly(Application):
        def init(self, parser: Any, opts: Any, args: Any) -> None:
            return None

        def load_config(self) -> None:
            self.load_config_from_module_name_or_filename(str(GUNICORN_CONF))

        def load(self) -> None:
            return None

    with _signal_handlers_kept():
        try:
            return ConfigOnly().cfg
        finally:
            sys.modules.pop("__config__", None)


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Loading the config sets SIGTERM and SIGINT handlers (for the master's import window) where none is set:
    not in this test process."""
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)


def test_gunicorn_config_through_gunicorn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = load_gunicorn_config(
        monkeypatch,
        {"DRAIN_SECONDS": "45", "WEB_CONCURRENCY": "3", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    )
    assert cfg.worker_class_str == "service.serving.BeaconWorker"
    from uvicorn_worker import UvicornWorker

    from service.serving import HttpProtocol

    assert issubclass(cfg.worker_class, UvicornWorker)  # importable, and gunicorn's uvicorn worker
    assert cfg.worker_class.CONFIG_KWARGS["loop"] == "auto"  # uvloop when installed
    assert cfg.worker_class.CONFIG_KWARGS["http"] is HttpProtocol
    assert HttpProtocol.__name__ == "HttpToolsProtocol"  # production's parser, not the h11 fallback
    assert cfg.workers == 3
    assert cfg.graceful_timeout == 55
    assert cfg.graceful_timeout > 45
    assert cfg.max_requests == 0
    assert cfg.timeout == 60
    assert cfg.keepalive == 5
    assert cfg.wsgi_app == "service.asgi:application"
    assert cfg.bind == ["0.0.0.0:8000"]
    assert cfg.accesslog == "-" and cfg.errorlog == "-"
    if "control_socket_disable" in cfg.settings:  # gunicorn >= 25.1
        assert cfg.control_socket_disable is True
    assert cfg.preload_app is True  # workers fork from a master that imported the app once
    for hook in ("on_starting", "when_ready", "pre_fork", "post_fork", "child_exit"):
        assert getattr(cfg, hook).__module__ == "__config__", f"{hook} is not the file's hook"


def test_gunicorn_config_defaults_and_bind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    cfg = load_gunicorn_config(monkeypatch, {})
    assert (cfg.workers, cfg.graceful_timeout) == (2, 30)
    assert load_gunicorn_config(monkeypatch, {"PORT": "9000"}).bind == ["0.0.0.0:9000"]
    both = load_gunicorn_config(monkeypatch, {"PORT": "9000", "BIND": "127.0.0.1:7000"})
    assert both.bind == ["127.0.0.1:7000"]
    assert load_gunicorn_config(monkeypatch, {"DRAIN_SECONDS": "2.5"}).graceful_timeout == 13


def test_gunicorn_config_sets_the_multiproc_dir_before_prometheus_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    load_gunicorn_config(monkeypatch, {})
    own = Path(f"/tmp/beacon-prometheus-{os.getpid()}")
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(own)
    assert own.is_dir()  # made at load: the master imports the app, and its metrics, before on_starting
    own.rmdir()


def load_gunicorn_module(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> types.ModuleType:
    with _signal_handlers_kept():
        return _exec_gunicorn_module(monkeypatch, env)


def _exec_gunicorn_module(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> types.ModuleType:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("beacon_gunicorn_conf_under_test", GUNICORN_CONF)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gunicorn_config_keeps_handlers_it_finds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A HUP makes gunicorn read the config again: its own SIGTERM/SIGINT handlers must survive that, while a
    fresh master gets the config's (a stop while it imports the app is then a clean exit)."""

    def gunicorns(signum: int, frame: object) -> None: ...

    with _signal_handlers_kept():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, gunicorns)
        conf = _exec_gunicorn_module(monkeypatch, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
        assert signal.getsignal(signal.SIGTERM) == conf._stop_while_loading
        assert signal.getsignal(signal.SIGINT) is gunicorns


class _FakeLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)


def test_gunicorn_hooks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    (multiproc / "counter_1.db").write_bytes(b"stale")
    (multiproc / "keep.txt").write_text("not prometheus's")
    conf = load_gunicorn_module(
        monkeypatch, {"PROMETHEUS_MULTIPROC_DIR": str(multiproc), "METRICS_PORT": "0"}
    )
    server = types.SimpleNamespace(log=_FakeLog())

    conf.on_starting(server)
    assert sorted(p.name for p in multiproc.iterdir()) == ["keep.txt"]

    conf.when_ready(server)  # METRICS_PORT=0: no server
    assert conf._metrics_server is None

    live = multiproc / "gauge_livesum_4242.db"
    kept = multiproc / "counter_4242.db"
    live.write_bytes(b"")
    kept.write_bytes(b"")
    conf.child_exit(server, types.SimpleNamespace(pid=4242))
    assert not live.exists()
    assert kept.exists()  # counters of dead workers keep counting

    import gc

    assert gc.get_freeze_count() == 0
    try:
        conf.pre_fork(server, types.SimpleNamespace(pid=4243))
        assert gc.get_freeze_count() > 0  # the heap a worker inherits is out of its collections' reach
    finally:
        gc.unfreeze()


# A tiny ASGI app for the live gunicorn test: counts requests (a counter) and live workers (a livesum gauge).
TOY_APP = """
import os

from prometheus_client import Counter, Gauge

REQUESTS = Counter("beacon_toy_requests", "Requests served.")
WORKERS = Gauge("beacon_toy_workers", "Live workers.", multiprocess_mode="livesum")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                WORKERS.set(1)  # in the worker: the master imported this module before forking (preload)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    REQUESTS.inc()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, http.client.HTTPException, ValueError) as error:
            last_error = error
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


def accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
    return body.decode()


def metric_value(exposition: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", exposition, re.MULTILINE)
    return float(match.group(1)) if match else None


@contextlib.contextmanager
def running(
    command: list[str], *, env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process in its own session; stop it (and only it) on the way out."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextlib.contextmanager
def _log_on_failure(log: Path) -> Iterator[None]:
    try:
        yield
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- {log.name} ---\n{log.read_text(errors='replace')}") from error


def test_gunicorn_serves_aggregated_metrics_from_the_master(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn_worker")
    pytest.importorskip("prometheus_client")
    (tmp_path / "toy_app.py").write_text(TOY_APP)
    port, metrics_port = free_port(), free_port()
    multiproc = tmp_path / "prometheus"
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in {"PORT", "GUNICORN_CMD_ARGS", "DJANGO_SETTINGS_MODULE"}
        },
        "BIND": f"127.0.0.1:{port}",
        "METRICS_PORT": str(metrics_port),
        "METRICS_BIND": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "DRAIN_SECONDS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "PYTHONPATH": str(tmp_path),
    }
    command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "toy_app:app"]
    log = tmp_path / "gunicorn.log"
    with running(command, env=env, cwd=tmp_path, log=log) as master, _log_on_failure(log):
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

        def workers_live() -> bool:
            return metric_value(http_get(metrics_url), "beacon_toy_workers") == 2

        wait_for(workers_live, 30, f"two live workers in {metrics_url}")

        requests = 20
        pids = {http_get(f"http://127.0.0.1:{port}/") for _ in range(requests)}
        assert pids  # served by the workers, whichever they were
        assert master.pid not in {int(pid) for pid in pids}
        exposition = http_get(metrics_url)
        assert metric_value(exposition, "beacon_toy_requests_total") == requests

        # A worker dies: gunicorn replaces it, and child_exit drops its live gauge (else livesum would be 3).
        worker_pids = sorted(int(p.stem.rsplit("_", 1)[1]) for p in multiproc.glob("gauge_livesum_*.db"))
        assert len(worker_pids) == 2
        os.kill(worker_pids[0], signal.SIGKILL)

        def replaced() -> bool:
            live = {int(p.stem.rsplit("_", 1)[1]) for p in multiproc.glob("gauge_livesum_*.db")}
            return worker_pids[0] not in live and len(live) == 2

        wait_for(replaced, 30, "the killed worker to be replaced")
        wait_for(workers_live, 10, "the live-worker gauge to settle at 2")
        # Counts of the dead worker are kept.
        total = metric_value(http_get(metrics_url), "beacon_toy_requests_total")
        assert total is not None and total >= requests

        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=30) == 0, log.read_text()
    assert "Prometheus metrics on" in log.read_text()


# --------------------------------------------------------------------------------------------------------
# nginx: deploy/nginx/beacon.conf

needs_nginx = pytest.mark.skipif(
    not NGINX.exists(), reason="/usr/sbin/nginx is missing (Debian package nginx)"
)


def nginx_site(upstream: str, listen_port: int) -> str:
    """beacon.conf with the upstream address and the plain listen port replaced, as a deployer would."""
    text = NGINX_CONF.read_text()
    assert text.count("127.0.0.1:8000") == 1 and text.count("listen 8080;") == 1
    text = text.replace("127.0.0.1:8000", upstream)
    return text.replace("listen 8080;", f"listen 127.0.0.1:{listen_port};")


def write_nginx_conf(directory: Path, site: str, *, foreground: bool = False) -> Path:
    """A minimal, self-contained nginx.conf that includes the site in its http block."""
    (directory / "beacon.conf").write_text(site)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / temp).mkdir(exist_ok=True)
    process = "daemon off;\nmaster_process off;\n" if foreground else ""
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""{process}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    # Compression on for event streams here, so the site's `gzip off` is what keeps them plain.
    gzip on;
    gzip_min_length 1;
    gzip_types text/event-stream application/json;
    include {directory}/beacon.conf;
}}
"""
    )
    return conf


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NGINX), "-t", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_nginx
def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    conf = write_nginx_conf(tmp_path, nginx_site("127.0.0.1:18000", free_port()))
    result = nginx_test(conf)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@needs_nginx
def test_nginx_tls_example_is_valid(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is missing: cannot make a certificate for the TLS example")
    crt, key = tmp_path / "beacon.crt", tmp_path / "beacon.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(crt)],
        capture_output=True,
        check=True,
        timeout=60,
    )  # fmt: skip
    site = nginx_site("127.0.0.1:18000", free_port())
    begin, end = site.index("# --- BEGIN TLS EXAMPLE ---"), site.index("# --- END TLS EXAMPLE ---")
    example = "\n".join(line.removeprefix("# ") for line in site[begin:end].splitlines()[1:])
    assert "listen 443 ssl http2;" in example
    example = (
        example.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{free_port()} ssl http2;")
        .replace("/etc/ssl/certs/beacon.example.com.crt", str(crt))
        .replace("/etc/ssl/private/beacon.example.com.key", str(key))
    )
    result = nginx_test(write_nginx_conf(tmp_path, site[:begin] + example + "\n"))
    assert result.returncode == 0, result.stderr


class _Upstream(socketserver.ThreadingTCPServer):
    """A fake Beacon: an SSE stream held open between two events, and an echo of request bodies."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.release = threading.Event()
        self.requests: list[tuple[str, dict[str, str]]] = []


class _UpstreamHandler(socketserver.StreamRequestHandler):
    server: _Upstream

    def handle(self) -> None:
        while True:  # keep-alive: several requests per connection
            request_line = self.rfile.readline().decode("latin-1").strip()
            if not request_line:
                return
            headers: dict[str, str] = {}
            while (line := self.rfile.readline().decode("latin-1").strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.server.requests.append((request_line, headers))
            method, path, _version = request_line.split(" ", 2)
            if path.startswith("/v1/stream"):
                self.stream()
                return
            body = self.rfile.read(int(headers.get("content-length", "0")))
            reply = json.dumps({"method": method, "path": path, "received": len(body)}).encode()
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(reply)}\r\n\r\n".encode()
                + reply
            )
            self.wfile.flush()

    def stream(self) -> None:
        # Deliberately no X-Accel-Buffering header: the site's own settings must disable buffering.
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache, no-store\r\n"
            b'Connection: close\r\n\r\nretry: 2000\n\nid: 1\ndata: {"n": 1}\n\n'
        )
        self.wfile.flush()
        self.server.release.wait(15)
        self.wfile.write(b'id: 2\ndata: {"n": 2}\n\n')
        self.wfile.flush()


@needs_nginx
def test_nginx_streams_sse_unbuffered(tmp_path: Path) -> None:
    upstream = _Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    conf = write_nginx_conf(
        tmp_path, nginx_site(f"127.0.0.1:{upstream.server_address[1]}", port), foreground=True
    )
    command = [str(NGINX), "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")]
    try:
        with running(command, env=dict(os.environ), cwd=tmp_path, log=tmp_path / "nginx.out"):
            wait_for(lambda: accepts(port), 15, "nginx to listen")

            client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            client.request(
                "GET", "/v1/stream?token=t", headers={"Accept-Encoding": "gzip", "Host": "beacon.test"}
            )
            response = client.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Type") == "text/event-stream"
            assert response.getheader("Content-Encoding") is None  # gzip off for streams
            seen = b""
            while b'data: {"n": 1}' not in seen:
                line = response.readline()  # times out (5 s) if nginx holds the event back
                assert line, "stream ended early"
                seen += line
            assert not upstream.release.is_set()  # event 1 arrived while the upstream still held the stream
            upstream.release.set()
            rest = response.read()
            assert b'data: {"n": 2}' in rest
            client.close()

            request_line, headers = upstream.requests[0]
            assert request_line.endswith("HTTP/1.1")  # proxy_http_version 1.1
            assert "connection" not in headers  # Connection "" (keep-alive to the upstream)
            assert headers["host"] == "beacon.test"
            assert headers["x-forwarded-for"] == "127.0.0.1"
            assert headers["x-forwarded-proto"] == "http"

            # A 2 MiB batch passes (nginx's 1 MiB default would answer 413 itself).
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            payload = b'{"notifications": []}' + b" " * (2 * 1024 * 1024)
            client.request(
                "POST", "/v1/notifications/batch", body=payload, headers={"Content-Type": "application/json"}
            )
            response = client.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["received"] == len(payload)
            client.close()
    finally:
        upstream.release.set()
        upstream.shutdown()
        upstream.server_close()


# --------------------------------------------------------------------------------------------------------
# Image: deploy/Dockerfile and .dockerignore (no container engine here: static checks)


def test_dockerfile_essentials() -> None:
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert re.search(r"^USER 10001(:10001)?$", dockerfile, re.MULTILINE)
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus" in dockerfile
    assert "HOME=/tmp" in dockerfile
    assert "STATIC_ROOT=/app/staticfiles" in dockerfile
    assert "collectstatic --noinput" in dockerfile
    assert re.search(r"^HEALTHCHECK .*\n?.*urllib.request.*/healthz", dockerfile, re.MULTILINE)
    assert dockerfile.rstrip().endswith('CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py"]')
    assert "REQUIRE_DATABASE_URL=1" in dockerfile
    # The cached dependency layer copies the runtime lock alone before the source, installs it hash-checked,
    # then the project without dependencies.
    assert dockerfile.index("COPY requirements/runtime.txt") < dockerfile.index("COPY . .")
    assert "pip install --require-hashes -r /tmp/runtime.txt" in dockerfile
    assert "pip install --no-deps ." in dockerfile


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_lock_files_pin_every_dependency_with_hashes() -> None:
    """Each lock pins each package exactly, with hashes; runtime/local agree with dev; no pgserver in the image."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    locks = {name: REPO_ROOT / "requirements" / f"{name}.txt" for name in ("runtime", "local", "dev")}
    pins = {name: _pins(path) for name, path in locks.items()}
    for name, path in locks.items():
        text = path.read_text()
        blocks = re.findall(
            r"^[A-Za-z0-9_.-]+==\S+ \\\n(?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", text, re.M
        )
        assert len(blocks) == len(pins[name]), f"{name}: a pin without hashes"
        assert "--extra-index-url" not in text and "--find-links" not in text  # no machine's paths

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower() for req in requirements}

    assert names(project["dependencies"]) <= set(pins["runtime"])
    assert "pgserver" not in pins["runtime"] and "pgserver" in pins["local"]
    # `make run` installs what running needs and the embedded PostgreSQL: no test, lint or benchmark tools.
    dev_only = {
        "pytest",
        "mypy",
        "playwright",
        "ruff",
        "helm-python-sdk",
        "schemathesis",
        "matplotlib",
        "py-spy",
    }
    assert not dev_only & set(pins["local"])
    extras = project["optional-dependencies"]
    assert names(extras["dev"] + extras["bench"]) <= set(pins["dev"])
    for name in ("runtime", "local"):
        differing = {p: v for p, v in pins[name].items() if pins["dev"].get(p) != v}
        assert not differing, f"{name}.txt and dev.txt disagree: {differing}"


def _make_plan(target: str, tmp_path: Path) -> list[str]:
    """The commands ``make TARGET`` runs on a fresh clone (no venv yet), without running them. The outer
    ``make test``'s variables are dropped: a nested make would print its directory changes and inherit flags."""
    outer = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR"}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={tmp_path / 'venv'}", "ARGS=list_tenants"],
        env={name: value for name, value in os.environ.items() if name not in outer},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_make_and_ci_install_only_from_the_hash_checked_locks(tmp_path: Path) -> None:
    """``make run`` (and ``make manage``) install the local lock alone, with pip's progress shown;
    ``make test`` and ``make lint`` the dev lock; ``.ci/run`` goes through them and installs nothing itself."""

    def installs(plan: list[str]) -> list[str]:
        return [line for line in plan if "pip install" in line and "--no-deps -e ." not in line]

    for target in ("run", "manage"):
        plan = _make_plan(target, tmp_path)
        (install,) = installs(plan)
        assert "--require-hashes" in install and "-r requirements/local.txt" in install, install
        assert "--quiet" not in install and "-q " not in install  # visible progress
        assert any(line.startswith('echo "==> installing') for line in plan)
    assert _make_plan("run", tmp_path)[-1].endswith("-m service.devserver")
    for target in ("test", "lint"):
        (install,) = installs(_make_plan(target, tmp_path))
        assert "--require-hashes" in install and "-r requirements/dev.txt" in install, install
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make lint$", ci, re.M) and re.search(r"^make test$", ci, re.M)
    assert "pip install" not in ci and "pip3 install" not in ci


def test_dockerignore_keeps_what_the_image_needs() -> None:
    import fnmatch

    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for pattern in patterns:
            bare = pattern.removeprefix("**/")
            if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
                return True
            if pattern.startswith("**/") and any(fnmatch.fnmatch(part, bare) for part in parts):
                return True
        return False

    for needed in (
        "pyproject.toml",
        "manage.py",
        "service/asgi.py",
        "tenants/models.py",
        "deploy/gunicorn.conf.py",
    ):
        assert not ignored(needed), needed
    for dropped in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/deploy/test_helm.py",
        "service/__pycache__/x.pyc",
        "helm",
    ):
        assert ignored(dropped), dropped


# --------------------------------------------------------------------------------------------------------
# Broker: Redis URL from values (own Secret) or from an existing Secret; nothing by default


REDIS_URL = "redis://:SEKRIT-redis-password-4242@redis-master:6379/0"


def test_broker_defaults_to_listen_notify(chart: Any) -> None:
    documents = render(chart, {"secrets": SECRET_VALUES})
    deployment = one(documents, "Deployment")
    assert "BROKER_URL" not in _secret_refs(server_container(deployment)["env"])
    assert "BROKER_URL" not in one(documents, "ConfigMap")["data"]
    assert len(kinds(documents)["Secret"]) == 1


def test_broker_redis_url_goes_to_a_secret_of_its_own(chart: Any) -> None:
    documents = render(chart, {"secrets": SECRET_VALUES, "broker": {"redis": {"url": REDIS_URL}}})
    secrets = {doc["metadata"]["name"]: doc for doc in kinds(documents)["Secret"]}
    broker = secrets[f"{FULLNAME}-broker"]
    assert {k: base64.b64decode(v).decode() for k, v in broker["data"].items()} == {"BROKER_URL": REDIS_URL}
    assert "helm.sh/hook" not in (broker["metadata"].get("annotations") or {})  # pods only, not the Job
    deployment = one(documents, "Deployment")
    refs = _secret_refs(server_container(deployment)["env"])
    assert refs["BROKER_URL"] == {"name": f"{FULLNAME}-broker", "key": "BROKER_URL"}
    assert "checksum/broker" in deployment["spec"]["template"]["metadata"]["annotations"]
    job = one(documents, "Job")
    assert "BROKER_URL" not in _secret_refs(job["spec"]["template"]["spec"]["containers"][0]["env"])
    for document in documents:
        if document["kind"] != "Secret":
            assert "SEKRIT-redis" not in yaml.safe_dump(manifest(document)), document["__template__"]


def test_broker_existing_secret_wins_and_renders_no_broker_secret(chart: Any) -> None:
    values = {
        "secrets": SECRET_VALUES,
        "broker": {"redis": {"url": REDIS_URL, "existingSecret": "redis-creds", "existingSecretKey": "url"}},
    }
    documents = render(chart, values)
    assert [doc["metadata"]["name"] for doc in kinds(documents)["Secret"]] == [FULLNAME]
    deployment = one(documents, "Deployment")
    assert _secret_refs(server_container(deployment)["env"])["BROKER_URL"] == {
        "name": "redis-creds",
        "key": "url",
    }
    assert all("SEKRIT-redis" not in yaml.safe_dump(manifest(doc)) for doc in documents)


@pytest.mark.parametrize(
    "redis", [{"url": "http://redis:6379"}, {"url": 6379}, {"existingSecretKey": ""}, {"password": "x"}]
)
def test_schema_rejects_bad_broker_values(chart: Any, redis: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        chart.render({"broker": {"redis": redis}}, name=RELEASE, namespace=NAMESPACE)
