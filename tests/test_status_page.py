"""The status page at / as a person sees it: loaded from a running exporter in a real headless
Chromium, its rows checked in the rendered DOM, and a screenshot saved."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium; ./dev.sh test installs it as root)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # The flags keep Chromium off the network (this machine has none) and out of the user's profile.
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
        capture_output=True, text=True, timeout=120)


class Rows(HTMLParser):
    """Collects the cells of each `<tr data-target>` of the targets table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict] = {}
        self._row: dict | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "tr" and "data-target" in attrs:
            self._row = {"class": attrs.get("class"), "cells": []}
            self.rows[attrs["data-target"]] = self._row
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None


def test_status_page_in_chromium(start_exporter, tmp_path, silent_listener):
    backups = tmp_path / "backups"
    backups.mkdir()
    dump = backups / "db.sql"
    dump.write_text("-- dump\n")
    hour_ago = time.time() - 3600
    os.utime(dump, (hour_ago, hour_ago))
    exporter = start_exporter(
        "backup:\n"
        f"  - {{name: nightly-dump, service: universal-gallery, path: '{backups}', globs: ['*.sql'], interval: 2s}}\n"
        f"  - {{name: missing-dir, service: vedfolnir, path: '{tmp_path / 'nope'}', globs: ['*.sql'], interval: 2s}}\n"
        "http:\n"
        f"  - {{name: hung-api, service: portfolio, url: 'http://127.0.0.1:{silent_listener.port}/', interval: 60s, timeout: 50s}}\n")
    exporter.wait_for_probe("nightly-dump")
    exporter.wait_for_probe("missing-dir")

    dom = chromium(tmp_path, "--dump-dom", exporter.url + "/")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = Rows()
    parser.feed(dom.stdout)
    rows = parser.rows
    assert set(rows) == {"nightly-dump", "missing-dir", "hung-api"}
    # Columns: target, service, prober, state, duration, reason, last error, age, debug link.
    ok, failed, pending = rows["nightly-dump"], rows["missing-dir"], rows["hung-api"]
    assert ok["class"] == "ok" and ok["cells"][:4] == ["nightly-dump", "universal-gallery", "backup", "up"]
    assert ok["cells"][5:7] == ["", ""] and ok["cells"][7].endswith("s ago") and ok["cells"][4].endswith("s")
    assert failed["class"] == "fail" and failed["cells"][:4] == ["missing-dir", "vedfolnir", "backup", "down"]
    assert failed["cells"][5] == "io" and "does not exist" in failed["cells"][6]
    assert pending["class"] == "pending" and pending["cells"][:4] == ["hung-api", "portfolio", "http", "pending"]

    screenshot = tmp_path / "status-page.png"
    shot = chromium(tmp_path, "--window-size=1280,600", f"--screenshot={screenshot}", exporter.url + "/")
    assert shot.returncode == 0, shot.stderr[-2000:]
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a rendered page, not a blank image
    artifacts = os.environ.get("STACKPROBE_ARTIFACTS")
    if artifacts:  # CI or a person can keep the picture
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artifacts) / screenshot.name)
