"""The backup prober against real directories: file times set with os.utime, real gzip and tar
archives (intact, corrupted, truncated) and sha256sum-style sidecars."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from fixtures.probing import probe_result
from stackprobe.configsource import ConfigError
from stackprobe.exporter import config
from stackprobe.exporter.probers.backup import PROBER
from stackprobe.exporter.probers.base import ProbeError

HOUR, DAY = 3600, 86400


def put(path: Path, data: bytes, age: int) -> int:
    """Write a file last modified `age` seconds ago (whole seconds, so times compare exactly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    mtime = int(time.time()) - age
    os.utime(path, (mtime, mtime))
    return mtime


def target(name: str, path: Path, globs: str = "['*.sql.gz']", **fields: object) -> str:
    extra = "".join(f", {k}: {v}" for k, v in fields.items())
    return f"  - {{name: {name}, service: db, path: '{path}', globs: {globs}, interval: 1s{extra}}}\n"


def run(start_exporter, *targets: str):
    return start_exporter("backup:\n" + "".join(targets)).wait_for_all()


def tar_bytes(members: dict[str, bytes], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_directory_stats_are_exact(start_exporter, tmp_path):
    oldest = put(tmp_path / "db-1.sql.gz", b"a" * 100, 3 * DAY)
    put(tmp_path / "db-2.sql.gz", b"b" * 200, 2 * DAY)
    newest = put(tmp_path / "db-3.sql.gz", b"c" * 300, HOUR)
    put(tmp_path / "notes.txt", b"x" * 5000, 60)  # not a backup: no glob matches
    exporter = run(start_exporter, target("nightly", tmp_path))
    assert exporter.value("stackprobe_probe_success", target="nightly") == 1
    assert exporter.value("stackprobe_backup_files", target="nightly") == 3
    assert exporter.value("stackprobe_backup_newest_timestamp_seconds", target="nightly") == newest
    assert exporter.value("stackprobe_backup_oldest_timestamp_seconds", target="nightly") == oldest
    assert exporter.value("stackprobe_backup_newest_size_bytes", target="nightly") == 300
    assert exporter.value("stackprobe_backup_total_size_bytes", target="nightly") == 600
    assert exporter.value("stackprobe_backup_size_ratio", target="nightly") == 300 / 150
    assert exporter.value("stackprobe_backup_verify_success", target="nightly") is None  # verify: none


def test_stale_backup_reports_its_own_time(start_exporter, tmp_path):
    stale = put(tmp_path / "dump.sql.gz", b"x" * 10, 3 * DAY)
    exporter = run(start_exporter, target("stale", tmp_path))
    assert exporter.value("stackprobe_backup_newest_timestamp_seconds", target="stale") == stale
    assert exporter.value("stackprobe_backup_oldest_timestamp_seconds", target="stale") == stale
    assert exporter.value("stackprobe_backup_size_ratio", target="stale") is None  # no previous file
    assert exporter.value("stackprobe_probe_success", target="stale") == 1  # staleness is for alerts


def test_size_ratio_is_newest_over_median_of_previous(start_exporter, tmp_path):
    # Oldest to newest; the previous four (100, 100, 110, 90) have median 100.
    for i, size in enumerate([5000, 5000, 5000, 90, 110, 100, 100, 50]):
        put(tmp_path / f"b-{i}.rdb", b"r" * size, (10 - i) * HOUR)
    exporter = run(start_exporter,
                   target("last4", tmp_path, "['*.rdb']", size_history=4),
                   target("last7", tmp_path, "['*.rdb']"))
    assert exporter.value("stackprobe_backup_size_ratio", target="last4") == 0.5
    assert exporter.value("stackprobe_backup_size_ratio", target="last7") == 50 / 110  # 5000 x3 join in
    assert exporter.value("stackprobe_backup_files", target="last7") == 8


def test_empty_directory_is_empty_with_zero_files(start_exporter, tmp_path):
    put(tmp_path / "other.txt", b"x", DAY)
    exporter = run(start_exporter, target("none", tmp_path))
    assert exporter.value("stackprobe_probe_success", target="none") == 0
    assert exporter.failure_reasons("none") == {"empty"}
    assert exporter.value("stackprobe_backup_files", target="none") == 0
    assert exporter.value("stackprobe_backup_newest_timestamp_seconds", target="none") is None


def test_missing_directory_or_a_file_is_io(start_exporter, tmp_path):
    # chmod 000 would not do: the tests run as root, whom permission bits do not stop. A missing
    # path, and a file where the directory should be, fail for everyone.
    put(tmp_path / "a-file", b"x", DAY)
    exporter = run(start_exporter,
                   target("missing", tmp_path / "nope"),
                   target("file", tmp_path / "a-file"))
    for name, says in (("missing", "does not exist"), ("file", "is not a directory")):
        assert exporter.value("stackprobe_probe_success", target=name) == 0
        assert exporter.failure_reasons(name) == {"io"}
        assert says in exporter.exporter.snapshot.get(name).message
        assert exporter.value("stackprobe_backup_files", target=name) is None


def test_file_still_being_written_is_skipped(start_exporter, tmp_path):
    done = put(tmp_path / "full" / "done.sql.gz", b"d" * 40, HOUR)
    put(tmp_path / "full" / "writing.sql.gz", b"w" * 10, 0)
    put(tmp_path / "only-new" / "writing.sql.gz", b"w" * 10, 0)
    exporter = run(start_exporter,
                   target("full", tmp_path / "full"),
                   target("only-new", tmp_path / "only-new"))
    assert exporter.value("stackprobe_backup_files", target="full") == 1
    assert exporter.value("stackprobe_backup_newest_timestamp_seconds", target="full") == done
    assert exporter.value("stackprobe_backup_newest_size_bytes", target="full") == 40
    assert exporter.failure_reasons("only-new") == {"empty"}


def test_recursive_finds_files_in_subdirectories(start_exporter, tmp_path):
    put(tmp_path / "top.sql.gz", b"t" * 1, DAY)
    newest = put(tmp_path / "2026" / "11" / "deep.sql.gz", b"d" * 7, HOUR)
    exporter = run(start_exporter,
                   target("flat", tmp_path),
                   target("deep", tmp_path, recursive="true"))
    assert exporter.value("stackprobe_backup_files", target="flat") == 1
    assert exporter.value("stackprobe_backup_files", target="deep") == 2
    assert exporter.value("stackprobe_backup_newest_timestamp_seconds", target="deep") == newest


def test_gzip_verification(start_exporter, tmp_path):
    good = gzip.compress(b"INSERT INTO t VALUES (1);\n" * 1000)
    put(tmp_path / "good" / "db.sql.gz", good, HOUR)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF
    put(tmp_path / "bad" / "old.sql.gz", good, DAY)  # only the newest file is verified
    newest = put(tmp_path / "bad" / "db.sql.gz", bytes(corrupt), HOUR)
    put(tmp_path / "cut" / "db.sql.gz", good[:-8], HOUR)  # CRC and length trailer missing
    exporter = run(start_exporter, *(target(n, tmp_path / n, verify="gzip") for n in ("good", "bad", "cut")))
    assert exporter.value("stackprobe_backup_verify_success", target="good") == 1
    assert exporter.value("stackprobe_probe_success", target="good") == 1
    for name in ("bad", "cut"):
        assert exporter.value("stackprobe_backup_verify_success", target=name) == 0
        assert exporter.failure_reasons(name) == {"verify"}
        assert exporter.value("stackprobe_backup_verify_timestamp_seconds", target=name) is not None
    # A failed check still leaves every other metric in place.
    assert exporter.value("stackprobe_backup_files", target="bad") == 2
    assert exporter.value("stackprobe_backup_newest_timestamp_seconds", target="bad") == newest
    assert exporter.value("stackprobe_backup_newest_size_bytes", target="bad") == len(corrupt)


def test_tar_verification_finds_truncation(start_exporter, tmp_path):
    members = {"etc/app.conf": b"k=v\n" * 300, "var/data.bin": os.urandom(5000), "var/last": b"end"}
    plain, packed = tar_bytes(members), tar_bytes(members, compress=True)
    first_member_end = 512 + 1536  # header + 1200 bytes of data padded to whole blocks
    cases = {
        "plain": plain,
        "targz": packed,
        "mid-member": plain[:3000],  # inside var/data.bin
        "at-boundary": plain[:first_member_end],  # lists cleanly; only the end marker is missing
        "targz-cut": packed[: len(packed) - 8],  # the gzip trailer is gone
    }
    for name, data in cases.items():
        put(tmp_path / name / "files.tar.gz", data, HOUR)
    exporter = run(start_exporter, *(target(n, tmp_path / n, "['*.tar.gz']", verify="tar") for n in cases))
    for name in ("plain", "targz"):
        assert exporter.value("stackprobe_backup_verify_success", target=name) == 1
        assert exporter.value("stackprobe_probe_success", target=name) == 1
    for name in ("mid-member", "at-boundary", "targz-cut"):
        assert exporter.value("stackprobe_backup_verify_success", target=name) == 0, name
        assert exporter.failure_reasons(name) == {"verify"}, name


def test_sha256_sidecar(start_exporter, tmp_path):
    data = b"dump" * 1000
    digest = hashlib.sha256(data).hexdigest()
    for name, sidecar in (("match", f"{digest}  db.sql.gz\n"), ("binary-mode", f"{digest} *db.sql.gz\n"),
                          ("mismatch", f"{hashlib.sha256(b'other').hexdigest()}  db.sql.gz\n"), ("no-sidecar", None)):
        put(tmp_path / name / "db.sql.gz", data, HOUR)
        if sidecar is not None:
            (tmp_path / name / "db.sql.gz.sha256").write_text(sidecar)
    exporter = run(start_exporter, *(target(n, tmp_path / n, verify="sha256")
                                     for n in ("match", "binary-mode", "mismatch", "no-sidecar")))
    for name in ("match", "binary-mode"):
        assert exporter.value("stackprobe_backup_verify_success", target=name) == 1
    for name in ("mismatch", "no-sidecar"):
        assert exporter.value("stackprobe_backup_verify_success", target=name) == 0
        assert exporter.failure_reasons(name) == {"verify"}
    assert "sha256 mismatch" in exporter.exporter.snapshot.get("mismatch").message


def test_a_file_is_verified_once(start_exporter, tmp_path):
    path = tmp_path / "db.sql.gz"
    put(path, gzip.compress(b"x" * 100_000), HOUR)
    before = PROBER.verifications
    exporter = run(start_exporter, target("once", tmp_path, verify="gzip"))
    verified_at = exporter.value("stackprobe_backup_verify_timestamp_seconds", target="once")
    exporter.wait_for_probe("once", count=2)
    assert exporter.value("stackprobe_backup_verify_timestamp_seconds", target="once") == verified_at
    assert PROBER.verifications == before + 1
    # A changed file (new mtime) is a new file: verified again.
    later = int(time.time()) - 120
    os.utime(path, (later, later))
    exporter.wait_for_probe("once")
    assert exporter.value("stackprobe_backup_verify_timestamp_seconds", target="once") > verified_at
    assert PROBER.verifications == before + 2
    assert exporter.value("stackprobe_backup_verify_success", target="once") == 1


@pytest.mark.parametrize("fields", ["size_history: 0", "verify: md5", "min_age: -1s"])
def test_config_mistakes_are_rejected(fields: str):
    with pytest.raises(ConfigError, match="c.yaml:2"):
        config.parse("c.yaml", f"backup:\n  - {{name: b, service: db, path: /x, globs: ['*'], {fields}}}\n")


def test_verifying_a_huge_file_ends_at_the_timeout_and_its_thread_stops(tmp_path):
    """A 64 GiB (sparse) file takes minutes to hash; the probe ends at its timeout and the worker
    thread, which cannot be killed, stops at its next read instead of reading to the end."""
    path = tmp_path / "db.sql.gz"
    with open(path, "wb") as f:
        f.truncate(64 << 30)
    old = time.time() - HOUR
    os.utime(path, (old, old))
    (tmp_path / "db.sql.gz.sha256").write_text(f"{'0' * 64}  db.sql.gz\n")
    parsed = config.parse("c.yaml", "backup:\n" + target("huge", tmp_path, verify="sha256", timeout="500ms")).targets[0]

    async def probe_then_wait_for_the_thread():
        result = await probe_result(parsed, "backup")
        if (thread := PROBER._running.get("huge")) is not None:  # else it ended with the probe
            with contextlib.suppress(ProbeError):  # how it ends: "did not finish within the timeout"
                await asyncio.wait_for(asyncio.shield(thread), 30)  # TimeoutError if it read on
        return result

    result = asyncio.run(probe_then_wait_for_the_thread())
    assert (result.success, result.reason) == (False, "timeout")


def test_a_checksum_file_on_a_fifo_is_io_not_a_hang(tmp_path):
    put(tmp_path / "db.sql.gz", b"dump", HOUR)
    os.mkfifo(tmp_path / "db.sql.gz.sha256")
    parsed = config.parse("c.yaml", "backup:\n" + target("fifo", tmp_path, verify="sha256")).targets[0]
    result = asyncio.run(probe_result(parsed, "backup"))
    assert (result.success, result.reason) == (False, "io")
    assert "db.sql.gz.sha256 is not a regular file" in result.message
