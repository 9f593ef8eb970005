"""Playbooks -> statements -> ledger: what the operations documents say, read with provenance."""
