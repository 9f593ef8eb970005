"""Backup freshness: are new backup files appearing, of a plausible size, and intact?

The probe lists a directory (never reads file contents for the freshness metrics), ignores files
younger than `min_age` because a backup job may still be writing them, and optionally checks
the newest file's integrity. Verification streams the file in chunks (backups are large; nothing
is read whole into memory) and its result is cached per file identity, so a file is read once,
not at every probe.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import hashlib
import lzma
import os
import statistics
import tarfile
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar, Literal

from pydantic import Field

from stackprobe.configsource import Duration

from ..metrics import gauge
from .base import BlockingProber, ProbeContext, ProbeError, TargetConfig, open_regular_file

CHUNK = 1 << 20
#: Verification results kept per prober; one entry per (file, mode), so a few per target.
CACHE_SIZE = 4096
#: A complete tar archive ends with two 512-byte zero blocks (POSIX end-of-archive marker).
TAR_END_MARKER = 1024


class BackupTarget(TargetConfig):
    """A directory that receives backup files."""

    default_interval: ClassVar[float] = 300.0
    # Verifying a multi-gigabyte archive reads all of it; a minute covers ~GB at disk speed.
    # The cache means that cost is paid once per new file, not at every probe.
    default_timeout: ClassVar[float] = 60.0

    path: Path = Field(..., description="Directory holding the backup files.")
    globs: list[str] = Field(..., min_length=1, description="File name patterns of backup files, e.g. `*.sql.gz`, `*.tar.gz`, `*.rdb` (matched against the file name).")
    recursive: bool = Field(False, description="Also look in subdirectories of `path`.")
    min_age: Duration = Field(60.0, description="Files modified more recently than this are skipped: a backup job may still be writing them.")
    size_history: int = Field(7, ge=1, description="How many files before the newest make up the median for `stackprobe_backup_size_ratio`.")
    verify: Literal["none", "gzip", "tar", "sha256"] = Field(
        "none", description="Integrity check of the newest file: `gzip` decompresses the whole stream, `tar` reads every member "
        "(plain, gzip, bzip2 or xz compressed), `sha256` compares with the sidecar `<file>.sha256` (sha256sum format). "
        "Each file is verified once; the result is cached until its size, mtime or inode changes.")


@dataclass(frozen=True)
class _File:
    path: str
    size: int
    mtime_ns: int
    inode: int

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9


@dataclass(frozen=True)
class _Verdict:
    ok: bool
    message: str
    verified_at: float


class _VerifyFailed(Exception):
    """The file's content is not what its format promises (a `verify` failure, cached)."""


class _Reader:
    """Chunked reads that stop at the probe deadline and remember the last `keep` bytes seen.

    The scheduler abandons a timed-out BlockingProber thread; checking the deadline on every read
    makes the thread itself stop soon after instead of reading a huge file to the end. Errors of
    a file on disk are `io` failures; errors of a decoded stream are a verdict on the content.
    """

    def __init__(self, raw: BinaryIO, deadline: float, name: str, *, decoded: bool = False, keep: int = 0):
        self._raw, self._deadline, self._name = raw, deadline, name
        self._decoded, self._keep = decoded, keep
        self.tail = b""

    def read(self, size: int) -> bytes:
        if size < 0:
            raise ValueError("_Reader reads bounded chunks only")
        if time.monotonic() > self._deadline:
            raise ProbeError("timeout", f"verification of {self._name} did not finish within the timeout")
        try:
            data = self._raw.read(size)
        except OSError as e:
            if self._decoded:
                raise
            raise ProbeError("io", f"cannot read {self._name}: {e.strerror or e}") from None
        if self._keep:
            self.tail = (self.tail + data)[-self._keep:]
        return data

    def chunks(self) -> Iterator[bytes]:
        while data := self.read(CHUNK):
            yield data


def _verify_gzip(f: BinaryIO, deadline: float, name: str) -> str:
    reader = _Reader(gzip.GzipFile(fileobj=_Reader(f, deadline, name), mode="rb"), deadline, name, decoded=True)  # type: ignore[arg-type]
    total = sum(len(c) for c in reader.chunks())
    return f"gzip stream intact ({total} bytes uncompressed)"


def _decompressed(f: BinaryIO, deadline: float, name: str) -> BinaryIO | _Reader:
    """The tar stream inside f, decompressed by the modules that check trailers and CRCs.

    tarfile's own `r|*` decompression ignores the gzip CRC and a missing end of stream, so a
    truncated .tar.gz can list cleanly; gzip/bz2/lzma raise on either.
    """
    raw = _Reader(f, deadline, name)
    magic = raw.read(6)  # through _Reader: a disk error is `io` (never cached), not a bad file
    f.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[arg-type]
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")  # type: ignore[arg-type]
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb")  # type: ignore[arg-type]
    return raw


def _verify_tar(f: BinaryIO, deadline: float, name: str) -> str:
    stream = _Reader(_decompressed(f, deadline, name), deadline, name, decoded=True, keep=TAR_END_MARKER)  # type: ignore[arg-type]
    members = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            members += 1
            if member.isfile():  # reading the data is what finds a truncation inside a member
                data = tar.extractfile(member)
                while data.read(CHUNK):
                    pass
    for _ in stream.chunks():  # to the end: decompressors check their trailer there
        pass
    # tarfile stops silently where the data stops; only the end marker proves the archive is whole.
    if len(stream.tail) < TAR_END_MARKER or stream.tail.strip(b"\0"):
        raise _VerifyFailed(f"tar archive is truncated: no end-of-archive marker after {members} members")
    return f"tar archive intact ({members} members)"


def _expected_sha256(file: str) -> str:
    sidecar = file + ".sha256"
    try:
        with open_regular_file(sidecar, "checksum file") as f:
            lines = f.read(64 * 1024).decode("utf-8", errors="replace").splitlines()
    except ProbeError:
        if not os.path.lexists(sidecar):
            raise _VerifyFailed(f"no checksum file {sidecar}") from None
        raise
    except OSError as e:
        raise ProbeError("io", f"cannot read {sidecar}: {e.strerror or e}") from None
    # sha256sum format: "<hex>  <name>" ("*<name>" in binary mode), one line per file.
    hashes: dict[str, str] = {}
    for line in lines:
        parts = line.split(None, 1)
        if parts and len(parts[0]) == 64:
            hashes[os.path.basename(parts[1].strip().lstrip("*")) if len(parts) == 2 else ""] = parts[0].lower()
    base = os.path.basename(file)
    if base in hashes:
        return hashes[base]
    if len(hashes) == 1:  # a lone checksum (some tools write a bare hash or another path)
        return next(iter(hashes.values()))
    raise _VerifyFailed(f"{sidecar} holds no sha256 for {base}")


def _verify_sha256(f: BinaryIO, deadline: float, name: str) -> str:
    expected = _expected_sha256(name)
    digest = hashlib.sha256()
    for chunk in _Reader(f, deadline, name).chunks():
        digest.update(chunk)
    if digest.hexdigest() != expected:
        raise _VerifyFailed(f"sha256 mismatch: file {digest.hexdigest()}, {name}.sha256 says {expected}")
    return "sha256 matches the sidecar"


_VERIFIERS: dict[str, Callable[[BinaryIO, float, str], str]] = {
    "gzip": _verify_gzip, "tar": _verify_tar, "sha256": _verify_sha256,
}
#: What a corrupt file makes the format modules raise (besides _VerifyFailed).
_CONTENT_ERRORS = (_VerifyFailed, tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


#: What this prober exports (exporter/metrics.py collects every prober's FAMILIES).
FAMILIES = (
    gauge("backup_files", "Backup files matching the target's globs (younger than min_age excluded)."),
    gauge("backup_newest_timestamp_seconds", "Modification time of the newest backup file."),
    gauge("backup_oldest_timestamp_seconds", "Modification time of the oldest backup file (for retention checks)."),
    gauge("backup_newest_size_bytes", "Size of the newest backup file."),
    gauge("backup_total_size_bytes", "Total size of all matching backup files."),
    gauge("backup_size_ratio", "Size of the newest file divided by the median size of the previous ones (size-anomaly check); absent while there is no previous file."),
    gauge("backup_verify_success", "1 if the newest backup file passed its integrity check (gzip, tar or sha256); absent when verify is none."),
    gauge("backup_verify_timestamp_seconds", "Unix time the newest backup file was verified (each file is verified once, so this stays put until a newer file appears)."),
)


class BackupProber(BlockingProber[BackupTarget]):
    name = "backup"
    families = FAMILIES
    target_model = BackupTarget
    summary = "age, count, size and integrity of backup files in a directory"

    def __init__(self) -> None:
        super().__init__()
        self._verdicts: OrderedDict[tuple, _Verdict] = OrderedDict()
        self._lock = threading.Lock()  # targets share this instance and run in parallel threads
        #: Verifications actually performed (not served from the cache).
        self.verifications = 0

    def probe_blocking(self, target: BackupTarget, ctx: ProbeContext) -> None:
        files = self._list(target, ctx)
        ctx.set("backup_files", len(files))
        ctx.set("backup_total_size_bytes", sum(f.size for f in files))
        if not files:
            raise ProbeError("empty", f"no file matching {', '.join(target.globs)} older than {target.min_age:g}s in {target.path}")
        files.sort(key=lambda f: (f.mtime_ns, f.path), reverse=True)
        newest = files[0]
        ctx.set("backup_newest_timestamp_seconds", newest.mtime)
        ctx.set("backup_newest_size_bytes", newest.size)
        ctx.set("backup_oldest_timestamp_seconds", files[-1].mtime)
        ctx.log(f"{len(files)} files; newest {newest.path} ({newest.size} bytes)")
        previous = [f.size for f in files[1:1 + target.size_history]]
        if previous and (median := statistics.median(previous)) > 0:
            ctx.set("backup_size_ratio", newest.size / median)
        elif previous:
            ctx.log("previous files are empty: no size ratio")
        if target.verify != "none":
            verdict = self._verify(newest, target.verify, ctx)
            ctx.set("backup_verify_success", 1 if verdict.ok else 0)
            ctx.set("backup_verify_timestamp_seconds", verdict.verified_at)
            if not verdict.ok:
                raise ProbeError("verify", f"{newest.path}: {verdict.message}")

    def _list(self, target: BackupTarget, ctx: ProbeContext) -> list[_File]:
        """Matching regular files old enough to be complete; a missing directory is an `io` failure."""
        if not target.path.is_dir():
            what = "is not a directory" if target.path.exists() else "does not exist"
            raise ProbeError("io", f"backup directory {target.path} {what}")
        cutoff_ns = time.time_ns() - int(target.min_age * 1e9)
        found: list[_File] = []
        try:
            for entry in self._entries(target):
                if not any(fnmatch.fnmatchcase(entry.name, g) for g in target.globs):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except FileNotFoundError:  # rotated away between listing and stat
                    continue
                if st.st_mtime_ns > cutoff_ns:
                    ctx.log(f"skipped {entry.path}: modified less than {target.min_age:g}s ago (still being written?)")
                    continue
                found.append(_File(entry.path, st.st_size, st.st_mtime_ns, st.st_ino))
        except OSError as e:
            raise ProbeError("io", f"cannot list {e.filename or target.path}: {e.strerror or e}") from None
        return found

    @staticmethod
    def _entries(target: BackupTarget) -> Iterator[os.DirEntry]:
        pending = [str(target.path)]
        while pending:
            with os.scandir(pending.pop()) as it:
                for entry in it:
                    if target.recursive and entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    else:
                        yield entry

    def _verify(self, file: _File, mode: str, ctx: ProbeContext) -> _Verdict:
        """The cached verdict for this exact file, or a fresh one (io and timeout are never cached)."""
        key: tuple = (mode, file)
        if mode == "sha256":  # a sidecar written after the backup must get its chance
            try:
                st = os.stat(file.path + ".sha256")
                key += (st.st_size, st.st_mtime_ns, st.st_ino)
            except OSError:
                key += (None,)
        with self._lock:
            if (cached := self._verdicts.get(key)) is not None:
                self._verdicts.move_to_end(key)
                ctx.log(f"verify {mode}: cached result from {cached.verified_at:.0f}: {cached.message}")
                return cached
        ctx.log(f"verify {mode}: reading {file.path}")
        with open_regular_file(file.path, "backup file") as f:  # io if rotated away since the listing
            try:
                verdict = _Verdict(True, _VERIFIERS[mode](f, ctx.deadline, file.path), time.time())
            except _CONTENT_ERRORS as e:
                verdict = _Verdict(False, str(e) or type(e).__name__, time.time())
        ctx.log(f"verify {mode}: {verdict.message}")
        with self._lock:
            self.verifications += 1
            self._verdicts[key] = verdict
            while len(self._verdicts) > CACHE_SIZE:
                self._verdicts.popitem(last=False)
        return verdict


PROBER = BackupProber()
