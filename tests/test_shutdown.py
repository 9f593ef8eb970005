"""SIGTERM ends the exporter even while a DNS lookup hangs in asyncio's default executor.

asyncio.run() joins its default executor's threads at exit, and getaddrinfo (httpx, redis and
asyncio.open_connection resolve names there) can hang for the resolver's whole timeout, or for
ever on a broken resolver; a supervisor would then SIGKILL an exporter that was asked to stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

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
