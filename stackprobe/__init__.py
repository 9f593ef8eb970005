"""stackprobe: a Prometheus exporter and a rules/dashboards generator sharing one metric contract."""

__version__ = "0.1.0"
