"""Benchmarks of the exporter at production scale: prints figures, asserts nothing.

    ./dev.sh bench [--only mysql-redis|http] [--json FILE] [size flags, see --help]

Part `mysql-redis` (issue 3): a private MariaDB with 2,000 tables and a private Redis with
1,000,000 keys, probed by one in-process exporter. Each probe time is set against the floor: the
same queries / SCAN loop run directly, without the exporter.

Part `http` (issue 4): 500 HTTP targets on loopback probed every 15 s by an exporter running as
its own process, so that its CPU time is not mixed with the HTTP server's or this script's.

The servers come from the test fixtures (tests/fixtures/), on free loopback ports only; every
wait and loop is bounded, so a default run takes a few minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import yaml
from pymysql.constants import CLIENT

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures.exporter import RunningExporter, Series, parse_scrape, start_exporter  # noqa: E402
from fixtures.mariadb import MariaDB  # noqa: E402
from fixtures.net import free_port, wait_for_port, wait_until  # noqa: E402
from fixtures.redis_server import RedisServer  # noqa: E402

SESSION_PATTERN = "vedfolnir:session:*"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: The probe SQL of exporter/probers/mysql.py (MysqlProber._tables), run directly for the floor.
TABLES_SQL = (
    "SELECT TABLE_SCHEMA, TABLE_NAME, DATA_LENGTH, INDEX_LENGTH, DATA_FREE, TABLE_ROWS"
    " FROM information_schema.TABLES"
    " WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') AND TABLE_SCHEMA NOT IN (%s, %s, %s, %s)"
    " ORDER BY COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) DESC, TABLE_SCHEMA, TABLE_NAME"
)
STATISTICS_SQL = (
    "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, CARDINALITY FROM information_schema.STATISTICS"
    " WHERE TABLE_SCHEMA NOT IN (%s, %s, %s, %s) ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
)
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")


# --- measuring ------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: p99 of 200 samples is the 198th smallest, a value really seen."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def proc_memory(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in bytes, from /proc/PID/status."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def time_scrapes(url: str, count: int) -> tuple[list[float], str]:
    """Seconds per sequential GET /metrics (whole body read), and the last body."""
    times, body = [], ""
    with httpx.Client(timeout=120) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(url + "/metrics")
            response.raise_for_status()
            body = response.text
            times.append(time.perf_counter() - started)
    return times, body


def samples(series: Series, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(labels), value) for (n, labels), value in series.items() if n == name]


def value_of(series: Series, name: str, **labels: str) -> float:
    (value,) = [v for ls, v in samples(series, name) if labels.items() <= ls.items()]
    return value


# --- output ---------------------------------------------------------------------------------

def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    print(f"\n{title}\n{'-' * len(title)}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    sys.stdout.flush()


def note(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- part 1: MariaDB with many tables, Redis with many keys ---------------------------------

def load_tables(db: MariaDB, schemas: int, tables: int, rows: int) -> None:
    """`tables` tables (3 indexes each, `rows` to 5x`rows` rows) over `schemas` schemas, 50 per round trip."""
    statements = [f"CREATE DATABASE bench_{s}" for s in range(schemas)]
    for i in range(tables):
        name = f"bench_{i % schemas}.t_{i:05d}"
        values = ",".join(f"({n % 97},'label-{n % 13}',NOW() - INTERVAL {n} MINUTE)" for n in range(rows * (1 + i % 5)))
        statements.append(
            f"CREATE TABLE {name} (id INT AUTO_INCREMENT PRIMARY KEY, account INT NOT NULL,"
            " label VARCHAR(32) NOT NULL, created DATETIME NOT NULL, KEY k_account (account),"
            " KEY k_label_created (label, created)) ENGINE=InnoDB")
        statements.append(f"INSERT INTO {name} (account, label, created) VALUES {values}")
    with db.connect(client_flag=CLIENT.MULTI_STATEMENTS) as conn, conn.cursor() as cur:
        for start in range(0, len(statements), 100):
            cur.execute(";".join(statements[start:start + 100]))
            while cur.nextset():
                pass


def load_keys(server: RedisServer, total: int, sessions: int) -> None:
    """DEBUG POPULATE for the bulk, pipelined SETs for the session keys the pattern matches."""
    with server.client(socket_timeout=300) as c:
        c.execute_command("DEBUG", "POPULATE", total - sessions, "bench:bulk", 32)
        for start in range(0, sessions, 10_000):
            pipe = c.pipeline(transaction=False)
            for n in range(start, min(start + 10_000, sessions)):
                pipe.set(f"vedfolnir:session:{n:08d}", "user-session", ex=86_400)
            pipe.execute()
        if c.dbsize() != total:
            raise RuntimeError(f"redis holds {c.dbsize()} keys, expected {total}")


def mysql_floor(db: MariaDB, repeat: int) -> dict[str, float]:
    """Median seconds of the prober's heavy queries run directly (fresh connection each time, like a probe)."""
    runs: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeat):
        started = time.perf_counter()
        with db.connect() as conn, conn.cursor() as cur:
            for key, sql, params in (("status", "SHOW GLOBAL STATUS", None), ("tables", TABLES_SQL, SYSTEM_SCHEMAS),
                                     ("statistics", STATISTICS_SQL, SYSTEM_SCHEMAS)):
                runs[key].append(timed(lambda: (cur.execute(sql, params), cur.fetchall())))
        runs["total"].append(time.perf_counter() - started)
    return {key: statistics.median(values) for key, values in runs.items()}


def redis_floor(server: RedisServer, count: int, budget: int, repeat: int) -> tuple[float, int]:
    """Median seconds of a bare SCAN MATCH loop with the prober's COUNT, stopping at `budget` keys examined."""
    def scan() -> int:
        cursor, examined, matched = 0, 0, 0
        while True:
            cursor, keys = c.scan(cursor, match=SESSION_PATTERN, count=count)
            examined += count
            matched += len(keys)
            if cursor == 0 or examined >= budget:
                return matched

    with server.client(socket_timeout=120) as c:
        matched = scan()
        return statistics.median(timed(scan) for _ in range(repeat)), matched


def probe_durations(running: RunningExporter, target: str, repeat: int, *families: str) -> tuple[list[float], dict[str, float]]:
    """The exporter's own stackprobe_probe_duration_seconds of `repeat` on-demand probes (/probe),
    and the last probe's value of each of `families` (one series each)."""
    durations, series = [], {}
    for _ in range(repeat):
        response = httpx.get(f"{running.url}/probe", params={"target": target}, timeout=300)
        response.raise_for_status()
        series = parse_scrape(response.text)
        if value_of(series, "stackprobe_probe_success") != 1:
            raise RuntimeError(f"probe of {target} failed:\n{response.text[:2000]}")
        durations.append(value_of(series, "stackprobe_probe_duration_seconds"))
    return durations, {family: value_of(series, family) for family in families}


def bench_mysql_redis(args: argparse.Namespace, tmp: Path) -> dict:
    (tmp / "mariadb").mkdir()
    db = MariaDB(tmp / "mariadb")
    redis_server = RedisServer(tmp / "redis", extra_args=("--enable-debug-command", "local"))
    out: dict = {"tables": args.tables, "schemas": args.schemas, "redis_keys": args.keys, "session_keys": args.sessions}
    with contextlib.ExitStack() as stack:
        db.start()
        stack.callback(db.stop)
        redis_server.start()
        stack.callback(redis_server.stop)
        note(f"creating {args.tables} tables in {args.schemas} schemas")
        out["setup_tables_seconds"] = timed(lambda: load_tables(db, args.schemas, args.tables, args.rows))
        note(f"loading {args.keys} redis keys")
        out["setup_keys_seconds"] = timed(lambda: load_keys(redis_server, args.keys, args.sessions))

        rss_before = proc_memory()["VmRSS"]
        config = {
            "mysql": [{"name": "bench-mariadb", "service": "bench", "unix_socket": db.socket, "user": "root",
                       "max_tables": args.tables * 2, "interval": "1h", "timeout": "5m"}],
            "redis": [
                {"name": "bench-redis-full", "service": "bench", "url": f"redis://127.0.0.1:{redis_server.port}/0",
                 "patterns": [{"pattern": SESSION_PATTERN}], "scan_budget": args.keys * 2, "interval": "1h", "timeout": "5m"},
                {"name": "bench-redis-default-budget", "service": "bench", "url": f"redis://127.0.0.1:{redis_server.port}/0",
                 "patterns": [{"pattern": SESSION_PATTERN}], "interval": "1h", "timeout": "5m"},
            ],
        }
        # The tests' fixture, driven as a context manager: the exporter runs in this process.
        start = stack.enter_context(contextlib.contextmanager(start_exporter.__wrapped__)(tmp))
        running: RunningExporter = start(yaml.safe_dump(config))
        # The scheduled first probes (within 10 s of the start) also warm the servers' caches.
        wait_until(running.exporter.scheduler.ready, timeout=600, interval=0.2, what="every target's first probe")
        note(f"{args.probes} on-demand probes per target")
        redis_families = ("stackprobe_redis_pattern_keys", "stackprobe_redis_pattern_scan_truncated")
        probes = {
            "bench-mariadb": probe_durations(running, "bench-mariadb", args.probes,
                                             "stackprobe_mysql_tables", "stackprobe_mysql_tables_omitted"),
            "bench-redis-full": probe_durations(running, "bench-redis-full", args.probes, *redis_families),
            "bench-redis-default-budget": probe_durations(running, "bench-redis-default-budget", args.probes, *redis_families),
        }
        note(f"{args.scrapes} sequential /metrics requests")
        scrape_times, body = time_scrapes(running.url, args.scrapes)
        memory = proc_memory()
        note("floor: the same queries run directly")
        floor_mysql = mysql_floor(db, args.probes)
        floor_full, matched_full = redis_floor(redis_server, 1000, args.keys * 2, args.probes)
        floor_default, matched_default = redis_floor(redis_server, 1000, 100_000, args.probes)

    scrape = parse_scrape(body)
    mysql_values = probes["bench-mariadb"][1]
    full_values, default_values = probes["bench-redis-full"][1], probes["bench-redis-default-budget"][1]
    out.update({
        "mysql_probe_seconds": statistics.median(probes["bench-mariadb"][0]),
        "mysql_probe_seconds_all": probes["bench-mariadb"][0],
        "mysql_tables_seen": mysql_values["stackprobe_mysql_tables"],
        "mysql_tables_omitted": mysql_values["stackprobe_mysql_tables_omitted"],
        "mysql_floor_seconds": floor_mysql,
        "redis_full_probe_seconds": statistics.median(probes["bench-redis-full"][0]),
        "redis_full_probe_seconds_all": probes["bench-redis-full"][0],
        "redis_full_pattern_keys": full_values["stackprobe_redis_pattern_keys"],
        "redis_full_truncated": full_values["stackprobe_redis_pattern_scan_truncated"],
        "redis_full_floor_seconds": floor_full,
        "redis_full_floor_matched": matched_full,
        "redis_default_probe_seconds": statistics.median(probes["bench-redis-default-budget"][0]),
        "redis_default_probe_seconds_all": probes["bench-redis-default-budget"][0],
        "redis_default_pattern_keys": default_values["stackprobe_redis_pattern_keys"],
        "redis_default_truncated": default_values["stackprobe_redis_pattern_scan_truncated"],
        "redis_default_floor_seconds": floor_default,
        "redis_default_floor_matched": matched_default,
        "metrics_seconds_p50": statistics.median(scrape_times),
        "metrics_seconds_p99": pct(scrape_times, 99),
        "metrics_requests": len(scrape_times),
        "metrics_bytes": len(body.encode()),
        "series": len(scrape),
        "series_stackprobe": sum(1 for name, _ in scrape if name.startswith("stackprobe_")),
        "rss_bytes": memory["VmRSS"],
        "rss_peak_bytes": memory["VmHWM"],
        "rss_before_exporter_bytes": rss_before,
        "process_resident_memory_bytes": value_of(scrape, "process_resident_memory_bytes"),
    })
    n = args.probes
    print_table(
        f"Part 1 (issue 3): MariaDB {args.tables:,} tables in {args.schemas} schemas, "
        f"Redis {args.keys:,} keys ({args.sessions:,} match {SESSION_PATTERN})",
        [
            ("setup (not measured below)", f"tables created in {out['setup_tables_seconds']:.1f} s, "
                                           f"keys loaded in {out['setup_keys_seconds']:.1f} s"),
            (f"mysql probe, median of {n}", f"{ms(out['mysql_probe_seconds'])}  "
                                            f"({out['mysql_tables_seen']:,.0f} tables, {out['mysql_tables_omitted']:.0f} omitted)"),
            ("  floor: SHOW GLOBAL STATUS", ms(floor_mysql["status"])),
            ("  floor: information_schema.TABLES", ms(floor_mysql["tables"])),
            ("  floor: information_schema.STATISTICS", ms(floor_mysql["statistics"])),
            ("  floor: connect + all three", ms(floor_mysql["total"])),
            (f"redis probe, scan_budget {args.keys * 2:,}, median of {n}",
             f"{ms(out['redis_full_probe_seconds'])}  ({out['redis_full_pattern_keys']:,.0f} keys, "
             f"truncated={out['redis_full_truncated']:.0f})"),
            ("  floor: bare SCAN loop, COUNT 1000, whole keyspace", f"{ms(floor_full)}  ({matched_full:,} keys)"),
            (f"redis probe, default scan_budget 100,000, median of {n}",
             f"{ms(out['redis_default_probe_seconds'])}  ({out['redis_default_pattern_keys']:,.0f} keys, "
             f"truncated={out['redis_default_truncated']:.0f})"),
            ("  floor: bare SCAN loop, COUNT 1000, 100,000 keys", f"{ms(floor_default)}  ({matched_default:,} keys)"),
            (f"/metrics serve time, {len(scrape_times)} sequential requests",
             f"p50 {ms(out['metrics_seconds_p50'])}, p99 {ms(out['metrics_seconds_p99'])}  "
             f"({out['metrics_bytes'] / 1024:,.0f} KiB)"),
            ("series in one scrape", f"{out['series']:,} ({out['series_stackprobe']:,} stackprobe_*)"),
            ("RSS (exporter in this process)", f"{mib(memory['VmRSS'])} (peak {mib(memory['VmHWM'])}, which includes "
                                               f"this script parsing /probe output; {mib(rss_before)} before the exporter started)"),
        ],
    )
    return out


# --- part 2: many HTTP targets ------------------------------------------------------------

class ArrivalServer:
    """One asyncio HTTP server for all targets: 200 for every path, noting when each request arrived.

    Not the fixtures' HttpPeer: that one keeps no arrival times and starts a thread per request,
    whose scheduling would blur the start-time spread being measured.
    """

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), path)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        listening = threading.Event()
        threading.Thread(target=self._run, args=(listening,), name="arrival-server", daemon=True).start()
        if not listening.wait(10):
            raise RuntimeError("the HTTP server did not start")
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _run(self, listening: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024))
        listening.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            self.arrivals.append((time.monotonic(), head.split(b" ", 2)[1].decode()))
            writer.write(self.RESPONSE)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)


@contextlib.contextmanager
def exporter_process(config_path: Path, log_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """`python -m stackprobe.exporter run` on a free loopback port; yields (process, base URL)."""
    port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stackprobe.exporter", "run", f"--config.file={config_path}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO,
        )
        try:
            wait_for_port(port, timeout=60)
            yield proc, f"http://127.0.0.1:{port}"
        except BaseException:
            print(log_path.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_offsets(arrivals: list[tuple[float, str]], interval: float, until: float) -> list[list[float]]:
    """Request arrival times as offsets into consecutive `interval` windows, one list per window.

    Windows start at the first request, which is within milliseconds of the scheduler's start
    with hundreds of targets; only windows that ended before `until` are returned. A healthy
    exporter starts every target once per window, at the target's fixed offset.
    """
    first = min(at for at, _ in arrivals)
    windows: list[list[float]] = [[] for _ in range(int((until - first) // interval))]
    for at, _ in arrivals:
        k = int((at - first) // interval)
        if k < len(windows):
            windows[k].append(at - first - k * interval)
    return [sorted(w) for w in windows if w]


def busiest(offsets: list[float], width: float) -> int:
    """Most probe starts that fall into any one bin of `width` seconds."""
    return max(Counter(int(o // width) for o in offsets).values())


def bench_http(args: argparse.Namespace, tmp: Path) -> dict:
    server = ArrivalServer()
    config = {"http": [{"name": f"bench-http-{i:04d}", "service": "bench", "interval": f"{args.interval}s",
                        "url": f"http://127.0.0.1:{server.port}/target/{i:04d}"} for i in range(args.targets)]}
    config_path = tmp / "http-config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    interval = float(args.interval)
    scrape_bodies: list[str] = []
    scrape_cpu = 0.0
    try:
        with exporter_process(config_path, tmp / "exporter-http.log") as (proc, url):
            note(f"{args.targets} HTTP targets every {interval:g} s: waiting for every first probe")
            wait_until(lambda: httpx.get(url + "/-/ready", timeout=10).status_code == 200, timeout=interval + 120,
                       interval=0.5, what="every target's first probe")
            note(f"measuring {args.rounds} rounds ({args.rounds * interval:g} s), one /metrics scrape per round")
            cpu_start, window_start = proc_cpu_seconds(proc.pid), time.monotonic()
            for k in range(1, args.rounds + 1):
                time.sleep(max(0.0, window_start + k * interval - time.monotonic()))
                before = proc_cpu_seconds(proc.pid)
                response = httpx.get(url + "/metrics", timeout=120)
                scrape_cpu += proc_cpu_seconds(proc.pid) - before
                scrape_bodies.append(response.text)
            window_end = window_start + args.rounds * interval
            cpu_window = proc_cpu_seconds(proc.pid) - cpu_start
            note(f"{args.scrapes} sequential /metrics requests")
            scrape_times, body = time_scrapes(url, args.scrapes)
            memory = proc_memory(proc.pid)
    finally:
        server.close()

    probes_in_window = sum(1 for at, _ in server.arrivals if window_start <= at < window_end)
    cpu_probing = cpu_window - scrape_cpu
    durations: dict[tuple[str, float], float] = {}
    failed: set[tuple[str, float]] = set()
    for text in scrape_bodies:
        series = parse_scrape(text)
        finished = {ls["target"]: v for ls, v in samples(series, "stackprobe_probe_last_run_timestamp_seconds")}
        for ls, v in samples(series, "stackprobe_probe_duration_seconds"):
            durations[(ls["target"], finished[ls["target"]])] = v
        failed |= {(ls["target"], finished[ls["target"]]) for ls, v in samples(series, "stackprobe_probe_success") if v != 1}
    rounds = start_offsets(server.arrivals, interval, window_end)
    flat = [o for r in rounds for o in r]
    scrape = parse_scrape(body)
    errors: Counter[str] = Counter()
    for labels, value in samples(scrape, "stackprobe_probe_errors_total"):
        errors[labels["reason"]] += int(value)
    errors = {reason: n for reason, n in sorted(errors.items()) if n}
    out = {
        "targets": args.targets, "interval_seconds": interval, "rounds": args.rounds,
        "cpu_seconds_per_round": cpu_probing / args.rounds,
        "cpu_seconds_per_scrape": scrape_cpu / args.rounds,
        "cpu_percent_of_one_core": 100 * cpu_probing / (args.rounds * interval),
        "probes_in_window": probes_in_window,
        "probe_seconds_p50": statistics.median(durations.values()),
        "probe_seconds_p99": pct(list(durations.values()), 99),
        "probe_seconds_max": max(durations.values()),
        "probe_samples": len(durations),
        "probe_failures": len(failed),
        "errors_by_reason_since_start": errors,
        "start_rounds_complete": len(rounds),
        "start_offset_min": min(flat), "start_offset_p50": statistics.median(flat),
        "start_offset_p90": pct(flat, 90), "start_offset_max": max(flat),
        "start_busiest_second": max(busiest(r, 1.0) for r in rounds),
        "start_busiest_100ms": max(busiest(r, 0.1) for r in rounds),
        "start_offsets_per_round": [{"starts": len(r), "p50": statistics.median(r), "max": max(r),
                                     "busiest_100ms": busiest(r, 0.1)}
                                    for r in rounds],
        "metrics_seconds_p50": statistics.median(scrape_times),
        "metrics_seconds_p99": pct(scrape_times, 99),
        "metrics_requests": len(scrape_times),
        "metrics_bytes": len(body.encode()),
        "series": len(scrape),
        "series_stackprobe": sum(1 for name, _ in scrape if name.startswith("stackprobe_")),
        "rss_bytes": memory["VmRSS"], "rss_peak_bytes": memory["VmHWM"],
    }
    even = args.targets / interval
    print_table(
        f"Part 2 (issue 4): {args.targets} HTTP targets on loopback, interval {interval:g} s, "
        f"{args.rounds} rounds measured, exporter in its own process",
        [
            ("CPU per probe round (exporter process only)",
             f"{out['cpu_seconds_per_round']:.2f} s  ({out['cpu_percent_of_one_core']:.1f}% of one core; "
             f"{probes_in_window} probes in {args.rounds * interval:g} s, {args.targets * args.rounds} due)"),
            ("CPU during one /metrics scrape (excluded above)", f"{out['cpu_seconds_per_scrape']:.3f} s  "
                                                               "(includes probing done meanwhile)"),
            (f"probe duration, {out['probe_samples']} probes", f"p50 {ms(out['probe_seconds_p50'])}, "
             f"p99 {ms(out['probe_seconds_p99'])}, max {ms(out['probe_seconds_max'])}; {out['probe_failures']} failed"),
            ("probe errors since start, by reason", ", ".join(f"{r} {n}" for r, n in errors.items()) or "none"),
            (f"probe start offsets in a round ({len(rounds)} rounds)",
             f"min {out['start_offset_min']:.2f} s, p50 {out['start_offset_p50']:.2f} s, p90 {out['start_offset_p90']:.2f} s, "
             f"max {out['start_offset_max']:.2f} s of the {interval:g} s window"),
            ("busiest 1 s / 100 ms of any round", f"{out['start_busiest_second']} / {out['start_busiest_100ms']} probe starts "
             f"(evenly spread: {even:.1f} / {even / 10:.1f})"),
            (f"/metrics serve time, {len(scrape_times)} sequential requests",
             f"p50 {ms(out['metrics_seconds_p50'])}, p99 {ms(out['metrics_seconds_p99'])}  "
             f"({out['metrics_bytes'] / 1024:,.0f} KiB)"),
            ("series in one scrape", f"{out['series']:,} ({out['series_stackprobe']:,} stackprobe_*)"),
            ("exporter RSS", f"{mib(memory['VmRSS'])} (peak {mib(memory['VmHWM'])})"),
        ],
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--only", choices=("mysql-redis", "http"), help="run one part only")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--tables", type=int, default=2000, help="MariaDB tables")
    parser.add_argument("--schemas", type=int, default=4, help="schemas the tables are spread over")
    parser.add_argument("--rows", type=int, default=20, help="rows of the smallest tables (others up to 5x)")
    parser.add_argument("--keys", type=int, default=1_000_000, help="Redis keys in all")
    parser.add_argument("--sessions", type=int, default=50_000, help=f"of which match {SESSION_PATTERN}")
    parser.add_argument("--probes", type=int, default=5, help="probes per target (part 1) for the median")
    parser.add_argument("--scrapes", type=int, default=200, help="sequential /metrics requests timed")
    parser.add_argument("--targets", type=int, default=500, help="HTTP targets")
    parser.add_argument("--interval", type=int, default=15, help="HTTP probe interval, seconds")
    parser.add_argument("--rounds", type=int, default=4, help="HTTP probe rounds measured")
    args = parser.parse_args()
    if args.sessions > args.keys or min(args.tables, args.schemas, args.probes, args.scrapes, args.targets,
                                         args.interval, args.rounds) < 1:
        parser.error("sizes must be positive and --sessions at most --keys")

    print(f"stackprobe bench: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}", flush=True)
    figures: dict = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stackprobe-bench-") as tmp:
        if args.only in (None, "mysql-redis"):
            (Path(tmp) / "part1").mkdir()
            figures["mysql_redis"] = bench_mysql_redis(args, Path(tmp) / "part1")
        if args.only in (None, "http"):
            (Path(tmp) / "part2").mkdir()
            figures["http"] = bench_http(args, Path(tmp) / "part2")
    print(f"\ntotal bench time {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
