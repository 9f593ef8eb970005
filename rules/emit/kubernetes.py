"""The generated half of deploy/kustomization.yaml: the rules as a prometheus-operator
PrometheusRule and the dashboards as ConfigMaps for the Grafana sidecar.

Output (relative to the --out root): deploy/kubernetes/generated/{prometheusrule,dashboards,
datasource}.yaml. The same manifests as `--format prometheusrule --format configmap`, written
by every `gen-rules build` so that the committed kustomization never drifts from the catalogue
(`gen-rules check` covers them).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from stackprobe.grafana import provisioning as grafana_provisioning

from ..model import Model
from . import prometheus

KUBERNETES_DIR = "deploy/kubernetes/generated"


def emit(model: Model) -> dict[str, str]:
    manifests = {**prometheus.emit_prometheusrule(model), **grafana_provisioning.emit_configmaps(model)}
    return {f"{KUBERNETES_DIR}/{PurePosixPath(path).name}": text for path, text in manifests.items()}
