"""Grafana dashboards compiled from the KPI catalogue."""
