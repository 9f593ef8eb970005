"""Benchmarks of the exporter beside the Go exporters it replaces: prints figures, asserts nothing.

    ./dev.sh bench [--only PART ...] [--json FILE] [size flags, see --help]

Every exporter runs as its own process on a free loopback port, against the same private
servers and data (the test fixtures' MariaDB, Redis and HTTP servers, never the machine's
shared ones), and CPU is read from /proc of each process: the exporters' and the servers' they
talk to. The parts (`--only`, repeatable):

- `mysql`: MariaDB with 2,000 tables (3 indexes each; `--tables-large 10000` adds a second
  size): stackprobe's `/metrics` against prometheus-mysqld-exporter's scrape (plain and gzip),
  RSS, then bench/mysql_cost.py on the same server: the MySQL probe against its pymysql floor
  (the statements it sent, run bare) and mysqld_exporter's tables collector, at the prober's
  default cadence of index statistics.
- `redis`, `http`: bench/redis_http_cost.py: a pattern count over 1,000,000 keys against
  prometheus-redis-exporter --count-keys, HTTP/HTTPS probes against
  prometheus-blackbox-exporter.
- `http-load`: 500 HTTP targets probed every 15 s by one exporter: CPU per round, spread of
  the probe starts, scrape size.
- `idle`: RSS of each exporter with nothing configured.

A new part is one function and one entry in PARTS (`./dev.sh bench soak` runs bench/soak.py).

The end is one table, "issue 12 goals", each goal with both sides' figures and the ratio, and
the cost model the README's "Running at scale" quotes. The machine is shared (2 cores, other
test runs): read the figures as one run's, and ratios from the same run only.
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
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from pymysql.constants import CLIENT

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures.exporter import parse_scrape  # noqa: E402
from fixtures.mariadb import MariaDB  # noqa: E402
from fixtures.net import free_port, wait_until  # noqa: E402
from redis_http_cost import http_cost, process as spawn, redis_cost  # noqa: E402  (bench/, issue 12.4)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MYSQLD_EXPORTER = "prometheus-mysqld-exporter"
#: httpx asks for gzip unless told otherwise; Prometheus asks for gzip too.
PLAIN, GZIP = {"Accept-Encoding": "identity"}, {"Accept-Encoding": "gzip"}


# --- measuring ------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: p99 of 200 samples is the 198th smallest, a value really seen."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def proc_memory(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in bytes, from /proc/PID/status."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Measured:
    """`count` sequential calls: wall seconds of each, CPU seconds per call of each watched process."""

    walls: list[float]
    cpu: dict[str, float]
    body: str = ""
    wire_bytes: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def series(self) -> int:
        return sum(1 for line in self.body.splitlines() if line and not line.startswith("#"))


def measure(call: Callable[[], httpx.Response | None], count: int, pids: dict[str, int]) -> Measured:
    """Run `call` `count` times in sequence; CPU per call of each pid (and of this process, "self",
    as process_time) over all of them: /proc counts in 10 ms ticks, too coarse for one call."""
    before = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
    own = time.process_time()
    walls, response = [], None
    for _ in range(count):
        started = time.perf_counter()
        response = call()
        walls.append(time.perf_counter() - started)
    cpu = {name: (proc_cpu_seconds(pid) - before[name]) / count for name, pid in pids.items()}
    cpu["self"] = (time.process_time() - own) / count
    if isinstance(response, httpx.Response):
        return Measured(walls, cpu, response.text, response.num_bytes_downloaded)
    return Measured(walls, cpu)


def getter(client: httpx.Client, url: str, check: Callable[[str], bool] | None = None, **kw) -> Callable[[], httpx.Response]:
    """A GET that reads the whole body and fails loudly on an error or a body `check` rejects."""
    def get() -> httpx.Response:
        response = client.get(url, **kw)
        response.raise_for_status()
        if check and not check(response.text):
            raise RuntimeError(f"{url}: unexpected answer:\n{response.text[:2000]}")
        return response
    return get


def has_sample(name: str, value: float) -> Callable[[str], bool]:
    """A check: some sample of `name` (any labels) has `value`."""
    def check(text: str) -> bool:
        return any(line.split("{")[0].split(" ")[0] == name and float(line.rsplit(" ", 1)[1]) == value
                   for line in text.splitlines() if line.startswith(name))
    return check


@dataclass
class Running:
    proc: subprocess.Popen
    url: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        return proc_memory(self.pid)["VmRSS"]


@contextlib.contextmanager
def process(argv: list[str], log: Path, port: int, env: dict[str, str] | None = None) -> Iterator[Running]:
    """A server process waited for on its port, terminated at the end (its log shown if it fails)."""
    with spawn(argv, log, port, env) as proc:
        yield Running(proc, f"http://127.0.0.1:{port}")


@contextlib.contextmanager
def stackprobe(config: dict, tmp: Path, name: str) -> Iterator[Running]:
    """`stackprobe run` with this config, ready (every target probed once) when yielded."""
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    with process([sys.executable, "-m", "stackprobe.exporter", "run", f"--config.file={path}",
                  f"--web.listen-address=127.0.0.1:{port}"], tmp / f"{name}.log", port) as running:
        wait_until(lambda: httpx.get(running.url + "/-/ready", timeout=30).status_code == 200,
                   timeout=900, interval=0.5, what=f"{name}: every target's first probe")
        yield running


# --- output ---------------------------------------------------------------------------------

def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a (peer side 0 at /proc's 10 ms resolution)"


def print_table(title: str, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n{title}\n{'-' * len(title)}")
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    sys.stdout.flush()


def note(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- part mysql: stackprobe against mysqld_exporter -----------------------------------------

def load_tables(db: MariaDB, schemas: int, tables: int, rows: int, first: int = 0) -> None:
    """Tables number `first`..`tables`-1 (3 indexes each, `rows` to 5x`rows` rows) spread over
    `schemas` schemas, 100 statements per round trip (bench/mysql_cost.py uses it too)."""
    statements = [f"CREATE DATABASE IF NOT EXISTS bench_{s}" for s in range(schemas)]
    for i in range(first, tables):
        name = f"bench_{i % schemas}.t_{i:05d}"
        values = ",".join(f"({n % 97},'label-{n % 13}',NOW() - INTERVAL {n} MINUTE)" for n in range(rows * (1 + i % 5)))
        statements.append(
            f"CREATE TABLE {name} (id INT AUTO_INCREMENT PRIMARY KEY, account INT NOT NULL,"
            " label VARCHAR(32) NOT NULL, created DATETIME NOT NULL, KEY k_account (account),"
            " KEY k_label_created (label, created)) ENGINE=InnoDB")
        if values:
            statements.append(f"INSERT INTO {name} (account, label, created) VALUES {values}")
    with db.connect(client_flag=CLIENT.MULTI_STATEMENTS) as conn, conn.cursor() as cur:
        for start in range(0, len(statements), 100):
            cur.execute(";".join(statements[start:start + 100]))
            while cur.nextset():
                pass


def mysqld_exporter_argv(port: int) -> list[str]:
    # What a user scrapes: the default collectors plus the tables collector (information_schema.TABLES).
    return [MYSQLD_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--collect.info_schema.tables",
            "--collect.info_schema.tables.databases=*"]


def mysql_at(db: MariaDB, tables: int, args: argparse.Namespace, tmp: Path) -> dict:
    """Every MySQL figure at the current table count."""
    from mysql_cost import mysql_cost  # bench/mysql_cost.py: the probe against its floor and the tables collector

    mariadb = db._process.pid
    out: dict = {"tables": tables}
    port = free_port()
    with process(mysqld_exporter_argv(port), tmp / f"mysqld-exporter-{tables}.log", port,
                 {"DATA_SOURCE_NAME": f"root@unix({db.socket})/"}) as peer, httpx.Client(timeout=600) as client:
        peer_scrape = getter(client, peer.url + "/metrics", has_sample("mysql_up", 1), headers=PLAIN)
        peer_scrape()  # warm: first connection, the server's table cache
        note(f"{tables} tables: mysqld_exporter, {args.probes} scrapes")
        out["peer"] = measure(peer_scrape, args.probes, {"exporter": peer.pid, "mariadb": mariadb})
        out["peer_gzip"] = measure(getter(client, peer.url + "/metrics", headers=GZIP), args.probes,
                                   {"exporter": peer.pid, "mariadb": mariadb})
        out["peer_rss"] = peer.rss()
    config = {"mysql": [{"name": "bench-mariadb", "service": "bench", "unix_socket": db.socket, "user": "root",
                         "max_tables": tables * 2, "interval": "1h", "timeout": "10m"}]}
    with stackprobe(config, tmp, f"stackprobe-mysql-{tables}") as sp, httpx.Client(timeout=600) as client:
        note(f"{tables} tables: stackprobe /metrics x{args.scrapes} (plain, gzip)")
        out["metrics"] = measure(getter(client, sp.url + "/metrics", headers=PLAIN), args.scrapes,
                                 {"exporter": sp.pid, "mariadb": mariadb})
        out["metrics_gzip"] = measure(getter(client, sp.url + "/metrics", headers=GZIP), args.scrapes,
                                      {"exporter": sp.pid, "mariadb": mariadb})
        out["rss"] = sp.rss()
        out["rss_peak"] = proc_memory(sp.pid)["VmHWM"]
    note(f"{tables} tables: bench/mysql_cost.py, {args.probes} runs each")
    out["probe"] = mysql_cost(db, args.probes, tmp)
    return out


def bench_mysql(args: argparse.Namespace, tmp: Path) -> dict:
    # MariaDB's temporary files in the bench's own directory: /tmp is shared with other runs.
    (tmp / "mariadb").mkdir()
    db = MariaDB(tmp / "mariadb", server_args=(f"--tmpdir={tmp / 'mariadb'}",))
    db.start()
    results = {}
    try:
        made = 0
        for tables in sorted({args.tables, args.tables_large} - {0}):
            note(f"creating tables {made}..{tables - 1}")
            started = time.monotonic()
            load_tables(db, args.schemas, tables, args.rows, first=made)
            note(f"  {tables - made} tables in {time.monotonic() - started:.0f} s")
            made = tables
            results[tables] = mysql_at(db, tables, args, tmp)
            print_mysql(tables, results[tables], args)
    finally:
        db.stop()
    return results


def print_mysql(tables: int, r: dict, args: argparse.Namespace) -> None:
    """One table per size: the scrapes side by side, then bench/mysql_cost.py's probe figures."""
    from mysql_cost import report

    rows = [("", "mysqld_exporter", "stackprobe", "stackprobe / peer")]
    for label, theirs, ours in (("plain", r["peer"], r["metrics"]), ("gzip", r["peer_gzip"], r["metrics_gzip"])):
        rows += [(f"/metrics median ({label})", ms(theirs.median), ms(ours.median), ratio(ours.median, theirs.median)),
                 (f"  exporter CPU per scrape ({label})", ms(theirs.cpu["exporter"]), ms(ours.cpu["exporter"]),
                  ratio(ours.cpu["exporter"], theirs.cpu["exporter"]))]
    rows += [("  MariaDB CPU per scrape", ms(r["peer"].cpu["mariadb"]), ms(r["metrics"].cpu["mariadb"]), ""),
             ("  series; bytes plain / gzip", f"{r['peer'].series:,}; {r['peer'].wire_bytes:,} / {r['peer_gzip'].wire_bytes:,}",
              f"{r['metrics'].series:,}; {r['metrics'].wire_bytes:,} / {r['metrics_gzip'].wire_bytes:,}", ""),
             ("RSS after the scrapes", mib(r["peer_rss"]), f"{mib(r['rss'])} (peak {mib(r['rss_peak'])})",
              ratio(r["rss"], r["peer_rss"]))]
    print_table(f"mysql: MariaDB with {tables:,} tables ({args.schemas} schemas, 3 indexes each), scrapes: "
                f"medians of {args.probes} (mysqld_exporter, default collectors + info_schema.tables) and "
                f"{args.scrapes} (stackprobe, the probe's results cached)", rows)
    report(r["probe"], tables)


# --- part http-load: many HTTP targets ------------------------------------------------------

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


def samples(series: dict, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(labels), value) for (n, labels), value in series.items() if n == name]


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


def bench_http_load(args: argparse.Namespace, tmp: Path) -> dict:
    server = ArrivalServer()
    config = {"http": [{"name": f"bench-http-{i:04d}", "service": "bench", "interval": f"{args.interval}s",
                        "url": f"http://127.0.0.1:{server.port}/target/{i:04d}"} for i in range(args.targets)]}
    interval = float(args.interval)
    scrape_bodies: list[str] = []
    scrape_cpu = 0.0
    try:
        note(f"{args.targets} HTTP targets every {interval:g} s: waiting for every first probe")
        with stackprobe(config, tmp, "stackprobe-http-load") as running:
            proc, url = running.proc, running.url
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
            with httpx.Client(timeout=120) as client:
                scrapes = measure(getter(client, url + "/metrics"), args.scrapes, {"exporter": proc.pid})
            scrape_times, body = scrapes.walls, scrapes.body
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
        f"http-load: {args.targets} HTTP targets on loopback, interval {interval:g} s, "
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


# --- parts redis and http: bench/redis_http_cost.py -----------------------------------------

def bench_redis(args: argparse.Namespace, tmp: Path) -> dict:
    note(f"redis: {args.keys:,} keys, {args.sessions:,} matching; {args.probes} probes/scrapes each")
    return redis_cost(tmp, args.probes, args.keys, args.sessions)


def bench_http(args: argparse.Namespace, tmp: Path) -> dict:
    note(f"http: {args.http_probes} probes per exporter and scheme")
    return http_cost(tmp, args.http_probes)


# --- part idle ------------------------------------------------------------------------------

def bench_idle(args: argparse.Namespace, tmp: Path) -> dict:
    """RSS of each exporter with nothing to probe, after one scrape of its own /metrics."""
    out = {}
    with stackprobe({}, tmp, "stackprobe-idle") as sp:
        httpx.get(sp.url + "/metrics", timeout=30).raise_for_status()
        out["stackprobe"] = sp.rss()
    (tmp / "blackbox-idle.yml").write_text(yaml.safe_dump({"modules": {"http_2xx": {"prober": "http"}}}))
    peers = {
        "mysqld_exporter": (mysqld_exporter_argv, {"DATA_SOURCE_NAME": "nobody@tcp(127.0.0.1:1)/"}),
        "redis_exporter": (lambda port: ["prometheus-redis-exporter", "--redis.addr=redis://127.0.0.1:1",
                                         f"--web.listen-address=127.0.0.1:{port}"], None),
        "blackbox_exporter": (lambda port: ["prometheus-blackbox-exporter", f"--config.file={tmp / 'blackbox-idle.yml'}",
                                            f"--web.listen-address=127.0.0.1:{port}"], None),
    }
    for name, (argv, env) in peers.items():
        port = free_port()
        with process(argv(port), tmp / f"{name}-idle.log", port, env) as peer:
            httpx.get(peer.url + "/metrics", timeout=30)  # the scrape may report the server down
            out[name] = peer.rss()
    print_table("idle: RSS with nothing configured, after one /metrics", [(name, mib(rss)) for name, rss in out.items()])
    return out


# --- the goals of issue 12 and the cost model -----------------------------------------------

def goals(figures: dict) -> list[tuple[str, ...]]:
    """One row per goal: what, the Go peer's figure, stackprobe's, the ratio, the goal."""
    rows = [("goal", "Go peer", "stackprobe", "ratio", "goal")]
    for tables, r in figures.get("mysql", {}).items():
        for label, theirs, ours in (("", r["peer"], r["metrics"]), (", gzip", r["peer_gzip"], r["metrics_gzip"])):
            faster = 10 if tables < 10_000 else 50
            rows.append((f"/metrics at {tables:,} tables{label}: median", ms(theirs.median), ms(ours.median),
                         f"{theirs.median / ours.median:.1f}x faster", f">= {faster}x faster"))
            if tables < 10_000:
                rows.append((f"  exporter CPU per scrape{label}", ms(theirs.cpu["exporter"]), ms(ours.cpu["exporter"]),
                             f"{theirs.cpu['exporter'] / ours.cpu['exporter']:.1f}x lower" if ours.cpu["exporter"] else "n/a",
                             ">= 10x lower"))
        probe, floor, peer = r["probe"]["probe_at_cadence"], r["probe"]["floor_at_cadence"], r["probe"]["mysqld_exporter"]
        if peer:
            rows.append((f"MySQL probe at {tables:,} tables: MariaDB CPU, vs the tables collector", ms(peer["server_cpu"]),
                         ms(probe["server_cpu"]), ratio(probe["server_cpu"], peer["server_cpu"]), "<= 1.5x"))
        rows.append(("  exporter CPU vs the pymysql floor (peer column: floor)", ms(floor["client_cpu"]),
                     ms(probe["client_cpu"]), ratio(probe["client_cpu"], floor["client_cpu"]), "<= 1.5x"))
        rows.append((f"RSS at {tables:,} tables", mib(r["peer_rss"]), mib(r["rss"]), ratio(r["rss"], r["peer_rss"]),
                     "<= 60 MB" if tables < 10_000 else "<= 100 MB"))
    if figures.get("mysql") and max(figures["mysql"]) < 10_000:
        rows.append(("/metrics, MySQL probe and RSS at 10,000 tables", "", "", "not run", "--tables-large 10000"))
    if "redis" in figures:
        r = figures["redis"]
        sp, peer = r["stackprobe"], r["redis_exporter"]
        rows.append((f"Redis count {r['matching']:,} of {r['keys']:,} keys: median", ms(peer["median_seconds"]),
                     ms(sp["median_seconds"]), ratio(sp["median_seconds"], peer["median_seconds"]), "<= 1.1x"))
        rows.append(("  exporter CPU per probe", ms(peer["cpu_seconds_per_request"]), ms(sp["cpu_seconds_per_request"]),
                     ratio(sp["cpu_seconds_per_request"], peer["cpu_seconds_per_request"]), ""))
        rows.append(("  floor: bare SCAN loop", "", ms(r["floor_median_seconds"]), "", ""))
    for scheme, r in figures.get("http", {}).items():
        sp, peer = r["stackprobe"], r["blackbox"]
        rows.append((f"{scheme.upper()} probe: median", ms(peer["median_seconds"]), ms(sp["median_seconds"]),
                     ratio(sp["median_seconds"], peer["median_seconds"]), "<= 1.5x"))
        rows.append(("  exporter CPU per probe", ms(peer["cpu_seconds_per_request"]), ms(sp["cpu_seconds_per_request"]),
                     ratio(sp["cpu_seconds_per_request"], peer["cpu_seconds_per_request"]), ""))
    if "idle" in figures:
        idle = figures["idle"]
        rows.append(("RSS idle (nothing configured)", ", ".join(f"{n.split('_')[0]} {mib(v)}" for n, v in idle.items() if n != "stackprobe"),
                     mib(idle["stackprobe"]), "", "no cost for unused probers"))
    return rows


def _family_series(body: str, prefix: str) -> int:
    return sum(1 for line in body.splitlines() if line.startswith(prefix))


def cost_model(figures: dict) -> list[tuple[str, str]]:
    """Series and cost per unit of configuration, from this run's figures."""
    from stackprobe.exporter import metrics

    rows = []
    mysql = figures.get("mysql", {})
    for tables, r in mysql.items():
        body = r["metrics"].body
        per_table = _family_series(body, "stackprobe_mysql_table_") / tables
        per_index = _family_series(body, "stackprobe_mysql_index_") / (3 * tables)
        rows += [(f"MySQL, {tables:,} tables: series per table / per index", f"{per_table:.1f} / {per_index:.1f}"),
                 ("  /metrics CPU per 1,000 series (plain / gzip)",
                  f"{us(1000 * r['metrics'].cpu['exporter'] / r['metrics'].series)} / "
                  f"{us(1000 * r['metrics_gzip'].cpu['exporter'] / r['metrics_gzip'].series)}"),
                 ("  probe CPU per 1,000 tables, at cadence: exporter / MariaDB",
                  f"{ms(1000 * r['probe']['probe_at_cadence']['client_cpu'] / tables)} / "
                  f"{ms(1000 * r['probe']['probe_at_cadence']['server_cpu'] / tables)}")]
    if len(mysql) == 2:
        (small, a), (large, b) = sorted(mysql.items())
        rows.append(("  RSS per 1,000 series (between the two sizes)",
                     mib((b["rss"] - a["rss"]) / ((b["metrics"].series - a["metrics"].series) / 1000))))
    pattern = sum(1 for f in metrics.FAMILIES if "pattern" in f.labels)
    rows.append(("Redis: series per key pattern", str(pattern)))
    if "redis" in figures:
        r = figures["redis"]["stackprobe"]
        rows.append((f"  CPU per pattern count of {figures['redis']['keys']:,} keys: exporter / redis-server",
                     f"{ms(r['cpu_seconds_per_request'])} / {ms(r['other_cpu_seconds_per_request'][0])}"))
    if "http" in figures:
        rows.append(("HTTP: exporter CPU per probe, HTTP / HTTPS",
                     " / ".join(ms(figures["http"][s]["stackprobe"]["cpu_seconds_per_request"]) for s in ("http", "https"))))
    if "http_load" in figures:
        h = figures["http_load"]
        rows += [("HTTP: series per target", f"{h['series_stackprobe'] / h['targets']:.1f}"),
                 (f"  CPU per probe with {h['targets']} targets every {h['interval_seconds']:g} s",
                  ms(h["cpu_seconds_per_round"] / h["targets"])),
                 (f"  RSS with {h['targets']} targets ({h['series']:,} series)", mib(h["rss_bytes"]))]
    return rows


PARTS: dict[str, Callable[[argparse.Namespace, Path], dict]] = {
    "idle": bench_idle,
    "mysql": bench_mysql,
    "redis": bench_redis,
    "http": bench_http,
    "http-load": bench_http_load,
}


def _jsonable(value: object) -> object:
    if isinstance(value, Measured):
        return {"median_seconds": value.median, "seconds": value.walls, "cpu_seconds_per_call": value.cpu,
                "series": value.series, "wire_bytes": value.wire_bytes}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--only", choices=tuple(PARTS), action="append", help="run this part only (repeatable)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--tables", type=int, default=2000, help="MariaDB tables, first size")
    parser.add_argument("--tables-large", type=int, default=0,
                        help="MariaDB tables, second size, e.g. 10000 (creating them takes ~5 min here; 0: skip)")
    parser.add_argument("--schemas", type=int, default=4, help="schemas the tables are spread over")
    parser.add_argument("--rows", type=int, default=20, help="rows of the smallest tables (others up to 5x)")
    parser.add_argument("--keys", type=int, default=1_000_000, help="Redis keys in all")
    parser.add_argument("--sessions", type=int, default=50_000, help="of which match the counted pattern")
    parser.add_argument("--probes", type=int, default=5, help="MySQL/Redis probes and peer scrapes per measurement")
    parser.add_argument("--scrapes", type=int, default=50,
                        help="stackprobe /metrics requests per measurement (CPU per scrape resolves to 10 ms / this)")
    parser.add_argument("--http-probes", type=int, default=50, help="HTTP probes per exporter and scheme")
    parser.add_argument("--targets", type=int, default=500, help="http-load: HTTP targets")
    parser.add_argument("--interval", type=int, default=15, help="http-load: probe interval, seconds")
    parser.add_argument("--rounds", type=int, default=4, help="http-load: probe rounds measured")
    args = parser.parse_args()
    if args.sessions > args.keys or min(args.tables, args.schemas, args.probes, args.scrapes, args.http_probes,
                                         args.targets, args.interval, args.rounds) < 1:
        parser.error("sizes must be positive and --sessions at most --keys")

    print(f"stackprobe bench: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; a shared machine: figures are one noisy run's", flush=True)
    figures: dict = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stackprobe-bench-") as tmp:
        for name, part in PARTS.items():
            if args.only is None or name in args.only:
                (Path(tmp) / name).mkdir()
                figures[name.replace("-", "_")] = part(args, Path(tmp) / name)
    rows = goals(figures)
    if len(rows) > 1:
        print_table("issue 12 goals: both sides from this run", rows)
    if model := cost_model(figures):
        print_table("cost model (README: Running at scale)", model)
    print(f"\ntotal bench time {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(_jsonable(figures), indent=2) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
