"""The plumbing every prober shares (probers/base.py): blocking work off the event loop, hung
calls isolated per target and never holding up exit, secret files read safely."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from fixtures.net import wait_until

from stackprobe.exporter.probers import PROBERS, backup
from stackprobe.exporter.probers.base import (BlockingProber, ProbeContext, ProbeError, SecretRef, TargetConfig, TLSClientConfig,
                                              peer_certificates)
from stackprobe.exporter.scheduler import next_result, run_probe
from stackprobe.exporter.snapshot import TargetResult

TARGET = TargetConfig(name="t", service="s", interval=10, timeout=5)


def test_a_process_with_a_thread_hung_in_open_still_exits(tmp_path: Path):
    """A call hung in the kernel (a FIFO without writer here, a hung NFS mount in production)
    must not keep the process alive after the event loop is done, as a pool thread would."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = textwrap.dedent(f"""
        import asyncio
        from stackprobe.exporter.probers.base import ProbeContext, TargetConfig
        target = TargetConfig(name="t", service="s", interval=1, timeout=0.2)

        async def main():
            try:
                async with asyncio.timeout(0.2):
                    await ProbeContext(target).off_loop("read", open, {str(fifo)!r})
            except TimeoutError:
                print("timed out", flush=True)
        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "timed out\n"), done.stderr


def test_a_hung_call_is_not_joined_by_another_and_other_targets_go_on(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    other = TargetConfig(name="other", service="s", interval=10, timeout=5)

    async def scenario() -> list[str]:
        outcomes = []
        for _ in range(2):
            try:
                async with asyncio.timeout(0.2):
                    await ProbeContext(TARGET).off_loop("read", open, str(fifo))
            except TimeoutError:
                outcomes.append("timed out")
            except ProbeError as e:
                outcomes.append(f"{e.reason}: {e}")
        outcomes.append(await ProbeContext(other).off_loop("read", lambda: "other answered"))
        with open(fifo, "wb"):  # a writer: the hung open returns, the target is free again
            pass
        await asyncio.sleep(0.2)
        outcomes.append(await ProbeContext(TARGET).off_loop("read", lambda: "free again"))
        return outcomes

    assert asyncio.run(scenario()) == ["timed out", "timeout: the previous read of this target is still running",
                                       "other answered", "free again"]


def password_of(path: Path) -> str | None:
    async def read() -> str | None:
        return await SecretRef(password_file=path).read_password(ProbeContext(TARGET))
    return asyncio.run(read())


def test_password_file_on_a_fifo_fails_at_once_with_io(tmp_path: Path):
    fifo = tmp_path / "password"
    os.mkfifo(fifo)
    with pytest.raises(ProbeError) as error:
        password_of(fifo)
    assert (error.value.reason, str(error.value)) == ("io", f"password_file {fifo} is not a regular file")


def test_a_password_file_that_is_not_utf8_fails_without_showing_any_of_it(tmp_path: Path):
    path = tmp_path / "password"
    path.write_bytes(b"s3cr\xe9t-\xff\xfe")
    with pytest.raises(ProbeError) as error:
        password_of(path)
    assert (error.value.reason, str(error.value)) == ("io", f"password_file {path} is not valid UTF-8")
    (tmp_path / "good").write_text("pässword\n", encoding="utf-8")
    assert password_of(tmp_path / "good") == "pässword"


def test_tls_files_on_a_fifo_fail_at_once_with_io(tmp_path: Path):
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)

    async def load() -> None:
        await TLSClientConfig(ca_file=fifo).load_ssl_context(ProbeContext(TARGET))
    with pytest.raises(ProbeError, match="ca_file .* is not a regular file"):
        asyncio.run(load())


def test_a_served_certificate_that_cannot_be_parsed_is_tls():
    """OpenSSL accepts some certificates cryptography's stricter parser refuses; the stand-in
    below is an SSL object whose leaf is not DER at all."""
    class Served:
        def getpeercert(self, binary_form: bool = False) -> bytes:
            return b"\x30\x03not a certificate"

    with pytest.raises(ProbeError) as error:
        peer_certificates(Served())  # type: ignore[arg-type]
    assert error.value.reason == "tls" and "cannot be parsed" in str(error.value)


class FifoBackupProber(BlockingProber[TargetConfig]):
    """A blocking prober whose worker hangs in the kernel (open() of a FIFO without writer),
    then, once a writer comes, goes on recording as an abandoned thread of a real prober would."""

    name, families = "backup", backup.FAMILIES

    def __init__(self, fifo: Path):
        super().__init__()
        self.fifo, self.finished = fifo, threading.Event()

    def probe_blocking(self, target: TargetConfig, ctx: ProbeContext) -> None:
        ctx.set("backup_files", 1)
        try:
            open(self.fifo, "rb").close()
            ctx.set("backup_total_size_bytes", 2)
            ctx.set_many("backup_newest_size_bytes", (), (), [((), (), 3)])
            ctx.log("late line")
        finally:
            self.finished.set()


def test_a_timed_out_probe_keeps_what_it_had_found_and_nothing_its_abandoned_thread_writes_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    prober = FifoBackupProber(fifo)
    monkeypatch.setitem(PROBERS, "backup", prober)
    target = TargetConfig(name="t", service="s", interval=10, timeout=1)

    async def scenario() -> TargetResult:
        outcome = await run_probe(target, "backup")
        assert not prober.finished.is_set()  # still hung when the scheduler gave up
        # A writer: the hung open returns and the abandoned worker records the rest.
        wait_until(lambda: os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)) is None, timeout=30, what="the worker's open")
        await asyncio.to_thread(prober.finished.wait, 30)
        return next_result(outcome, target, "backup", None)

    result = asyncio.run(scenario())
    assert prober.finished.is_set()
    assert (result.success, result.reason) == (False, "timeout")
    assert dict(result.samples) == {("stackprobe_backup_files", ()): 1.0}
    assert "late line" not in "".join(result.log)
    assert result.log[-1].endswith("probe failed: reason=timeout no result within the 1s timeout")


def test_a_closed_context_drops_every_write():
    ctx = ProbeContext(TARGET)
    ctx.set("backup_files", 1)
    ctx.close("done")
    ctx.set("backup_files", 2)
    ctx.set_many("backup_newest_size_bytes", (), (), [((), (), 3)])
    ctx.include({"stackprobe_backup_total_size_bytes": b"stackprobe_backup_total_size_bytes 4.0\n"})
    ctx.observe("http_request_duration_seconds", 0.1)
    ctx.log("after")
    assert ctx.samples == {("stackprobe_backup_files", ()): 1.0}
    assert ctx.pieces() == {"stackprobe_backup_files": b'stackprobe_backup_files{service="s",target="t"} 1.0\n'}
    assert ctx.observations == []
    assert [line.split("s ", 1)[1] for line in ctx.log_lines] == ["done"]


def test_set_many_renders_a_family_once_sharing_the_leading_labels():
    ctx = ProbeContext(TARGET)
    sizes = [(("db", "t"), ("data",), 1), (("db", "t"), ("index",), 2.5), (("db", 'x"y'), ("data",), 3)]
    reuse = ctx.set_many("mysql_table_size_bytes", ("schema", "table"), ("component",), sizes)
    assert ctx.pieces() == {"stackprobe_mysql_table_size_bytes":
                            b'stackprobe_mysql_table_size_bytes{service="s",target="t",schema="db",table="t",component="data"} 1.0\n'
                            b'stackprobe_mysql_table_size_bytes{service="s",target="t",schema="db",table="t",component="index"} 2.5\n'
                            b'stackprobe_mysql_table_size_bytes{service="s",target="t",schema="db",table="x\\"y",component="data"} 3.0\n'}
    assert reuse == {("db", "t"): ',schema="db",table="t"', ("db", 'x"y'): ',schema="db",table="x\\"y"'}
    again = ProbeContext(TARGET)
    reused = {("db", "t"): ',schema="db",table="T"'}  # what reuse says is taken as it is
    again.set_many("mysql_table_rows", ("schema", "table"), (), [(("db", "t"), (), 7)], reused)
    assert again.rendered == {"stackprobe_mysql_table_rows": b'stackprobe_mysql_table_rows{service="s",target="t",schema="db",table="T"} 7.0\n'}
    with pytest.raises(ValueError, match="set before"):
        again.set_many("mysql_table_rows", ("schema", "table"), (), [(("db", "u"), (), 1)])
    with pytest.raises(ValueError, match="set whole by set_many"):
        again.set("mysql_table_rows", 1, schema="db", table="u")
    with pytest.raises(TypeError, match="takes labels"):
        again.set_many("mysql_table_size_bytes", ("schema",), ("component",), [])
    with pytest.raises(TypeError, match="got the values"):
        again.set_many("mysql_table_size_bytes", ("schema", "table"), ("component",), [(("db",), ("data",), 1)])
