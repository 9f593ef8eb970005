"""One dashboard per prober: everything that prober exports, for drilling into a target.

They read the raw `stackprobe_*` families of exporter/metrics.py. Where a panel shows the
quantity of an indicator (connections used, Redis memory, backup age and size ratio,
certificate days left), its colours come from the alerts' own tiers in the resolved model
(thresholds.py): a stat colours each target by its service's tiers (series named
`<service> / <target>`), graphs and tables, which mix services, draw only the tiers every
service alerts on. Panels without an alert behind them are not coloured as good or bad.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.models import dashboard as dash_m

from stackprobe.rules.model import Model
from stackprobe.rules.promql import Matcher, join, selector

from .panels import (
    AMBER,
    BOOLEAN_OK,
    GREEN,
    RED,
    Item,
    Step,
    assemble,
    datasource_variable,
    label_variable,
    new_dashboard,
    query,
    stat_panel,
    table_panel,
    timeseries_panel,
    uid,
    up_down,
)
from .thresholds import SERVICE_LEGEND, service_overrides, shared_limits, steps

#: Series labels every per-target query keeps, and the legend that names a series by them.
BY_TARGET = "service, target"
LEGEND = "{{target}}"


def shared_steps(model: Model, indicator_id: str) -> tuple[Step, ...]:
    """Steps for a view mixing services: the tiers all of them alert on."""
    return steps(shared_limits(model, indicator_id))


#: The `$service` and `$target` picked on a dashboard, as matchers.
PICKED = (Matcher("service", "$service", "=~"), Matcher("target", "$target", "=~"))


def scope(*extra: Matcher) -> str:
    """The selector limiting a query to the `$service` and `$target` picked on the dashboard,
    plus any further matchers."""
    return "{" + join((*PICKED, *extra)) + "}"


def _probe_row(prober: str) -> list[Item]:
    """The first row of every prober dashboard: did the probes succeed, how long, why not."""
    s = scope(Matcher("prober", prober))
    return [
        dash_b.Row("Probes"),
        stat_panel(
            "Probe success",
            "1 if the last completed probe of the target succeeded. A failed probe's reason is in the errors panel.",
            [query(f"stackprobe_probe_success{s}", LEGEND, instant=True)],
            unit="none",
            steps=BOOLEAN_OK,
            mappings=up_down("UP", "DOWN"),
            width=6,
            height=8,
        ),
        timeseries_panel(
            "Probe errors by reason",
            "Failed probes per interval, by reason (timeout, connect, auth, query, ...).",
            [query(f"sum by ({BY_TARGET}, reason) (increase(stackprobe_probe_errors_total{s}[$__rate_interval]))", "{{target}} {{reason}}")],
            unit="short",
            width=9,
        ),
        timeseries_panel(
            "Probe duration",
            "How long each completed probe took; a probe that nears its timeout fails with reason=timeout.",
            [query(f"stackprobe_probe_duration_seconds{s}", LEGEND)],
            unit="s",
            width=9,
        ),
    ]


def _dashboard(prober: str, title: str, description: str, items: list[Item], *, time_from: str, refresh: str) -> dash_m.Dashboard:
    """A prober dashboard: `$service` and `$target` list that prober's targets; the shared
    probe row comes first, then the prober's own rows."""
    builder = new_dashboard(
        f"stackprobe / {title}", uid("prober", prober), description, time_from=time_from, refresh=refresh, tags=["prober", prober]
    ).variables([
        datasource_variable(),
        label_variable("service", "Service", selector("stackprobe_probe_success", [Matcher("prober", prober)])),
        label_variable("target", "Target", selector("stackprobe_probe_success", [Matcher("prober", prober), PICKED[0]])),
    ])
    return assemble(builder, _probe_row(prober) + items)


# --- MySQL -----------------------------------------------------------------------------------

def mysql(model: Model) -> dash_m.Dashboard:
    s = scope()
    tables = f"{BY_TARGET}, schema, table"
    data_index = scope(Matcher("component", "data|index", "=~"))
    index_only = scope(Matcher("component", "index"))
    free_only = scope(Matcher("component", "free"))
    size = f"stackprobe_mysql_table_size_bytes{data_index}"
    all_sizes = f"stackprobe_mysql_table_size_bytes{s}"
    return _dashboard(
        "mysql",
        "MySQL",
        "MySQL/MariaDB servers probed by stackprobe: table sizes and growth, index ratio and selectivity, "
        "fragmentation, connections against max_connections, slow queries and replication lag.",
        [
            dash_b.Row("Server"),
            stat_panel("Server up", "1 if the server accepted the connection and answered.", [query(f"stackprobe_mysql_up{s}", LEGEND, instant=True)],
                       unit="none", steps=BOOLEAN_OK, mappings=up_down("UP", "DOWN")),
            stat_panel("Connections used", "Threads_connected / max_connections, coloured by the service's connection-pool alert tiers.",
                       [query(f"stackprobe_mysql_threads_connected{s} / stackprobe_mysql_max_connections{s}", SERVICE_LEGEND, instant=True)],
                       unit="percentunit", decimals=1, name_overrides=service_overrides(model, "mysql_connections_usage")),
            stat_panel("Slow queries (range)", "Queries slower than long_query_time over the dashboard's time range.",
                       [query(f"increase(stackprobe_mysql_slow_queries_total{s}[$__range])", LEGEND, instant=True)],
                       unit="short", decimals=0),
            stat_panel("Replication lag", "Seconds_Behind_Master of replicas (absent on a primary).",
                       [query(f"max by ({BY_TARGET}) (stackprobe_mysql_replication_lag_seconds{s})", LEGEND, instant=True)],
                       unit="s"),
            stat_panel("Tables", "Tables in the probed schemas (including those left out by max_tables).",
                       [query(f"stackprobe_mysql_tables{s}", LEGEND, instant=True)], unit="short", decimals=0),
            stat_panel("Uptime", "Seconds since the server started; a reset means a restart.",
                       [query(f"stackprobe_mysql_uptime_seconds{s}", LEGEND, instant=True)], unit="dtdurations"),
            dash_b.Row("Tables"),
            table_panel("Largest tables", "Data + index size of the 20 largest tables.",
                        query(f"topk(20, sum by ({tables}) ({size}))", instant=True, table_format=True),
                        value_title="Size", unit="bytes", decimals=1),
            timeseries_panel("Table growth over 24 h", "Change of data + index size over the previous 24 hours, for the 10 fastest-growing tables.",
                             [query(f"topk(10, sum by ({tables}) (delta({size}[1d])))", "{{target}} {{schema}}.{{table}}")],
                             unit="bytes"),
            table_panel("Index ratio", "Index size / (data + index), as in the weekly table review; a high ratio hints at redundant indexes.",
                        query(f'topk(20, sum by ({tables}) (stackprobe_mysql_table_size_bytes{index_only}) / sum by ({tables}) ({size}))',
                              instant=True, table_format=True),
                        value_title="Index ratio", unit="percentunit", decimals=1),
            table_panel("Least selective indexes", "Index cardinality / table rows (1 = unique); indexes near 0 rarely help a query.",
                        query(f"bottomk(20, stackprobe_mysql_index_selectivity{s})", instant=True, table_format=True),
                        value_title="Selectivity", unit="percentunit", decimals=2, sort_desc=False),
            table_panel("Fragmentation", "Allocated but unused space (Data_free) / total allocated size, for the 20 most fragmented tables.",
                        query(f'topk(20, sum by ({tables}) (stackprobe_mysql_table_size_bytes{free_only}) / sum by ({tables}) ({all_sizes}))',
                              instant=True, table_format=True),
                        value_title="Free", unit="percentunit", decimals=1),
            timeseries_panel("Rows (largest 10 tables)", "Estimated rows (information_schema.TABLES.TABLE_ROWS).",
                             [query(f"topk(10, stackprobe_mysql_table_rows{s})", "{{target}} {{schema}}.{{table}}")], unit="short"),
            dash_b.Row("Connections and queries"),
            timeseries_panel("Connections vs max_connections", "Open and running threads against the server's max_connections.",
                             [query(f"stackprobe_mysql_threads_connected{s}", "{{target}} connected", "A"),
                              query(f"stackprobe_mysql_threads_running{s}", "{{target}} running", "B"),
                              query(f"stackprobe_mysql_max_connections{s}", "{{target}} max_connections", "C")],
                             unit="short"),
            timeseries_panel("Slow queries", "Queries per second slower than long_query_time.",
                             [query(f"rate(stackprobe_mysql_slow_queries_total{s}[$__rate_interval])", LEGEND)], unit="qps"),
            timeseries_panel("Queries", "Statements per second executed on behalf of clients (Questions).",
                             [query(f"rate(stackprobe_mysql_questions_total{s}[$__rate_interval])", LEGEND)], unit="qps"),
            timeseries_panel("Aborted connects, deadlocks, row-lock waits", "Per second; any sustained value deserves a look at the error log.",
                             [query(f"rate(stackprobe_mysql_aborted_connects_total{s}[$__rate_interval])", "{{target}} aborted connects", "A"),
                              query(f"rate(stackprobe_mysql_innodb_deadlocks_total{s}[$__rate_interval])", "{{target}} deadlocks", "B"),
                              query(f"rate(stackprobe_mysql_innodb_row_lock_waits_total{s}[$__rate_interval])", "{{target}} row-lock waits", "C")],
                             unit="ops"),
            dash_b.Row("Replication"),
            timeseries_panel("Replication lag", "Seconds_Behind_Master per replication channel; gaps mean the SQL thread is stopped.",
                             [query(f"stackprobe_mysql_replication_lag_seconds{s}", "{{target}} {{channel}}")], unit="s"),
            stat_panel("Replication threads", "1 if both the IO and SQL threads of the channel run.",
                       [query(f"stackprobe_mysql_replication_running{s}", "{{target}} {{channel}}", instant=True)],
                       unit="none", steps=BOOLEAN_OK, mappings=up_down("RUNNING", "STOPPED"), width=12, height=8),
        ],
        time_from="now-24h",
        refresh="5m",
    )


# --- Redis -----------------------------------------------------------------------------------


def redis(model: Model) -> dash_m.Dashboard:
    s = scope()
    hits = f"sum by ({BY_TARGET}) (rate(stackprobe_redis_keyspace_hits_total{s}[$__rate_interval]))"
    misses = f"sum by ({BY_TARGET}) (rate(stackprobe_redis_keyspace_misses_total{s}[$__rate_interval]))"
    range_hits = f"sum by ({BY_TARGET}) (increase(stackprobe_redis_keyspace_hits_total{s}[$__range]))"
    range_misses = f"sum by ({BY_TARGET}) (increase(stackprobe_redis_keyspace_misses_total{s}[$__range]))"
    memory_ratio = f"stackprobe_redis_memory_used_bytes{s} / (stackprobe_redis_memory_max_bytes{s} > 0)"
    return _dashboard(
        "redis",
        "Redis",
        "Redis servers probed by stackprobe: hit ratio, memory against maxmemory, clients, key-pattern counts, "
        "queue lengths and persistence (RDB/AOF).",
        [
            dash_b.Row("Server"),
            stat_panel("Server up", "1 if the server accepted the connection and answered PING.",
                       [query(f"stackprobe_redis_up{s}", LEGEND, instant=True)], unit="none", steps=BOOLEAN_OK, mappings=up_down("UP", "DOWN")),
            stat_panel("Hit ratio (range)", "keyspace_hits / (hits + misses) over the dashboard's time range.",
                       [query(f"{range_hits} / ({range_hits} + {range_misses})", LEGEND, instant=True)], unit="percentunit", decimals=1),
            stat_panel("Memory used of maxmemory", "used_memory / maxmemory (absent when maxmemory is 0, no limit), "
                       "coloured by the service's memory alert tiers.",
                       [query(memory_ratio, SERVICE_LEGEND, instant=True)], unit="percentunit", decimals=1,
                       name_overrides=service_overrides(model, "redis_memory_usage")),
            stat_panel("Clients", "Connected clients, excluding replicas.",
                       [query(f"stackprobe_redis_connected_clients{s}", LEGEND, instant=True)], unit="short", decimals=0),
            stat_panel("PING", "Round-trip time of one PING.",
                       [query(f"stackprobe_redis_ping_duration_seconds{s}", LEGEND, instant=True)], unit="s"),
            stat_panel("Uptime", "Seconds since the server started; a reset means a restart (and an empty cache).",
                       [query(f"stackprobe_redis_uptime_seconds{s}", LEGEND, instant=True)], unit="dtdurations"),
            dash_b.Row("Cache efficiency"),
            timeseries_panel("Hit ratio", "keyspace_hits / (hits + misses) per interval.",
                             [query(f"{hits} / ({hits} + {misses})", LEGEND)], unit="percentunit"),
            timeseries_panel("Evicted and expired keys", "Evictions mean maxmemory is reached; expirations are TTLs running out.",
                             [query(f"rate(stackprobe_redis_evicted_keys_total{s}[$__rate_interval])", "{{target}} evicted", "A"),
                              query(f"rate(stackprobe_redis_expired_keys_total{s}[$__rate_interval])", "{{target}} expired", "B")],
                             unit="ops"),
            dash_b.Row("Memory"),
            timeseries_panel("Memory vs maxmemory", "used_memory against the maxmemory setting (not drawn when it is 0, no limit).",
                             [query(f"stackprobe_redis_memory_used_bytes{s}", "{{target}} used", "A"),
                              query(f"stackprobe_redis_memory_max_bytes{s} > 0", "{{target}} maxmemory", "B")],
                             unit="bytes"),
            timeseries_panel("Fragmentation ratio", "used_memory_rss / used_memory; well above 1.5 wastes memory, below 1 means swapping.",
                             [query(f"stackprobe_redis_memory_fragmentation_ratio{s}", LEGEND)], unit="none"),
            dash_b.Row("Clients"),
            timeseries_panel("Clients", "Connected and blocked (BLPOP, ...) clients.",
                             [query(f"stackprobe_redis_connected_clients{s}", "{{target}} connected", "A"),
                              query(f"stackprobe_redis_blocked_clients{s}", "{{target}} blocked", "B")],
                             unit="short"),
            timeseries_panel("Rejected connections and commands", "Rejections mean maxclients is reached.",
                             [query(f"rate(stackprobe_redis_rejected_connections_total{s}[$__rate_interval])", "{{target}} rejected", "A"),
                              query(f"rate(stackprobe_redis_commands_processed_total{s}[$__rate_interval])", "{{target}} commands", "B")],
                             unit="ops"),
            dash_b.Row("Keys and queues"),
            timeseries_panel("Keys per database", "All keys and those with a TTL.",
                             [query(f"stackprobe_redis_db_keys{s}", "{{target}} {{db}}", "A"),
                              query(f"stackprobe_redis_db_keys_expiring{s}", "{{target}} {{db}} expiring", "B")],
                             unit="short"),
            timeseries_panel("Keys per pattern", "Keys matching each configured pattern, counted with SCAN (a lower bound when the scan budget ran out).",
                             [query(f"stackprobe_redis_pattern_keys{s}", "{{target}} {{db}} {{pattern}}")], unit="short"),
            timeseries_panel("Queue lengths", "Length of each configured key (LLEN, SCARD, ZCARD, HLEN, XLEN or STRLEN by type).",
                             [query(f"stackprobe_redis_key_length{s}", "{{target}} {{db}} {{key}} ({{type}})")], unit="short"),
            stat_panel("Truncated pattern scans", "Patterns whose count stopped at the scan budget (their count is a lower bound).",
                       [query(f"sum by ({BY_TARGET}) (stackprobe_redis_pattern_scan_truncated{s})", LEGEND, instant=True)],
                       unit="short", decimals=0, steps=(Step(None, GREEN), Step(1, AMBER)), width=12, height=8),
            dash_b.Row("Persistence and replication"),
            stat_panel("Last RDB save", "Time since the last successful RDB save.",
                       [query(f"time() - stackprobe_redis_rdb_last_save_timestamp_seconds{s}", LEGEND, instant=True)],
                       unit="s"),
            stat_panel("Last bgsave", "1 if the last background RDB save succeeded.",
                       [query(f"stackprobe_redis_rdb_last_bgsave_success{s}", LEGEND, instant=True)], unit="none", steps=BOOLEAN_OK, mappings=up_down()),
            stat_panel("AOF enabled", "1 if append-only-file persistence is on.",
                       [query(f"stackprobe_redis_aof_enabled{s}", LEGEND, instant=True)], unit="none",
                       mappings=up_down("ON", "OFF", bad_colour="text")),
            stat_panel("Last AOF write", "1 if the last AOF write succeeded (only meaningful with AOF on).",
                       [query(f"stackprobe_redis_aof_last_write_success{s}", LEGEND, instant=True)], unit="none", steps=BOOLEAN_OK, mappings=up_down()),
            stat_panel("Replicas / link to primary", "Replicas connected to a primary; on a replica, whether its link to the primary is up.",
                       [query(f"stackprobe_redis_connected_replicas{s}", "{{target}} replicas", "A", instant=True),
                        query(f"stackprobe_redis_master_link_up{s}", "{{target}} link up", "B", instant=True)],
                       unit="short", decimals=0, width=8),
            timeseries_panel("Writes since last save", "Changes an RDB save has not yet persisted (lost on a crash without AOF).",
                             [query(f"stackprobe_redis_rdb_changes_since_last_save{s}", LEGEND)], unit="short", width=24),
        ],
        time_from="now-24h",
        refresh="1m",
    )


# --- HTTP ------------------------------------------------------------------------------------

#: Percentiles drawn from the probe's request-duration histogram.
QUANTILES = (0.5, 0.95, 0.99)


def http(model: Model) -> dash_m.Dashboard:
    s = scope()
    http_only = scope(Matcher("prober", "http"))
    success = f"stackprobe_probe_success{http_only}"
    buckets = f"sum by ({BY_TARGET}, le) (rate(stackprobe_http_request_duration_seconds_bucket{s}[$__rate_interval]))"
    range_buckets = f"sum by ({BY_TARGET}, le) (increase(stackprobe_http_request_duration_seconds_bucket{s}[$__range]))"
    return _dashboard(
        "http",
        "HTTP",
        "HTTP endpoints probed by stackprobe: availability, latency percentiles from the request-duration histogram, "
        "request phases, status codes and the served certificate.",
        [
            dash_b.Row("Availability"),
            stat_panel("Availability (range)", "Share of successful probes over the dashboard's time range.",
                       [query(f"avg_over_time({success}[$__range])", LEGEND, instant=True)], unit="percentunit", decimals=2),
            stat_panel("P95 latency (range)", "95th percentile of the probe requests over the dashboard's time range.",
                       [query(f"histogram_quantile(0.95, {range_buckets})", LEGEND, instant=True)], unit="s"),
            stat_panel("Status code", "HTTP status of the last response (0 if none arrived).",
                       [query(f"stackprobe_http_status_code{s}", LEGEND, instant=True)], unit="none", decimals=0,
                       steps=(Step(None, RED), Step(200, GREEN), Step(400, AMBER), Step(500, RED))),
            stat_panel("Certificate days left", "Days until the earliest NotAfter of the served chain (HTTPS only), "
                       "coloured by the service's certificate-expiry alert tiers.",
                       [query(f"(stackprobe_http_cert_earliest_not_after_timestamp_seconds{s} - time()) / 86400", SERVICE_LEGEND,
                              instant=True)],
                       unit="suffix: days", decimals=0, width=8, name_overrides=service_overrides(model, "cert_days_left")),
            timeseries_panel("Availability", "Share of successful probes per interval.",
                             [query(f"avg_over_time({success}[$__rate_interval])", LEGEND)], unit="percentunit", width=24),
            dash_b.Row("Latency"),
            timeseries_panel("Latency P50 / P95 / P99", "Percentiles of the probe requests' total duration, from the histogram.",
                             [query(f"histogram_quantile({q}, {buckets})", f"{{{{target}}}} P{round(q * 100)}", ref)
                              for q, ref in zip(QUANTILES, "ABC")],
                             unit="s"),
            timeseries_panel("Request phases (last request)", "connect, tls, request, first_byte and transfer, stacked to the total.",
                             [query(f"stackprobe_http_phase_duration_seconds{s}", "{{target}} {{phase}}")], unit="s", stacked=True),
            dash_b.Row("Responses"),
            timeseries_panel("Status codes", "HTTP status of each response over time (0 = no response).",
                             [query(f"stackprobe_http_status_code{s}", LEGEND)], unit="none"),
            timeseries_panel("Response size and redirects", "Body bytes of the last response and redirects it followed.",
                             [query(f"stackprobe_http_response_size_bytes{s}", "{{target}} bytes", "A"),
                              query(f"stackprobe_http_redirects{s}", "{{target}} redirects", "B")],
                             unit="short"),
            table_panel("Protocol versions", "HTTP and TLS versions of the last response.",
                        query(f"stackprobe_http_version_info{s}", instant=True, table_format=True),
                        value_title="Seen", unit="none", hide=("Time", "__name__", "Seen")),
            timeseries_panel("JSON values", "Configured JSON values of the response bodies (true=1, false=0).",
                             [query(f"stackprobe_http_json_value{s}", "{{target}} {{path}}")], unit="none"),
        ],
        time_from="now-6h",
        refresh="1m",
    )


# --- Backups ---------------------------------------------------------------------------------

def backup(model: Model) -> dash_m.Dashboard:
    s = scope()
    age = f"time() - stackprobe_backup_newest_timestamp_seconds{s}"
    return _dashboard(
        "backup",
        "Backups",
        "Backup files checked by stackprobe: age of the newest file against the alerts' limits, size trend and "
        "size ratio, integrity verification and retention.",
        [
            dash_b.Row("Freshness and integrity"),
            stat_panel("Newest backup age", "Time since the newest backup file was written, coloured by the service's "
                       "backup-age alert tiers.",
                       [query(age, SERVICE_LEGEND, instant=True)], unit="s", width=8, name_overrides=service_overrides(model, "backup_age")),
            stat_panel("Verified", "1 if the newest file passed its integrity check (gzip, tar or sha256).",
                       [query(f"stackprobe_backup_verify_success{s}", LEGEND, instant=True)], unit="none", steps=BOOLEAN_OK,
                       mappings=up_down("VERIFIED", "CORRUPT"), width=8),
            stat_panel("Size ratio", "Newest file size / median of the previous ones, coloured by the service's "
                       "size-change alert tiers (a broken or partial backup).",
                       [query(f"stackprobe_backup_size_ratio{s}", SERVICE_LEGEND, instant=True)], unit="none", decimals=2, width=8,
                       name_overrides=service_overrides(model, "backup_size_ratio")),
            timeseries_panel("Newest backup age", "Age of the newest file; dashed lines: the backup-age tiers every service alerts on.",
                             [query(age, LEGEND)], unit="s", steps=shared_steps(model, "backup_age"), width=24),
            dash_b.Row("Size"),
            timeseries_panel("Newest file size", "Size of the newest backup file.",
                             [query(f"stackprobe_backup_newest_size_bytes{s}", LEGEND)], unit="bytes"),
            timeseries_panel("Size ratio", "Newest / median of the previous files; dashed lines: the size-change tiers every "
                             "service alerts on.",
                             [query(f"stackprobe_backup_size_ratio{s}", LEGEND)], unit="none", steps=shared_steps(model, "backup_size_ratio")),
            timeseries_panel("Total size", "All matching backup files together.",
                             [query(f"stackprobe_backup_total_size_bytes{s}", LEGEND)], unit="bytes"),
            dash_b.Row("Retention"),
            timeseries_panel("Files", "Backup files matching the target's globs.",
                             [query(f"stackprobe_backup_files{s}", LEGEND)], unit="short"),
            timeseries_panel("Oldest backup age", "Age of the oldest file kept (the retention window actually held).",
                             [query(f"time() - stackprobe_backup_oldest_timestamp_seconds{s}", LEGEND)], unit="s"),
            timeseries_panel("Verification age", "Time since the newest file was last verified.",
                             [query(f"time() - stackprobe_backup_verify_timestamp_seconds{s}", LEGEND)], unit="s"),
        ],
        time_from="now-7d",
        refresh="5m",
    )


# --- Certificates ----------------------------------------------------------------------------

def cert(model: Model) -> dash_m.Dashboard:
    s = scope()
    days_steps = shared_steps(model, "cert_days_left")
    return _dashboard(
        "cert",
        "Certificates",
        "TLS certificates checked by stackprobe (files and endpoints): days left for every certificate of every "
        "chain, soonest first and coloured at 30/14/7 days, chain verification and host-name match.",
        [
            dash_b.Row("Expiry"),
            table_panel("Days left (soonest first)", "Every certificate found (leaf and chain) with the days until its NotAfter; "
                        "coloured by the certificate-expiry tiers every service alerts on.",
                        query(f"(stackprobe_cert_not_after_timestamp_seconds{s} - time()) / 86400", instant=True, table_format=True),
                        value_title="Days left", unit="suffix: days", decimals=1, steps=days_steps, sort_desc=False, width=24, height=10),
            timeseries_panel("Earliest expiry per target", "Days until the earliest NotAfter of each target; dashed lines: the "
                             "certificate-expiry tiers every service alerts on.",
                             [query(f"(stackprobe_cert_earliest_not_after_timestamp_seconds{s} - time()) / 86400", LEGEND)],
                             unit="suffix: days", steps=days_steps, width=24),
            dash_b.Row("Validity"),
            stat_panel("Chain verified", "1 if the chain verifies against the system or configured CAs.",
                       [query(f"stackprobe_cert_chain_verified{s}", "{{target}} {{source}}", instant=True)], unit="none",
                       steps=BOOLEAN_OK, mappings=up_down("VALID", "INVALID"), width=12, height=6),
            stat_panel("Host name match", "1 if the leaf certificate matches the expected host name.",
                       [query(f"stackprobe_cert_hostname_match{s}", "{{target}} {{source}}", instant=True)], unit="none",
                       steps=BOOLEAN_OK, mappings=up_down("MATCH", "MISMATCH"), width=12, height=6),
        ],
        time_from="now-30d",
        refresh="1h",
    )


#: One builder per prober, keyed by prober name (the `prober` label of stackprobe's series).
PROBER_DASHBOARDS: dict[str, Callable[[Model], dash_m.Dashboard]] = {
    "mysql": mysql,
    "redis": redis,
    "http": http,
    "backup": backup,
    "cert": cert,
}
