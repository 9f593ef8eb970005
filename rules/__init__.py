"""gen-rules: compiles the KPI catalogue into Prometheus rules, rule tests and Alertmanager config."""
