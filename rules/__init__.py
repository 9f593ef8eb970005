"""gen-rules: compiles the KPI catalogue into Prometheus rules, rule tests, Alertmanager config and dashboards.

One way: spec.py (the catalogue as written, validated) -> model.py (resolved once) -> emit/* and
stackprobe.grafana (emitters reading only the model) -> cli.py (writes the files atomically).
"""
