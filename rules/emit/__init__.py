"""Emitters: each turns the resolved model (rules/model.py) into files, `(Model) -> {path: text}`.

    prometheus.py    recording and alerting rules (also as a PrometheusRule manifest)
    promtests.py     `promtool test rules` files: fire/quiet cases for every alert
    alertmanager.py  routing, time intervals, inhibitions
    kubernetes.py    the PrometheusRule and dashboard ConfigMaps under deploy/kubernetes/generated/
    files.py         the output paths under rules/generated/ and the YAML style they share

The Grafana dashboards are emitters too (grafana/provisioning.py). Emitters read only the model,
never each other and never the spec; rules/cli.py lists them.
"""
