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
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Generic, TypeVar

from prometheus_client.utils import floatToGoString
from pydantic import Field, model_validator

from stackprobe.configsource import StrictModel, bounded_duration

if TYPE_CHECKING:
    from cryptography import x509

from .. import metrics
from ..collector import escape_label, render_samples, target_labels

R = TypeVar("R")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"

#: An interval below 1 s burns a core on one target; above a week nobody sees the result.
Interval = bounded_duration(1.0, 7 * 86400.0)
#: Below 10 ms no probe can finish (a loopback TCP connect alone takes most of that under load).
Timeout = bounded_duration(0.01, 7 * 86400.0)


class TargetConfig(StrictModel):
    """Fields every target has, whatever its prober."""

    #: Default probe interval and timeout of this prober's targets, in seconds.
    default_interval: ClassVar[float] = 60.0
    default_timeout: ClassVar[float] = 10.0

    name: str = Field(pattern=NAME_PATTERN, description="Unique target name; the `target` label.")
    service: str = Field(pattern=NAME_PATTERN, description="The service (playbook) the target belongs to; the `service` label.")
    interval: Interval | None = Field(None, description="How often to probe (default per prober); 1s to 1w.")
    timeout: Timeout | None = Field(None, description="Give up on a probe after this long (default per prober, at most the interval); at least 10ms.")

    @model_validator(mode="after")
    def _defaults(self) -> "TargetConfig":
        interval = self.interval or self.default_interval
        timeout = self.timeout or min(self.default_timeout, interval)
        if timeout > interval:
            raise ValueError(f"timeout ({timeout:g}s) must not exceed interval ({interval:g}s)")
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "timeout", timeout)
        return self


#: Whether validating a SecretRef checks that its secret is there. `run` needs it; `check-config`
#: often runs where the secrets are not (CI, a laptop), and there a missing one is a warning.
_SECRETS_REQUIRED: ContextVar[bool] = ContextVar("secrets_required", default=True)


@contextmanager
def secrets_not_required() -> Iterator[None]:
    """Validate configs without checking that password_env is set or password_file readable."""
    token = _SECRETS_REQUIRED.set(False)
    try:
        yield
    finally:
        _SECRETS_REQUIRED.reset(token)


def check_secret_source(env: str | None, file: Path | None, env_field: str, file_field: str) -> None:
    """At load: a secret comes from one environment variable that is set, or one readable file
    (whether it is there is only checked where secrets are required, see secrets_not_required)."""
    if env and file:
        raise ValueError(f"set {env_field} or {file_field}, not both")
    if not _SECRETS_REQUIRED.get():
        return
    if env and env not in os.environ:
        raise ValueError(f"environment variable {env} ({env_field}) is not set")
    if file and not os.access(file, os.R_OK):
        raise ValueError(f"{file_field} {file} is not readable")


def read_secret(env: str | None, file: Path | None, file_field: str) -> str | None:
    """A secret as of now, from its variable or file (trailing newline stripped); an unreadable
    file fails the probe with reason io. Blocking: call it from a worker thread."""
    if env:
        return os.environ.get(env)
    if file:
        data = read_regular_file(file, file_field, SECRET_FILE_LIMIT)
        try:
            return data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:  # its message quotes the offending byte: a piece of the secret
            raise ProbeError("io", f"{file_field} {file} is not valid UTF-8") from None
    return None


class SecretRef(StrictModel):
    """A password named by an environment variable or a file, never written in the config itself."""

    password_env: str | None = Field(None, description="Environment variable holding the password.")
    password_file: Path | None = Field(None, description="File holding the password (trailing newline stripped); re-read at every probe, so rotated secrets are picked up.")

    @model_validator(mode="after")
    def _check_source(self) -> "SecretRef":
        check_secret_source(self.password_env, self.password_file, "password_env", "password_file")
        return self

    def password(self) -> str | None:
        """The password as of now; an unreadable password_file fails the probe with reason io.

        Blocking (the file may sit on a hung mount): call it from a worker thread, or use
        read_password() on the event loop.
        """
        return read_secret(self.password_env, self.password_file, "password_file")

    async def read_password(self, ctx: "ProbeContext") -> str | None:
        """password() without blocking the event loop; a hung file read stalls only this target."""
        if not self.password_file:
            return self.password()
        return await ctx.off_loop("password_file", self.password)


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

        Loading a CA store costs ~30 ms of CPU, too much to pay per probe with hundreds of
        targets (bench/bench.py measured it); a rotated file (new mtime) gets a new context at
        the next probe. Unreadable files fail the probe with reason io. Blocking (stat and reads
        of the files): call it from a worker thread, or use load_ssl_context() on the event loop.
        """
        try:
            key = (self, *(os.stat(p).st_mtime_ns if p else None for p in self._files()))
            context = _SSL_CONTEXTS.get(key)
            if context is None:
                context = self._build_context()
                if len(_SSL_CONTEXTS) >= 256:  # stale versions of rotated files
                    _SSL_CONTEXTS.clear()
                _SSL_CONTEXTS[key] = context
        except (OSError, ssl.SSLError) as e:
            raise ProbeError("io", f"cannot load the TLS files: {getattr(e, 'strerror', None) or e}") from None
        return context

    async def load_ssl_context(self, ctx: "ProbeContext") -> ssl.SSLContext:
        """ssl_context() off the event loop; a config without files is served from the cache at once."""
        if not any(self._files()) and (context := _SSL_CONTEXTS.get((self, None, None, None))) is not None:
            return context
        return await ctx.off_loop("tls files", self.ssl_context)

    def _files(self) -> tuple[Path | None, ...]:
        return self.ca_file, self.cert_file, self.key_file

    def _build_context(self) -> ssl.SSLContext:
        for path, field in zip(self._files(), ("ca_file", "cert_file", "key_file")):
            if path is not None:  # a FIFO or device would block the loader forever
                open_regular_file(path, field).close()
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def peer_certificates(ssl_object: ssl.SSLObject) -> list["x509.Certificate"]:
    """Every certificate the server sent, leaf first, verified or not.

    Python 3.11 has no public API for the chain (3.13 adds get_unverified_chain()); the private
    one exists since 3.10. Without it, only the leaf is available. A certificate that OpenSSL
    took but cryptography cannot parse (it is stricter) fails the probe with reason tls.
    """
    from cryptography import x509  # ~14 MB: loaded by the first TLS probe, not at start-up

    try:
        chain = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
        if chain is not None:
            pems = [c.public_bytes() for c in chain() or ()]
            if pems:
                return [x509.load_pem_x509_certificate(p.encode("ascii")) for p in pems]
        leaf = ssl_object.getpeercert(binary_form=True)
        return [x509.load_der_x509_certificate(leaf)] if leaf else []
    except ValueError as e:
        raise ProbeError("tls", f"the server sent a certificate that cannot be parsed: {e}") from None


#: TLSClientConfig.ssl_context's cache; shared contexts are safe for concurrent connections.
_SSL_CONTEXTS: dict[tuple, ssl.SSLContext] = {}

#: Secrets are short; a password_file bigger than this is a mistake (a wrong path), not a secret.
SECRET_FILE_LIMIT = 64 * 1024


def open_regular_file(path: Path | str, field: str) -> BinaryIO:
    """`path` opened for reading if it is a regular file; anything else (a FIFO, a device) or an
    unreadable file fails with reason io.

    Opened non-blocking: a plain open() of a FIFO waits for a writer forever. Blocking on a hung
    mount all the same, so call it from a worker thread.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ProbeError("io", f"cannot read {field} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ProbeError("io", f"{field} {path} is not a regular file")
    return os.fdopen(fd, "rb")


def read_regular_file(path: Path | str, field: str, limit: int) -> bytes:
    """The content of a regular file of at most `limit` bytes (see open_regular_file); a bigger
    one fails with reason io rather than being read in part."""
    with open_regular_file(path, field) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise ProbeError("io", f"cannot read {field} {path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise ProbeError("io", f"{field} {path} is larger than {limit} bytes")
    return data


def run_in_thread(fn: Callable[..., R], *args: Any) -> "asyncio.Future[R]":
    """fn(*args) in a new daemon thread, as a future of the running loop.

    Not an executor: ThreadPoolExecutor's and asyncio's default pool's threads are joined at exit,
    so one call hung in the kernel (a FIFO, a hung NFS mount) would keep SIGTERM from ever ending
    the process; a daemon thread is simply left behind. Starting a thread costs ~0.1 ms, nothing
    next to a probe, and there is no pool for hung calls to fill.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[R] = loop.create_future()

    def settle(error: BaseException | None, value: Any) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(value)

    def work() -> None:
        try:
            outcome: tuple[BaseException | None, Any] = (None, fn(*args))
        except BaseException as e:  # handed to the awaiting coroutine
            outcome = (e, None)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop closed while the call hung: nobody is waiting any more
            pass

    threading.Thread(target=work, name=f"probe-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    return future


async def run_isolated(running: dict[Any, asyncio.Future], key: Any, what: str, fn: Callable[..., R], *args: Any) -> R:
    """run_in_thread, at most one call in flight per key.

    A thread abandoned at the last timeout (a hung NFS mount, a query streaming slowly past its
    per-read timeout) cannot be killed; it must not be joined by another every interval, so
    while it runs the key's next calls fail at once with reason timeout.
    """
    previous = running.get(key)
    if previous is not None and not previous.done():
        raise ProbeError("timeout", f"the previous {what} of this target is still running")
    future = run_in_thread(fn, *args)
    running[key] = future
    future.add_done_callback(lambda done: _forget(running, key, done))
    return await asyncio.shield(future)


def _forget(running: dict[Any, asyncio.Future], key: Any, done: asyncio.Future) -> None:
    if running.get(key) is done:
        del running[key]
    if not done.cancelled():
        done.exception()  # retrieved: an abandoned call's error is not "never retrieved" noise


#: run_isolated's in-flight calls of ProbeContext.off_loop, by (target name, purpose).
_OFF_LOOP: dict[tuple[str, str], asyncio.Future] = {}


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


def _label_text(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """`,a="x",b="y"`: label values escaped as both exposition formats require."""
    if len(values) != len(names):
        raise TypeError(f"labels {names} got the values {values}")
    return "".join([f',{name}="{escape_label(str(value))}"' for name, value in zip(names, values)])


class ProbeContext:
    """Collects one probe's samples and log lines; checks every sample against its declared family.

    Samples are kept two ways: set()'s as values (a prober may overwrite one), rendered when the
    result is built; set_many()'s families as their exposition lines at once (pieces()).
    Closed when the scheduler is done with the probe (close(), or abandon() at its timeout): a
    worker thread the timeout abandoned may still be running, and what it records later is
    dropped, so the scheduler reads a fixed record of what the probe had found by then.
    """

    def __init__(self, target: TargetConfig):
        self.target = target
        self.deadline = time.monotonic() + target.timeout
        self.samples: dict[tuple[str, Labels], float] = {}
        #: Family -> its exposition lines, for the families set by set_many() or include().
        self.rendered: dict[str, bytes] = {}
        self.observations: list[tuple[str, float]] = []
        self.log_lines: list[str] = []
        self._base = target_labels(target)
        self._t0 = time.monotonic()
        self._abandoned = False
        self._closed = False
        self._on_abandon: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def on_abandon(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the scheduler gives up on this probe (its timeout, or shutdown),
        at once if it already has: e.g. to close the socket a worker thread blocks on. Runs on
        the event loop, so it must not block."""
        with self._lock:
            if not self._abandoned:
                self._on_abandon.append(callback)
                return
        callback()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned, self._closed, callbacks = True, True, self._on_abandon
        for callback in callbacks:
            callback()

    def close(self, message: str) -> None:
        """End the probe with this last log line; later writes to this context are dropped."""
        with self._lock:
            self._closed = True
            self.log_lines.append(self._stamp(message))

    async def off_loop(self, what: str, fn: Callable[..., R], *args: Any) -> R:
        """Blocking work of this target (file reads, CPU-heavy checks) in its own thread; see run_isolated."""
        return await run_isolated(_OFF_LOOP, (self.target.name, what), what, fn, *args)

    def remaining(self) -> float:
        """Seconds left before the target's timeout (never below a millisecond)."""
        return max(0.001, self.deadline - time.monotonic())

    def set(self, name: str, value: float, **labels: Any) -> None:
        """Record a gauge or counter sample; labels are those after service/target."""
        fam = metrics.family(name)
        if set(labels) != set(fam.labels):
            raise TypeError(f"{fam.name} takes labels {fam.labels}, got {tuple(labels)}")
        if fam.name in self.rendered:
            raise ValueError(f"{fam.name} was set whole by set_many")
        key, value = (fam.name, tuple((k, str(labels[k])) for k in fam.labels)), float(value)
        with self._lock:
            if not self._closed:
                self.samples[key] = value

    def set_many(self, name: str, leading: tuple[str, ...], trailing: tuple[str, ...],
                 rows: Iterable[tuple[tuple[str, ...], tuple[str, ...], float]],
                 reuse: dict[tuple[str, ...], str] | None = None) -> dict[tuple[str, ...], str]:
        """Every sample of one family, rendered to its exposition lines at once; all or nothing,
        the label names checked once, and the family is not set() as well.

        The family's labels come in two parts, `leading` then `trailing` names, and a row is
        (leading values, trailing values, value), values as strings, each series at most once:
        series that share their leading labels (a table's data, index and free sizes) share their
        rendering, made once. Returns {leading values: their rendered labels}; passed back as
        `reuse` (at the next probe of the target, or for another family with the same leading
        labels), leading values seen before cost a lookup. That counts at tens of thousands of
        table and index series per probe (bench/mysql_cost.py)."""
        fam = metrics.family(name)
        if leading + trailing != fam.labels:
            raise TypeError(f"{fam.name} takes labels {fam.labels}, got {leading + trailing}")
        if fam.name in self.rendered or any(key[0] == fam.name for key in self.samples):
            raise ValueError(f"{fam.name} was set before")
        head = f"{fam.name}{{{self._base}"
        previous = reuse or {}
        made: dict[tuple[str, ...], str] = {}
        ends: dict[tuple[str, ...], str] = {}
        texts: dict[float, str] = {}  # value -> " value\n": sizes repeat (pages of 16 KiB, empty tables)
        parts: list[str] = []
        last_lead: tuple[str, ...] | None = None
        for lead, trail, value in rows:
            if lead is not last_lead:  # a table's sizes come in a row, with one leading tuple
                start, last_lead = made.get(lead), lead
                if start is None:
                    start = previous.get(lead)
                    made[lead] = start = _label_text(leading, lead) if start is None else start
            end = ends.get(trail)
            if end is None:
                end = ends[trail] = _label_text(trailing, trail) + "}"
            text = texts.get(value)
            if text is None:
                text = texts[value] = f" {floatToGoString(value)}\n"
            parts += (head, start, end, text)
        if parts:
            self.include({fam.name: "".join(parts).encode()})
        return made

    def include(self, pieces: Mapping[str, bytes]) -> None:
        """Families rendered before by set_many (of another ProbeContext of this target), added as they are."""
        with self._lock:
            if not self._closed:
                self.rendered.update(pieces)

    def pieces(self) -> dict[str, bytes]:
        """Family -> exposition lines of everything this probe recorded (set()'s rendered now)."""
        with self._lock:
            return render_samples(self._base, self.samples) | self.rendered

    def observe(self, name: str, value: float) -> None:
        """Record one observation for a histogram family (accumulated by the scheduler)."""
        fam = metrics.family(name)
        if fam.kind != "histogram":
            raise TypeError(f"{fam.name} is not a histogram")
        with self._lock:
            if not self._closed:
                self.observations.append((fam.name, float(value)))

    def log(self, message: str) -> None:
        """A line for `/probe?debug=true`; must hold no secrets."""
        with self._lock:
            if not self._closed:
                self.log_lines.append(self._stamp(message))

    def _stamp(self, message: str) -> str:
        return f"{time.monotonic() - self._t0:8.3f}s {message}"


T = TypeVar("T", bound=TargetConfig)


class Prober(Generic[T]):
    """One protocol. Subclasses set `name`, `families` and `target_model` and implement probe()."""

    name: ClassVar[str]
    #: The families this prober exports, each named `stackprobe_<name>_...`.
    families: ClassVar[tuple[metrics.Family, ...]] = ()
    target_model: ClassVar[type[TargetConfig]]
    summary: ClassVar[str] = ""
    #: The probe's sections that fail on their own, reported by `stackprobe_<name>_collector_success
    #: {collector}`: section -> the families it sets (without the prefix), which are what is missing
    #: while it fails. The rules generator reads it to tell which section a KPI's series come from.
    collectors: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    async def probe(self, target: T, ctx: ProbeContext) -> None:
        raise NotImplementedError


class BlockingProber(Prober[T]):
    """A prober built on a blocking library: probe_blocking() runs in a worker thread.

    The scheduler's timeout abandons the thread's result; the implementation must still pass
    ctx.remaining() to its socket timeouts so the thread itself ends soon after. A thread that
    hangs anyway stalls only its own target (run_isolated) and never holds up exit.
    """

    def __init__(self) -> None:
        #: Target name -> its worker-thread future still running (a thread cannot be killed).
        self._running: dict[str, asyncio.Future] = {}

    async def probe(self, target: T, ctx: ProbeContext) -> None:
        try:
            await run_isolated(self._running, target.name, "probe", self.probe_blocking, target, ctx)
        except asyncio.CancelledError:  # the timeout, or shutdown: the worker must stop too
            ctx.abandon()
            raise

    def probe_blocking(self, target: T, ctx: ProbeContext) -> None:
        raise NotImplementedError
