"""Soak: a long-running exporter under steady scraping and a stream of SIGHUPs, half of them hostile.

    ./dev.sh bench soak [--scrapes 5000] [--sighups 200] [--targets 30]

One `stackprobe run` process (its own, so its RSS is its own) probes backup and HTTP targets on
loopback every second while this script scrapes /metrics back to back and, spread over the run,
sends SIGHUPs that alternate between the valid config and a hostile one (alias bomb, deep
nesting, invalid UTF-8, duplicate key, 5,000-digit number, unknown field). Checked and printed:
every reload is reported by stackprobe_config_last_reload_successful (0 after a hostile one, 1
after the valid one), the targets never change, no counter ever goes down, each failed reload
is one log line and no traceback is logged; RSS at start, end and peak; scrape latency.
Prints figures, asserts nothing; exit 1 if a check failed.
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures.exporter import parse_scrape  # noqa: E402
from fixtures.net import free_port, wait_for_port, wait_until  # noqa: E402


def hostile_configs() -> list[tuple[str, bytes]]:
    bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return [
        ("alias bomb", ("\n".join(bomb) + "\n").encode()),
        ("deep nesting", b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n"),
        ("invalid UTF-8", b"backup:\n  - name: \xff\xfe\n"),
        ("duplicate key", b"backup: []\nbackup: []\n"),
        ("5,000-digit number", b"backup:\n  - {name: b, service: s, path: /tmp, globs: ['*'], size_history: "
                               + b"9" * 5000 + b"}\n"),
        ("unknown field", b"backup:\n  - {name: b, service: s, path: /tmp, globs: ['*'], intervall: 1s}\n"),
    ]


def valid_config(backups: Path, http_port: int, targets: int) -> str:
    half = targets // 2
    lines = ["modules:", "  backup:", "    dumps: {globs: ['*.sql'], interval: 1s, timeout: 1s}", "backup:"]
    lines += [f"  - {{name: backup-{i}, service: soak, module: dumps, path: '{backups}'}}" for i in range(half)]
    lines.append("http:")
    lines += [f"  - {{name: http-{i}, service: soak, url: 'http://127.0.0.1:{http_port}/health', interval: 1s,"
              f" timeout: 1s}}" for i in range(targets - half)]
    return "\n".join(lines) + "\n"


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b'{"status": "ok"}'
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def soak(args: argparse.Namespace, tmp: Path) -> bool:
    backups = tmp / "backups"
    backups.mkdir()
    dump = backups / "db.sql"
    dump.write_text("-- dump\n" * 100)
    os.utime(dump, (time.time() - 3600, time.time() - 3600))
    health = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=health.serve_forever, daemon=True).start()
    valid = valid_config(backups, health.server_address[1], args.targets)
    config = tmp / "stackprobe.yml"
    config.write_text(valid)
    port = free_port()
    log_path = tmp / "stderr.log"
    proc = subprocess.Popen([sys.executable, "-m", "stackprobe.exporter", "run", f"--config.file={config}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=log_path.open("w"))
    url = f"http://127.0.0.1:{port}/metrics"
    client = httpx.Client(timeout=30)
    problems: list[str] = []
    hostile = hostile_configs()
    try:
        wait_for_port(port)
        wait_until(lambda: sum(1 for (n, _), v in parse_scrape(client.get(url).text).items()
                               if n == "stackprobe_probe_success") == args.targets, timeout=60,
                   what="every target probed once")
        time.sleep(3)  # a few probe rounds, so the baseline RSS is a warm one
        start_memory = memory(proc.pid)
        every = max(1, args.scrapes // args.sighups)
        previous: dict = {}
        latencies: list[float] = []
        sighups = {"valid": 0, "hostile": 0}
        counter_drops = target_changes = reload_misreports = 0
        rss_samples = []
        started = time.monotonic()
        for i in range(args.scrapes):
            t0 = time.perf_counter()
            text = client.get(url).text
            latencies.append(time.perf_counter() - t0)
            series = parse_scrape(text)
            targets = {dict(ls)["target"] for (n, ls) in series if n == "stackprobe_probe_success"}
            if len(targets) != args.targets:
                target_changes += 1
            for key, value in series.items():
                if key[0].endswith("_total") and value < previous.get(key, 0):
                    counter_drops += 1
            previous = {k: v for k, v in series.items() if k[0].endswith("_total")}
            if i % 500 == 0:
                rss_samples.append(memory(proc.pid)["VmRSS"])
            if (i + 1) % every == 0 and sum(sighups.values()) < args.sighups:
                is_hostile = sum(sighups.values()) % 2 == 0  # hostile, valid, hostile, valid, ...
                if is_hostile:
                    config.write_bytes(hostile[sighups["hostile"] % len(hostile)][1])
                else:
                    config.write_text(valid)
                proc.send_signal(signal.SIGHUP)
                sighups["hostile" if is_hostile else "valid"] += 1
                want = 0.0 if is_hostile else 1.0
                try:
                    wait_until(lambda: parse_scrape(client.get(url).text).get(
                        ("stackprobe_config_last_reload_successful", frozenset())) == want, timeout=30,
                        what="the reload reported")
                except AssertionError:
                    reload_misreports += 1
        elapsed = time.monotonic() - started
        end_memory = memory(proc.pid)
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(timeout=30)
    finally:
        proc.kill()
        client.close()
        health.shutdown()
    log = log_path.read_text()
    failure_lines = sum("config reload failed" in line for line in log.splitlines())
    tracebacks = log.count("Traceback")
    if reload_misreports:
        problems.append(f"{reload_misreports} reloads not reported by stackprobe_config_last_reload_successful")
    if counter_drops:
        problems.append(f"{counter_drops} counter decreases")
    if target_changes:
        problems.append(f"{target_changes} scrapes with a different target count")
    if failure_lines != sighups["hostile"] or tracebacks:
        problems.append(f"{failure_lines} reload-failure log lines for {sighups['hostile']} hostile reloads, "
                        f"{tracebacks} tracebacks")
    if exit_code != 0:
        problems.append(f"exit code {exit_code} after SIGTERM")
    q = statistics.quantiles(latencies, n=100)
    rows = [
        ("scrapes", f"{args.scrapes:,} in {elapsed:.0f} s ({args.scrapes / elapsed:.0f}/s), {args.targets} targets at 1 s"),
        ("SIGHUPs", f"{sighups['valid']} valid, {sighups['hostile']} hostile "
                    f"({', '.join(name for name, _ in hostile)})"),
        ("reloads misreported", str(reload_misreports)),
        ("counter decreases / target-count changes", f"{counter_drops} / {target_changes}"),
        ("reload-failure log lines / tracebacks", f"{failure_lines} / {tracebacks}"),
        ("scrape latency p50 / p99 / max", f"{q[49] * 1000:.1f} / {q[98] * 1000:.1f} / {max(latencies) * 1000:.1f} ms"),
        ("exporter RSS start -> end (peak)", f"{mib(start_memory['VmRSS'])} -> {mib(end_memory['VmRSS'])} "
                                             f"(peak {mib(end_memory['VmHWM'])})"),
        ("RSS every 500 scrapes", " ".join(f"{r / 2**20:.0f}" for r in rss_samples) + " MiB"),
        ("exit after SIGTERM", str(exit_code)),
    ]
    width = max(len(k) for k, _ in rows)
    print("\nsoak: exporter under scraping and SIGHUPs (half of them hostile)")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print("  result: " + ("OK" if not problems else "FAILED: " + "; ".join(problems)))
    return not problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scrapes", type=int, default=5000, help="/metrics requests, back to back")
    parser.add_argument("--sighups", type=int, default=200, help="SIGHUPs, alternating hostile and valid config")
    parser.add_argument("--targets", type=int, default=30, help="targets probed every second (half backup, half HTTP)")
    args = parser.parse_args()
    if min(args.scrapes, args.sighups, args.targets) < 2 or args.sighups > args.scrapes:
        parser.error("sizes must be at least 2 and --sighups at most --scrapes")
    with tempfile.TemporaryDirectory(prefix="stackprobe-soak-") as tmp:
        sys.exit(0 if soak(args, Path(tmp)) else 1)


if __name__ == "__main__":
    main()
