"""The plumbing every prober shares (probers/base.py): blocking work off the event loop, hung
calls isolated per target and never holding up exit, secret files read safely."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stackprobe.exporter.probers.base import ProbeContext, ProbeError, SecretRef, TargetConfig, TLSClientConfig, peer_certificates

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
