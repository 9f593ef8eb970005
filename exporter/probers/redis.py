"""Redis: server health from one INFO, PING round-trip, key counts by SCAN pattern, key lengths.

Each probe opens one fresh connection (redis-py's asyncio `Connection`, RESP2, hiredis parsing
when installed) and closes it: nothing is carried between probes, so a restarted server is simply
reconnected to on the next run, and there are no retries: the schedule is the retry. Commands go
straight to the connection rather than through redis-py's client, whose per-command retry,
locking and reply callbacks cost more CPU than the SCAN loop itself (bench/redis_http_cost.py).

RESP2, not redis-py's default RESP3: servers before 6.0 (and compatible servers) know no HELLO.
Replies are checked for their shape here, and each is capped at MAX_REPLY_BYTES, so a server
that answers something other than Redis protocol fails the probe with reason `query`, never a
traceback or a gigabyte buffered.

Timeouts: the scheduler cancels a probe at its timeout, and every command first checks the
deadline itself, and so does connecting (TCP, TLS, AUTH and SELECT). redis-py's socket timeouts,
connect timeout included, are left off: its sends wrap asyncio.wait_for, which on Python 3.11 can
swallow that cancellation (a SCAN loop then ran on for 30 s and reported success), and a second
timer racing the scheduler's only blurs which one ended the probe; its connect timeout did not
cover AUTH/SELECT either. A connect the timeout cuts off says so in the probe's log.

`import redis` in the functions below is the library, not this module: the package uses absolute
imports and this file is only ever imported as `stackprobe.exporter.probers.redis`. redis-py is
imported at the first probe, so an exporter without Redis targets never loads it.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import Field, field_validator, model_validator

from stackprobe.configsource import StrictModel

from ..metrics import counter, gauge
from .base import ProbeContext, ProbeError, Prober, SecretRef, TargetConfig, TLSClientConfig, os_error_in

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection
    from redis.exceptions import RedisError

#: TYPE reply -> the command that gives that type's length.
LENGTH_COMMANDS = {"list": "LLEN", "set": "SCARD", "zset": "ZCARD", "hash": "HLEN", "stream": "XLEN", "string": "STRLEN"}

#: The largest single reply a probe reads: a server answering with an endless bulk string would
#: otherwise be buffered whole (hiredis has no cap) until the timeout, gigabytes on a fast link.
#: INFO is a few KiB and a SCAN step of 1,000 keys some 100 KiB.
MAX_REPLY_BYTES = 64 << 20

#: Family (without prefix) -> INFO field copied as is.
INFO_FIELDS = {
    "redis_uptime_seconds": "uptime_in_seconds",
    "redis_keyspace_hits_total": "keyspace_hits",
    "redis_keyspace_misses_total": "keyspace_misses",
    "redis_memory_used_bytes": "used_memory",
    "redis_memory_max_bytes": "maxmemory",
    "redis_memory_fragmentation_ratio": "mem_fragmentation_ratio",
    "redis_connected_clients": "connected_clients",
    "redis_blocked_clients": "blocked_clients",
    "redis_rejected_connections_total": "rejected_connections",
    "redis_evicted_keys_total": "evicted_keys",
    "redis_expired_keys_total": "expired_keys",
    "redis_commands_processed_total": "total_commands_processed",
    "redis_rdb_last_save_timestamp_seconds": "rdb_last_save_time",
    "redis_rdb_changes_since_last_save": "rdb_changes_since_last_save",
    "redis_aof_enabled": "aof_enabled",
    "redis_connected_replicas": "connected_slaves",
}

#: Family -> (INFO field, the value that means healthy): exported as 1/0.
INFO_STATUS_FIELDS = {
    "redis_rdb_last_bgsave_success": ("rdb_last_bgsave_status", "ok"),
    "redis_aof_last_write_success": ("aof_last_write_status", "ok"),
    "redis_master_link_up": ("master_link_status", "up"),  # present on replicas only
}


@dataclass(frozen=True)
class Endpoint:
    """Where a `url` points: host and port, or a unix socket path; the default database; TLS."""

    host: str | None
    port: int | None
    socket_path: str | None
    db: int
    tls: bool

    def __str__(self) -> str:
        return self.socket_path or f"{self.host}:{self.port}"


def parse_url(url: str) -> Endpoint:
    """Split a redis://, rediss:// or unix:// URL; raises ValueError (never quoting the URL, which may hold a secret)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("url must start with redis://, rediss:// (TLS) or unix://")
    if parts.username is not None or parts.password is not None:
        raise ValueError("url must not hold credentials: set `username`, and the password with password_env or password_file")
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) - {"db"}:
        raise ValueError("url query parameters other than db are not supported; use the target's fields")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// url needs a socket path, e.g. unix:///run/redis/redis.sock?db=0")
        db_text = query.get("db", ["0"])[-1]
        return Endpoint(None, None, unquote(parts.path), _db_number(db_text), tls=False)
    if "db" in query:
        raise ValueError("put the database in the url's path (redis://host:6379/2), not in ?db=")
    if not parts.hostname:
        raise ValueError("url needs a host, e.g. redis://127.0.0.1:6379/0")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("url has an invalid port") from None
    return Endpoint(parts.hostname, port, None, _db_number(parts.path.strip("/") or "0"), tls=parts.scheme == "rediss")


def _db_number(text: str) -> int:
    if not text.isdigit():
        raise ValueError("the database in the url must be a number, e.g. redis://127.0.0.1:6379/0")
    return int(text)


class RedisPattern(StrictModel):
    pattern: str = Field(min_length=1, description="SCAN MATCH glob whose keys are counted, e.g. `vedfolnir:session:*`.")
    db: int | None = Field(None, ge=0, description="Database number (default: the url's).")


class RedisKey(StrictModel):
    key: str = Field(min_length=1, description="Key whose length is exported, e.g. `image-processing-queue`.")
    db: int | None = Field(None, ge=0, description="Database number (default: the url's).")


class RedisTarget(SecretRef, TargetConfig):
    """A Redis server: INFO, PING time, pattern counts and key lengths."""

    default_interval: ClassVar[float] = 60.0
    default_timeout: ClassVar[float] = 10.0

    url: str = Field(description="`redis://host:port/db`, `rediss://host:port/db` (TLS) or `unix:///path/redis.sock?db=N`. No credentials here.")
    username: str | None = Field(None, description="ACL user (Redis 6+); the password comes from password_env or password_file.")
    tls: TLSClientConfig | None = Field(None, description="TLS options for a rediss:// url (ca_file, cert_file, key_file, verify).")
    patterns: list[RedisPattern] = Field([], description="Key patterns counted with SCAN (never KEYS), each `{pattern, db}`.")
    keys: list[RedisKey] = Field([], description="Keys whose length is exported by type (TYPE, then LLEN/SCARD/ZCARD/HLEN/XLEN/STRLEN); a missing key gives 0 with type `none`. Redis counts these lookups in keyspace_hits/misses (TYPE and the length command: two hits per present key, one miss per missing key; no command that gives a length avoids it), and stackprobe_redis_probe_lookups_total counts them too, so rules can subtract them; INFO, PING and SCAN count nothing.")
    scan_budget: int = Field(100_000, ge=1, description="At most this many keys are examined per pattern per probe; beyond it the count is partial and redis_pattern_scan_truncated is 1.")
    scan_count: int = Field(1000, ge=1, description="COUNT hint of each SCAN call (keys examined per round trip).")

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parse_url(url)
        return url

    @model_validator(mode="after")
    def _tls_needs_rediss(self) -> "RedisTarget":
        if self.tls is not None and not parse_url(self.url).tls:
            raise ValueError("tls options need a rediss:// url")
        return self

    @property
    def endpoint(self) -> Endpoint:
        return parse_url(self.url)


#: What this prober exports (exporter/metrics.py collects every prober's FAMILIES).
FAMILIES = (
    gauge("redis_up", "1 if the Redis server accepted the connection and answered PING, else 0."),
    gauge("redis_ping_duration_seconds", "Round-trip time of one PING."),
    gauge("redis_uptime_seconds", "Seconds since the Redis server started."),
    counter("redis_keyspace_hits_total", "Successful key lookups (keyspace_hits); includes the prober's own lookups of configured keys, counted in stackprobe_redis_probe_lookups_total{result=\"hit\"}."),
    counter("redis_keyspace_misses_total", "Failed key lookups (keyspace_misses); includes the prober's own lookups of missing configured keys, counted in stackprobe_redis_probe_lookups_total{result=\"miss\"}."),
    counter("redis_probe_lookups_total", "Key lookups (TYPE and LLEN/SCARD/...) of configured keys this exporter made on the server before the INFO of the last probe, by result (hit, miss): the part of keyspace_hits/misses that is the prober's own, to subtract from them (each exporter of an HA pair counts only its own).", "result"),
    gauge("redis_memory_used_bytes", "Memory allocated by Redis (used_memory)."),
    gauge("redis_memory_max_bytes", "The maxmemory setting; 0 means no limit."),
    gauge("redis_memory_fragmentation_ratio", "used_memory_rss divided by used_memory (mem_fragmentation_ratio)."),
    gauge("redis_connected_clients", "Client connections, excluding replicas."),
    gauge("redis_blocked_clients", "Clients blocked in a blocking call (BLPOP, ...)."),
    counter("redis_rejected_connections_total", "Connections rejected because of maxclients."),
    counter("redis_evicted_keys_total", "Keys evicted because of maxmemory."),
    counter("redis_expired_keys_total", "Keys removed because their TTL expired."),
    counter("redis_commands_processed_total", "Commands processed by the server."),
    gauge("redis_db_keys", "Keys in the database (INFO keyspace); 0 for an empty database the target names.", "db"),
    gauge("redis_db_keys_expiring", "Keys with a TTL in the database (INFO keyspace).", "db"),
    gauge("redis_rdb_last_save_timestamp_seconds", "Unix time of the last successful RDB save."),
    gauge("redis_rdb_last_bgsave_success", "1 if the last background RDB save succeeded."),
    gauge("redis_rdb_changes_since_last_save", "Writes since the last RDB save."),
    gauge("redis_aof_enabled", "1 if append-only-file persistence is on."),
    gauge("redis_aof_last_write_success", "1 if the last AOF write succeeded."),
    gauge("redis_instance_info", "Role and version of the Redis server; always 1.", "role", "version"),
    gauge("redis_connected_replicas", "Replicas connected to this primary."),
    gauge("redis_master_link_up", "On a replica: 1 if the link to its primary is up; absent on a primary."),
    gauge("redis_pattern_keys", "Keys matching a configured pattern, counted with SCAN (a lower bound when the scan budget ran out).", "db", "pattern"),
    gauge("redis_pattern_scan_truncated", "1 if the scan budget ran out before the pattern's count was complete.", "db", "pattern"),
    gauge("redis_key_length", "Length of a configured key (LLEN, SCARD, ZCARD, HLEN, XLEN or STRLEN by its type); 0 with type none if missing.", "db", "key", "type"),
)


class RedisProber(Prober[RedisTarget]):
    name = "redis"
    families = FAMILIES
    target_model = RedisTarget
    summary = "Redis INFO (memory, hits/misses, clients, persistence, replication), PING time, SCAN pattern counts, key lengths."

    def __init__(self) -> None:
        #: Target name -> this exporter's key lookups (TYPE, LLEN, ...) so far, by hit/miss.
        self._lookups: dict[str, Counter[str]] = {}

    async def probe(self, target: RedisTarget, ctx: ProbeContext) -> None:
        import redis.exceptions

        ctx.set("redis_up", 0)
        lookups = self._lookups.setdefault(target.name, Counter())
        # Exported before this probe's own lookups, which come after its INFO: the counter then
        # covers exactly the lookups inside the INFO's keyspace_hits/misses.
        for result in ("hit", "miss"):
            ctx.set("redis_probe_lookups_total", lookups[result], result=result)
        endpoint = target.endpoint
        session = _Session(await _connection(target, endpoint, ctx), ctx, str(endpoint), lookups)
        try:
            ctx.log(f"connecting to {endpoint} (db {endpoint.db}{', TLS' if endpoint.tls else ''})")
            await session.connect_and_ping()
            ctx.set("redis_up", 1)
            await _run(session, target, endpoint, ctx)
        except redis.exceptions.RedisError as e:
            raise _probe_error(e, str(endpoint)) from None
        finally:
            await session.conn.disconnect(nowait=True)


async def _connection(target: RedisTarget, endpoint: Endpoint, ctx: ProbeContext) -> "AbstractConnection":
    """One connection for this probe only, authenticated and on the url's database at connect."""
    from redis.asyncio.connection import Connection, UnixDomainSocketConnection
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    kwargs: dict[str, Any] = dict(
        db=endpoint.db, username=target.username, password=await target.read_password(ctx),
        protocol=2, socket_timeout=None, socket_connect_timeout=None, retry=Retry(NoBackoff(), 0),
        driver_info=None,  # no CLIENT SETINFO: two round trips per probe for nothing
        parser_class=_bounded_parser_class(),
    )
    if endpoint.socket_path:
        return UnixDomainSocketConnection(path=endpoint.socket_path, **kwargs)
    if endpoint.tls:
        tls_context = await (target.tls or TLSClientConfig()).load_ssl_context(ctx)
        return _tls_connection_class()(tls_context, host=endpoint.host, port=endpoint.port, **kwargs)
    return Connection(host=endpoint.host, port=endpoint.port, **kwargs)


@functools.cache
def _bounded_parser_class() -> type:
    """redis-py's hiredis parser, refusing a reply over MAX_REPLY_BYTES (AUTH and SELECT's too)."""
    from redis._parsers import _AsyncHiredisParser
    from redis.exceptions import InvalidResponse

    class ReplyBudget:
        """The connection's stream as the parser reads it, with a byte budget per reply."""

        def __init__(self, stream: asyncio.StreamReader):
            self.stream, self.left = stream, MAX_REPLY_BYTES

        async def read(self, n: int) -> bytes:
            if self.left <= 0:
                raise InvalidResponse(f"a reply over {MAX_REPLY_BYTES >> 20} MiB, refused")
            data = await self.stream.read(min(n, self.left))
            self.left -= len(data)
            return data

        def __getattr__(self, name: str) -> Any:  # at_eof() and the rest, as they are
            return getattr(self.stream, name)

    class BoundedHiredisParser(_AsyncHiredisParser):
        def on_connect(self, connection: Any) -> None:
            super().on_connect(connection)
            self._stream = ReplyBudget(self._stream)

        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            self._stream.left = MAX_REPLY_BYTES
            return await super().read_response(*args, **kwargs)

    return BoundedHiredisParser


@functools.cache
def _tls_connection_class() -> type:
    """A Connection that uses our cached, off-loop-built SSLContext (TLSClientConfig) instead of
    redis-py's, which would read the CA and key files on the event loop at every connect."""
    from redis.asyncio.connection import Connection

    class TLSConnection(Connection):
        def __init__(self, tls_context: ssl.SSLContext, **kwargs: Any):
            self.tls_context = tls_context
            super().__init__(**kwargs)

        def _connection_arguments(self) -> dict[str, Any]:
            return {**super()._connection_arguments(), "ssl": self.tls_context}

    return TLSConnection


class _Session:
    """Commands on the probe's connection, each under the probe's deadline, replies checked."""

    def __init__(self, conn: "AbstractConnection", ctx: ProbeContext, where: str, lookups: Counter[str]):
        self.conn, self.ctx, self.where, self.lookups = conn, ctx, where, lookups

    async def command(self, *args: Any) -> Any:
        self._check_deadline(args[0])
        return await self._send_and_read(args)

    def _check_deadline(self, command: str) -> None:
        if time.monotonic() >= self.ctx.deadline:
            raise ProbeError("timeout", f"{self.where}: {command} not sent: the probe's timeout expired")

    async def _send_and_read(self, args: tuple[Any, ...]) -> Any:
        await self.conn.send_packed_command(self.conn.pack_command(*args), check_health=False)
        return await self.conn.read_response()

    async def connect_and_ping(self) -> None:
        """Connect (and authenticate) first, so the timed PING is one bare round trip."""
        if time.monotonic() >= self.ctx.deadline:
            raise ProbeError("timeout", f"{self.where}: not connected: the probe's timeout expired")
        try:
            await self.conn.connect()
        except asyncio.CancelledError:  # the scheduler's timeout (or a reload): say which phase hung
            self.ctx.log(f"connecting to {self.where} (TCP, TLS, AUTH, SELECT) was cut off unfinished")
            raise
        started = time.perf_counter()
        reply = await self.command("PING")
        if reply not in (b"PONG", "PONG", True):
            raise _not_redis(self.where, "PING", reply)
        self.ctx.set("redis_ping_duration_seconds", time.perf_counter() - started)
        self.ctx.log(f"PING answered by {self.where}")

    async def info(self) -> dict[str, Any]:
        reply = await self.command("INFO")
        if not isinstance(reply, bytes):
            raise _not_redis(self.where, "INFO", reply)
        return parse_info(reply.decode("utf-8", errors="replace"))

    async def scan(self, cursor: bytes, pattern: str, count: int) -> tuple[bytes, list[bytes]]:
        reply = await self.command("SCAN", cursor, "MATCH", pattern, "COUNT", count)
        if not (isinstance(reply, list) and len(reply) == 2 and isinstance(reply[0], bytes)
                and reply[0].isdigit() and isinstance(reply[1], list)):
            raise _not_redis(self.where, "SCAN", reply)
        return reply[0], reply[1]

    async def lookup(self, *args: Any) -> Any:
        """A command that reads a key: Redis counts it in keyspace_hits/misses, and so do we.

        Counted before it is sent, as a miss until its reply says hit: a probe cut off by its
        timeout before the reply still had the lookup counted by Redis, and leaving it out would read
        as an application lookup (a 0 % hit ratio on an idle cache). A miss, because the
        rules subtract our hits from the hits only: an unknown counted as a miss can only
        raise the applications' ratio, never fake a low one.
        """
        self._check_deadline(args[0])
        self.lookups["miss"] += 1
        reply = await self._send_and_read(args)
        # Only TYPE ever meets a missing key: a length command follows a TYPE that found it.
        if not (args[0] == "TYPE" and reply in (b"none", "none")):
            self.lookups["miss"] -= 1
            self.lookups["hit"] += 1
        return reply


def _not_redis(where: str, command: str, reply: Any) -> ProbeError:
    shown = repr(reply)[:60]
    return ProbeError("query", f"{where} answered {command} with {shown}, which is not a Redis reply to it")


def parse_info(text: str) -> dict[str, Any]:
    """INFO's `field:value` lines; `dbN:keys=1,expires=0` values become dicts. Never raises."""
    info: dict[str, Any] = {}
    for line in text.splitlines():
        field, sep, value = line.partition(":")
        if not sep or line.startswith("#"):
            continue
        if field.startswith("db") and field[2:].isdigit() and "=" in value:
            info[field] = dict(pair.partition("=")[::2] for pair in value.split(","))
        else:
            info[field] = value.strip()
    return info


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


async def _run(session: _Session, target: RedisTarget, endpoint: Endpoint, ctx: ProbeContext) -> None:
    # INFO comes before the key lookups so this probe's own TYPE/LLEN are not in its hit counters.
    info = await session.info()
    _export_info(info, ctx)
    dbs = {endpoint.db} | {p.db if p.db is not None else endpoint.db for p in target.patterns} \
        | {k.db if k.db is not None else endpoint.db for k in target.keys}
    _export_keyspace(info, dbs, ctx)
    current_db = endpoint.db

    async def select(db: int | None) -> None:
        nonlocal current_db
        db = endpoint.db if db is None else db
        if db != current_db:
            await session.command("SELECT", db)
            current_db = db

    for p in target.patterns:
        await select(p.db)
        count, truncated = await _count_pattern(session, p.pattern, target.scan_budget, target.scan_count)
        ctx.set("redis_pattern_keys", count, db=current_db, pattern=p.pattern)
        ctx.set("redis_pattern_scan_truncated", int(truncated), db=current_db, pattern=p.pattern)
        ctx.log(f"db {current_db} pattern {p.pattern!r}: {count} keys{' (scan budget exhausted)' if truncated else ''}")
    for k in target.keys:
        await select(k.db)
        kind, length = await _key_length(session, k.key)
        if length is None:
            ctx.log(f"db {current_db} key {k.key!r} has type {kind!r}, which has no length command; skipped")
            continue
        ctx.set("redis_key_length", length, db=current_db, key=k.key, type=kind)
        ctx.log(f"db {current_db} key {k.key!r}: {kind}, length {length}")


def _export_info(info: dict[str, Any], ctx: ProbeContext) -> None:
    """Copy INFO fields; a field this server does not report (older or compatible servers), or
    reports as something other than a number, is skipped."""
    for family, field in INFO_FIELDS.items():
        if (value := _number(info.get(field))) is not None:
            ctx.set(family, value)
    for family, (field, healthy) in INFO_STATUS_FIELDS.items():
        if field in info:
            ctx.set(family, int(str(info[field]) == healthy))
    ctx.set("redis_instance_info", 1, role=str(info.get("role", "")), version=str(info.get("redis_version", "")))


def _export_keyspace(info: dict[str, Any], dbs: set[int], ctx: ProbeContext) -> None:
    """Keys per database from INFO keyspace; a database the target uses but INFO omits (empty) is 0."""
    counts = {int(name[2:]): stats for name, stats in info.items()
              if name.startswith("db") and name[2:].isdigit() and isinstance(stats, dict)}
    for db in sorted(dbs | set(counts)):
        stats = counts.get(db, {})
        ctx.set("redis_db_keys", _number(stats.get("keys")) or 0, db=db)
        ctx.set("redis_db_keys_expiring", _number(stats.get("expires")) or 0, db=db)


async def _count_pattern(session: _Session, pattern: str, budget: int, count: int) -> tuple[int, bool]:
    """Distinct keys matching pattern via SCAN; stops once `budget` keys were examined.

    SCAN may return a key twice while the keyspace is rehashing, hence the set.
    """
    found: set[bytes] = set()
    cursor, examined = b"0", 0
    while True:
        step = min(count, budget - examined)
        cursor, keys = await session.scan(cursor, pattern, step)
        found.update(keys)
        examined += step
        if cursor == b"0":
            return len(found), False
        if examined >= budget:
            return len(found), True


async def _key_length(session: _Session, key: str) -> tuple[str, int | None]:
    """(type, length); ("none", 0) for a missing key, (type, None) for a type without a length."""
    reply = await session.lookup("TYPE", key)
    if not isinstance(reply, (bytes, str)):
        raise _not_redis(session.where, "TYPE", reply)
    kind = reply.decode("utf-8", errors="replace") if isinstance(reply, bytes) else reply
    if kind == "none":
        return kind, 0
    command = LENGTH_COMMANDS.get(kind)
    if command is None:
        return kind, None
    length = await session.lookup(command, key)
    if not isinstance(length, int):
        raise _not_redis(session.where, command, length)
    return kind, length


def _probe_error(e: "RedisError", where: str) -> ProbeError:
    """Map a redis-py error to a reason; messages come from the server or the OS, never the config."""
    import redis.exceptions

    if isinstance(e, redis.exceptions.AuthenticationError):  # a ConnectionError subclass: check first
        return ProbeError("auth", f"{where} rejected the credentials: {e}")
    if isinstance(e, redis.exceptions.TimeoutError):
        return ProbeError("timeout", f"{where}: {e}")
    if isinstance(e, redis.exceptions.ConnectionError):
        cause = os_error_in(e)
        if isinstance(cause, ssl.SSLError):
            return ProbeError("tls", f"TLS with {where} failed: {cause}")
        if isinstance(cause, socket.gaierror):
            return ProbeError("dns", f"cannot resolve {where}: {cause.strerror or cause}")
        return ProbeError("connect", f"cannot connect to {where}: {(cause.strerror or cause) if cause else e}")
    if isinstance(e, redis.exceptions.InvalidResponse):
        return ProbeError("query", f"{where} does not speak the Redis protocol: {e}")
    return ProbeError("query", f"{where} answered with an error: {e}")


PROBER = RedisProber()
