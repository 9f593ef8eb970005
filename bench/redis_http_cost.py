"""Redis and HTTP probe cost, side by side with the Go peers (issue 12 item 4): prints figures.

    .venv/bin/python bench/redis_http_cost.py [--only redis|http] [--probes N] [--json FILE]

HTTP: the same loopback HTTP and HTTPS endpoints (the test fixtures' server, in its own
process) probed N times in sequence through `/probe` of a stackprobe exporter process and of
prometheus-blackbox-exporter (module http_2xx, the CA given to both): wall time per probe as the
caller sees it, and each exporter's CPU per probe from /proc.

Redis: a private redis-server with 1,000,000 keys, 50,000 of them `sess:*` (DEBUG POPULATE);
stackprobe's `/probe` of a target counting `sess:*` against prometheus-redis-exporter's
/metrics with `--count-keys=db0=sess:*` (which also runs its INFO and other collectors, like
stackprobe's probe), and the floor: the bare SCAN MATCH loop over one redis-py connection with
hiredis, no exporter. Redis' own CPU per probe is shown too (the SCAN work is the server's).

Each exporter runs as its own process on a free loopback port; nothing is asserted. Reusable
from bench/bench.py: `http_cost(...)` and `redis_cost(...)` return the figures as dicts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import trustme
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures.net import free_port, wait_for_port  # noqa: E402
from fixtures.redis_server import RedisServer  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BLACKBOX = "prometheus-blackbox-exporter"
REDIS_EXPORTER = "prometheus-redis-exporter"

#: The HTTP(S) endpoint both exporters probe: the fixtures' server, run as its own process.
_TARGET_SERVER = """
import ssl, sys, time
sys.path.insert(0, {tests!r})
from fixtures.http_servers import HttpPeer
context = None
if {cert!r}:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain({cert!r})
peer = HttpPeer(context)
print(peer.port, flush=True)
time.sleep(86400)
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc/PID/stat (fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextlib.contextmanager
def process(args: list[str], log: Path, port: int | None = None,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A subprocess (with `env` added to this one's), waited for on `port` if given, terminated at the end."""
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=REPO,
                                env={**os.environ, **(env or {})})
    try:
        if port is not None:
            wait_for_port(port, timeout=60)
        yield proc
    except BaseException:
        print(log.read_text()[-2000:], file=sys.stderr)
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def stackprobe(config: dict, tmp: Path, name: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A stackprobe exporter process with this config; yields (process, base URL)."""
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    with process([sys.executable, "-m", "stackprobe.exporter", "run", f"--config.file={path}",
                  f"--web.listen-address=127.0.0.1:{port}"], tmp / f"{name}.log", port) as proc:
        yield proc, f"http://127.0.0.1:{port}"


def timed_gets(endpoints: dict[str, tuple[str, int, str]], count: int, extra_pids: tuple[int, ...] = ()) -> dict:
    """`count` GETs of each endpoint (name -> (url, pid, text the answer must hold)), interleaved
    so every side sees the same machine load, after 3 warm-ups each: median and p90 wall seconds,
    and CPU per GET of the endpoint's process (and of extra_pids, e.g. the server probed)."""
    times: dict[str, list[float]] = {name: [] for name in endpoints}
    cpu: dict[str, list[float]] = {name: [0.0] * (1 + len(extra_pids)) for name in endpoints}
    with httpx.Client(timeout=120) as client:
        for name, (url, _, check) in endpoints.items():
            for _ in range(3):
                body = client.get(url).text
                if check not in body:
                    raise RuntimeError(f"{url}: {check!r} not in the answer:\n{body[:2000]}")
        for _ in range(count):
            for name, (url, pid, _) in endpoints.items():
                pids = (pid, *extra_pids)
                before = [cpu_seconds(p) for p in pids]
                started = time.perf_counter()
                client.get(url).read()
                times[name].append(time.perf_counter() - started)
                for i, (p, b) in enumerate(zip(pids, before)):
                    cpu[name][i] += cpu_seconds(p) - b
    return {name: {"median_seconds": statistics.median(t), "p90_seconds": sorted(t)[int(0.9 * len(t))],
                   "cpu_seconds_per_request": cpu[name][0] / count,
                   "other_cpu_seconds_per_request": [c / count for c in cpu[name][1:]]}
            for name, t in times.items()}


def http_cost(tmp: Path, probes: int) -> dict:
    """Median /probe time and CPU of stackprobe and blackbox_exporter, plain HTTP and HTTPS."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    out: dict = {}
    with contextlib.ExitStack() as stack:
        urls = {}
        for scheme, cert in (("http", ""), ("https", str(tmp / "server.pem"))):
            proc = subprocess.Popen([sys.executable, "-c", _TARGET_SERVER.format(tests=str(REPO / "tests"), cert=cert)],
                                    stdout=subprocess.PIPE, text=True)
            stack.callback(proc.kill)
            urls[scheme] = f"{scheme}://127.0.0.1:{proc.stdout.readline().strip()}/json"
        config = {"http": [{"name": scheme, "service": "bench", "interval": "1h", "url": url,
                            **({"tls": {"ca_file": str(tmp / "ca.pem")}} if scheme == "https" else {})}
                           for scheme, url in urls.items()]}
        sp, sp_url = stack.enter_context(stackprobe(config, tmp, "stackprobe-http"))
        (tmp / "blackbox.yml").write_text(yaml.safe_dump({"modules": {
            "http": {"prober": "http", "http": {"preferred_ip_protocol": "ip4"}},
            "https": {"prober": "http", "http": {"preferred_ip_protocol": "ip4", "tls_config": {"ca_file": str(tmp / "ca.pem")}}}}}))
        bb_port = free_port()
        bb = stack.enter_context(process([BLACKBOX, f"--config.file={tmp / 'blackbox.yml'}",
                                          f"--web.listen-address=127.0.0.1:{bb_port}"], tmp / "blackbox.log", bb_port))
        for scheme, url in urls.items():
            out[scheme] = timed_gets({
                "stackprobe": (f"{sp_url}/probe?target={scheme}", sp.pid, "stackprobe_probe_success"),
                "blackbox": (f"http://127.0.0.1:{bb_port}/probe?module={scheme}&target={url}", bb.pid, "probe_success 1"),
            }, probes)
    return out


async def _scan_floor(port: int, pattern: str, count: int) -> int:
    """The bare SCAN MATCH loop over one connection (RESP2, hiredis when installed)."""
    from redis.asyncio.connection import Connection

    conn = Connection(port=port, protocol=2, driver_info=None)
    await conn.connect()
    cursor, found = b"0", set()
    while True:
        await conn.send_command("SCAN", cursor, "MATCH", pattern, "COUNT", count)
        cursor, keys = await conn.read_response()
        found.update(keys)
        if cursor == b"0":
            break
    await conn.disconnect()
    return len(found)


def redis_cost(tmp: Path, probes: int, keys: int = 1_000_000, matching: int = 50_000, scan_count: int = 1000) -> dict:
    """Pattern count of `matching` of `keys` keys: stackprobe /probe (SCAN COUNT `scan_count`),
    redis_exporter (COUNT 1000, not configurable for --count-keys), the floor (COUNT 1000)."""
    server = RedisServer(tmp / "redis", extra_args=("--enable-debug-command", "local"))
    server.start()
    try:
        with server.client() as c:
            c.execute_command("DEBUG", "POPULATE", keys - matching, "other")
            c.execute_command("DEBUG", "POPULATE", matching, "sess")
            assert c.dbsize() == keys
        redis_pid = int(server.client().info("server")["process_id"])
        out: dict = {"keys": keys, "matching": matching, "scan_count": scan_count}
        config = {"redis": [{"name": "count", "service": "bench", "interval": "1h", "timeout": "60s",
                             "url": f"redis://127.0.0.1:{server.port}/0", "scan_budget": 2 * keys, "scan_count": scan_count,
                             "patterns": [{"pattern": "sess:*"}]}]}
        re_port = free_port()
        with stackprobe(config, tmp, "stackprobe-redis") as (sp, sp_url), \
                process([REDIS_EXPORTER, f"--redis.addr=redis://127.0.0.1:{server.port}", "--count-keys=db0=sess:*",
                         f"--web.listen-address=127.0.0.1:{re_port}"], tmp / "redis-exporter.log", re_port) as re:
            out |= timed_gets({
                "stackprobe": (f"{sp_url}/probe?target=count", sp.pid,
                               f'pattern="sess:*"}} {matching:.1f}'),
                "redis_exporter": (f"http://127.0.0.1:{re_port}/metrics", re.pid, f'redis_keys_count{{db="db0",key="sess:*"}} {matching}'),
            }, probes, (redis_pid,))
        floors = []
        for _ in range(probes):
            started = time.perf_counter()
            assert asyncio.run(_scan_floor(server.port, "sess:*", 1000)) == matching
            floors.append(time.perf_counter() - started)
        out["floor_median_seconds"] = statistics.median(floors)
    finally:
        server.stop()
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def report(results: dict) -> None:
    rows = []
    for scheme in ("http", "https"):
        if scheme in results.get("http", {}):
            r = results["http"][scheme]
            sp, bb = r["stackprobe"], r["blackbox"]
            rows.append((f"{scheme.upper()} /probe, median", ms(sp["median_seconds"]), ms(bb["median_seconds"]),
                         f"{sp['median_seconds'] / bb['median_seconds']:.2f}x"))
            rows.append((f"{scheme.upper()} exporter CPU per probe", ms(sp["cpu_seconds_per_request"]),
                         ms(bb["cpu_seconds_per_request"]), f"{sp['cpu_seconds_per_request'] / max(bb['cpu_seconds_per_request'], 1e-9):.2f}x"))
    if "redis" in results:
        r = results["redis"]
        sp, re = r["stackprobe"], r["redis_exporter"]
        what = f"Redis count {r['matching']:,} of {r['keys']:,} keys (scan_count {r['scan_count']})"
        rows.append((f"{what}, median", ms(sp["median_seconds"]), ms(re["median_seconds"]),
                     f"{sp['median_seconds'] / re['median_seconds']:.2f}x"))
        rows.append(("  exporter CPU per probe", ms(sp["cpu_seconds_per_request"]), ms(re["cpu_seconds_per_request"]), ""))
        rows.append(("  redis-server CPU per probe", ms(sp["other_cpu_seconds_per_request"][0]),
                     ms(re["other_cpu_seconds_per_request"][0]), ""))
        rows.append(("  floor: bare SCAN COUNT 1000 loop, median", ms(r["floor_median_seconds"]), "", ""))
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'stackprobe':>12}  {'Go peer':>12}  ratio")
    for label, ours, theirs, ratio in rows:
        print(f"{label:{width}}  {ours:>12}  {theirs:>12}  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("redis", "http"))
    parser.add_argument("--probes", type=int, default=20, help="sequential probes per measurement (default 20)")
    parser.add_argument("--scan-count", type=int, default=1000, help="stackprobe's scan_count (default 1000, its default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="stackprobe-cost-") as tmp:
        if args.only in (None, "http"):
            results["http"] = http_cost(Path(tmp), max(args.probes, 50))
        if args.only in (None, "redis"):
            results["redis"] = redis_cost(Path(tmp), args.probes, scan_count=args.scan_count)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
