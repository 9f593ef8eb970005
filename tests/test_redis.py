"""The Redis prober against private redis-server processes: every value is compared with what
the server itself reports (INFO, LLEN, ...), and failures are checked by their reason."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.exceptions
import trustme
import yaml

from stackprobe.configsource import ConfigError
from stackprobe.exporter.config import parse
from stackprobe.exporter.probers import redis as redis_prober
from stackprobe.exporter.snapshot import TargetResult

from fixtures.net import wait_until
from fixtures.probing import probe_result
from fixtures.redis_server import resp

PONG = resp("PONG")


def config(*targets: dict) -> str:
    """Exporter YAML with the given redis targets (service and a 1 s interval filled in)."""
    return yaml.safe_dump({"redis": [{"service": "vedfolnir", "interval": "1s", **t} for t in targets]})


def probe_now(target: dict) -> TargetResult:
    """Run exactly one probe of one target, for tests that count the server's stats per probe."""
    parsed = parse("test.yaml", config(target)).targets[0]
    return asyncio.run(probe_result(parsed, "redis"))


def info(server, section: str | None = None) -> dict:
    with server.client() as c:
        return c.info(section) if section else c.info()


def test_info_values_match_the_server_and_probes_touch_no_keyspace_stats(start_exporter, make_redis):
    server = make_redis()
    with server.client() as c:
        c.mset({f"k{i}": i for i in range(5)})
        c.expire("k0", 3600)
        c.expire("k1", 3600)
        c.config_set("maxmemory", "104857600")
        for i in range(7):
            assert c.get(f"k{i % 5}") is not None
        for i in range(4):
            assert c.get(f"absent{i}") is None
    with server.client(db=3) as c:
        c.mset({"a": 1, "b": 2, "c": 3})
        c.expire("c", 600)

    # SCAN patterns are configured too: they must not count as keyspace lookups either.
    exporter = start_exporter(config({"name": "cache", "url": server.url, "patterns": [{"pattern": "k*"}, {"pattern": "*", "db": 3}]}))
    exporter.wait_for_probe("cache", count=2)
    # One scrape, then INFO: every value below comes from the same probe, taken before INFO.
    scrape = exporter.scrape()

    def v(name: str, **labels: str) -> float | None:
        wanted = {("target", "cache"), *labels.items()}
        values = [val for (n, ls), val in scrape.items() if n == f"stackprobe_redis_{name}" and wanted <= ls]
        assert len(values) <= 1, (name, labels)
        return values[0] if values else None

    hits, misses, used = v("keyspace_hits_total"), v("keyspace_misses_total"), v("memory_used_bytes")
    stats = info(server)

    assert (hits, misses) == (stats["keyspace_hits"], stats["keyspace_misses"]) == (7, 4)
    assert v("memory_max_bytes") == stats["maxmemory"] == 104857600
    # used_memory moves with every client buffer, so it is compared loosely.
    assert abs(used - stats["used_memory"]) < 0.25 * stats["used_memory"]
    assert v("memory_fragmentation_ratio") > 0
    assert 1 <= v("connected_clients") <= 10
    assert v("blocked_clients") == stats["blocked_clients"] == 0
    assert v("rejected_connections_total") == stats["rejected_connections"] == 0
    assert v("evicted_keys_total") == stats["evicted_keys"] == 0
    assert v("expired_keys_total") == stats["expired_keys"] == 0
    assert 0 < v("commands_processed_total") <= stats["total_commands_processed"]
    assert 0 <= v("uptime_seconds") <= stats["uptime_in_seconds"]
    assert v("db_keys", db="0") == stats["db0"]["keys"] == 5
    assert v("db_keys_expiring", db="0") == stats["db0"]["expires"] == 2
    assert v("db_keys", db="3") == stats["db3"]["keys"] == 3
    assert v("db_keys_expiring", db="3") == stats["db3"]["expires"] == 1
    assert v("instance_info", role="master", version=stats["redis_version"]) == 1
    assert v("connected_replicas") == stats["connected_slaves"] == 0
    assert v("master_link_up") is None  # a primary has no master link
    assert v("pattern_keys", db="0", pattern="k*") == 5
    assert v("pattern_keys", db="3", pattern="*") == 3
    assert v("up") == 1
    assert 0 < v("ping_duration_seconds")

    exporter.wait_for_probe("cache", count=2)
    after = info(server, "stats")
    assert (after["keyspace_hits"], after["keyspace_misses"]) == (7, 4)


def test_key_lengths_cost_exactly_the_documented_lookups(make_redis):
    """TYPE + length command count as two hits per present key, TYPE as one miss per missing key."""
    server = make_redis()
    with server.client() as c:
        c.rpush("queue", "a", "b")
    before = info(server, "stats")
    result = probe_now({"name": "k", "url": server.url, "keys": [{"key": "queue"}, {"key": "missing"}]})
    after = info(server, "stats")
    assert result.success, result.message
    assert after["keyspace_hits"] - before["keyspace_hits"] == 2
    assert after["keyspace_misses"] - before["keyspace_misses"] == 1


def test_the_probers_own_lookups_are_counted_so_rules_can_subtract_them(make_redis):
    """stackprobe_redis_probe_lookups_total counts, at each probe, the lookups made before its INFO:
    keyspace_hits minus it is the applications' own hits, exactly."""
    server = make_redis()
    with server.client() as c:
        c.rpush("queue", "a")
        c.set("token", "x")
        for _ in range(3):
            c.get("token")  # the application's own lookups: 3 hits, 1 miss
        c.get("absent")
    target = {"name": "lookups", "url": server.url, "keys": [{"key": "queue"}, {"key": "token"}, {"key": "gone"}]}
    own = lambda r, name: r.samples[(f"stackprobe_redis_{name}", ())]  # noqa: E731
    lookups = lambda r, result: r.samples[("stackprobe_redis_probe_lookups_total", (("result", result),))]  # noqa: E731
    for probes_before in range(3):
        result = probe_now(target)
        assert result.success, result.message
        assert (lookups(result, "hit"), lookups(result, "miss")) == (4 * probes_before, 1 * probes_before)
        assert own(result, "keyspace_hits_total") - lookups(result, "hit") == 3
        assert own(result, "keyspace_misses_total") - lookups(result, "miss") == 1


def test_a_lookup_cut_off_by_the_timeout_is_still_counted_as_the_probers_own(fake_redis):
    """The server counts a lookup once it has the command, answered or not; so must the prober,
    or the rules would take it for an application's (an idle cache read as a 0 % hit ratio).
    Unanswered, it is counted as a miss: the rules subtract own hits from the hits only, so an
    unknown can raise the applications' ratio, never fake a low one."""
    slow = {"TYPE": True}

    def reply(words: list[bytes]) -> bytes:
        if words[0] == b"TYPE" and slow["TYPE"]:
            time.sleep(1.5)  # past the probe's 0.5 s timeout: the probe gives up first
        return {b"PING": PONG, b"INFO": resp(b"redis_version:7.0.0\r\n"), b"TYPE": resp("none")}[words[0]]

    peer = fake_redis(reply)
    target = {"name": "cut-off", "url": peer.url, "timeout": "500ms", "keys": [{"key": "q"}]}
    lookups = lambda r, result: r.samples[("stackprobe_redis_probe_lookups_total", (("result", result),))]  # noqa: E731
    cut_off = probe_now(target)
    assert (cut_off.success, cut_off.reason) == (False, "timeout"), cut_off.message
    wait_until(lambda: [w[0] for w in peer.commands].count(b"TYPE") == 1, timeout=10, what="the TYPE at the server")
    slow["TYPE"] = False
    answered = probe_now(target)
    assert answered.success, answered.message
    received = [w[0] for w in peer.commands].count(b"TYPE")
    assert received == 2
    # Exported before this probe's own TYPE: the one the server received from the cut-off probe.
    assert (lookups(answered, "hit"), lookups(answered, "miss")) == (0, 1)


def test_pattern_counts_are_exact_and_a_small_budget_reports_truncation(start_exporter, redis_server):
    db = 5
    with redis_server.client(db=db) as c:
        c.flushdb()
        pipe = c.pipeline(transaction=False)
        for i in range(2500):
            pipe.set(f"vedfolnir:session:{i}", "x")
        for i in range(700):
            pipe.set(f"vedfolnir:user:{i}", "x")
        pipe.execute()
    pattern = "vedfolnir:session:*"
    exporter = start_exporter(config(
        {"name": "full", "url": f"{redis_server.url}/{db}", "patterns": [{"pattern": pattern}]},
        {"name": "partial", "url": redis_server.url, "scan_budget": 500, "scan_count": 100,
         "patterns": [{"pattern": pattern, "db": db}]},
    ))
    exporter.wait_for_probe("full")
    exporter.wait_for_probe("partial")
    labels = {"db": str(db), "pattern": pattern}
    assert exporter.value("stackprobe_redis_pattern_keys", target="full", **labels) == 2500
    assert exporter.value("stackprobe_redis_pattern_scan_truncated", target="full", **labels) == 0
    assert 0 < exporter.value("stackprobe_redis_pattern_keys", target="partial", **labels) < 2500
    assert exporter.value("stackprobe_redis_pattern_scan_truncated", target="partial", **labels) == 1


def test_key_lengths_by_type(start_exporter, redis_server):
    db = 6
    with redis_server.client(db=db) as c:
        c.flushdb()
        c.rpush("image-processing-queue", *range(7))
        c.sadd("set", *range(4))
        c.zadd("zset", {"a": 1, "b": 2, "c": 3})
        c.hset("hash", mapping={f"f{i}": i for i in range(5)})
        for i in range(6):
            c.xadd("stream", {"n": i})
        c.set("string", "hello")
        expected = {"image-processing-queue": ("list", c.llen("image-processing-queue")), "set": ("set", c.scard("set")),
                    "zset": ("zset", c.zcard("zset")), "hash": ("hash", c.hlen("hash")),
                    "stream": ("stream", c.xlen("stream")), "string": ("string", c.strlen("string")), "missing": ("none", 0)}
    assert [n for _, n in expected.values()] == [7, 4, 3, 5, 6, 5, 0]
    exporter = start_exporter(config({"name": "q", "url": redis_server.url, "keys": [{"key": k, "db": db} for k in expected]}))
    exporter.wait_for_probe("q")
    for key, (kind, length) in expected.items():
        assert exporter.value("stackprobe_redis_key_length", target="q", db=str(db), key=key, type=kind) == length, key


def test_password_and_acl_user_work_and_a_wrong_password_is_auth_and_never_shown(start_exporter, make_redis, monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = {"admin": "adm1n-Secret-7f3a", "acl": "acl-Secret-91bc", "wrong": "wr0ng-Secret-55de"}
    server = make_redis(password=secrets["admin"], user=("prober", secrets["acl"]))
    monkeypatch.setenv("REDIS_PW", secrets["admin"])
    monkeypatch.setenv("REDIS_WRONG_PW", secrets["wrong"])
    acl_file = tmp_path / "acl-password"
    acl_file.write_text(secrets["acl"] + "\n")
    exporter = start_exporter(config(
        {"name": "pw", "url": server.url, "password_env": "REDIS_PW"},
        {"name": "acl", "url": server.url, "username": "prober", "password_file": str(acl_file)},
        {"name": "wrong", "url": server.url, "password_env": "REDIS_WRONG_PW"},
        {"name": "wrong-user", "url": server.url, "username": "prober", "password_env": "REDIS_WRONG_PW"},
        {"name": "none", "url": server.url},
    ))
    for name in ("pw", "acl", "wrong", "wrong-user", "none"):
        exporter.wait_for_probe(name)
    assert exporter.value("stackprobe_probe_success", target="pw") == 1
    assert exporter.value("stackprobe_probe_success", target="acl") == 1
    for name in ("wrong", "wrong-user", "none"):  # WRONGPASS twice, NOAUTH once
        assert exporter.value("stackprobe_probe_success", target=name) == 0
        assert exporter.value("stackprobe_redis_up", target=name) == 0
        assert exporter.value("stackprobe_probe_errors_total", target=name, reason="auth") >= 1

    shown = [exporter.get("/metrics").text, caplog.text] + [
        exporter.get(f"/probe?target={name}&debug=true").text for name in ("pw", "acl", "wrong", "wrong-user")]
    assert "reason=auth" in shown[-1]
    for text in shown:
        for secret in secrets.values():
            assert secret not in text


def test_rediss_with_the_servers_ca_works_and_an_untrusted_ca_is_tls(start_exporter, make_redis, tmp_path):
    server = make_redis(tls=trustme.CA())
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    exporter = start_exporter(config(
        {"name": "trusted", "url": server.url, "tls": {"ca_file": str(server.ca_file)}},
        {"name": "untrusted", "url": server.url, "tls": {"ca_file": str(other_ca)}},
    ))
    exporter.wait_for_probe("trusted")
    exporter.wait_for_probe("untrusted")
    assert exporter.value("stackprobe_probe_success", target="trusted") == 1
    assert exporter.value("stackprobe_redis_up", target="trusted") == 1
    assert exporter.value("stackprobe_probe_success", target="untrusted") == 0
    assert exporter.value("stackprobe_probe_errors_total", target="untrusted", reason="tls") >= 1


def test_a_stopped_server_is_connect_while_others_keep_working_and_it_recovers(start_exporter, make_redis, redis_server):
    server = make_redis()
    exporter = start_exporter(config({"name": "flappy", "url": server.url}, {"name": "steady", "url": redis_server.url}))
    exporter.wait_for_probe("flappy")
    assert exporter.value("stackprobe_probe_success", target="flappy") == 1

    server.stop()
    wait_until(lambda: exporter.value("stackprobe_probe_errors_total", target="flappy", reason="connect"),
               timeout=30, what="a connect error")
    assert exporter.value("stackprobe_probe_success", target="flappy") == 0
    assert exporter.value("stackprobe_redis_up", target="flappy") == 0
    exporter.wait_for_probe("steady")
    assert exporter.value("stackprobe_probe_success", target="steady") == 1

    server.start()
    wait_until(lambda: exporter.value("stackprobe_probe_success", target="flappy") == 1, timeout=30, what="recovery")
    assert exporter.value("stackprobe_redis_up", target="flappy") == 1


def test_a_server_that_never_answers_is_timeout(start_exporter, silent_listener):
    exporter = start_exporter(config({"name": "hung", "url": f"redis://127.0.0.1:{silent_listener.port}", "timeout": "500ms"}))
    exporter.wait_for_probe("hung", timeout=30)
    assert exporter.value("stackprobe_probe_success", target="hung") == 0
    assert exporter.value("stackprobe_redis_up", target="hung") == 0
    assert exporter.value("stackprobe_probe_errors_total", target="hung", reason="timeout") >= 1


@pytest.mark.parametrize("hang", ["syn-never-answered", "auth-never-answered"])
def test_a_connect_that_hangs_ends_at_the_probes_deadline_as_timeout(request, hang, monkeypatch):
    """The connect phase (TCP, then AUTH) obeys the prober's own deadline, like every command:
    a SYN nobody answers, or a server that accepts and never answers the AUTH sent on connect."""
    monkeypatch.setenv("REDIS_HUNG_PW", "never-checked")
    listener = request.getfixturevalue("full_backlog_listener" if hang == "syn-never-answered" else "silent_listener")
    result = probe_now({"name": "hung", "url": f"redis://127.0.0.1:{listener.port}", "timeout": "500ms",
                        "password_env": "REDIS_HUNG_PW"})
    assert (result.success, result.reason) == (False, "timeout"), result.message
    assert any("(TCP, TLS, AUTH, SELECT) was cut off unfinished" in line for line in result.log), result.log
    assert not [line for line in result.log if "PING answered" in line]


def test_persistence_matches_info_after_save_and_aof_setting(start_exporter, make_redis):
    rdb = make_redis()
    aof = make_redis(extra_args=("--appendonly", "yes"))
    with rdb.client() as c:
        c.set("a", 1)
        assert c.info("persistence")["rdb_changes_since_last_save"] > 0
        c.save()
    assert (rdb.dir / "dump.rdb").exists()
    exporter = start_exporter(config({"name": "rdb", "url": rdb.url}, {"name": "aof", "url": aof.url}))
    exporter.wait_for_probe("rdb")
    exporter.wait_for_probe("aof")
    persistence = info(rdb, "persistence")
    v = lambda name, target: exporter.value(f"stackprobe_redis_{name}", target=target)  # noqa: E731
    assert v("rdb_last_save_timestamp_seconds", "rdb") == persistence["rdb_last_save_time"]
    assert v("rdb_changes_since_last_save", "rdb") == persistence["rdb_changes_since_last_save"] == 0
    assert v("rdb_last_bgsave_success", "rdb") == 1
    assert v("aof_enabled", "rdb") == persistence["aof_enabled"] == 0
    assert v("aof_enabled", "aof") == info(aof, "persistence")["aof_enabled"] == 1
    assert v("aof_last_write_success", "aof") == 1


@pytest.mark.parametrize("url, complaint", [
    ("redis://:hunter2-inline@127.0.0.1:6379/0", "password_env or password_file"),
    ("redis://user:hunter2-inline@127.0.0.1:6379/0", "password_env or password_file"),
    ("redis://127.0.0.1:6379/0?password=hunter2-inline", "query parameters"),
    ("http://127.0.0.1:6379/0", "redis://"),
    ("redis://127.0.0.1:6379/zero", "must be a number"),
])
def test_bad_urls_are_config_errors_that_do_not_echo_the_url(url, complaint):
    with pytest.raises(ConfigError) as error:
        parse("test.yaml", config({"name": "r", "url": url}))
    assert complaint in str(error.value)
    assert "hunter2" not in str(error.value)


def test_tls_options_need_rediss_and_unix_urls_take_a_db():
    with pytest.raises(ConfigError, match="rediss://"):
        parse("test.yaml", config({"name": "r", "url": "redis://127.0.0.1", "tls": {"verify": False}}))
    target = parse("test.yaml", config({"name": "r", "url": "unix:///run/redis/redis.sock?db=2"})).targets[0]
    assert (target.endpoint.socket_path, target.endpoint.db) == ("/run/redis/redis.sock", 2)
    assert (target.interval, target.timeout) == (1.0, 1.0)
    assert (parse("test.yaml", "redis: [{name: r, service: s, url: 'redis://h'}]").targets[0].timeout) == 10.0


def test_a_long_scan_ends_at_the_timeout_with_its_connection_closed_and_no_scan_left_running(make_redis):
    """Issue 14: a SCAN loop outran its timeout (the cancellation was swallowed inside redis-py
    on Python 3.11) and reported success; several probes at once make that race likely."""
    server = make_redis(extra_args=("--enable-debug-command", "local"))
    with server.client() as c:
        c.execute_command("DEBUG", "POPULATE", 300_000)
    targets = [parse("test.yaml", config({
        "name": f"big-{i}", "url": server.url, "timeout": "500ms", "scan_budget": 10_000_000, "scan_count": 10,
        "patterns": [{"pattern": "nomatch:*"}]})).targets[0] for i in range(4)]

    async def probe_all() -> list[TargetResult]:
        return await asyncio.gather(*(probe_result(t, "redis") for t in targets))

    results = asyncio.run(probe_all())
    assert [(r.success, r.reason) for r in results] == [(False, "timeout")] * 4

    def scans() -> int:
        with server.client() as c:
            return c.info("commandstats")["cmdstat_scan"]["calls"]

    def probe_connections() -> int:
        with server.client() as c:
            return len(c.client_list()) - 1  # all but this one
    wait_until(lambda: probe_connections() == 0, timeout=10, what="the probes' connections closed")
    before = scans()
    time.sleep(0.5)
    assert scans() == before


def test_a_server_without_hello_is_probed_over_resp2_with_password_and_acl_user(make_redis, monkeypatch):
    """Redis before 6.0 knows no HELLO (redis-py's RESP3 handshake); renaming it away makes a
    real redis-server answer like one."""
    server = make_redis(password="old-server-pw", user=("prober", "old-acl-pw"), extra_args=("--rename-command", "HELLO", ""))
    with server.client() as c:
        with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
            c.execute_command("HELLO", "3")
        c.rpush("queue", "a", "b")
    monkeypatch.setenv("OLD_PW", "old-server-pw")
    monkeypatch.setenv("OLD_ACL_PW", "old-acl-pw")
    for target in ({"name": "old", "url": server.url, "password_env": "OLD_PW"},
                   {"name": "old-acl", "url": server.url, "username": "prober", "password_env": "OLD_ACL_PW"}):
        result = probe_now({**target, "keys": [{"key": "queue"}], "patterns": [{"pattern": "q*"}]})
        assert result.success, result.message
        assert result.samples[("stackprobe_redis_key_length", (("db", "0"), ("key", "queue"), ("type", "list")))] == 2


def info_reply(text: bytes):
    return lambda words: PONG if words[0] == b"PING" else resp(text)


@pytest.mark.parametrize("name, reply, reason, says", [
    ("garbage", lambda words: b"HTTP/1.1 400 Bad Request\r\n\r\n", "query", "Redis protocol"),
    ("closes", lambda words: None, "connect", ""),
    ("ping-error", lambda words: resp(Exception("ERR unknown command 'PING'")), "query", "unknown command"),
    ("ping-number", lambda words: resp(7), "query", "not a Redis reply"),
    ("info-number", lambda words: PONG if words[0] == b"PING" else resp(42), "query", "INFO with 42"),
    ("scan-shape", lambda words: {b"PING": PONG, b"INFO": resp(b"redis_version:4.0.0\r\n")}.get(words[0], resp([b"x"])), "query", "SCAN"),
    ("scan-cursor", lambda words: {b"PING": PONG, b"INFO": resp(b"redis_version:4.0.0\r\n")}.get(words[0], resp([b"-1", []])), "query", "SCAN"),
    ("deep-nesting", lambda words: PONG if words[0] == b"PING" else b"*1\r\n" * 100_000 + b":1\r\n", "query", ""),
    ("type-list", lambda words: {b"PING": PONG, b"INFO": resp(b"redis_version:4.0.0\r\n"), b"SCAN": resp([b"0", []])}.get(words[0], resp([b"list"])), "query", "TYPE"),
    ("length-text", lambda words: {b"PING": PONG, b"INFO": resp(b"x:1\r\n"), b"SCAN": resp([b"0", []]), b"TYPE": resp("list")}.get(words[0], resp(b"seven")), "query", "LLEN"),
])
def test_hostile_servers_fail_with_a_named_reason(fake_redis, name, reply, reason, says):
    peer = fake_redis(reply)
    result = probe_now({"name": name, "url": peer.url, "patterns": [{"pattern": "*"}], "keys": [{"key": "q"}]})
    assert (result.success, result.reason) == (False, reason), result.message
    assert says in result.message


def test_a_reply_over_the_cap_is_refused_not_buffered(fake_redis, monkeypatch):
    """An endless bulk string (here 4 MiB against a 1 MiB cap) ends the probe with reason query
    once the cap is read, instead of being buffered whole until the timeout."""
    monkeypatch.setattr(redis_prober, "MAX_REPLY_BYTES", 1 << 20)
    peer = fake_redis(lambda words: PONG if words[0] == b"PING" else resp(b"x" * (4 << 20)))
    result = probe_now({"name": "huge", "url": peer.url})
    assert (result.success, result.reason) == (False, "query"), result.message
    assert "a reply over 1 MiB, refused" in result.message
    monkeypatch.setattr(redis_prober, "MAX_REPLY_BYTES", 8 << 20)
    assert probe_now({"name": "huge", "url": peer.url}).success  # within the cap: an INFO like any other


def test_nonsense_info_values_are_skipped_not_fatal(fake_redis):
    text = b"# Server\r\nredis_version:4.0.14\r\nrole:master\r\nused_memory:lots\r\nconnected_clients:3\r\nno colon here\r\ndb0:keys=abc,expires=2\r\ndb1:weird\r\n"
    peer = fake_redis(lambda words: PONG if words[0] == b"PING" else resp(text))
    result = probe_now({"name": "odd", "url": peer.url})
    assert result.success, result.message
    names = {name: value for (name, labels), value in result.samples.items() if not labels}
    assert names["stackprobe_redis_connected_clients"] == 3
    assert "stackprobe_redis_memory_used_bytes" not in names
    assert result.samples[("stackprobe_redis_db_keys", (("db", "0"),))] == 0
    assert result.samples[("stackprobe_redis_db_keys_expiring", (("db", "0"),))] == 2
    # RESP2: no HELLO first; and no CLIENT SETINFO round trips either.
    assert [w[0] for w in peer.commands] == [b"PING", b"INFO"]


def test_a_unix_socket_url_is_probed_on_its_database(make_redis, tmp_path):
    sock = tmp_path / "redis.sock"
    server = make_redis(extra_args=("--unixsocket", str(sock), "--unixsocketperm", "700"))
    with server.client(db=4) as c:
        c.rpush("queue", "a", "b", "c")
    result = probe_now({"name": "unix", "url": f"unix://{sock}?db=4", "keys": [{"key": "queue"}]})
    assert result.success, result.message
    assert result.samples[("stackprobe_redis_key_length", (("db", "4"), ("key", "queue"), ("type", "list")))] == 3
