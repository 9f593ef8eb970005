"""The running exporter: config, scheduler, HTTP server and signals wired together.

SIGHUP re-reads the config file; a broken file is logged and the running config kept.
SIGTERM and SIGINT stop the server and cancel every probe, then return.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from pathlib import Path

from stackprobe.configsource import ConfigError

from . import config as config_mod
from .collector import MetricsPage
from .config import Config
from .scheduler import Scheduler
from .server import ExporterApp, serve
from .shard import Shard
from .snapshot import Snapshot, keep_large_allocations_mapped
from .webconfig import WebConfig, WebConfigSource

log = logging.getLogger("stackprobe")


#: At most this many name lookups run at once; more wait for one to end. A hung resolver then
#: holds this many threads, not one more per lookup of every probe that needs a name.
MAX_LOOKUP_THREADS = 16


class DaemonThreadExecutor(concurrent.futures.ThreadPoolExecutor):
    """asyncio's default executor, its calls in daemon threads, never joined.

    getaddrinfo (every name redis or open_connection resolves) and asyncio.to_thread run there; a
    pool's threads are joined when asyncio.run ends and again at interpreter exit, so one lookup
    hung on a broken resolver would keep SIGTERM from ending the process. asyncio accepts only a
    ThreadPoolExecutor as default executor, hence the subclass; it starts no pool threads.

    Two lanes: name lookups share at most MAX_LOOKUP_THREADS threads (a lookup whose probe gave
    up while it waited is skipped); anything else, the scheduler's own rendering included, gets a
    thread of its own at once, so a hung resolver never delays a result being published.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self._lock = threading.Lock()
        self._lookups: collections.deque[tuple[concurrent.futures.Future, Callable[[], Any]]] = collections.deque()
        self._lookup_threads = 0

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:  # type: ignore[override]
        future: concurrent.futures.Future = concurrent.futures.Future()
        call = functools.partial(fn, *args, **kwargs)
        if fn is not socket.getaddrinfo and fn is not socket.getnameinfo:
            self._start(lambda: _settle(future, call), getattr(fn, "__name__", "call"))
            return future
        with self._lock:
            self._lookups.append((future, call))
            start = self._lookup_threads < MAX_LOOKUP_THREADS
            self._lookup_threads += start
        if start:
            self._start(self._run_lookups, "lookup")
        return future

    @staticmethod
    def _start(work: Callable[[], None], name: str) -> None:
        threading.Thread(target=work, name=f"executor-{name}", daemon=True).start()

    def _run_lookups(self) -> None:
        """One lookup thread: runs waiting lookups until none is left."""
        while True:
            with self._lock:
                if not self._lookups:
                    self._lookup_threads -= 1
                    return
                future, call = self._lookups.popleft()
            _settle(future, call)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to join: a call still running is left to end with the process."""


def _settle(future: concurrent.futures.Future, call: Callable[[], Any]) -> None:
    """Run call for future, unless whoever waited for it gave up (cancelled) first."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(call())
    except BaseException as e:  # handed to the awaiting coroutine
        future.set_exception(e)


class Exporter:
    """One exporter process. `config_path=None` runs the embedded default config."""

    def __init__(self, config_path: Path | None, listen_address: str,
                 web_config: WebConfigSource | WebConfig | None = None, shard: Shard = Shard()):
        self.config_path = config_path
        self.shard = shard
        self.listen_address = listen_address
        #: A WebConfig is served as given; a WebConfigSource follows its file.
        self.web = web_config if isinstance(web_config, WebConfigSource) else WebConfigSource(config=web_config)
        self.snapshot = Snapshot()
        self.scheduler = Scheduler(self.snapshot)
        self.reload_ok = True
        self.reload_success_at: float | None = None
        self.metrics_page = MetricsPage(self.snapshot, self._state)
        self.stopped = asyncio.Event()
        self.server = None
        #: Called with the bound port once the server listens (tests use it).
        self.on_listening: Callable[[int], None] | None = None

    def _state(self) -> dict:
        return {"reload_ok": self.reload_ok, "reload_success_at": self.reload_success_at,
                "targets": self.scheduler.targets_per_prober(), "shard": self.shard}

    def load(self) -> Config:
        """The config file (or the embedded default), cut down to the targets this shard owns."""
        config = config_mod.parse(self.config_path) if self.config_path else config_mod.load_default()
        return self.shard.select(config)

    def reload(self) -> bool:
        """Re-read the config; keep the running one if the new one is invalid."""
        try:
            config = self.load()
        except ConfigError as e:
            return self._reload_failed("; ".join(e.format_lines()))
        except Exception as e:  # a loader bug must not end the process, nor spill a traceback per SIGHUP
            return self._reload_failed(f"{self.config_path}: {type(e).__name__}: {e}")
        self.scheduler.apply(config)
        self.reload_ok, self.reload_success_at = True, time.time()
        self._log_loaded(config)
        return True

    def _log_loaded(self, config: Config) -> None:
        log.info("config loaded source=%s targets=%d shard=%s other_shards_targets=%d",
                 config.source, len(config.targets), self.shard, len(config.elsewhere))

    def _reload_failed(self, error: str) -> bool:
        self.reload_ok = False
        log.error("config reload failed, keeping the previous config error=%s", error)
        return False

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or `stopped` is set). The first config must be valid."""
        loop = asyncio.get_running_loop()
        loop.set_default_executor(DaemonThreadExecutor())
        keep_large_allocations_mapped()
        config = self.load()  # a ConfigError here is the caller's to report
        self.scheduler.apply(config)
        self.reload_success_at = time.time()
        self._log_loaded(config)
        app = ExporterApp(self.metrics_page, self.scheduler, loop, self.web)
        self.server = serve(app, self.listen_address)
        port = self.server.server_address[1]
        scheme = "https" if self.web.current().tls_context else "http"
        host = self.server.server_address[0]
        log.info("listening address=%s url=%s", self.listen_address,
                 f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/metrics")
        if self.on_listening:
            self.on_listening(port)
        try:
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stopped.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests)
            pass
        await self.stopped.wait()
        log.info("shutting down")
        self.server.shutdown()
        self.server.server_close()
        await self.scheduler.stop()
