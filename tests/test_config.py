"""Config loading: defaults from the playbooks, and mistakes reported as file:line: field."""

from __future__ import annotations

import os
import subprocess
import threading
import sys
from pathlib import Path

import pytest

from stackprobe.configsource import ConfigError, format_duration, parse_duration
from stackprobe.exporter import config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stackprobe.yml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        config.parse(write(tmp_path, text))
    return err.value.format_lines()


def test_defaults_follow_playbook_002_frequencies(tmp_path):
    cfg = config.parse(write(tmp_path, """
http:
  - {name: web, service: vedfolnir, url: "http://127.0.0.1:1/health"}
redis:
  - {name: cache, service: vedfolnir, url: "redis://127.0.0.1:1/0"}
mysql:
  - {name: db, service: vedfolnir, user: stackprobe}
"""))
    by_name = cfg.by_name()
    assert (by_name["web"].interval, by_name["cache"].interval, by_name["db"].interval) == (30, 60, 300)
    assert all(t.timeout <= t.interval for t in cfg.targets)
    assert {t.name: cfg.prober_of(t) for t in cfg.targets} == {"web": "http", "cache": "redis", "db": "mysql"}


@pytest.mark.parametrize(("text", "expected"), [
    ("http:\n  - name: web\n    service: s\n    url: http://x/\n    intervall: 5s\n",
     "stackprobe.yml:5: http[0].intervall: unknown field"),
    ("http:\n  - name: web\n    service: s\n    url: http://x/\n    interval: 5 minutes\n",
     "stackprobe.yml:5: http[0].interval: '5 minutes' is not a duration"),
    ("http:\n  - name: web\n    service: s\n    url: http://x/\n    interval: 5s\n    timeout: 10s\n",
     "stackprobe.yml:2: http[0]: timeout (10s) must not exceed interval (5s)"),
    ("http:\n  - name: web\n    url: http://x/\n",
     "stackprobe.yml:2: http[0].service: Field required"),
    ("ftp:\n  - name: x\n", "stackprobe.yml:1: ftp: unknown field"),
    ("http:\n  - {name: a, service: s, url: 'http://x/'}\n  - {name: a, service: s, url: 'http://y/'}\n",
     "stackprobe.yml:3: http[1].name: duplicate target name 'a' (first used at line 2)"),
    ("http:\n  - name: web\n    service: s\n   url: x\n", "stackprobe.yml:4: invalid YAML"),
    ("mysql:\n  - name: db\n    service: s\n    user: u\n    password_env: STACKPROBE_TEST_UNSET_VARIABLE\n",
     "environment variable STACKPROBE_TEST_UNSET_VARIABLE (password_env) is not set"),
])
def test_mistakes_name_file_line_and_field(tmp_path, text, expected):
    lines = problems(tmp_path, text)
    assert any(expected in line for line in lines), lines
    assert all(line.startswith(str(tmp_path / "stackprobe.yml")) for line in lines)


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    lines = problems(tmp_path, "http:\n  - name: a\n    service: s\n    url: http://x/\n    bogus: 1\n    timeout: x\n")
    assert len(lines) == 2 and ":5: http[0].bogus" in lines[0] + lines[1] and ":6: http[0].timeout" in lines[0] + lines[1]


def test_check_config_cli_exits_2_with_the_location(tmp_path):
    path = write(tmp_path, "redis:\n  - name: c\n    service: s\n    url: redis://127.0.0.1/0\n    scan_budgett: 3\n")
    proc = subprocess.run([sys.executable, "-m", "stackprobe.exporter", "check-config", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"error: {path}:5: redis[0].scan_budgett: unknown field" in proc.stderr


REPO = Path(__file__).parent.parent


def test_the_readme_check_config_command_works_as_written_on_a_fresh_checkout():
    """No secrets in the environment (CI, a laptop): unset ones are warnings; `run` still refuses."""
    [command] = [line.split("#")[0].split() for line in (REPO / "README.md").read_text().splitlines()
                 if line.startswith(".venv/bin/stackprobe check-config")]
    assert command[0] == ".venv/bin/stackprobe"
    command[0] = str(Path(sys.executable).with_name("stackprobe"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKPROBE_")}
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "deploy/stackprobe.yml: OK, 26 targets" in proc.stdout
    assert "warning: deploy/stackprobe.yml:22: mysql[0]: environment variable STACKPROBE_MYSQL_PASSWORD (password_env) is not set" in proc.stderr
    strict = subprocess.run([*command[:2], "--secrets=require", *command[2:]], cwd=REPO, capture_output=True,
                            text=True, env=env, timeout=60)
    assert strict.returncode == 2 and "error: deploy/stackprobe.yml:22: mysql[0]: environment variable" in strict.stderr


def test_check_config_still_fails_a_real_mistake_next_to_a_missing_secret(tmp_path):
    path = write(tmp_path, "mysql:\n  - {name: db, service: s, host: 127.0.0.1, user: u, password_env: STACKPROBE_UNSET_X}\n"
                           "http:\n  - {name: web, service: s, url: 'http://127.0.0.1:1/', timeout: 2w}\n")
    proc = subprocess.run([sys.executable, "-m", "stackprobe.exporter", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"error: {path}:4: http[0].timeout" in proc.stderr, proc.stderr


def test_run_refuses_a_config_whose_secret_is_not_set(tmp_path):
    path = write(tmp_path, "mysql:\n  - {name: db, service: s, host: 127.0.0.1, user: u, password_env: STACKPROBE_UNSET_X}\n")
    proc = subprocess.run([sys.executable, "-m", "stackprobe.exporter", "run", f"--config.file={path}",
                           "--web.listen-address=127.0.0.1:0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "STACKPROBE_UNSET_X (password_env) is not set" in proc.stderr, proc.stderr


def test_check_config_cli_lists_targets_of_a_valid_file(tmp_path):
    path = write(tmp_path, "http:\n  - {name: web, service: portfolio, url: 'http://127.0.0.1:1/'}\n")
    proc = subprocess.run([sys.executable, "-m", "stackprobe.exporter", "check-config", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "web" in proc.stdout and "service=portfolio" in proc.stdout and "OK, 1 targets" in proc.stdout


def test_embedded_default_config_is_valid():
    cfg = config.load_default()
    assert cfg.targets, "the embedded config should probe something on this machine"


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), (15, 15), ("1d", 86400)])
def test_durations_round_trip(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("bad", ["", "5", "-1s", "1x", True, 0, "s"])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_readme_reference_tables_are_generated_from_the_code():
    from stackprobe.exporter import docs

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert docs.render(readme) == readme, "README tables are stale: run python -m stackprobe.exporter.docs"


MODULES = """\
modules:
  http:
    slow-api:
      interval: 2m
      timeout: 30s
      tls: {verify: false}
mysql: []
http:
  - {name: inherits, service: s, url: "http://127.0.0.1:1/", module: slow-api}
  - {name: overrides, service: s, url: "http://127.0.0.1:2/", module: slow-api, timeout: 5s}
  - {name: plain, service: s, url: "http://127.0.0.1:3/"}
"""


def test_targets_inherit_their_module_and_override_it(tmp_path):
    by_name = config.parse(write(tmp_path, MODULES)).by_name()
    assert (by_name["inherits"].interval, by_name["inherits"].timeout, by_name["inherits"].tls.verify) == (120, 30, False)
    assert (by_name["overrides"].interval, by_name["overrides"].timeout) == (120, 5)
    assert (by_name["plain"].interval, by_name["plain"].tls.verify) == (30, True)


@pytest.mark.parametrize(("text", "expected"), [
    (MODULES.replace("module: slow-api, timeout", "module: fast-api, timeout"),
     "stackprobe.yml:10: http[1].module: unknown module 'fast-api' (modules.http has: slow-api)"),
    (MODULES.replace("      timeout: 30s\n", "      timeout: 30s\n      url: x\n      tiemout: 1s\n"),
     "stackprobe.yml:7: modules.http.slow-api.tiemout: unknown field for a module"),
    (MODULES.replace("interval: 2m", "interval: 1ms"), "stackprobe.yml:4: http[0].interval: 1ms is out of range 1s to 1w"),
    (MODULES.replace("  http:\n    slow-api", "  ftp:\n    x: {}\n  http:\n    slow-api"),
     "stackprobe.yml:2: modules.ftp: unknown prober"),
    (MODULES.replace("      interval: 2m\n", "      name: shared\n"), "stackprobe.yml:4: modules.http.slow-api.name: unknown field"),
])
def test_module_mistakes_name_file_line_and_field(tmp_path, text, expected):
    lines = problems(tmp_path, text)
    assert any(expected in line for line in lines), lines


def test_deploy_example_uses_modules_for_its_shared_credentials():
    text = (Path(__file__).parent.parent / "deploy" / "stackprobe.yml").read_text()
    assert "modules:" in text and text.count("password_env: STACKPROBE_MYSQL_PASSWORD") == 1


def test_a_schedule_change_keeps_counters_and_another_change_resets_them(start_exporter, tmp_path):
    missing = tmp_path / "no-backups-here"

    def backup(interval: str, path: Path) -> str:
        return f"backup:\n  - {{name: b, service: s, path: '{path}', globs: ['*.sql'], interval: {interval}, timeout: 1s}}\n"

    def errors() -> float:
        return sum(v for (n, labels), v in running.scrape().items()
                   if n == "stackprobe_probe_errors_total" and ("target", "b") in labels)

    def reload(text: str) -> None:
        running.exporter.config_path.write_text(text)
        done = threading.Event()
        running._loop.call_soon_threadsafe(lambda: (running.exporter.reload(), done.set()))
        assert done.wait(30) and running.exporter.reload_ok

    running = start_exporter(backup("1s", missing))
    running.wait_for_probe("b", count=3)
    before = errors()
    assert before >= 3
    reload(backup("2s", missing))  # only the schedule changed: the errors keep counting
    running.wait_for_probe("b")
    assert errors() >= before + 1
    reload(backup("2s", tmp_path / "elsewhere"))  # another directory: its errors start from zero
    running.wait_for_probe("b")
    assert errors() == 1


def test_keeps_counters_only_for_schedule_changes(tmp_path):
    text = "http:\n  - {name: w, service: s, url: 'http://127.0.0.1:1/', interval: 30s}\n"
    old = config.parse(write(tmp_path, text)).targets[0]
    assert config.keeps_counters(old, config.parse(write(tmp_path, text.replace("30s", "1m"))).targets[0])
    assert not config.keeps_counters(old, config.parse(write(tmp_path, text.replace(":1/", ":2/"))).targets[0])
    assert not config.keeps_counters(old, config.parse(write(tmp_path, text.replace("service: s", "service: t"))).targets[0])


def test_check_config_treats_a_missing_headers_from_secret_like_a_missing_password(tmp_path):
    """--secrets covers every secret source its help names: headers_from's env and file too."""
    path = write(tmp_path, "http:\n  - name: api\n    service: s\n    url: 'http://127.0.0.1:1/'\n"
                           "    headers_from:\n      X-Api-Key: {env: STACKPROBE_UNSET_KEY}\n"
                           f"      X-Token: {{file: {tmp_path / 'absent'}}}\n")
    command = [sys.executable, "-m", "stackprobe.exporter", "check-config"]
    lenient = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=60)
    assert lenient.returncode == 0, lenient.stderr
    assert "STACKPROBE_UNSET_KEY (env) is not set" in lenient.stderr and "absent is not readable" in lenient.stderr
    strict = subprocess.run([*command, "--secrets=require", str(path)], capture_output=True, text=True, timeout=60)
    assert strict.returncode == 2 and f"error: {path}:6: http[0].headers_from.X-Api-Key" in strict.stderr, strict.stderr
    help_text = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "headers_from" in help_text
