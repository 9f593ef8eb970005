"""Hostile YAML against the three loaders that share stackprobe.configsource: the exporter
config, the web config and the KPI catalogue. Each must answer `file:line: message` (exit 2 on
the command line), never a traceback, a frozen process or a silently dropped value."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from stackprobe.configsource import ConfigError
from stackprobe.exporter import config
from stackprobe.exporter.webconfig import load_web_config
from stackprobe.rules import cli as rules_cli
from stackprobe.rules.spec import DEFAULT_DIRECTORY, load_catalogue

from fixtures.exporter import parse_scrape
from fixtures.net import free_port, wait_for_port, wait_until


def _alias_bomb() -> bytes:
    """"Billion laughs": nine levels of nine aliases each, 9**9 strings from 600 bytes."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return ("\n".join(lines) + "\n").encode()


#: (id, file content, line reported, words in the message)
HOSTILE = [
    ("alias-bomb", _alias_bomb(), 6, "aliases are expanded"),
    ("self-alias", b"a: &a [1, *a]\n", 1, "alias refers to the value that contains it"),
    ("duplicate-key", b"http: []\nmysql: []\nhttp: []\n", 3, "duplicate key 'http' (first at line 1)"),
    ("invalid-utf8", b"# ok\nname: \xff\xfe\n", 2, "not valid UTF-8"),
    ("deep-nesting", b"x: " + b"[" * 500 + b"]" * 500 + b"\n", 1, "nested deeper than"),
    ("deep-mapping", b"".join(b"  " * i + b"k:\n" for i in range(200)), 65, "nested deeper than"),
    ("huge-integer", b"x: " + b"9" * 5000 + b"\n", 1, "a number of 5000 characters"),
    ("nul-byte", b"a: 1\nb: x\x00y\n", 2, "character U+0000 is not allowed"),
    ("escaped-control", b'a: 1\nb: "x\\x1by"\n', 2, "control character U+001B"),
    ("empty-file", b"", 1, "the file is empty"),
    ("only-comments", b"# nothing here\n\n", 1, "the file is empty"),
]


def _ids(cases):
    return [c[0] for c in cases]


def _expect(err: ConfigError, path: Path, line: int, words: str) -> None:
    lines = err.format_lines()
    assert any(x.startswith(f"{path}:{line}: ") and words in x for x in lines), lines


@pytest.mark.parametrize(("name", "content", "line", "words"), HOSTILE, ids=_ids(HOSTILE))
def test_exporter_config_refuses_hostile_yaml_with_the_line(tmp_path, name, content, line, words):
    path = tmp_path / "stackprobe.yml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        config.parse(path)
    _expect(err.value, path, line, words)


@pytest.mark.parametrize(("name", "content", "line", "words"), HOSTILE, ids=_ids(HOSTILE))
def test_web_config_refuses_hostile_yaml_with_the_line(tmp_path, name, content, line, words):
    path = tmp_path / "web.yml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    _expect(err.value, path, line, words)


@pytest.fixture
def catalogue_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "catalogue"
    shutil.copytree(DEFAULT_DIRECTORY, directory)
    return directory


@pytest.mark.parametrize(("name", "content", "line", "words"), HOSTILE, ids=_ids(HOSTILE))
def test_catalogue_refuses_hostile_yaml_with_the_line(catalogue_copy, name, content, line, words):
    path = next(p for p in sorted(catalogue_copy.glob("*.yaml")) if p.name != "routing.yaml")
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_catalogue(catalogue_copy)
    _expect(err.value, path, line, words)


def test_a_duplicate_key_in_a_valid_catalogue_service_is_not_silently_dropped(catalogue_copy):
    path = catalogue_copy / "portfolio.yaml"
    text = path.read_text()
    key = next(line.split(":")[0] for line in text.splitlines() if line and not line[0].isspace() and ":" in line
               and not line.startswith("#"))
    path.write_text(text + f"{key}: duplicate\n")
    with pytest.raises(ConfigError) as err:
        load_catalogue(catalogue_copy)
    assert f"duplicate key {key!r}" in str(err.value)


def test_aliases_that_only_repeat_a_value_still_work(tmp_path):
    path = tmp_path / "stackprobe.yml"
    path.write_text("http:\n  - &web {name: a, service: s, url: 'http://127.0.0.1:1/'}\n"
                    "  - {name: b, service: s, url: 'http://127.0.0.1:2/'}\n")
    assert [t.name for t in config.parse(path).targets] == ["a", "b"]


@pytest.mark.parametrize(("name", "content", "line", "words"), [HOSTILE[0], HOSTILE[3], HOSTILE[4], HOSTILE[6]],
                         ids=_ids([HOSTILE[0], HOSTILE[3], HOSTILE[4], HOSTILE[6]]))
def test_check_config_and_gen_rules_exit_2_with_the_line(tmp_path, catalogue_copy, name, content, line, words):
    path = tmp_path / "stackprobe.yml"
    path.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "stackprobe.exporter", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"{path}:{line}: " in proc.stderr and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

    service = catalogue_copy / "portfolio.yaml"
    service.write_bytes(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(rules_cli.main, ["build", "--catalogue", str(catalogue_copy), "--out", str(out)])
    assert result.exit_code == 2 and f"{service}:{line}: " in result.output and words in result.output, result.output
    assert not out.exists() or not any(out.rglob("*")), "nothing may be written for an invalid catalogue"


@pytest.mark.parametrize(("field", "value", "words"), [
    ("interval", "1ms", "interval: 1ms is out of range 1s to 1w"),
    ("interval", "0.000001ms", "is out of range 1s to 1w"),
    ("interval", "2w", "interval: 2w is out of range 1s to 1w"),
    ("timeout", "5ms", "timeout: 5ms is out of range 10ms to 1w"),
    ("timeout", "20000w", "timeout: 20000w is out of range 10ms to 1w"),
    ("interval", "1" * 400 + "s", "that long is out of range 1s to 1w"),
])
def test_durations_are_bounded(tmp_path, field, value, words):
    path = tmp_path / "stackprobe.yml"
    path.write_text(f"http:\n  - name: a\n    service: s\n    url: http://127.0.0.1:1/\n    {field}: {value}\n")
    with pytest.raises(ConfigError) as err:
        config.parse(path)
    assert f"{path}:5: http[0].{field}: " in str(err.value) and words in str(err.value), str(err.value)


@pytest.mark.parametrize("address", ["localhost", ":http", ":70000", "::1:18947", "[::1:18947", ":-1"])
def test_listen_address_mistakes_exit_2(address):
    proc = subprocess.run([sys.executable, "-m", "stackprobe.exporter", "run", f"--web.listen-address={address}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--web.listen-address" in proc.stderr and "Traceback" not in proc.stderr


def test_a_hostile_reload_is_refused_in_one_log_line_and_keeps_the_old_config(tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "db.sql").write_text("-- dump\n")
    valid = f"backup:\n  - {{name: kept, service: s, path: '{backups}', globs: ['*.sql'], interval: 1s, timeout: 1s}}\n"
    path = tmp_path / "stackprobe.yml"
    path.write_text(valid)
    port = free_port()
    log = tmp_path / "stderr.log"
    proc = subprocess.Popen([sys.executable, "-m", "stackprobe.exporter", "run", f"--config.file={path}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        wait_for_port(port)

        def series() -> dict:
            return parse_scrape(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text)

        def reload_ok() -> float | None:
            return series().get(("stackprobe_config_last_reload_successful", frozenset()))

        def probed() -> bool:
            return any(n == "stackprobe_probe_success" and ("target", "kept") in labels for n, labels in series())

        wait_until(probed, what="the first probe")
        for name, content, line, words in (HOSTILE[0], HOSTILE[4], HOSTILE[3]):
            path.write_bytes(content)
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: reload_ok() == 0, what=f"the {name} reload reported as failed")
            assert probed()
            path.write_text(valid)
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: reload_ok() == 1, what="the valid reload after it")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    text = log.read_text()
    failures = [x for x in text.splitlines() if "config reload failed" in x]
    assert len(failures) == 3 and "Traceback" not in text, text
    assert f"{path}:6: " in failures[0] and "nested deeper" in failures[1] and "not valid UTF-8" in failures[2]


@pytest.mark.timeout(60)
def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(tmp_path, catalogue_copy):
    """The loader runs on the exporter's event loop at SIGHUP: an open() that waits for a FIFO's
    writer would freeze every probe."""
    fifo = tmp_path / "stackprobe.yml"
    os.mkfifo(fifo)
    for load in (config.parse, load_web_config):
        with pytest.raises(ConfigError) as err:
            load(fifo)
        assert str(err.value) == f"{fifo}: not a regular file"
    service = catalogue_copy / "portfolio.yaml"
    service.unlink()
    os.mkfifo(service)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_catalogue(catalogue_copy)
