"""What every prober shares: the target fields, the probe context, and the error type.

A prober is one module in this package that defines a `PROBER` instance and declares the metric
families it exports (`families`). Its `probe()` fills a `ProbeContext` with samples of those
families, or raises
`ProbeError(reason, message)`. The scheduler owns timing, timeouts and bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from cryptography import x509
from pydantic import Field, model_validator

from stackprobe.configsource import Duration, StrictModel

from .. import metrics

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


class TargetConfig(StrictModel):
    """Fields every target has, whatever its prober."""

    #: Default probe interval and timeout of this prober's targets, in seconds.
    default_interval: ClassVar[float] = 60.0
    default_timeout: ClassVar[float] = 10.0

    name: str = Field(pattern=NAME_PATTERN, description="Unique target name; the `target` label.")
    service: str = Field(pattern=NAME_PATTERN, description="The service (playbook) the target belongs to; the `service` label.")
    interval: Duration | None = Field(None, description="How often to probe (default per prober).")
    timeout: Duration | None = Field(None, description="Give up on a probe after this long (default per prober, at most the interval).")

    @model_validator(mode="after")
    def _defaults(self) -> "TargetConfig":
        interval = self.interval or self.default_interval
        timeout = self.timeout or min(self.default_timeout, interval)
        if timeout > interval:
            raise ValueError(f"timeout ({timeout:g}s) must not exceed interval ({interval:g}s)")
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "timeout", timeout)
        return self


class SecretRef(StrictModel):
    """A password named by an environment variable or a file, never written in the config itself."""

    password_env: str | None = Field(None, description="Environment variable holding the password.")
    password_file: Path | None = Field(None, description="File holding the password (trailing newline stripped); re-read at every probe, so rotated secrets are picked up.")

    @model_validator(mode="after")
    def _check_source(self) -> "SecretRef":
        if self.password_env and self.password_file:
            raise ValueError("set password_env or password_file, not both")
        if self.password_env and self.password_env not in os.environ:
            raise ValueError(f"environment variable {self.password_env} (password_env) is not set")
        if self.password_file and not os.access(self.password_file, os.R_OK):
            raise ValueError(f"password_file {self.password_file} is not readable")
        return self

    def password(self) -> str | None:
        """The password as of now; an unreadable password_file fails the probe with reason io."""
        if self.password_env:
            return os.environ.get(self.password_env)
        if self.password_file:
            try:
                return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as e:
                raise ProbeError("io", f"cannot read password_file {self.password_file}: {e.strerror or e}") from None
        return None


class TLSClientConfig(StrictModel):
    """How a prober talks TLS to a server: one model for every prober that connects."""

    ca_file: Path | None = Field(None, description="PEM file of the CAs to trust instead of the system store; re-read at every probe.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM), for servers that require one.")
    key_file: Path | None = Field(None, description="Private key of cert_file (PEM).")
    verify: bool = Field(True, description="Verify the server's certificate chain and host name; false only encrypts (for testing).")

    @model_validator(mode="after")
    def _pair(self) -> "TLSClientConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set cert_file and key_file together")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """The context for this config, built once per version of its files.

        Loading a CA store costs ~30 ms of CPU on the event loop, too much to pay per probe with
        hundreds of targets (bench/bench.py measured it); a rotated file (new mtime) gets a new
        context at the next probe. Unreadable files fail the probe with reason io.
        """
        try:
            key = (self, *(os.stat(p).st_mtime_ns if p else None for p in (self.ca_file, self.cert_file, self.key_file)))
            context = _SSL_CONTEXTS.get(key)
            if context is None:
                context = self._build_context()
                if len(_SSL_CONTEXTS) >= 256:  # stale versions of rotated files
                    _SSL_CONTEXTS.clear()
                _SSL_CONTEXTS[key] = context
        except (OSError, ssl.SSLError) as e:
            raise ProbeError("io", f"cannot load the TLS files: {getattr(e, 'strerror', None) or e}") from None
        return context

    def _build_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def peer_certificates(ssl_object: ssl.SSLObject) -> list[x509.Certificate]:
    """Every certificate the server sent, leaf first, verified or not.

    Python 3.11 has no public API for the chain (3.13 adds get_unverified_chain()); the private
    one exists since 3.10. Without it, only the leaf is available.
    """
    chain = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if chain is not None:
        pems = [c.public_bytes() for c in chain() or ()]
        if pems:
            return [x509.load_pem_x509_certificate(p.encode("ascii")) for p in pems]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [x509.load_der_x509_certificate(leaf)] if leaf else []


#: TLSClientConfig.ssl_context's cache; shared contexts are safe for concurrent connections.
_SSL_CONTEXTS: dict[tuple, ssl.SSLContext] = {}


class ProbeError(Exception):
    """A probe failed for a reason in metrics.ERROR_REASONS; the message must hold no secrets."""

    def __init__(self, reason: str, message: str):
        if reason not in metrics.ERROR_REASONS:
            raise ValueError(f"unknown probe error reason {reason!r}")
        self.reason = reason
        super().__init__(message)


Labels = tuple[tuple[str, str], ...]


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """exc and every exception under it: client libraries wrap the socket or ssl error that
    tells the failure reason (as __cause__, __context__, or pymysql's original_exception)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "original_exception", None) or current.__cause__ or current.__context__


def os_error_in(exc: BaseException) -> OSError | None:
    """The first OSError (socket, ssl, DNS) in exc's chain, if any."""
    return next((e for e in exception_chain(exc) if isinstance(e, OSError)), None)


class ProbeContext:
    """Collects one probe's samples and log lines; checks every sample against its declared family."""

    def __init__(self, target: TargetConfig):
        self.target = target
        self.deadline = time.monotonic() + target.timeout
        self.samples: dict[tuple[str, Labels], float] = {}
        self.observations: list[tuple[str, float]] = []
        self.log_lines: list[str] = []
        self._t0 = time.monotonic()

    def remaining(self) -> float:
        """Seconds left before the target's timeout (never below a millisecond)."""
        return max(0.001, self.deadline - time.monotonic())

    def set(self, name: str, value: float, **labels: Any) -> None:
        """Record a gauge or counter sample; labels are those after service/target."""
        fam = metrics.family(name)
        if set(labels) != set(fam.labels):
            raise TypeError(f"{fam.name} takes labels {fam.labels}, got {tuple(labels)}")
        self.samples[(fam.name, tuple((k, str(labels[k])) for k in fam.labels))] = float(value)

    def observe(self, name: str, value: float) -> None:
        """Record one observation for a histogram family (accumulated by the scheduler)."""
        fam = metrics.family(name)
        if fam.kind != "histogram":
            raise TypeError(f"{fam.name} is not a histogram")
        self.observations.append((fam.name, float(value)))

    def log(self, message: str) -> None:
        """A line for `/probe?debug=true`; must hold no secrets."""
        self.log_lines.append(f"{time.monotonic() - self._t0:8.3f}s {message}")


T = TypeVar("T", bound=TargetConfig)

# Blocking client libraries (pymysql, file I/O) run here rather than in asyncio's default pool,
# which has only cpu+4 workers: a few hung targets must not starve the others.
_BLOCKING_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="probe")


class Prober(Generic[T]):
    """One protocol. Subclasses set `name`, `families` and `target_model` and implement probe()."""

    name: ClassVar[str]
    #: The families this prober exports, each named `stackprobe_<name>_...`.
    families: ClassVar[tuple[metrics.Family, ...]] = ()
    target_model: ClassVar[type[TargetConfig]]
    summary: ClassVar[str] = ""

    async def probe(self, target: T, ctx: ProbeContext) -> None:
        raise NotImplementedError


class BlockingProber(Prober[T]):
    """A prober built on a blocking library: probe_blocking() runs in a worker thread.

    The scheduler's timeout abandons the thread's result; the implementation must still pass
    ctx.remaining() to its socket timeouts so the thread itself ends soon after.
    """

    def __init__(self) -> None:
        #: Target name -> its worker-thread future still running (a thread cannot be killed).
        self._running: dict[str, asyncio.Future] = {}

    async def probe(self, target: T, ctx: ProbeContext) -> None:
        # A thread abandoned at the last timeout (a hung NFS mount, a query streaming slowly
        # past its per-read timeout) must not be joined by another each interval until the
        # shared pool is full and every blocking target starves.
        previous = self._running.get(target.name)
        if previous is not None and not previous.done():
            raise ProbeError("timeout", "the previous probe of this target is still running")
        future = asyncio.get_running_loop().run_in_executor(_BLOCKING_POOL, self.probe_blocking, target, ctx)
        self._running[target.name] = future
        await asyncio.shield(future)

    def probe_blocking(self, target: T, ctx: ProbeContext) -> None:
        raise NotImplementedError
