"""Redis: server health from one INFO, PING round-trip, key counts by SCAN pattern, key lengths.

Uses redis-py's asyncio client, so a probe holds no thread. Each probe opens one fresh
connection and closes it: nothing is carried between probes, so a restarted server is simply
reconnected to on the next run. redis-py's retries are switched off; the schedule is the retry.

`import redis` below is the library, not this module: the package uses absolute imports and this
file is only ever imported as `stackprobe.exporter.probers.redis`.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio
import redis.exceptions
from pydantic import Field, field_validator, model_validator
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.utils import str_if_bytes

from stackprobe.configsource import StrictModel

from ..metrics import counter, gauge
from .base import ProbeContext, ProbeError, Prober, SecretRef, TargetConfig, TLSClientConfig, os_error_in

#: TYPE reply -> the command that gives that type's length.
LENGTH_COMMANDS = {"list": "LLEN", "set": "SCARD", "zset": "ZCARD", "hash": "HLEN", "stream": "XLEN", "string": "STRLEN"}

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
    keys: list[RedisKey] = Field([], description="Keys whose length is exported by type (TYPE, then LLEN/SCARD/ZCARD/HLEN/XLEN/STRLEN); a missing key gives 0 with type `none`. Redis counts these lookups in keyspace_hits/misses (TYPE and the length command: two hits per present key, one miss per missing key); INFO, PING and SCAN count nothing.")
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
    counter("redis_keyspace_hits_total", "Successful key lookups (keyspace_hits); includes the prober's own lookups of configured keys."),
    counter("redis_keyspace_misses_total", "Failed key lookups (keyspace_misses); includes the prober's own lookups of missing configured keys."),
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

    async def probe(self, target: RedisTarget, ctx: ProbeContext) -> None:
        ctx.set("redis_up", 0)
        endpoint = target.endpoint
        client = _client(target, endpoint, ctx)
        try:
            ctx.log(f"connecting to {endpoint} (db {endpoint.db}{', TLS' if endpoint.tls else ''})")
            await _connect_and_ping(client, ctx, str(endpoint))
            ctx.set("redis_up", 1)
            await _run(client, target, endpoint, ctx)
        except redis.exceptions.RedisError as e:
            raise _probe_error(e, str(endpoint)) from None
        finally:
            await client.aclose()


def _client(target: RedisTarget, endpoint: Endpoint, ctx: ProbeContext) -> redis.asyncio.Redis:
    """One connection for this probe only; no retries, socket timeouts bounded by the probe's."""
    password = target.password()
    timeout = ctx.remaining()
    kwargs: dict[str, Any] = dict(
        db=endpoint.db, username=target.username, password=password,
        socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0), single_connection_client=True,
    )
    if endpoint.socket_path:
        kwargs["unix_socket_path"] = endpoint.socket_path
    else:
        kwargs.update(host=endpoint.host, port=endpoint.port)
    if endpoint.tls:
        tls = target.tls or TLSClientConfig()
        kwargs.update(
            ssl=True, ssl_check_hostname=tls.verify, ssl_cert_reqs="required" if tls.verify else "none",
            ssl_ca_certs=str(tls.ca_file) if tls.ca_file else None,
            ssl_certfile=str(tls.cert_file) if tls.cert_file else None,
            ssl_keyfile=str(tls.key_file) if tls.key_file else None,
        )
    return redis.asyncio.Redis(**kwargs)


async def _connect_and_ping(client: redis.asyncio.Redis, ctx: ProbeContext, where: str) -> None:
    """Connect (and authenticate) first, so the timed PING is one bare round trip."""
    await client.initialize()
    started = time.perf_counter()
    await client.ping()
    ctx.set("redis_ping_duration_seconds", time.perf_counter() - started)
    ctx.log(f"PING answered by {where}")


async def _run(client: redis.asyncio.Redis, target: RedisTarget, endpoint: Endpoint, ctx: ProbeContext) -> None:
    # INFO comes before the key lookups so this probe's own TYPE/LLEN are not in its hit counters.
    info = await client.info()
    _export_info(info, ctx)
    dbs = {endpoint.db} | {p.db if p.db is not None else endpoint.db for p in target.patterns} \
        | {k.db if k.db is not None else endpoint.db for k in target.keys}
    _export_keyspace(info, dbs, ctx)
    current_db = endpoint.db

    async def select(db: int | None) -> None:
        nonlocal current_db
        db = endpoint.db if db is None else db
        if db != current_db:
            await client.execute_command("SELECT", db)
            current_db = db

    for p in target.patterns:
        await select(p.db)
        count, truncated = await _count_pattern(client, p.pattern, target.scan_budget, target.scan_count)
        ctx.set("redis_pattern_keys", count, db=current_db, pattern=p.pattern)
        ctx.set("redis_pattern_scan_truncated", int(truncated), db=current_db, pattern=p.pattern)
        ctx.log(f"db {current_db} pattern {p.pattern!r}: {count} keys{' (scan budget exhausted)' if truncated else ''}")
    for k in target.keys:
        await select(k.db)
        kind, length = await _key_length(client, k.key)
        if length is None:
            ctx.log(f"db {current_db} key {k.key!r} has type {kind!r}, which has no length command; skipped")
            continue
        ctx.set("redis_key_length", length, db=current_db, key=k.key, type=kind)
        ctx.log(f"db {current_db} key {k.key!r}: {kind}, length {length}")


def _export_info(info: dict[str, Any], ctx: ProbeContext) -> None:
    """Copy INFO fields; a field this server does not report (older or compatible servers) is skipped."""
    for family, field in INFO_FIELDS.items():
        if field in info:
            ctx.set(family, float(info[field]))
    for family, (field, healthy) in INFO_STATUS_FIELDS.items():
        if field in info:
            ctx.set(family, int(str(info[field]) == healthy))
    ctx.set("redis_instance_info", 1, role=info.get("role", ""), version=str(info.get("redis_version", "")))


def _export_keyspace(info: dict[str, Any], dbs: set[int], ctx: ProbeContext) -> None:
    """Keys per database from INFO keyspace; a database the target uses but INFO omits (empty) is 0."""
    counts = {int(name[2:]): stats for name, stats in info.items() if name.startswith("db") and name[2:].isdigit()}
    for db in sorted(dbs | set(counts)):
        stats = counts.get(db, {})
        ctx.set("redis_db_keys", stats.get("keys", 0), db=db)
        ctx.set("redis_db_keys_expiring", stats.get("expires", 0), db=db)


async def _count_pattern(client: redis.asyncio.Redis, pattern: str, budget: int, count: int) -> tuple[int, bool]:
    """Distinct keys matching pattern via SCAN; stops once `budget` keys were examined.

    SCAN may return a key twice while the keyspace is rehashing, hence the set.
    """
    found: set[bytes] = set()
    cursor, examined = 0, 0
    while True:
        step = min(count, budget - examined)
        cursor, keys = await client.scan(cursor, match=pattern, count=step)
        found.update(keys)
        examined += step
        if cursor == 0:
            return len(found), False
        if examined >= budget:
            return len(found), True


async def _key_length(client: redis.asyncio.Redis, key: str) -> tuple[str, int | None]:
    """(type, length); ("none", 0) for a missing key, (type, None) for a type without a length."""
    kind = str_if_bytes(await client.type(key))
    if kind == "none":
        return kind, 0
    command = LENGTH_COMMANDS.get(kind)
    return kind, (int(await client.execute_command(command, key)) if command else None)


def _probe_error(e: redis.exceptions.RedisError, where: str) -> ProbeError:
    """Map a redis-py error to a reason; messages come from the server or the OS, never the config."""
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
    return ProbeError("query", f"{where} answered with an error: {e}")


PROBER = RedisProber()
