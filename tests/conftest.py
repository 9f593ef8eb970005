"""Fixtures live in tests/fixtures/, one module per kind of real peer."""

pytest_plugins = [
    "fixtures.exporter",
]
