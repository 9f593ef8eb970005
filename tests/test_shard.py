"""Sharding (--shard=INDEX/COUNT): replicas over one config own disjoint sets of targets that
together are the whole config, a reload re-shards, /probe names the owner, and the assignment is
the one Prometheus' hashmod relabelling computes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from fixtures.exporter import parse_scrape
from fixtures.net import wait_until
from fixtures.prom_stack import Prometheus, StackprobeExporter
from stackprobe.exporter import config as config_mod
from stackprobe.exporter.shard import Shard, owner_of

REPO = Path(__file__).resolve().parent.parent
DEPLOY_CONFIG = REPO / "deploy" / "stackprobe.yml"
SECRETS = {"STACKPROBE_MYSQL_PASSWORD": "x", "STACKPROBE_REDIS_PASSWORD": "y"}


def backup_config(directory: Path, names: list[str]) -> str:
    """Backup targets (the cheapest prober: a directory listing) over one directory."""
    (directory / "db.sql").write_text("-- dump\n")
    os.utime(directory / "db.sql", (time.time() - 3600,) * 2)
    targets = [{"name": n, "service": "portfolio", "path": str(directory), "globs": ["*.sql"],
                "interval": "1s", "timeout": "1s"} for n in names]
    return yaml.safe_dump({"backup": targets})


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_every_target_of_the_deploy_config_has_exactly_one_owner(monkeypatch, count):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    config = config_mod.parse(DEPLOY_CONFIG)
    parts = [Shard(i, count).select(config) for i in range(count)]
    owned = [{t.name for t in part.targets} for part in parts]
    assert sum(len(o) for o in owned) == len(config.targets)  # no overlap
    assert set().union(*owned) == {t.name for t in config.targets}  # no gap
    for i, part in enumerate(parts):
        # Every target a shard does not probe is remembered with its real owner, for /probe.
        assert set(part.elsewhere) == {t.name for t in config.targets} - owned[i]
        assert all(part.elsewhere[n] == f"{owner_of(n, count)}/{count}" for n in part.elsewhere)
        assert [t for t in config.targets if t.name in owned[i]] == list(part.targets)  # file order kept


def test_the_owner_depends_on_the_name_only(tmp_path):
    """Adding, removing or reordering other targets never moves a target to another shard."""
    names = [f"target-{i}" for i in range(200)]
    full, changed = tmp_path / "full.yml", tmp_path / "changed.yml"
    full.write_text(backup_config(tmp_path, names))
    changed.write_text(backup_config(tmp_path, list(reversed(names[50:])) + ["added-1", "added-2"]))

    def owners(path):
        config = config_mod.parse(path)
        return {t.name: i for i in range(4) for t in Shard(i, 4).select(config).targets}

    before, after = owners(full), owners(changed)
    assert {n: after[n] for n in names[50:]} == {n: before[n] for n in names[50:]}
    assert set(before.values()) == {0, 1, 2, 3}  # and 200 names do spread over all four


@pytest.mark.parametrize("spec, message", [
    ("2/2", "INDEX between 0 and COUNT-1"), ("0/0", "COUNT must be at least 1"), ("1", "is not INDEX/COUNT"),
    ("-1/2", "is not INDEX/COUNT"), ("a/b", "is not INDEX/COUNT"),
])
def test_a_bad_shard_spec_exits_2_with_a_reason(tmp_path, spec, message):
    (tmp_path / "c.yml").write_text(backup_config(tmp_path, ["a"]))
    result = subprocess.run([sys.executable, "-m", "stackprobe.exporter", "check-config", f"--shard={spec}",
                             str(tmp_path / "c.yml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--shard" in result.stderr and message in result.stderr


def _owned(exporter: StackprobeExporter) -> tuple[set[str], dict]:
    """The targets a running replica reports, and its whole scrape."""
    series = parse_scrape(httpx.get(exporter.url + "/metrics", timeout=30).text)
    return {dict(ls)["target"] for n, ls in series if n == "stackprobe_probe_success"}, series


def test_two_replicas_split_one_config_and_reshard_on_reload(tmp_path):
    names = [f"dump-{i:02d}" for i in range(12)]
    config = tmp_path / "stackprobe.yml"
    config.write_text(backup_config(tmp_path, names))
    # One replica from the flag, one from the environment, as a StatefulSet would set it.
    replicas = [StackprobeExporter(config, tmp_path, {}, ["--shard=0/2"], name="shard-0"),
                StackprobeExporter(config, tmp_path, {"STACKPROBE_SHARD": "1/2"}, name="shard-1")]
    try:
        expected = [{n for n in names if owner_of(n, 2) == i} for i in (0, 1)]
        assert all(expected)  # both shards own something, or the test would prove little
        for i, replica in enumerate(replicas):
            wait_until(lambda: _owned(replica)[0] == expected[i], timeout=30, what=f"shard {i}'s targets probed")
            series = _owned(replica)[1]
            assert series[("stackprobe_shard_info", frozenset({("index", str(i)), ("count", "2")}))] == 1
            assert series[("stackprobe_targets", frozenset({("prober", "backup")}))] == len(expected[i])

        # /probe: a replica runs its own targets and names the owner of the others.
        mine, theirs = sorted(expected[0])[0], sorted(expected[1])[0]
        assert httpx.get(replicas[0].url + "/probe", params={"target": mine}, timeout=30).status_code == 200
        answer = httpx.get(replicas[0].url + "/probe", params={"target": theirs}, timeout=30)
        assert answer.status_code == 421
        assert f"{theirs!r} is probed by shard 1/2" in answer.text
        assert httpx.get(replicas[0].url + "/probe", params={"target": "no-such"}, timeout=30).status_code == 400

        # A reload re-shards: new targets go to their owner, removed ones leave theirs.
        names = names[3:] + [f"new-{i}" for i in range(6)]
        config.write_text(backup_config(tmp_path, names))
        expected = [{n for n in names if owner_of(n, 2) == i} for i in (0, 1)]
        for i, replica in enumerate(replicas):
            replica.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: _owned(replica)[0] == expected[i], timeout=30, what=f"shard {i} after SIGHUP")
        assert "shard=1/2" in (tmp_path / "shard-1.log").read_text()
    finally:
        for replica in replicas:
            replica.stop()


def _readme_probe_job() -> dict:
    """The hashmod scrape job shown in the README's "Running at scale" section."""
    text = (REPO / "README.md").read_text()
    block = text[text.index("**`/probe`-style setups**"):]
    block = block[block.index("```yaml\n") + 8:]
    [job] = yaml.safe_load(block[:block.index("```")])
    return job


def test_the_readme_hashmod_relabelling_sends_each_name_to_its_owner(tmp_path):
    """The README's relabelling for /probe-style setups, run by a real Prometheus: every target
    name is scraped from the replica that `--shard` makes its owner."""
    job = _readme_probe_job()
    names = [f"target-{i:03d}" for i in range(40)] + job["static_configs"][0]["targets"]
    job.update(static_configs=[{"targets": names}], scrape_interval="1h")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": [job]}))
    prometheus = Prometheus(tmp_path / "prometheus.yml", tmp_path)
    try:
        targets = wait_until(lambda: len(prometheus.targets()) == len(names) and prometheus.targets(),
                             timeout=30, what="Prometheus' targets")
    finally:
        prometheus.stop()
    scraped_from = {t["labels"]["instance"]: t["scrapeUrl"].split("//", 1)[1].split(".", 1)[0] for t in targets}
    assert scraped_from == {n: f"stackprobe-{owner_of(n, 2)}" for n in names}
