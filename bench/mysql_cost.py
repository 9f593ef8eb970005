"""What a MySQL probe costs the server and the exporter, side by side with mysqld_exporter.

    .venv/bin/python bench/mysql_cost.py [--tables 2000] [--schemas 10] [--probes 10]

A private MariaDB (tests/fixtures/mariadb.py) gets `--tables` tables (bench.load_tables) and is
probed in this process by the MySQL prober, each probe with the result the scheduler publishes
(its exposition rendered: the exporter's whole CPU per probe), then by the same statements run
bare with pymysql (the floor: statements recorded from the prober, so they cannot drift apart), then scraped by
Debian's prometheus-mysqld-exporter with only its info_schema.tables collector. CPU is read
from /proc: mariadbd's (user + system) and this process's. Index statistics are read every
`index_stats_interval` (1 h by default) against a 5 min probe interval, so "at cadence" figures
add 300/3600 of the extra cost of a probe that re-reads them.

mysql_cost() is the measurement, for bench/bench.py to call with its own server; main() seeds
a server of its own. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pymysql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures.mariadb import MariaDB  # noqa: E402
from fixtures.net import free_port, wait_until  # noqa: E402
from stackprobe.exporter.probers import mysql  # noqa: E402
from stackprobe.exporter.probers.base import ProbeContext  # noqa: E402
from stackprobe.exporter.scheduler import Outcome, next_result  # noqa: E402
from stackprobe.exporter.snapshot import TargetResult  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: The prober's default interval against its default index_stats_interval.
CADENCE = mysql.MysqlTarget.default_interval / mysql.MysqlTarget.model_fields["index_stats_interval"].default
MYSQLD_EXPORTER = "prometheus-mysqld-exporter"
#: mysqld_exporter 0.14's default collectors, all switched off but info_schema.tables.
_OTHER_DEFAULT_COLLECTORS = ("global_status", "global_variables", "slave_status", "info_schema.innodb_cmp",
                             "info_schema.innodb_cmpmem", "info_schema.query_response_time")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU of a process, from /proc/PID/stat (fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def per_run(server_pid: int, client_pid: int | str, runs: int, run: Callable[[], object]) -> dict[str, float]:
    """Median wall seconds and mean CPU seconds (server, client) of one run()."""
    walls = []
    server, client = cpu_seconds(server_pid), cpu_seconds(client_pid)
    for _ in range(runs):
        started = time.perf_counter()
        run()
        walls.append(time.perf_counter() - started)
    return {"wall": statistics.median(walls), "server_cpu": (cpu_seconds(server_pid) - server) / runs,
            "client_cpu": (cpu_seconds(client_pid) - client) / runs}


def recorded_statements(target: mysql.MysqlTarget) -> list[tuple[str, tuple | None]]:
    """The statements one probe of target sends, in order (Session._run wrapped for one probe)."""
    sent: list[tuple[str, tuple | None]] = []
    original = mysql.Session._run

    def record(self, sql, params, fetch):
        sent.append((sql, params))
        return original(self, sql, params, fetch)
    mysql.Session._run = record
    try:
        mysql.PROBER.probe_blocking(target, ProbeContext(target))
    finally:
        mysql.Session._run = original
    return sent


def bare_pymysql(db: MariaDB, statements: list[tuple[str, tuple | None]]) -> Callable[[], None]:
    """The floor: connect as the prober does and run the statements, rows as tuples, nothing kept."""
    def run() -> None:
        with pymysql.connect(unix_socket=db.socket, user="root", autocommit=True, ssl_disabled=True) as conn, conn.cursor() as cur:
            for sql, params in statements:
                cur.execute(sql, params)
                cur.fetchall()
    return run


def mysqld_exporter_scrape(db: MariaDB, tmp: Path, runs: int) -> dict[str, float] | None:
    """mysqld_exporter with only its info_schema.tables collector, scraped `runs` times."""
    binary = shutil.which(MYSQLD_EXPORTER)
    if binary is None:
        return None
    # mysqld_exporter insists on a password in my.cnf, so it gets a user of its own.
    db.sql("CREATE USER IF NOT EXISTS 'bench_peer'@'localhost' IDENTIFIED BY 'bench-peer-pw'")
    db.sql("GRANT SELECT, PROCESS, REPLICATION CLIENT ON *.* TO 'bench_peer'@'localhost'")
    my_cnf = tmp / "my.cnf"
    my_cnf.write_text(f"[client]\nuser=bench_peer\npassword=bench-peer-pw\nsocket={db.socket}\n")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.my-cnf={my_cnf}", f"--web.listen-address=127.0.0.1:{port}", "--collect.info_schema.tables",
         *(f"--no-collect.{c}" for c in _OTHER_DEFAULT_COLLECTORS)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=120) as client:
            def scrape() -> str:
                response = client.get(f"http://127.0.0.1:{port}/metrics")
                response.raise_for_status()
                return response.text
            body = wait_until(scrape, timeout=30, what="mysqld_exporter serving")
            if "mysql_up 1" not in body:
                raise RuntimeError("mysqld_exporter cannot reach the server")
            series = sum(1 for line in body.splitlines() if line.startswith("mysql_info_schema_table_"))
            return {**per_run(db._process.pid, proc.pid, runs, scrape), "table_series": series}
    finally:
        proc.terminate()
        proc.wait(10)


def probe_once(target: mysql.MysqlTarget) -> TargetResult:
    """One probe as the scheduler runs it: the prober, then the result it publishes, rendered."""
    ctx = ProbeContext(target)
    mysql.PROBER.probe_blocking(target, ctx)
    ctx.close("probe succeeded")
    return next_result(Outcome(ctx, None, "", 0.0, time.time()), target, "mysql", None)


def mysql_cost(db: MariaDB, runs: int, tmp: Path) -> dict:
    """Every figure: the prober with index statistics cached and re-read, its floor, mysqld_exporter."""
    pid = db._process.pid
    common = dict(service="bench", unix_socket=db.socket, user="root", max_tables=10**6, interval=300, timeout=300)
    cached = mysql.MysqlTarget(name="bench-cached", **common)
    reread = mysql.MysqlTarget(name="bench-reread", index_stats_interval=0.001, **common)
    out: dict = {}
    for name, target in (("cached", cached), ("reread", reread)):
        result = probe_once(target)  # warms the caches up; `cached` reads index statistics
        out[f"series_{name}"] = sum(piece.count(b"\n") for piece in result.series.values())
        statements = recorded_statements(target)
        out[f"probe_{name}"] = per_run(pid, "self", runs, lambda: probe_once(target))
        out[f"floor_{name}"] = per_run(pid, "self", runs, bare_pymysql(db, statements))
    for kind in ("probe", "floor"):
        cached_run, reread_run = out[f"{kind}_cached"], out[f"{kind}_reread"]
        out[f"{kind}_at_cadence"] = {k: cached_run[k] + (reread_run[k] - cached_run[k]) * CADENCE for k in cached_run}
    out["mysqld_exporter"] = mysqld_exporter_scrape(db, tmp, runs)
    (out["table_open_cache"],), = db.sql("SELECT @@table_open_cache")
    return out


def report(out: dict, tables: int) -> None:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:8.1f} ms"

    rows = [
        (f"prober, index stats cached ({out['series_cached']:,} series)", out["probe_cached"]),
        (f"prober, index stats re-read ({out['series_reread']:,} series)", out["probe_reread"]),
        (f"prober at cadence ({CADENCE:.3f} of probes re-read)", out["probe_at_cadence"]),
        ("floor: same statements, bare pymysql, cached", out["floor_cached"]),
        ("floor: same statements, bare pymysql, re-read", out["floor_reread"]),
        ("floor at cadence", out["floor_at_cadence"]),
    ]
    peer = out["mysqld_exporter"]
    if peer:
        rows.append((f"mysqld_exporter, info_schema.tables only ({peer['table_series']:,} series)", peer))
    title = f"MySQL probe cost, MariaDB with {tables:,} tables (table_open_cache {out['table_open_cache']:,})"
    print(f"\n{title}\n{'-' * len(title)}")
    print(f"  {'':62} {'wall':>11} {'mariadbd CPU':>13} {'client CPU':>11}")
    for label, figures in rows:
        print(f"  {label:62} {ms(figures['wall'])} {ms(figures['server_cpu']):>13} {ms(figures['client_cpu']):>11}")
    at_cadence, floor = out["probe_at_cadence"], out["floor_at_cadence"]
    print(f"\n  exporter CPU / pymysql floor, at cadence: {at_cadence['client_cpu'] / floor['client_cpu']:.2f}x (goal <= 1.5x)")
    if peer:
        print(f"  mariadbd CPU / mysqld_exporter's tables collector, at cadence: "
              f"{at_cadence['server_cpu'] / peer['server_cpu']:.2f}x (goal <= 1.5x)")
    print("  (client CPU of mysqld_exporter is its own process; of the prober and the floor, this one)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=2000)
    parser.add_argument("--schemas", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20, help="rows of the smallest table (up to 5x in others)")
    parser.add_argument("--probes", type=int, default=10, help="runs of each measurement")
    args = parser.parse_args()
    from bench import load_tables

    with tempfile.TemporaryDirectory(prefix="mysql-cost-") as tmp, contextlib.ExitStack() as stack:
        (Path(tmp) / "db").mkdir()
        (Path(tmp) / "sorts").mkdir()
        db = MariaDB(Path(tmp) / "db", (f"--tmpdir={tmp}/sorts",))  # its temporary tables out of the shared /tmp
        db.start()
        stack.callback(db.stop)
        print(f"[mysql_cost] creating {args.tables} tables", file=sys.stderr, flush=True)
        load_tables(db, args.schemas, args.tables, args.rows)
        report(mysql_cost(db, args.probes, Path(tmp)), args.tables)


if __name__ == "__main__":
    main()
