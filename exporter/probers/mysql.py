"""MySQL/MariaDB: table and index sizes, server counters and replication state, read-only.

Each probe opens one connection (pymysql), marks the session read-only and runs a handful of
queries: SHOW GLOBAL STATUS for the counters, @@max_connections, the replica status,
information_schema.TABLES for sizes and rows, information_schema.STATISTICS for indexes.
Schema names from the config only ever travel as query parameters.

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
  every probe fails with reason `query`, on a primary too.
- SHOW GLOBAL STATUS and @@max_connections need no privilege.
- `'localhost'` matches connections over the unix socket (and TCP from 127.0.0.1 unless the
  server runs with skip-name-resolve); otherwise name the exporter's address.
- On MySQL 8 grant `PROCESS, REPLICATION CLIENT ON *.*` instead of SLAVE MONITOR: REPLICATION
  CLIENT for SHOW REPLICA STATUS, PROCESS for information_schema.INNODB_METRICS, where MySQL
  keeps its deadlock count (not verified here; the tests run MariaDB).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any, ClassVar

import pymysql
from pymysql.constants import CR, ER
from pymysql.cursors import DictCursor
from pydantic import Field


from ..metrics import counter, gauge
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

# Access denied to a database / for a user, host not allowed, 1698: the account's plugin
# (e.g. unix_socket) refused this client.
_AUTH_ERRORS = {ER.DBACCESS_DENIED_ERROR, ER.ACCESS_DENIED_ERROR, ER.HOST_NOT_PRIVILEGED, 1698}
_CONNECTION_LOST = {CR.CR_SERVER_GONE_ERROR, CR.CR_SERVER_LOST}


class MysqlTarget(SecretRef, TargetConfig):
    """One MySQL or MariaDB server."""

    default_interval: ClassVar[float] = 300.0  # playbook 002: database checks every 5 minutes
    default_timeout: ClassVar[float] = 30.0

    host: str = Field("127.0.0.1", description="Server host name or address (ignored when unix_socket is set).")
    port: int = Field(3306, ge=1, le=65535, description="Server TCP port.")
    unix_socket: Path | None = Field(None, description="Connect over this unix socket instead of TCP.")
    user: str = Field(description="Monitoring user; see the README for the GRANTs it needs.")
    schemas: list[str] | None = Field(None, min_length=1, description="Schemas whose tables and indexes are measured (default: every schema but mysql, information_schema, performance_schema and sys).")
    max_tables: int = Field(1000, ge=0, description="Export per-table and per-index series for at most this many tables, the largest (data + index bytes) first; the rest are counted in mysql_tables_omitted.")
    tls: TLSClientConfig | None = Field(None, description="Connect with TLS (`ca_file`, `cert_file`/`key_file`, `verify`). Never falls back to plaintext: a server without TLS fails with reason `tls`.")


def _placeholders(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(["%s"] * len(values))


def _schema_filter(target: MysqlTarget) -> tuple[str, tuple[str, ...]]:
    """`TABLE_SCHEMA [NOT] IN (%s, ...)` and its parameters: names never enter the SQL text."""
    if target.schemas:
        return f"TABLE_SCHEMA IN ({_placeholders(target.schemas)})", tuple(target.schemas)
    return f"TABLE_SCHEMA NOT IN ({_placeholders(SYSTEM_SCHEMAS)})", SYSTEM_SCHEMAS


def _probe_error(e: pymysql.MySQLError, connected: bool) -> ProbeError:
    """Map a pymysql error to a reason; pymysql's messages hold host and user, never the password."""
    code = e.args[0] if e.args and isinstance(e.args[0], int) else None
    message = f"({code}) {e.args[1]}" if len(e.args) > 1 else str(e)
    cause = os_error_in(e)
    if isinstance(cause, TimeoutError):  # socket.timeout is TimeoutError
        return ProbeError("timeout", message)
    if isinstance(cause, socket.gaierror):
        return ProbeError("dns", message)
    if isinstance(cause, ssl.SSLError) or code == CR.CR_SSL_CONNECTION_ERROR:  # e.g. the server offers no TLS
        return ProbeError("tls", message)
    if code in _AUTH_ERRORS:
        return ProbeError("auth", message)
    if not connected or code in _CONNECTION_LOST or cause is not None:
        return ProbeError("connect", message)
    return ProbeError("query", message)


class Session:
    """A connected cursor that runs each query under what is left of the target's timeout."""

    def __init__(self, conn: pymysql.Connection, ctx: ProbeContext):
        self.ctx = ctx
        self.cursor = conn.cursor(DictCursor)

    def rows(self, sql: str, params: tuple | None = None) -> list[dict[str, Any]]:
        """All rows as dicts; `%s` in sql is a placeholder only when params are given."""
        # Each read is bounded by read_timeout (set at connect); checking the deadline between
        # queries keeps the worker thread from outliving the timeout by more than one query.
        if self.ctx.remaining() <= 0.001:
            raise ProbeError("timeout", "timeout reached between queries")
        self.cursor.execute(sql, params)
        return list(self.cursor.fetchall())


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
)


class MysqlProber(BlockingProber[MysqlTarget]):
    name = "mysql"
    families = FAMILIES
    target_model = MysqlTarget
    summary = "MySQL/MariaDB table and index sizes, server counters and replication lag (read-only)."

    def probe_blocking(self, target: MysqlTarget, ctx: ProbeContext) -> None:
        ctx.set("mysql_up", 0)
        conn = self._connect(target, ctx)
        try:
            session = Session(conn, ctx)
            session.rows("SET SESSION TRANSACTION READ ONLY")
            ctx.set("mysql_up", 1)
            if self._is_mysql8(conn):
                # MySQL 8 caches TABLES statistics for a day by default; we want today's sizes.
                session.rows("SET SESSION information_schema_stats_expiry = 0")
            self._server(session, ctx)
            self._replication(session, ctx)
            self._tables(session, target, ctx)
        except pymysql.MySQLError as e:
            raise _probe_error(e, connected=True) from e
        finally:
            conn.close()

    @staticmethod
    def _connect(target: MysqlTarget, ctx: ProbeContext) -> pymysql.Connection:
        password = target.password()
        where = f"unix socket {target.unix_socket}" if target.unix_socket else f"{target.host}:{target.port}"
        ctx.log(f"connecting to {where} as {target.user!r}{' with TLS' if target.tls else ''}")
        timeout = ctx.remaining()
        try:
            conn = pymysql.connect(
                host=target.host, port=target.port, unix_socket=str(target.unix_socket) if target.unix_socket else None,
                user=target.user, password=password or "", charset="utf8mb4", autocommit=True,
                connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout,
                ssl=target.tls.ssl_context() if target.tls else None, program_name="stackprobe",
            )
        except pymysql.MySQLError as e:
            raise _probe_error(e, connected=False) from e
        ctx.log(f"connected: server {conn.get_server_info()}")
        return conn

    @staticmethod
    def _is_mysql8(conn: pymysql.Connection) -> bool:
        version = conn.get_server_info()
        return "MariaDB" not in version and int(version.split(".")[0]) >= 8

    def _server(self, session: Session, ctx: ProbeContext) -> None:
        names = tuple(_STATUS_FAMILIES)
        status = {r["Variable_name"]: r["Value"] for r in session.rows(
            f"SHOW GLOBAL STATUS WHERE Variable_name IN ({_placeholders(names)})", names)}
        if "Innodb_deadlocks" not in status:
            status["Innodb_deadlocks"] = innodb_metrics_deadlocks(session)
        for variable, family in _STATUS_FAMILIES.items():
            if status.get(variable) is None:
                ctx.log(f"status variable {variable} not reported by this server; series left out")
            else:
                ctx.set(family, float(status[variable]))
        (row,) = session.rows("SELECT @@GLOBAL.max_connections AS max_connections")
        ctx.set("mysql_max_connections", row["max_connections"])

    def _replication(self, session: Session, ctx: ProbeContext) -> None:
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

    def _tables(self, session: Session, target: MysqlTarget, ctx: ProbeContext) -> None:
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
        rows_of: dict[tuple[str, str], Any] = {}
        for t in kept:
            schema, table = t["TABLE_SCHEMA"], t["TABLE_NAME"]
            rows_of[(schema, table)] = t["TABLE_ROWS"]
            for component, column in (("data", "DATA_LENGTH"), ("index", "INDEX_LENGTH"), ("free", "DATA_FREE")):
                if t[column] is not None:
                    ctx.set("mysql_table_size_bytes", t[column], schema=schema, table=table, component=component)
            if t["TABLE_ROWS"] is not None:
                ctx.set("mysql_table_rows", t["TABLE_ROWS"], schema=schema, table=table)
        if not kept:
            return
        # Ordered by column position, so the last row of an index is its whole key.
        cardinality: dict[tuple[str, str, str], Any] = {}
        for s in session.rows(
            "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, CARDINALITY FROM information_schema.STATISTICS"
            f" WHERE {where} ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            params,
        ):
            if (s["TABLE_SCHEMA"], s["TABLE_NAME"]) in rows_of:
                cardinality[(s["TABLE_SCHEMA"], s["TABLE_NAME"], s["INDEX_NAME"])] = s["CARDINALITY"]
        for (schema, table, index), value in cardinality.items():
            if value is None:
                continue
            ctx.set("mysql_index_cardinality", value, schema=schema, table=table, index=index)
            rows = rows_of[(schema, table)]
            if rows:  # no selectivity for an empty table (or one without a row estimate)
                ctx.set("mysql_index_selectivity", value / rows, schema=schema, table=table, index=index)


def _first(row: dict[str, Any], *columns: str) -> Any:
    """The value of the first column present: MariaDB and MySQL name replica columns differently."""
    return next((row[c] for c in columns if c in row), None)


def replica_status(session: Session) -> list[dict[str, Any]]:
    """Replica status rows (none on a primary), from the first statement the server understands."""
    *newer, oldest = _REPLICA_STATUS_STATEMENTS
    for statement in newer:
        try:
            return session.rows(statement)
        except pymysql.err.ProgrammingError as e:
            if e.args[0] != ER.PARSE_ERROR:
                raise
    return session.rows(oldest)


def innodb_metrics_deadlocks(session: Session) -> int | None:
    """MySQL has no Innodb_deadlocks status variable; INNODB_METRICS counts them as lock_deadlocks."""
    rows = session.rows("SELECT `COUNT` AS deadlocks FROM information_schema.INNODB_METRICS WHERE NAME = 'lock_deadlocks'")
    return rows[0]["deadlocks"] if rows else None


PROBER = MysqlProber()
