"""deploy/kustomization.yaml and deploy/kubernetes/: the Kubernetes manifests as committed.

Core kinds are validated with kubernetes-validate against the Kubernetes OpenAPI schemas it
bundles (offline, strict: unknown fields are errors). The prometheus-operator custom resources
(ServiceMonitor, PrometheusRule) have no schema there; they are checked for what the operator's
CRDs require. The generated ones (deploy/kubernetes/generated/) are `gen-rules build` outputs,
kept in step by `gen-rules check`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from stackprobe.exporter.shard import Shard

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
GENERATED = KUBERNETES / "generated"
#: The oldest Kubernetes the StatefulSet supports: the pod-index label is there from 1.28 on.
KUBERNETES_VERSION = "1.28"
CORE_KINDS = {"StatefulSet", "Service", "ConfigMap"}
#: prometheus-operator's duration pattern (monitoring.coreos.com/v1 `Duration`).
OPERATOR_DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def _kustomization() -> dict:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())


def _documents() -> list[dict]:
    """Every object the kustomization lists, as committed (before kustomize's transformations)."""
    docs = []
    for resource in _kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((DEPLOY / resource).read_text()) if d]
    return docs


def _one(kind: str) -> dict:
    [doc] = [d for d in _documents() if d["kind"] == kind]
    return doc


def _duration_seconds(text: str) -> float:
    units = {"y": 31536000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|y|w|d|h|m|s)", text))


def test_the_kustomization_lists_every_manifest():
    listed = {DEPLOY / r for r in _kustomization()["resources"]}
    assert all(p.is_file() for p in listed), sorted(str(p) for p in listed if not p.is_file())
    assert set(KUBERNETES.rglob("*.yaml")) == listed, "a manifest in deploy/kubernetes/ is not in deploy/kustomization.yaml"
    for generator in _kustomization()["configMapGenerator"]:
        assert all((DEPLOY / f).is_file() for f in generator["files"])


@pytest.mark.parametrize("doc", [d for d in _documents() if d["kind"] in CORE_KINDS],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_core_kinds_validate_against_the_kubernetes_schema(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_schema_violation_is_caught():
    """The validator really looks at the fields (a misspelt one is an error in strict mode)."""
    statefulset = _one("StatefulSet")
    statefulset["spec"]["replicaz"] = statefulset["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)


def test_pod_ordinal_i_of_n_runs_shard_i_of_n():
    statefulset = _one("StatefulSet")
    spec = statefulset["spec"]
    [container] = spec["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert int(env["SHARD_COUNT"]["value"]) == spec["replicas"], "replicas and SHARD_COUNT must agree"
    names = [e["name"] for e in container["env"]]
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    assert names.index("POD_INDEX") < names.index("STACKPROBE_SHARD") and names.index("SHARD_COUNT") < names.index("STACKPROBE_SHARD")
    for ordinal in range(spec["replicas"]):
        value = env["STACKPROBE_SHARD"]["value"].replace("$(POD_INDEX)", str(ordinal)).replace(
            "$(SHARD_COUNT)", env["SHARD_COUNT"]["value"])
        assert Shard.parse(value) == Shard(ordinal, spec["replicas"])
    # The config the pods read is the generated ConfigMap, mounted where --config.file points.
    [generator] = _kustomization()["configMapGenerator"]
    [volume] = [v for v in spec["template"]["spec"]["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == generator["name"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert f"--config.file={mount['mountPath']}/{Path(generator['files'][0]).name}" in container["args"]


def test_the_service_and_the_servicemonitor_select_the_shards():
    statefulset, service, monitor = _one("StatefulSet"), _one("Service"), _one("ServiceMonitor")
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"  # headless: stable per-shard names
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container_ports = {p["name"] for c in statefulset["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports

    # ServiceMonitor (monitoring.coreos.com/v1): spec.selector required; each endpoint's port
    # names a port of the selected Service; durations in the operator's format.
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["name"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports
        assert OPERATOR_DURATION.match(endpoint["interval"]) and OPERATOR_DURATION.match(endpoint["scrapeTimeout"])
        assert _duration_seconds(endpoint["scrapeTimeout"]) <= _duration_seconds(endpoint["interval"])


def test_the_prometheusrule_has_what_the_operator_requires_and_the_generated_rules():
    rule = _one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["name"]
    groups = rule["spec"]["groups"]
    names = [g["name"] for g in groups]
    assert all(names) and len(names) == len(set(names))  # listType map, keyed by name
    for group in groups:
        for r in group["rules"]:
            assert isinstance(r["expr"], str) and r["expr"]
            assert ("alert" in r) != ("record" in r)
            assert "for" not in r or OPERATOR_DURATION.match(r["for"]), r
            assert all(isinstance(v, str) for v in {**r.get("labels", {}), **r.get("annotations", {})}.values())
    # The same groups Prometheus loads from rules/generated/*.rules.yml.
    committed = [g for p in sorted((REPO / "rules/generated").glob("*.rules.yml"))
                 for g in yaml.safe_load(p.read_text())["groups"]]
    assert sorted(groups, key=lambda g: g["name"]) == sorted(committed, key=lambda g: g["name"])


def test_dashboards_are_configmaps_for_the_grafana_sidecar():
    maps = [d for d in _documents() if d["kind"] == "ConfigMap"]
    dashboards = [m for m in maps if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == len(list((REPO / "grafana/generated/dashboards").glob("*.json")))
    assert [m for m in maps if m["metadata"]["labels"].get("grafana_datasource") == "1"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_kubectl_kustomize_renders_a_valid_set():
    """What `kubectl apply -k deploy/` would send: namespaced, config hashed into its name."""
    result = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {d["kind"] for d in docs} == {"StatefulSet", "Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"}
    assert {d["metadata"].get("namespace") for d in docs} == {_kustomization()["namespace"]}
    for doc in docs:
        if doc["kind"] in CORE_KINDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    [config] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("stackprobe-config-")]
    [statefulset] = [d for d in docs if d["kind"] == "StatefulSet"]
    volumes = statefulset["spec"]["template"]["spec"]["volumes"]
    assert [v["configMap"]["name"] for v in volumes if "configMap" in v] == [config["metadata"]["name"]]
    assert config["data"]["stackprobe.yml"] == (DEPLOY / "stackprobe.yml").read_text()
