"""Every metric family stackprobe exports: the public interface of the exporter.

Probers, the collector, the README's metrics table and the generator's contract test all read
this one list; a prober cannot emit a name (or a label set) that is not declared here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PREFIX = "stackprobe_"

#: Labels every per-target family carries, in this order.
TARGET_LABELS: tuple[str, ...] = ("service", "target")

#: The closed set of reasons a probe can fail with (label `reason` of the errors counter).
ERROR_REASONS: tuple[str, ...] = (
    "timeout",  # the target's timeout expired
    "dns",  # the host name did not resolve
    "connect",  # TCP connection refused, reset or unreachable
    "tls",  # TLS handshake or certificate verification failed
    "auth",  # the server rejected the credentials
    "query",  # connected, but a query or command failed
    "status",  # HTTP status not among the expected codes
    "body",  # HTTP body did not match, or a JSON value was missing
    "io",  # a file or directory could not be read
    "empty",  # nothing matched (no backup file, no certificate)
    "verify",  # a backup file failed its integrity check
    "internal",  # a bug in stackprobe; logged with a traceback
)

Kind = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True)
class Family:
    """One metric family: its full name, type, help text and the labels after TARGET_LABELS."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    #: The prober that emits it, or None for exporter-wide families.
    prober: str | None = None
    #: Histogram bucket upper bounds (without +Inf).
    buckets: tuple[float, ...] = ()
    #: False for exporter-wide families that do not carry service/target.
    per_target: bool = True

    @property
    def label_names(self) -> tuple[str, ...]:
        return (TARGET_LABELS if self.per_target else ()) + self.labels

    @property
    def base_name(self) -> str:
        """The name without the `_total` suffix, as prometheus-client's families expect it."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name


def _f(name: str, kind: Kind, help: str, *labels: str, prober: str | None = None, **kw) -> Family:
    return Family(PREFIX + name, kind, help, tuple(labels), prober, **kw)


# The playbooks' latency thresholds (0.3 s target, 0.5 s average, 1/2/5 s P95 tiers) are bucket
# bounds, so averages and quantiles computed from the histogram are exact at those lines.
HTTP_DURATION_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)

_EXPORTER = [
    _f("build_info", "gauge", "Build information of the running stackprobe; always 1.", "version", "python_version", per_target=False),
    _f("config_last_reload_successful", "gauge", "1 if the last configuration (re)load succeeded, 0 if it failed and the previous configuration is still in use.", per_target=False),
    _f("config_last_reload_success_timestamp_seconds", "gauge", "Unix time of the last successful configuration load.", per_target=False),
    _f("targets", "gauge", "Number of configured targets per prober (with --shard: the ones this replica owns).", "prober", per_target=False),
    _f("shard_info", "gauge", "The shard this replica is (--shard=INDEX/COUNT; 0/1 unsharded): it probes the targets whose name hashes to index; always 1.", "index", "count", per_target=False),
]

_PROBE = [
    _f("probe_success", "gauge", "1 if the last completed probe of the target succeeded, else 0.", "prober"),
    _f("probe_duration_seconds", "gauge", "How long the last completed probe of the target took.", "prober"),
    _f("probe_last_run_timestamp_seconds", "gauge", "Unix time the last completed probe of the target finished.", "prober"),
    _f("probe_last_success_timestamp_seconds", "gauge", "Unix time the last successful probe of the target finished (absent until one succeeds).", "prober"),
    _f("probe_errors_total", "counter", "Failed probes of the target since the exporter started, by reason.", "prober", "reason"),
]

_MYSQL = [
    _f("mysql_up", "gauge", "1 if the MySQL/MariaDB server accepted the connection and answered, else 0.", prober="mysql"),
    _f("mysql_table_size_bytes", "gauge", "Table size from information_schema.TABLES: data, index, or free (allocated but unused, i.e. fragmentation).", "schema", "table", "component", prober="mysql"),
    _f("mysql_table_rows", "gauge", "Estimated number of rows of the table (information_schema.TABLES.TABLE_ROWS).", "schema", "table", prober="mysql"),
    _f("mysql_index_cardinality", "gauge", "Estimated number of distinct keys of the index (information_schema.STATISTICS.CARDINALITY); for a composite index, that of its last column, i.e. of the whole key. Absent when the server has no estimate.", "schema", "table", "index", prober="mysql"),
    _f("mysql_index_selectivity", "gauge", "mysql_index_cardinality divided by mysql_table_rows (1 = unique, near 0 = unselective; both are estimates, so slightly above 1 is possible). Absent when the table has 0 rows.", "schema", "table", "index", prober="mysql"),
    _f("mysql_tables", "gauge", "Number of base tables in the probed schemas, including those left out by max_tables.", prober="mysql"),
    _f("mysql_tables_omitted", "gauge", "Tables left out of the per-table series because of max_tables (the smallest ones).", prober="mysql"),
    _f("mysql_threads_connected", "gauge", "Currently open connections (Threads_connected).", prober="mysql"),
    _f("mysql_threads_running", "gauge", "Threads not sleeping (Threads_running).", prober="mysql"),
    _f("mysql_max_connections", "gauge", "The server's max_connections setting.", prober="mysql"),
    _f("mysql_slow_queries_total", "counter", "Queries that took longer than long_query_time (Slow_queries).", prober="mysql"),
    _f("mysql_questions_total", "counter", "Statements executed on behalf of clients (Questions).", prober="mysql"),
    _f("mysql_aborted_connects_total", "counter", "Failed connection attempts (Aborted_connects).", prober="mysql"),
    _f("mysql_uptime_seconds", "gauge", "Seconds since the server started (Uptime).", prober="mysql"),
    _f("mysql_innodb_deadlocks_total", "counter", "InnoDB deadlocks (Innodb_deadlocks on MariaDB, lock_deadlocks in INNODB_METRICS on MySQL).", prober="mysql"),
    _f("mysql_innodb_row_lock_waits_total", "counter", "Times an InnoDB row lock had to be waited for (Innodb_row_lock_waits).", prober="mysql"),
    _f("mysql_replica", "gauge", "1 if the server is a replica (has a replication source configured), else 0.", prober="mysql"),
    _f("mysql_replication_lag_seconds", "gauge", "Seconds_Behind_Master of a replica; absent on a primary, and while the SQL thread is stopped.", "channel", prober="mysql"),
    _f("mysql_replication_running", "gauge", "1 if both the replica's IO and SQL threads are running.", "channel", prober="mysql"),
]

_REDIS = [
    _f("redis_up", "gauge", "1 if the Redis server accepted the connection and answered PING, else 0.", prober="redis"),
    _f("redis_ping_duration_seconds", "gauge", "Round-trip time of one PING.", prober="redis"),
    _f("redis_uptime_seconds", "gauge", "Seconds since the Redis server started.", prober="redis"),
    _f("redis_keyspace_hits_total", "counter", "Successful key lookups (keyspace_hits); includes the prober's own lookups of configured keys.", prober="redis"),
    _f("redis_keyspace_misses_total", "counter", "Failed key lookups (keyspace_misses); includes the prober's own lookups of missing configured keys.", prober="redis"),
    _f("redis_memory_used_bytes", "gauge", "Memory allocated by Redis (used_memory).", prober="redis"),
    _f("redis_memory_max_bytes", "gauge", "The maxmemory setting; 0 means no limit.", prober="redis"),
    _f("redis_memory_fragmentation_ratio", "gauge", "used_memory_rss divided by used_memory (mem_fragmentation_ratio).", prober="redis"),
    _f("redis_connected_clients", "gauge", "Client connections, excluding replicas.", prober="redis"),
    _f("redis_blocked_clients", "gauge", "Clients blocked in a blocking call (BLPOP, ...).", prober="redis"),
    _f("redis_rejected_connections_total", "counter", "Connections rejected because of maxclients.", prober="redis"),
    _f("redis_evicted_keys_total", "counter", "Keys evicted because of maxmemory.", prober="redis"),
    _f("redis_expired_keys_total", "counter", "Keys removed because their TTL expired.", prober="redis"),
    _f("redis_commands_processed_total", "counter", "Commands processed by the server.", prober="redis"),
    _f("redis_db_keys", "gauge", "Keys in the database (INFO keyspace); 0 for an empty database the target names.", "db", prober="redis"),
    _f("redis_db_keys_expiring", "gauge", "Keys with a TTL in the database (INFO keyspace).", "db", prober="redis"),
    _f("redis_rdb_last_save_timestamp_seconds", "gauge", "Unix time of the last successful RDB save.", prober="redis"),
    _f("redis_rdb_last_bgsave_success", "gauge", "1 if the last background RDB save succeeded.", prober="redis"),
    _f("redis_rdb_changes_since_last_save", "gauge", "Writes since the last RDB save.", prober="redis"),
    _f("redis_aof_enabled", "gauge", "1 if append-only-file persistence is on.", prober="redis"),
    _f("redis_aof_last_write_success", "gauge", "1 if the last AOF write succeeded.", prober="redis"),
    _f("redis_instance_info", "gauge", "Role and version of the Redis server; always 1.", "role", "version", prober="redis"),
    _f("redis_connected_replicas", "gauge", "Replicas connected to this primary.", prober="redis"),
    _f("redis_master_link_up", "gauge", "On a replica: 1 if the link to its primary is up; absent on a primary.", prober="redis"),
    _f("redis_pattern_keys", "gauge", "Keys matching a configured pattern, counted with SCAN (a lower bound when the scan budget ran out).", "db", "pattern", prober="redis"),
    _f("redis_pattern_scan_truncated", "gauge", "1 if the scan budget ran out before the pattern's count was complete.", "db", "pattern", prober="redis"),
    _f("redis_key_length", "gauge", "Length of a configured key (LLEN, SCARD, ZCARD, HLEN, XLEN or STRLEN by its type); 0 with type none if missing.", "db", "key", "type", prober="redis"),
]

_HTTP = [
    _f("http_up", "gauge", "1 if the endpoint answered with an expected status and its body passed the configured checks, else 0.", prober="http"),
    _f("http_status_code", "gauge", "HTTP status code of the last response, also when unexpected (0 if none).", prober="http"),
    _f("http_phase_duration_seconds", "gauge", "Duration of each phase of the last probe, summed over its redirects: connect (DNS lookup and TCP connect), tls (handshake; 0 for plain HTTP), request (sending headers and body), first_byte (waiting for the response headers), transfer (reading the body). A phase cut off by a failure counts until the failure.", "phase", prober="http"),
    _f("http_request_duration_seconds", "histogram", "Total duration of each probe's request, redirects and body included, accumulated since the exporter started; probes that failed before the request was sent (DNS, connect or TLS failures) are not observed.", prober="http", buckets=HTTP_DURATION_BUCKETS),
    _f("http_response_size_bytes", "gauge", "Bytes of the last response body (after Content-Encoding decoding), counted in full even beyond max_body_bytes.", prober="http"),
    _f("http_redirects", "gauge", "Redirects followed by the last request.", prober="http"),
    _f("http_version_info", "gauge", "HTTP and TLS versions of the last response (tls_version empty for plain HTTP); always 1.", "http_version", "tls_version", prober="http"),
    _f("http_cert_earliest_not_after_timestamp_seconds", "gauge", "For HTTPS: the earliest NotAfter of the certificates the server of the final URL sent (the served chain; just the leaf on Python builds that do not expose the chain).", prober="http"),
    _f("http_json_value", "gauge", "A configured JSON value of the response body, by dotted path (true=1, false=0, numbers as is).", "path", prober="http"),
]

_BACKUP = [
    _f("backup_files", "gauge", "Backup files matching the target's globs (younger than min_age excluded).", prober="backup"),
    _f("backup_newest_timestamp_seconds", "gauge", "Modification time of the newest backup file.", prober="backup"),
    _f("backup_oldest_timestamp_seconds", "gauge", "Modification time of the oldest backup file (for retention checks).", prober="backup"),
    _f("backup_newest_size_bytes", "gauge", "Size of the newest backup file.", prober="backup"),
    _f("backup_total_size_bytes", "gauge", "Total size of all matching backup files.", prober="backup"),
    _f("backup_size_ratio", "gauge", "Size of the newest file divided by the median size of the previous ones (size-anomaly check); absent while there is no previous file.", prober="backup"),
    _f("backup_verify_success", "gauge", "1 if the newest backup file passed its integrity check (gzip, tar or sha256); absent when verify is none.", prober="backup"),
    _f("backup_verify_timestamp_seconds", "gauge", "Unix time the newest backup file was verified (each file is verified once, so this stays put until a newer file appears).", prober="backup"),
]

_CERT = [
    _f("cert_not_after_timestamp_seconds", "gauge", "NotAfter of each certificate found (leaf and chain); serial in upper-case hex.", "source", "subject_cn", "issuer_cn", "serial", prober="cert"),
    _f("cert_not_before_timestamp_seconds", "gauge", "NotBefore of each certificate found (leaf and chain).", "source", "subject_cn", "issuer_cn", "serial", prober="cert"),
    _f("cert_earliest_not_after_timestamp_seconds", "gauge", "The earliest NotAfter over every certificate of the target.", prober="cert"),
    _f("cert_chain_verified", "gauge", "Server targets: 1 if the served chain verifies against the system or configured CAs (expiry included), else 0.", "source", prober="cert"),
    _f("cert_hostname_match", "gauge", "Server targets: 1 if the leaf certificate's subjectAltName matches the expected host name, else 0.", "source", prober="cert"),
]

FAMILIES: tuple[Family, ...] = tuple(_EXPORTER + _PROBE + _MYSQL + _REDIS + _HTTP + _BACKUP + _CERT)
BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}


def family(name: str) -> Family:
    """Look a family up by its full name or by its name without the `stackprobe_` prefix."""
    try:
        return BY_NAME[name if name.startswith(PREFIX) else PREFIX + name]
    except KeyError:
        raise KeyError(f"metric family {name!r} is not declared in exporter/metrics.py") from None


def exported_series_names() -> set[str]:
    """Every series name a scrape can contain (histogram and counter suffixes included)."""
    names: set[str] = set()
    for f in FAMILIES:
        if f.kind == "histogram":
            names |= {f.name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(f.name)
    return names
