"""MySQL/MariaDB: table and index sizes, server counters and replication state, read-only.

Each probe opens one connection (pymysql, imported only once a MySQL target is probed), marks
the session read-only and runs four sections, each of which fails on its own (a missing grant
loses its section, reported by stackprobe_mysql_collector_success{collector}, not the probe):
`global_status` (SHOW GLOBAL STATUS, @@max_connections), `replica_status`, `tables`
(information_schema.TABLES) and `index_stats` (information_schema.STATISTICS). Schema names from
the config only ever travel as query parameters.

information_schema.STATISTICS makes the server open every table and costs it several times what
TABLES does (bench/mysql_cost.py measures it), while index statistics only change when InnoDB
re-samples them; so it is read every `index_stats_interval` (default 1 h) and probes in between
export the values last read.

The timeout holds on both ends: the session's max_statement_time (MariaDB) or
max_execution_time (MySQL) is the probe's timeout, and when the timeout passes (a watchdog
thread) or the scheduler gives up on the probe (shutdown) the probe's socket is shut, which
ends the worker's wait at once, and the worker KILLs its connection on the server from a second
one (no privilege is needed to kill one's own connections), so nothing keeps running there.

Monitoring user
---------------
On MariaDB 10.5 and later the prober needs exactly these privileges (one `GRANT SELECT` line
per schema to measure; verified against MariaDB 10.11 by tests/test_mysql.py, which creates this
user from the lines below and probes with it):

    CREATE USER 'stackprobe'@'localhost' IDENTIFIED BY 'change-me';
    GRANT SELECT ON gallery.* TO 'stackprobe'@'localhost';
    GRANT SLAVE MONITOR ON *.* TO 'stackprobe'@'localhost';

- `SELECT` on each schema: information_schema.TABLES and .STATISTICS only list the tables the
  user holds some privilege on, so without it a schema simply looks empty.
- `SLAVE MONITOR` (also spelled `REPLICA MONITOR`) for `SHOW ALL REPLICAS STATUS`; without it
  the `replica_status` section fails (collector_success 0, no replication series), the rest of
  the probe does not.
- SHOW GLOBAL STATUS and @@max_connections need no privilege.
- `'localhost'` matches connections over the unix socket (and TCP from 127.0.0.1 unless the
  server runs with skip-name-resolve); otherwise name the exporter's address.
- On MySQL 8 grant `PROCESS, REPLICATION CLIENT ON *.*` instead of SLAVE MONITOR: REPLICATION
  CLIENT for SHOW REPLICA STATUS, PROCESS for information_schema.INNODB_METRICS, where MySQL
  keeps its deadlock count (not verified here; the tests run MariaDB).
"""

from __future__ import annotations

import importlib.abc
import socket
import ssl
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from pydantic import Field

from stackprobe.configsource import Duration

from ..metrics import counter, gauge
from ..collector import escape_label
from .base import BlockingProber, ProbeContext, ProbeError, SecretRef, TargetConfig, TLSClientConfig, os_error_in

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")

#: SHOW GLOBAL STATUS variable -> family (without prefix).
_STATUS_FAMILIES = {
    "Threads_connected": "mysql_threads_connected",
    "Threads_running": "mysql_threads_running",
    "Slow_queries": "mysql_slow_queries_total",
    "Questions": "mysql_questions_total",
    "Aborted_connects": "mysql_aborted_connects_total",
    "Uptime": "mysql_uptime_seconds",
    "Innodb_deadlocks": "mysql_innodb_deadlocks_total",
    "Innodb_row_lock_waits": "mysql_innodb_row_lock_waits_total",
}

# MariaDB 10.5+ lists every multi-source connection with SHOW ALL REPLICAS STATUS; MySQL 8.0.22+
# knows only SHOW REPLICA STATUS (one row per channel); older servers only SHOW SLAVE STATUS.
# A statement the server cannot parse falls through to the next.
_REPLICA_STATUS_STATEMENTS = ("SHOW ALL REPLICAS STATUS", "SHOW REPLICA STATUS", "SHOW SLAVE STATUS")

# Error codes (pymysql.constants.ER and CR), spelled out so that loading this module does not
# load pymysql. 2000-2999 are the client library's own (CR_*), the rest the server's.
_PARSE_ERROR = 1064
# Access denied to a database / for a user, host not allowed, 1698: the account's plugin
# (e.g. unix_socket) refused this client.
_AUTH_ERRORS = {1044, 1045, 1130, 1698}
# KILL QUERY, MariaDB's max_statement_time, MySQL's max_execution_time.
_TIMEOUT_ERRORS = {1317, 1969, 3024}
_CLIENT_ERRORS = range(2000, 3000)
_CONNECTION_LOST = {2006, 2013}  # CR_SERVER_GONE_ERROR, CR_SERVER_LOST
_SSL_CONNECTION_ERROR = 2026

#: How long the second connection that KILLs a timed-out probe's connection may take.
_KILL_TIMEOUT = 2.0


class MysqlTarget(SecretRef, TargetConfig):
    """One MySQL or MariaDB server."""

    default_interval: ClassVar[float] = 300.0  # playbook 002: database checks every 5 minutes
    default_timeout: ClassVar[float] = 30.0

    host: str = Field("127.0.0.1", description="Server host name or address (ignored when unix_socket is set).")
    port: int = Field(3306, ge=1, le=65535, description="Server TCP port.")
    unix_socket: Path | None = Field(None, description="Connect over this unix socket instead of TCP.")
    user: str = Field(description="Monitoring user; see the README for the GRANTs it needs.")
    schemas: tuple[str, ...] | None = Field(None, min_length=1, description="Schemas whose tables and indexes are measured (default: every schema but mysql, information_schema, performance_schema and sys).")
    max_tables: int = Field(1000, ge=0, description="Export per-table and per-index series for at most this many tables, the largest (data + index bytes) first; the rest are counted in mysql_tables_omitted.")
    index_stats_interval: Duration = Field(3600.0, description="How often to re-read index statistics (information_schema.STATISTICS, which makes the server open every table); probes in between export the values last read. At most the interval: at every probe.")
    tls: TLSClientConfig | None = Field(None, description="Connect with TLS (`ca_file`, `cert_file`/`key_file`, `verify`). Never falls back to plaintext: a server without TLS fails with reason `tls`. Without it the connection is plaintext.")


class _WithoutCryptography(importlib.abc.MetaPathFinder):
    """Refuses `cryptography` to one thread: the one importing pymysql (see load_pymysql)."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name.partition(".")[0] == "cryptography" and threading.get_ident() == self.thread:
            raise ImportError(f"{name}: loaded when a server asks for RSA password exchange")
        return None


_PYMYSQL_LOCK = threading.Lock()


def load_pymysql() -> ModuleType:
    """pymysql, with cryptography loaded only once a server asks for it.

    pymysql imports cryptography at once (7.5 MiB of RSS, measured) for the one step that needs
    it: sha256_password's and caching_sha2_password's RSA exchange of the password over a
    plaintext connection (MySQL 8's default plugin, when the server has not cached the account;
    never over TLS or a unix socket, never on MariaDB). So pymysql is imported while that one
    import fails, as it would where cryptography is not installed, and its RSA step imports
    cryptography and puts pymysql's names back before it runs (tests/test_mysql.py checks it).
    """
    with _PYMYSQL_LOCK:
        if "pymysql" in sys.modules:
            return sys.modules["pymysql"]
        finder = _WithoutCryptography()
        sys.meta_path.insert(0, finder)
        try:
            import pymysql
            from pymysql import _auth
        finally:
            sys.meta_path.remove(finder)
        if not _auth._have_cryptography:  # cryptography was not loaded by something else already
            rsa_encrypt = _auth.sha2_rsa_encrypt

            def load_then_encrypt(password: bytes, salt: bytes, public_key: bytes) -> bytes:
                from cryptography.hazmat.backends import default_backend
                from cryptography.hazmat.primitives import hashes, serialization
                from cryptography.hazmat.primitives.asymmetric import padding

                _auth.default_backend, _auth.hashes, _auth.serialization, _auth.padding = (
                    default_backend, hashes, serialization, padding)
                _auth._have_cryptography, _auth.sha2_rsa_encrypt = True, rsa_encrypt
                return rsa_encrypt(password, salt, public_key)
            _auth.sha2_rsa_encrypt = load_then_encrypt
        return pymysql


def _placeholders(values: tuple[str, ...]) -> str:
    return ", ".join(["%s"] * len(values))


def _schema_filter(target: MysqlTarget) -> tuple[str, tuple[str, ...]]:
    """`TABLE_SCHEMA [NOT] IN (%s, ...)` and its parameters: names never enter the SQL text."""
    if target.schemas:
        return f"TABLE_SCHEMA IN ({_placeholders(target.schemas)})", tuple(target.schemas)
    return f"TABLE_SCHEMA NOT IN ({_placeholders(SYSTEM_SCHEMAS)})", SYSTEM_SCHEMAS


def _error_code(e: BaseException) -> int | None:
    return e.args[0] if e.args and isinstance(e.args[0], int) else None


def _probe_error(e: Exception, connected: bool) -> ProbeError:
    """Map what pymysql raised to a reason; pymysql's messages hold host and user, never the password."""
    pymysql = load_pymysql()

    if not isinstance(e, pymysql.MySQLError):
        # pymysql parses what the server sends without checking it: a peer that is not a MySQL
        # server (or a broken one) surfaces as IndexError, struct.error, UnicodeDecodeError...
        where = "a reply" if connected else "the server's greeting"
        detail = str(e).splitlines()[0] if str(e) else ""
        return ProbeError("query" if connected else "connect", f"malformed MySQL protocol in {where} ({type(e).__name__}: {detail})")
    code = _error_code(e)
    message = f"({code}) {e.args[1]}" if len(e.args) > 1 else str(e)
    cause = os_error_in(e)
    if isinstance(cause, TimeoutError) or code in _TIMEOUT_ERRORS:  # socket.timeout is TimeoutError
        return ProbeError("timeout", message)
    if isinstance(cause, socket.gaierror):
        return ProbeError("dns", message)
    if isinstance(cause, ssl.SSLError) or code == _SSL_CONNECTION_ERROR:  # e.g. the server offers no TLS
        return ProbeError("tls", message)
    if code in _AUTH_ERRORS:
        return ProbeError("auth", message)
    if not connected or code in _CONNECTION_LOST or cause is not None:
        return ProbeError("connect", message)
    if code is not None and code not in _CLIENT_ERRORS:
        return StatementRefused(code, message)
    return ProbeError("query", message)


class StatementRefused(ProbeError):
    """The server answered one statement with an error (a missing grant, a statement it does not
    know): the connection is fine, so only the section that needed the statement fails."""

    def __init__(self, code: int, message: str):
        super().__init__("query", message)
        self.code = code


class Session:
    """One probe's connection, bounded by the target's timeout on the client and on the server.

    Every pymysql call goes through it, so whatever pymysql raises leaves as a ProbeError."""

    def __init__(self, target: MysqlTarget, ctx: ProbeContext):
        pymysql = load_pymysql()

        self.target, self.ctx = target, ctx
        self.expired = False
        timeout = ctx.remaining()
        self.conn = pymysql.connect(**_connect_args(target, timeout), defer_connect=True)
        self._watchdog = threading.Timer(timeout, self.abort)
        self._watchdog.daemon = True
        ctx.on_abandon(self.abort)

    def __enter__(self) -> "Session":
        self._watchdog.start()
        try:
            self.conn.connect()
        except Exception as e:
            self.close()
            raise self._error(e, connected=False) from e
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._watchdog.cancel()
        if self.conn.open:
            self.conn.close()

    def rows(self, sql: str, params: tuple | None = None) -> tuple[tuple, ...]:
        """All rows as tuples; `%s` in sql is a placeholder only when params are given."""
        return self._run(sql, params, lambda cursor: cursor.fetchall())

    def dicts(self, sql: str) -> list[dict[str, Any]]:
        """All rows as {column: value}, for statements whose columns differ between servers."""
        def fetch(cursor: Any) -> list[dict[str, Any]]:
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        return self._run(sql, None, fetch)

    def _run(self, sql: str, params: tuple | None, fetch: Callable[[Any], Any]) -> Any:
        if self.expired or self.ctx.remaining() <= 0.001:
            raise ProbeError("timeout", "timeout reached between queries")
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(sql, params)
                return fetch(cursor)
        except Exception as e:
            raise self._error(e, connected=True) from e

    def _error(self, e: Exception, connected: bool) -> ProbeError:
        if self.expired:
            thread_id = getattr(self.conn, "server_thread_id", None)  # set once the server greeted us
            if thread_id:
                kill_connection(self.target, thread_id[0])
            return ProbeError("timeout", f"no result within the {self.target.timeout:g}s timeout; its connection was killed on the server")
        return e if isinstance(e, ProbeError) else _probe_error(e, connected)

    def abort(self) -> None:
        """At the timeout (the watchdog) or when the scheduler gives up: end the worker's wait on
        the server at once. Never blocks; the worker then KILLs the server side (_error)."""
        self.expired = True
        sock = getattr(self.conn, "_sock", None)  # pymysql's socket; None before connect and after close
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the worker's blocked read
            except OSError:
                pass


def _connect_args(target: MysqlTarget, timeout: float) -> dict[str, Any]:
    return dict(
        host=target.host, port=target.port, unix_socket=str(target.unix_socket) if target.unix_socket else None,
        user=target.user, password=target.password() or "", charset="utf8mb4", autocommit=True,
        connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout, program_name="stackprobe",
        ssl=target.tls.ssl_context() if target.tls else None, ssl_disabled=target.tls is None,
    )


def kill_connection(target: MysqlTarget, thread_id: int) -> None:
    """KILL the probe's server-side connection from a second one, so a query that does not notice
    its client went away (one busy working, not waiting) stops too. Best effort, briefly bounded:
    if this fails, max_statement_time still ends the statement on the server."""
    pymysql = load_pymysql()
    try:
        with pymysql.connect(**_connect_args(target, _KILL_TIMEOUT)) as conn, conn.cursor() as cursor:
            cursor.execute("KILL CONNECTION %s", (thread_id,))
    except Exception:  # the connection may have ended by itself meanwhile (unknown thread id)
        pass


@dataclass(frozen=True)
class _IndexStats:
    """Index series read at one time: their exposition lines as the ProbeContext that read them
    rendered them, included as they are in later probes (no new objects: these are most of a
    probe's series), and the tables they were read for."""

    read_at: float  # time.monotonic()
    timestamp: float  # time.time()
    duration: float
    tables: frozenset[tuple[str, str]]
    pieces: dict[str, bytes]


#: The probe's sections in the order they run, each with the families it sets: when the server
#: refuses one of its statements, collector_success{collector} is 0 and exactly these are missing.
#: The rules generator alerts on a section that the service's KPIs read (MysqlProber.collectors);
#: tests/test_mysql.py holds every section to its list.
COLLECTORS: dict[str, tuple[str, ...]] = {
    "global_status": (*_STATUS_FAMILIES.values(), "mysql_max_connections"),
    "replica_status": ("mysql_replica", "mysql_replication_lag_seconds", "mysql_replication_running"),
    "tables": ("mysql_tables", "mysql_tables_omitted", "mysql_table_size_bytes", "mysql_table_rows"),
    "index_stats": ("mysql_index_cardinality", "mysql_index_selectivity", "mysql_index_stats_timestamp_seconds"),
}

#: What this prober exports (exporter/metrics.py collects every prober's FAMILIES).
FAMILIES = (
    gauge("mysql_up", "1 if the MySQL/MariaDB server accepted the connection and answered, else 0."),
    gauge("mysql_table_size_bytes", "Table size from information_schema.TABLES: data, index, or free (allocated but unused, i.e. fragmentation).", "schema", "table", "component"),
    gauge("mysql_table_rows", "Estimated number of rows of the table (information_schema.TABLES.TABLE_ROWS).", "schema", "table"),
    gauge("mysql_index_cardinality", "Estimated number of distinct keys of the index (information_schema.STATISTICS.CARDINALITY); for a composite index, that of its last column, i.e. of the whole key. Absent when the server has no estimate.", "schema", "table", "index"),
    gauge("mysql_index_selectivity", "mysql_index_cardinality divided by mysql_table_rows (1 = unique, near 0 = unselective; both are estimates, so slightly above 1 is possible). Absent when the table has 0 rows.", "schema", "table", "index"),
    gauge("mysql_tables", "Number of base tables in the probed schemas, including those left out by max_tables."),
    gauge("mysql_tables_omitted", "Tables left out of the per-table series because of max_tables (the smallest ones)."),
    gauge("mysql_threads_connected", "Currently open connections (Threads_connected)."),
    gauge("mysql_threads_running", "Threads not sleeping (Threads_running)."),
    gauge("mysql_max_connections", "The server's max_connections setting."),
    counter("mysql_slow_queries_total", "Queries that took longer than long_query_time (Slow_queries)."),
    counter("mysql_questions_total", "Statements executed on behalf of clients (Questions)."),
    counter("mysql_aborted_connects_total", "Failed connection attempts (Aborted_connects)."),
    gauge("mysql_uptime_seconds", "Seconds since the server started (Uptime)."),
    counter("mysql_innodb_deadlocks_total", "InnoDB deadlocks (Innodb_deadlocks on MariaDB, lock_deadlocks in INNODB_METRICS on MySQL)."),
    counter("mysql_innodb_row_lock_waits_total", "Times an InnoDB row lock had to be waited for (Innodb_row_lock_waits)."),
    gauge("mysql_replica", "1 if the server is a replica (has a replication source configured), else 0."),
    gauge("mysql_replication_lag_seconds", "Seconds_Behind_Master of a replica; absent on a primary, and while the SQL thread is stopped.", "channel"),
    gauge("mysql_replication_running", "1 if both the replica's IO and SQL threads are running.", "channel"),
    gauge("mysql_collector_success", "1 if the section's statements succeeded at the last probe, 0 if the server refused one (a missing grant, say; /probe?debug=true tells which), so its series are missing: " + ", ".join(COLLECTORS) + ".", "collector"),
    gauge("mysql_collector_duration_seconds", "How long the section took at the last probe (index_stats: at its last read, see index_stats_interval).", "collector"),
    gauge("mysql_index_stats_timestamp_seconds", "Unix time the exported index statistics were read (information_schema.STATISTICS is read every index_stats_interval)."),
)


class MysqlProber(BlockingProber[MysqlTarget]):
    name = "mysql"
    families = FAMILIES
    target_model = MysqlTarget
    collectors = COLLECTORS
    summary = "MySQL/MariaDB table and index sizes, server counters and replication lag (read-only)."

    def __init__(self) -> None:
        super().__init__()
        #: The last index statistics of each target, dropped with the target's config.
        self._index_stats: weakref.WeakKeyDictionary[MysqlTarget, _IndexStats] = weakref.WeakKeyDictionary()
        #: Per target, the schema and table labels of the last probe's tables, rendered (set_many's reuse).
        self._table_keys: weakref.WeakKeyDictionary[MysqlTarget, dict[str, dict]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def probe_blocking(self, target: MysqlTarget, ctx: ProbeContext) -> None:
        ctx.set("mysql_up", 0)
        where = f"unix socket {target.unix_socket}" if target.unix_socket else f"{target.host}:{target.port}"
        ctx.log(f"connecting to {where} as {target.user!r}{' with TLS' if target.tls else ''}")
        with Session(target, ctx) as session:
            ctx.log(f"connected: server {session.conn.get_server_info()}, connection id {session.conn.thread_id()}")
            session.rows(_session_setup(session.conn.get_server_info()), (ctx.remaining(),))
            ctx.set("mysql_up", 1)
            self._section("global_status", _global_status, session, ctx)
            self._section("replica_status", _replication, session, ctx)
            with self._lock:
                table_keys = self._table_keys.setdefault(target, {})
            kept = self._section("tables", _tables, session, ctx, table_keys)
            if kept is not None:
                self._section("index_stats", self._index_series, session, ctx, kept)
            else:  # it reads the indexes of the tables that section lists: as blind as that one
                ctx.log("section index_stats skipped: the tables section failed")
                ctx.set("mysql_collector_success", 0, collector="index_stats")

    @staticmethod
    def _section(collector: str, read: Callable[..., Any], session: Session, ctx: ProbeContext, *args: Any) -> Any:
        """Run one section; a statement the server refuses fails this section only."""
        started = time.monotonic()
        try:
            result = read(session, ctx, *args)
        except StatementRefused as e:
            ctx.log(f"section {collector} failed: {e}")
            ctx.set("mysql_collector_success", 0, collector=collector)
            ctx.set("mysql_collector_duration_seconds", time.monotonic() - started, collector=collector)
            return None
        duration = result.duration if isinstance(result, _IndexStats) else time.monotonic() - started
        ctx.set("mysql_collector_success", 1, collector=collector)
        ctx.set("mysql_collector_duration_seconds", duration, collector=collector)
        return result

    def _index_series(self, session: Session, ctx: ProbeContext, kept: dict[tuple[str, str], Any]) -> _IndexStats:
        """Index cardinality and selectivity of the kept tables, re-read every index_stats_interval."""
        target = session.target
        with self._lock:
            stats = self._index_stats.get(target)
        age = time.monotonic() - stats.read_at if stats else None
        if stats is None or age >= target.index_stats_interval:
            stats = _read_index_stats(session, kept)
            with self._lock:
                self._index_stats[target] = stats
            ctx.log(f"index statistics read in {stats.duration:.3f}s")
        else:
            ctx.log(f"index statistics from {age:.0f}s ago (index_stats_interval {target.index_stats_interval:g}s)")
        ctx.set("mysql_index_stats_timestamp_seconds", stats.timestamp)
        gone = stats.tables - kept.keys()  # dropped, or moved out of max_tables, since the last read
        ctx.include(_without_tables(stats.pieces, gone) if gone else stats.pieces)
        return stats


def _session_setup(server_version: str) -> str:
    """One statement: read-only, and the probe's timeout as the server's own statement limit."""
    if "MariaDB" in server_version:
        return "SET SESSION tx_read_only = 1, max_statement_time = %s"
    if int(server_version.split(".")[0]) >= 8:
        # MySQL 8 caches TABLES statistics for a day by default; we want today's sizes.
        return "SET SESSION transaction_read_only = 1, information_schema_stats_expiry = 0, max_execution_time = CEIL(%s * 1000)"
    return "SET SESSION tx_read_only = 1, max_execution_time = CEIL(%s * 1000)"


def _global_status(session: Session, ctx: ProbeContext) -> None:
    names = tuple(_STATUS_FAMILIES)
    status = dict(session.rows(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({_placeholders(names)})", names))
    if "Innodb_deadlocks" not in status:
        status["Innodb_deadlocks"] = innodb_metrics_deadlocks(session)
    for variable, family in _STATUS_FAMILIES.items():
        if status.get(variable) is None:
            ctx.log(f"status variable {variable} not reported by this server; series left out")
        else:
            ctx.set(family, float(status[variable]))
    ((max_connections,),) = session.rows("SELECT @@GLOBAL.max_connections")
    ctx.set("mysql_max_connections", max_connections)


def _replication(session: Session, ctx: ProbeContext) -> None:
    rows = replica_status(session)
    ctx.set("mysql_replica", 1 if rows else 0)
    for row in rows:
        channel = _first(row, "Connection_name", "Channel_Name") or ""
        io, sql = _first(row, "Slave_IO_Running", "Replica_IO_Running"), _first(row, "Slave_SQL_Running", "Replica_SQL_Running")
        ctx.set("mysql_replication_running", 1 if io == sql == "Yes" else 0, channel=channel)
        lag = _first(row, "Seconds_Behind_Master", "Seconds_Behind_Source")
        if lag is not None:  # NULL while the SQL thread is stopped: no number is better than a wrong one
            ctx.set("mysql_replication_lag_seconds", lag, channel=channel)
        ctx.log(f"replica channel {channel!r}: io={io} sql={sql} lag={lag}")


def _tables(session: Session, ctx: ProbeContext, keys: dict[str, dict]) -> dict[tuple[str, str], Any]:
    """Size and row series of the largest max_tables tables; returns {(schema, table): rows} of those.
    `keys["tables"]` holds the last probe's rendered table labels (set_many's reuse), replaced by this probe's."""
    target = session.target
    where, params = _schema_filter(target)
    # SYSTEM VERSIONED is MariaDB's type for a base table that keeps row history.
    tables = session.rows(
        "SELECT TABLE_SCHEMA, TABLE_NAME, DATA_LENGTH, INDEX_LENGTH, DATA_FREE, TABLE_ROWS"
        " FROM information_schema.TABLES"
        f" WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') AND {where}"
        " ORDER BY COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) DESC, TABLE_SCHEMA, TABLE_NAME",
        params,
    )
    kept = tables[:target.max_tables]
    ctx.set("mysql_tables", len(tables))
    ctx.set("mysql_tables_omitted", len(tables) - len(kept))
    ctx.log(f"{len(tables)} tables, {len(kept)} exported")
    rows_of = {(schema, table): rows for schema, table, _, _, _, rows in kept}
    # Both families label a table alike: one rendering of its schema and table labels for both.
    tables_labels = ("schema", "table")
    keys["tables"] = ctx.set_many("mysql_table_size_bytes", tables_labels, ("component",), _sizes(rows_of, kept), keys.get("tables"))
    ctx.set_many("mysql_table_rows", tables_labels, (),
                 ((key, (), rows) for key, rows in rows_of.items() if rows is not None), keys["tables"])
    return rows_of


_DATA, _INDEX, _FREE = ("data",), ("index",), ("free",)


def _sizes(rows_of: dict[tuple[str, str], Any], tables: tuple[tuple, ...]) -> Iterator[tuple[tuple[str, str], tuple[str], Any]]:
    """((schema, table), (component,), bytes) of each information_schema.TABLES row's known sizes."""
    for key, (_, _, data, index, free, _) in zip(rows_of, tables):
        if data is not None:
            yield key, _DATA, data
        if index is not None:
            yield key, _INDEX, index
        if free is not None:
            yield key, _FREE, free


def _read_index_stats(session: Session, rows_of: dict[tuple[str, str], Any]) -> _IndexStats:
    """Cardinality (of the whole key) and selectivity of every index of the tables in rows_of."""
    started = time.monotonic()
    cardinality: dict[tuple[str, str], dict[str, Any]] = {}
    if rows_of:
        where, params = _schema_filter(session.target)
        # Ordered by column position, so the last row of an index is its whole key.
        for schema, table, index, value in session.rows(
            "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, CARDINALITY FROM information_schema.STATISTICS"
            f" WHERE {where} ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            params,
        ):
            if (schema, table) in rows_of:
                cardinality.setdefault((schema, table), {})[index] = value
    known = [(table, (index,), value, rows_of[table])
             for table, indexes in cardinality.items() for index, value in indexes.items() if value is not None]
    read = ProbeContext(session.target)
    labels = read.set_many("mysql_index_cardinality", ("schema", "table"), ("index",),
                           ((table, index, value) for table, index, value, _ in known))
    # No selectivity for an empty table (or one without a row estimate).
    read.set_many("mysql_index_selectivity", ("schema", "table"), ("index",),
                  ((table, index, value / rows) for table, index, value, rows in known if rows), labels)
    return _IndexStats(time.monotonic(), time.time(), time.monotonic() - started, frozenset(rows_of), read.rendered)


def _without_tables(pieces: dict[str, bytes], gone: set[tuple[str, str]]) -> dict[str, bytes]:
    """Index lines of every table but those in `gone`.

    A line reads `family{service="..",target="..",schema="s",table="t",index="i"} value`; an
    escaped label value has no bare `"`, so `,schema="` and `",index="` occur once, where the
    labels are, and what lies between names the table exactly as escape_label rendered it."""
    names = {f'schema="{escape_label(schema)}",table="{escape_label(table)}'.encode() for schema, table in gone}
    out = {}
    for family, piece in pieces.items():
        lines = []
        for line in piece.split(b"\n")[:-1]:  # not splitlines(): a name may hold a bare \r
            start = line.index(b',schema="') + 1
            if line[start:line.index(b'",index="', start)] not in names:
                lines.append(line + b"\n")
        if lines:
            out[family] = b"".join(lines)
    return out


def _first(row: dict[str, Any], *columns: str) -> Any:
    """The value of the first column present: MariaDB and MySQL name replica columns differently."""
    return next((row[c] for c in columns if c in row), None)


def replica_status(session: Session) -> list[dict[str, Any]]:
    """Replica status rows (none on a primary), from the first statement the server understands."""
    *newer, oldest = _REPLICA_STATUS_STATEMENTS
    for statement in newer:
        try:
            return session.dicts(statement)
        except StatementRefused as e:
            if e.code != _PARSE_ERROR:
                raise
    return session.dicts(oldest)


def innodb_metrics_deadlocks(session: Session) -> int | None:
    """MySQL has no Innodb_deadlocks status variable; INNODB_METRICS counts them as lock_deadlocks."""
    rows = session.rows("SELECT `COUNT` FROM information_schema.INNODB_METRICS WHERE NAME = 'lock_deadlocks'")
    return rows[0][0] if rows else None


PROBER = MysqlProber()
