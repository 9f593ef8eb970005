"""Grafana dashboards: gen-rules emitters reading only the resolved model (stackprobe.rules.model).

    panels.py        the SDK (grafana-foundation-sdk) helpers every dashboard is built with
    services.py      one morning-checklist overview per catalogue service (the alerts' thresholds)
    probers.py       one dashboard per prober (raw stackprobe_* families)
    provisioning.py  the gen-rules emitters: dashboard JSON + provisioning YAML, or ConfigMaps
    queries.py       loads dashboards back through the SDK and lists every PromQL query
"""
