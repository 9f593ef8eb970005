"""Fixtures live in tests/fixtures/, one module per kind of real peer."""

# fixtures.net first: the others import it, and pytest must register it before that happens.
pytest_plugins = [
    "fixtures.net",
    "fixtures.exporter",
    "fixtures.http_servers",
    "fixtures.mariadb",
    "fixtures.redis_server",
    "fixtures.tls",
    "fixtures.promtools",
    "fixtures.prom_stack",
]
