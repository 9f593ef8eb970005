"""Logs a person can read and a machine can parse: real logfmt or JSON, Go-exporter levels,
one line per record (tracebacks included), and no secret in any of it."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from stackprobe.exporter import logs
from stackprobe.exporter.scheduler import Scheduler
from stackprobe.exporter.snapshot import TargetResult

from fixtures.net import free_port, wait_for_port, wait_until

#: One logfmt pair: a bare value, or a quoted one with backslash escapes (go-logfmt's grammar).
_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|[^\s"=]*)(?: |$)')


def parse_logfmt(line: str) -> dict[str, str]:
    """Strict: every byte of the line must belong to a key=value pair."""
    out, pos = {}, 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        assert m, f"not logfmt at column {pos}: {line!r}"
        key, value = m.groups()
        out[key] = json.loads(value) if value.startswith('"') else value
        pos = m.end()
    return out


def _record(msg: str, *args, level=logging.WARNING, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("stackprobe.scheduler", level, __file__, 1, msg, args, exc_info)


def test_template_fields_become_logfmt_fields_with_quoted_values():
    line = logs.LogfmtFormatter().format(_record(
        "probe failed target=%s prober=%s reason=%s error=%r duration=%.3fs",
        "web", "http", "timeout", 'no "result"\nwithin 1s', 0.25))
    fields = parse_logfmt(line)
    assert fields["level"] == "warn" and fields["logger"] == "stackprobe.scheduler"
    assert fields["msg"] == "probe failed" and fields["target"] == "web" and fields["reason"] == "timeout"
    assert fields["error"] == 'no "result"\nwithin 1s' and fields["duration"] == "0.250s"
    assert "\n" not in line


@pytest.mark.parametrize("msg, args", [("http %s %s", ("127.0.0.1", "GET / HTTP/1.1")),
                                       ("config reload failed: %s", ("a.yml:3: x",)),
                                       ("no fields at all", ())])
def test_a_message_without_fields_is_kept_whole(msg, args):
    fields = parse_logfmt(logs.LogfmtFormatter().format(_record(msg, *args, level=logging.INFO)))
    assert fields["msg"] == msg % args and fields["level"] == "info"


def test_a_traceback_is_one_field_of_one_line():
    try:
        raise RuntimeError("prober bug")
    except RuntimeError:
        record = _record("prober bug target=%s", "web", level=logging.ERROR, exc_info=sys.exc_info())
    for formatter, parse in ((logs.LogfmtFormatter(), parse_logfmt), (logs.JSONFormatter(), json.loads)):
        line = formatter.format(record)
        assert "\n" not in line
        fields = parse(line)
        assert fields["level"] == "error" and "RuntimeError: prober bug" in fields["exception"]


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_the_exporter_logs_parseable_lines_and_no_secret(tmp_path, fmt):
    secret = "hunter2-do-not-log"
    config = tmp_path / "stackprobe.yml"
    silent = free_port()  # nothing listens here: the probe fails with a reason worth logging
    config.write_text(f"mysql:\n  - {{name: db, service: s, host: 127.0.0.1, port: {silent}, user: u,"
                      f" password_env: STACKPROBE_TEST_SECRET, interval: 1s, timeout: 1s}}\n")
    port = free_port()
    log = tmp_path / "stderr.log"
    proc = subprocess.Popen([sys.executable, "-m", "stackprobe.exporter", "run", f"--config.file={config}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=debug", f"--log.format={fmt}"],
                            stdout=subprocess.DEVNULL, stderr=log.open("w"),
                            env={**os.environ, "STACKPROBE_TEST_SECRET": secret})
    try:
        wait_for_port(port)
        wait_until(lambda: "probe failed" in log.read_text(), what="the failed probe logged")
        config.write_text("mysql: [")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "config reload failed" in log.read_text(), what="the failed reload logged")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    text = log.read_text()
    assert secret not in text
    records = [(json.loads if fmt == "json" else parse_logfmt)(line) for line in text.splitlines()]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert {r["level"] for r in records} <= {"debug", "info", "warn", "error"}
    failed = next(r for r in records if r["msg"] == "probe failed")
    assert failed["level"] == "warn" and failed["target"] == "db" and failed["reason"]
    reload = next(r for r in records if r["msg"] == "config reload failed, keeping the previous config")
    assert reload["level"] == "error" and re.match(rf"{re.escape(str(config))}:\d+: invalid YAML", reload["error"])


def _log_calls(root: Path):
    """(file:line, template) of every log.<level>("literal", ...) call under root."""
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("debug", "info", "warning", "error", "exception", "critical")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("log", "logger")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                yield f"{path}:{node.lineno}", node.args[0].value


def test_every_log_template_in_the_exporter_yields_its_fields():
    """A template with key=%… in it must split into fields; one that does not lands whole in msg."""
    calls = list(_log_calls(Path(logs.__file__).parent))
    assert len(calls) > 5
    for where, template in calls:
        if "=%" not in template:
            continue
        conversions = re.findall(r"%[-#0 +]*\d*(?:\.\d+)?([a-zA-Z])", template)
        args = tuple(1 if c in "difgeEx" else "x" for c in conversions)
        fields = logs.record_fields(_record(template, *args))
        assert "=" not in fields["msg"] and len(fields) == 4 + len(args), f"{where}: {template!r} -> {fields}"


def test_json_keeps_numbers_and_bools_while_logfmt_writes_text():
    record = _record("config loaded source=%s targets=%d tls=%s ratio=%.2f duration=%.3fs",
                     "a.yml", 8, True, 0.5, 0.25, level=logging.INFO)
    fields = json.loads(logs.JSONFormatter().format(record))
    assert fields["targets"] == 8 and fields["tls"] is True and fields["ratio"] == 0.5
    assert fields["source"] == "a.yml" and fields["duration"] == "0.250s"  # a unit keeps it text
    text = parse_logfmt(logs.LogfmtFormatter().format(record))
    assert text["targets"] == "8" and text["ratio"] == "0.50" and text["tls"] == "true"
    nan = json.loads(logs.JSONFormatter().format(_record("x value=%s", float("nan"))))
    assert nan["value"] == "nan"  # JSON has no NaN: kept as text rather than invalid output


def test_info_logs_probe_state_changes_only(caplog):
    """README: `info` logs state changes only; at 500 targets every 15 s a line per probe is ~33 lines/s."""
    target = SimpleNamespace(name="web", service="s")
    never = TargetResult(target=target, prober="http")
    ok = replace(never, success=True, finished_at=1.0)
    failed = replace(never, success=False, reason="timeout", message="no answer", finished_at=2.0)
    sequence = [never, ok, ok, ok, failed, failed, ok]
    with caplog.at_level(logging.DEBUG, logger="stackprobe"):
        for previous, result in zip(sequence, sequence[1:]):
            Scheduler._log_transition(previous, result)
    assert [(r.levelname, r.getMessage().split(" target=")[0]) for r in caplog.records] == [
        ("INFO", "probe ok"), ("DEBUG", "probe done"), ("DEBUG", "probe done"),
        ("WARNING", "probe failed"), ("DEBUG", "probe done"), ("INFO", "probe ok")]
