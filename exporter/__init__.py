"""The stackprobe exporter: probes targets in the background and serves the results on /metrics."""
