"""SIGTERM ends the exporter even while a DNS lookup hangs in asyncio's default executor.

asyncio.run() joins its default executor's threads at exit, and getaddrinfo (httpx, redis and
asyncio.open_connection resolve names there) can hang for the resolver's whole timeout, or for
ever on a broken resolver; a supervisor would then SIGKILL an exporter that was asked to stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from stackprobe.exporter.runtime import MAX_LOOKUP_THREADS, DaemonThreadExecutor

from fixtures.net import free_port, wait_for_port, wait_until

#: The exporter, with getaddrinfo of one host name hanging as a broken resolver's would.
HUNG_DNS_EXPORTER = textwrap.dedent("""
    import socket, sys, threading
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host in ("dns-hangs.invalid", b"dns-hangs.invalid"):  # anyio passes it idna-encoded
            threading.Event().wait()  # never answers
        return real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    from stackprobe.exporter.cli import main
    main(sys.argv[1:])
""")


def test_sigterm_exits_while_a_dns_lookup_hangs(tmp_path: Path):
    config = tmp_path / "stackprobe.yml"
    config.write_text("http:\n  - {name: web, service: s, url: 'http://dns-hangs.invalid:8080/', interval: 1s, timeout: 500ms}\n")
    port = free_port()
    log = tmp_path / "stderr.log"
    proc = subprocess.Popen([sys.executable, "-c", HUNG_DNS_EXPORTER, "run", f"--config.file={config}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), env=os.environ.copy())
    try:
        wait_for_port(port)
        wait_until(lambda: "probe failed" in log.read_text(), what="the probe timed out in its DNS lookup")
        proc.send_signal(signal.SIGTERM)
        # The failure signal is the process still running long after SIGTERM, not a measured time.
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        proc.kill()
        proc.wait()
    assert "reason=timeout" in log.read_text()


def test_hung_lookups_hold_a_bounded_number_of_threads_and_never_delay_other_work(monkeypatch):
    """Every probe of a name on a hung resolver asks for a lookup; they share MAX_LOOKUP_THREADS
    threads (the rest wait, and are skipped once their probe gave up), while other executor work
    (the scheduler rendering a result) still gets a thread at once."""
    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "dns-hangs.invalid":
            release.wait()
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    lookup_threads = lambda: sum(t.name == "executor-lookup" for t in threading.enumerate())  # noqa: E731

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(DaemonThreadExecutor())
        hung = [asyncio.create_task(asyncio.wait_for(loop.getaddrinfo("dns-hangs.invalid", 80), 0.5))
                for _ in range(3 * MAX_LOOKUP_THREADS)]
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "rendered"), 10) == "rendered"
        results = await asyncio.gather(*hung, return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results)
        assert lookup_threads() == MAX_LOOKUP_THREADS
        release.set()  # the resolver answers: the lookups nobody waits for any more are skipped
        wait_until(lambda: lookup_threads() == 0, timeout=10, what="the lookup threads to end")
        assert await loop.getaddrinfo("127.0.0.1", 80)  # and lookups work again

    asyncio.run(main())
