"""Playbooks -> statements -> ledger: extraction in several writing styles, the seeds' ledgers,
drift caught by `gen-rules check`, and a sixth service drafted from Markdown through promtool."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fixtures.promtools import run
from stackprobe.rules import cli
from stackprobe.rules.spec import DEFAULT_DIRECTORY, load_catalogue
from stackprobe.rules.extract.command import default_playbooks, vocabulary
from stackprobe.rules.extract.statements import extract_text

REPO = Path(__file__).resolve().parents[1]
PLAYBOOKS = Path(__file__).parent / "fixtures" / "playbooks"
SEEDS = default_playbooks(REPO)
UNIVERSAL = "000_8f2abcb486e2ce85.txt"


@pytest.fixture(scope="module")
def vocab():
    return vocabulary(load_catalogue().indicators)


def facts(statements):
    """The fields a reader checks, one tuple per statement."""
    return [(s.line, s.kind, s.comparator, s.value, s.unit, s.for_, s.tier, s.indicator) for s in statements]


def seeds_or_skip() -> Path:
    if not SEEDS.is_dir():
        pytest.skip(f"the playbooks are not next to the repository ({SEEDS})")
    return SEEDS


# --- extraction -----------------------------------------------------------------------------------

def test_other_styles_tables_numbered_lists_prose_units_and_a_split_sentence(vocab):
    """tests/fixtures/playbooks/shop.md: other column names, a numbered list, prose over two lines,
    ms/s/GB/per minute, and a code block whose numbers are not statements."""
    got = facts(extract_text((PLAYBOOKS / "shop.md").read_text(), "shop.md", vocab))
    assert got == [
        (7, "threshold", None, 0.995, "ratio", None, "target", "availability"),
        (7, "threshold", "<", 0.99, "ratio", None, "warning", "availability"),
        (7, "threshold", "<", 0.98, "ratio", None, "critical", "availability"),
        (8, "threshold", "<", 0.8, "s", None, "target", "latency_p95"),
        (8, "threshold", ">", 1.5, "s", None, "warning", "latency_p95"),
        (8, "threshold", ">", 3.0, "s", None, "critical", "latency_p95"),
        (12, "threshold", "<", 0.02, "ratio", None, None, "app_error_ratio"),
        (13, "threshold", ">=", 0.75, "ratio", None, None, "redis_cache_hit_ratio"),
        (14, "threshold", "<", 0.85, "ratio", None, None, "disk_usage"),
        # "must not exceed / 90% for 10 minutes" spans two source lines: one statement, line 21
        (21, "threshold", ">", 0.9, "ratio", 600.0, None, "mysql_connections_usage"),
        (22, "threshold", ">", 0.95, "ratio", None, "critical", "mysql_connections_usage"),
        (24, "threshold", ">", 20.0, "per_minute", None, None, "mysql_slow_queries"),
        (28, "frequency", None, 21600.0, "s", None, None, None),
        (28, "threshold", "<=", 28800.0, "s", None, None, "backup_age"),
        (31, "retention", None, 2592000.0, "s", None, None, None),
        (35, "threshold", ">=", 50 * 1024**3, "bytes", None, None, None),  # unmapped: reported, not guessed
        (36, "duration", None, 900.0, "s", None, None, None),
    ]


def test_words_and_symbols_compare_alike(vocab):
    text = ("# Ops\n\n## Checks\n\n- Cache hit rate > 85%\n- Cache hit rate at or above 85 percent\n"
            "- Cache hit rate stays under 85%\n- backup completion no older than 1 day\n"
            "- Error rate exceeds 2% in 5 minutes\n- Disk usage more than 90% for 15 minutes\n")
    got = [(s.comparator, s.value, s.for_, s.window, s.indicator) for s in extract_text(text, "x.md", vocab)]
    assert got == [(">", 0.85, None, None, "redis_cache_hit_ratio"), (">=", 0.85, None, None, "redis_cache_hit_ratio"),
                   ("<", 0.85, None, None, "redis_cache_hit_ratio"), ("<=", 86400.0, None, None, "backup_age"),
                   (">", 0.02, None, 300.0, "app_error_ratio"), (">", 0.9, 900.0, None, "disk_usage")]


def test_several_numbers_in_one_sentence_give_one_statement_each(vocab):
    text = "# Ops\n\nReplication lag above 120 s is a warning; above 600 s critical.\n"
    got = [(s.line, s.value, s.tier, s.subject, s.indicator) for s in extract_text(text, "x.md", vocab)]
    assert got == [(3, 120.0, "warning", "Replication lag", "mysql_replication_lag"),
                   (3, 600.0, "critical", "Replication lag", "mysql_replication_lag")]


def test_code_is_skipped_and_later_lines_stay_right(vocab):
    text = "# Ops\n\n```\nalert if > 99%\nkeep 14 days\n```\n\n    indented > 50%\n\nCPU usage < 80%\n"
    assert facts(extract_text(text, "x.md", vocab)) == [(10, "threshold", "<", 0.8, "ratio", None, None, "cpu_usage")]


def test_priorities_windows_and_schedules():
    text = ("# Ops\n\n## Maintenance Windows\n\n- **Time**: Sundays 2:00 AM - 4:00 AM UTC\n\n## Incidents\n\n"
            "**HIGH (P1) - Response within 1 hour:**\n\n**Frequency**: Every 15 seconds\n**Time:** 6:00 PM\n")
    got = [(s.line, s.kind, s.comparator, s.value, s.priority) for s in extract_text(text, "x.md")]
    assert got == [(5, "maintenance_window", ">=", 7200.0, None), (5, "maintenance_window", "<", 14400.0, None),
                   (9, "priority", None, None, "P1"), (9, "response_time", "<=", 3600.0, "P1"),
                   (11, "frequency", None, 15.0, None), (12, "schedule", None, 64800.0, None)]


def test_ambiguous_subject_lists_candidates_instead_of_guessing(vocab):
    [st] = extract_text("# Ops\n\nHigh CPU/memory usage (> 80%)\n", "x.md", vocab)
    assert (st.indicator, st.candidates) == (None, ["cpu_usage", "memory_usage"])
    [unmapped] = extract_text("# Ops\n\nWidget flux below 3 %\n", "x.md", vocab)
    assert unmapped.indicator is None and unmapped.candidates == [] and unmapped.subject == "Widget flux"


def test_cli_json_contract_is_deterministic():
    args = ["extract", "--format", "json", str(PLAYBOOKS / "shop.md")]
    first, second = CliRunner().invoke(cli.main, args), CliRunner().invoke(cli.main, args)
    assert first.exit_code == 0, first.output
    assert first.output == second.output
    data = json.loads(first.output)
    assert {"file", "line", "section", "quote", "kind", "subject", "comparator", "value", "unit", "for", "tier",
            "indicator"} <= set(data[0])
    assert data[0]["file"] == "shop.md" and data[0]["section"] == ["Shop Checkout Service - Runbook", "Service level objectives"]
    for fmt in ("yaml", "table"):
        result = CliRunner().invoke(cli.main, ["extract", "--format", fmt, str(PLAYBOOKS / "shop.md")])
        assert result.exit_code == 0 and "shop.md" in result.output


def test_an_unreadable_playbook_exits_2_naming_it(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"# Ops\n\n\xff\xfe CPU usage > 80%\n")
    result = CliRunner().invoke(cli.main, ["extract", str(bad)])
    assert result.exit_code == 2 and f"{bad}: cannot read the playbook" in result.output


# --- the seeds' ledgers (golden) ------------------------------------------------------------------

def test_every_seed_statement_is_accounted_for():
    """The committed ledgers are the golden files: `gen-rules check` finds no drift in the five seeds."""
    seeds = seeds_or_skip()
    result = CliRunner().invoke(cli.main, ["check", "--out", str(REPO), "--playbooks", str(seeds)])
    assert result.exit_code == 0, result.output
    table = {line.split()[0]: line.split()[1] for line in result.output.splitlines() if line.endswith(".txt") or ".txt " in line}
    assert set(table) == {p.name for p in seeds.glob("*.txt")}
    for ledger in (DEFAULT_DIRECTORY / "ledger").glob("*.yaml"):
        data = yaml.safe_load(ledger.read_text())
        assert all("todo" not in e for e in data["statements"]), ledger
        assert not any(str(v).startswith("TODO") for v in data.get("chosen", {}).values()), ledger


# --- drift ----------------------------------------------------------------------------------------

@pytest.fixture()
def playbooks(tmp_path) -> Path:
    """A private copy of the seeds to edit."""
    out = tmp_path / "seeds"
    shutil.copytree(seeds_or_skip(), out)
    return out


def check(playbooks: Path, catalogue: Path | None = None):
    args = ["check", "--out", str(REPO), "--playbooks", str(playbooks)]
    if catalogue is not None:
        args += ["--catalogue", str(catalogue)]
    return CliRunner().invoke(cli.main, args)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_an_edited_value_fails_naming_file_line_and_quote(playbooks):
    edit(playbooks / UNIVERSAL, "- [ ] Cache hit rate > 85%", "- [ ] Cache hit rate > 88%")
    result = check(playbooks)
    assert result.exit_code == 1
    assert (f'{UNIVERSAL}:31: "Cache hit rate > 88%": changed: ledger/universal-gallery.yaml quotes '
            '"Cache hit rate > 85%" (value 0.85 -> 0.88; cache_hit_ratio.warning)') in result.output
    assert (f'{UNIVERSAL}:31: "Cache hit rate > 88%": value differs: the playbook says 0.88, '
            "universal-gallery/cache_hit_ratio.warning has 0.85") in result.output


def test_a_reworded_number_with_the_same_value_shows_both_quotes(playbooks):
    edit(playbooks / UNIVERSAL, "- [ ] Cache hit rate > 85%", "- [ ] Cache hit rate > 85.0%")
    result = check(playbooks)
    assert result.exit_code == 1
    assert (f'{UNIVERSAL}:31: "Cache hit rate > 85.0%": changed: ledger/universal-gallery.yaml quotes '
            '"Cache hit rate > 85%" (same value 0.85; cache_hit_ratio.warning)') in result.output


def test_an_edited_duration_fails_against_the_tier_it_backs(playbooks):
    vedfolnir = "002_33be61e04c552999.txt"
    edit(playbooks / vedfolnir, "CPU usage (alert if >80% for 5 minutes)", "CPU usage (alert if >80% for 10 minutes)")
    result = check(playbooks)
    assert result.exit_code == 1
    assert (f'{vedfolnir}:570: "CPU usage (alert if >80% for 10 minutes)": `for` differs: the playbook says 600 s, '
            "vedfolnir/cpu.warning has 300 s") in result.output


def test_an_added_threshold_line_is_unaccounted(playbooks):
    edit(playbooks / UNIVERSAL, "- [ ] Backup completion within last 24h\n",
         "- [ ] Backup completion within last 24h\n- [ ] Redis memory below 75% of maxmemory\n")
    result = check(playbooks)
    assert result.exit_code == 1
    assert f'{UNIVERSAL}:33: "Redis memory below 75% of maxmemory": threshold not accounted for in ledger/universal-gallery.yaml' \
        in result.output


def test_a_deleted_cited_line_is_reported_gone(playbooks):
    edit(playbooks / UNIVERSAL, "- [ ] Error rate < 2%\n", "")
    result = check(playbooks)
    assert result.exit_code == 1
    assert f'{UNIVERSAL}:29: "Error rate < 2%": cited in ledger/universal-gallery.yaml but no longer in the playbook' \
        in result.output


def test_moved_lines_pass(playbooks):
    text = (playbooks / UNIVERSAL).read_text()
    block = "### Evening System Review (15 minutes)"
    head, rest = text.split(block, 1)
    evening, tail = rest.split("## Weekly Operations", 1)
    lines = head.splitlines(keepends=True)
    checks = [i for i, line in enumerate(lines) if line.startswith("- [ ]")][:6]
    lines[checks[0]], lines[checks[-1]] = lines[checks[-1]], lines[checks[0]]  # reorder the morning checklist
    (playbooks / UNIVERSAL).write_text("# moved\n\n" + block + evening + "".join(lines) + "## Weekly Operations" + tail)
    result = check(playbooks)
    assert result.exit_code == 0, result.output


def test_a_catalogue_value_that_differs_from_its_statement_fails(playbooks, tmp_path):
    catalogue = tmp_path / "catalogue"
    shutil.copytree(DEFAULT_DIRECTORY, catalogue)
    edit(catalogue / "universal-gallery.yaml", "warning: {threshold: 85%, for: 30m}", "warning: {threshold: 88%, for: 30m}")
    result = check(playbooks, catalogue)
    assert result.exit_code == 1
    assert (f'{UNIVERSAL}:31: "Cache hit rate > 85%": value differs: the playbook says 0.85, '
            "universal-gallery/cache_hit_ratio.warning has 0.88") in result.output


def test_a_catalogue_threshold_citing_nothing_fails(playbooks, tmp_path):
    catalogue = tmp_path / "catalogue"
    shutil.copytree(DEFAULT_DIRECTORY, catalogue)
    ledger = catalogue / "ledger" / "universal-gallery.yaml"
    ledger.write_text(re.sub(r"\n  probe_staleness\.warning: .*", "", ledger.read_text()))
    result = check(playbooks, catalogue)
    assert result.exit_code == 1
    chosen = next(i for i, line in enumerate(ledger.read_text().splitlines(), 1) if line == "chosen:")
    assert (f'ledger/universal-gallery.yaml:{chosen}: "probe_staleness.warning": catalogue threshold cites no '
            "playbook statement") in result.output


def test_a_chosen_tier_the_catalogue_lacks_names_its_ledger_line(playbooks, tmp_path):
    catalogue = tmp_path / "catalogue"
    shutil.copytree(DEFAULT_DIRECTORY, catalogue)
    ledger = catalogue / "ledger" / "universal-gallery.yaml"
    ledger.write_text(ledger.read_text().replace("\nchosen:\n", "\nchosen:\n  no_such_kpi.warning: a reason\n", 1))
    line = ledger.read_text().splitlines().index("  no_such_kpi.warning: a reason") + 1
    result = check(playbooks, catalogue)
    assert result.exit_code == 1
    assert (f'ledger/universal-gallery.yaml:{line}: "no_such_kpi.warning": chosen: no such KPI tier in '
            "universal-gallery") in result.output


def test_a_maintenance_window_that_differs_from_its_statement_fails(playbooks, tmp_path):
    catalogue = tmp_path / "catalogue"
    shutil.copytree(DEFAULT_DIRECTORY, catalogue)
    edit(catalogue / "universal-gallery.yaml", "times: [{start_time: '01:00', end_time: '06:00'}]",
         "times: [{start_time: '01:00', end_time: '09:00'}]")
    edit(catalogue / "universal-gallery.yaml", "  - name: weekly\n    description: \"Weekly maintenance window: Sundays 2:00 AM - 4:00 AM UTC (2 hours maximum).\"\n    intervals:\n      - weekdays: [sunday]",
         "  - name: weekly\n    description: \"Weekly maintenance window: Sundays 2:00 AM - 4:00 AM UTC (2 hours maximum).\"\n    intervals:\n      - weekdays: [saturday]")
    result = check(playbooks, catalogue)
    assert result.exit_code == 1
    assert (f'{UNIVERSAL}:455: "Time: First Sunday 1:00 AM - 6:00 AM UTC": window ends at 06:00 in the playbook, '
            "universal-gallery/monthly ends at 09:00") in result.output
    assert (f'{UNIVERSAL}:446: "Time: Sundays 2:00 AM - 4:00 AM UTC": the playbook says sunday, '
            "universal-gallery/weekly is on saturday") in result.output


def test_a_response_time_that_differs_from_the_routing_fails(playbooks, tmp_path):
    catalogue = tmp_path / "catalogue"
    shutil.copytree(DEFAULT_DIRECTORY, catalogue)
    edit(catalogue / "client-templates.yaml", "      receiver: slack-manager-and-director\n      response_time: 1h",
         "      receiver: slack-manager-and-director\n      response_time: 3h")
    result = check(playbooks, catalogue)
    assert result.exit_code == 1
    assert ('004_2c9025c4afca5564.txt:296: "Response Time: 1 hour": response time differs: the playbook says 3600 s, '
            "client-templates routing P1 has 10800 s") in result.output


# --- a sixth service, from Markdown to rules that pass promtool --------------------------------

def test_draft_a_new_service_through_promtool(tmp_path, promtool):
    catalogue, out = tmp_path / "catalogue", tmp_path / "out"
    catalogue.mkdir()
    runner = CliRunner()
    drafted = runner.invoke(cli.main, ["extract", "--draft", "--service", "shop", "--catalogue", str(catalogue),
                                       str(PLAYBOOKS / "shop.md")])
    assert drafted.exit_code == 0, drafted.output
    service = yaml.safe_load((catalogue / "shop.yaml").read_text())
    tiers = {k["id"]: {t: k[t]["threshold"] for t in ("target", "warning", "critical") if t in k} for k in service["kpis"]}
    assert tiers["availability"] == {"target": 0.995, "warning": 0.99, "critical": 0.98}
    assert tiers["latency_p95"] == {"target": 0.8, "warning": 1.5, "critical": 3.0}
    assert tiers["db_connections_usage"] == {"warning": 0.9, "critical": 0.95}
    assert tiers["db_slow_queries"] == {"warning": 20.0}
    assert next(k for k in service["kpis"] if k["id"] == "db_slow_queries")["comparison"] == "above"
    again = runner.invoke(cli.main, ["extract", "--draft", "--service", "shop", "--catalogue", str(catalogue),
                                     str(PLAYBOOKS / "shop.md")])
    assert again.exit_code != 0 and "already has" in again.output

    built = runner.invoke(cli.main, ["build", "--catalogue", str(catalogue), "--out", str(out)])
    assert built.exit_code == 0, built.output
    generated = out / "rules" / "generated"
    checked = run(promtool, "check", "rules", generated / "shop.rules.yml", generated / "indicators.rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "shop.test.yml", cwd=generated / "tests")
    assert tested.returncode == 0, tested.stdout + tested.stderr

    # The ledger lists what the draft could not decide; check fails until a person decides it.
    checking = ["check", "--catalogue", str(catalogue), "--out", str(out), "--playbooks", str(PLAYBOOKS)]
    pending = runner.invoke(cli.main, checking)
    assert pending.exit_code == 1
    assert 'shop.md:35: "Free space on the upload volume of at least 50 GB.": to review' in pending.output
    ledger = catalogue / "ledger" / "shop.yaml"
    ledger.write_text(re.sub(r"todo: [^}]*", "out_of_scope: decided in review", ledger.read_text()))
    decided = runner.invoke(cli.main, checking)
    assert decided.exit_code == 0, decided.output


def test_every_wrong_or_missing_row_of_the_review_is_decided_in_a_ledger():
    """../shared/review/playbook-audit.tsv: each W, M and NM row has a decision in its service's ledger."""
    review = seeds_or_skip().parent / "review" / "playbook-audit.tsv"
    if not review.is_file():
        pytest.skip(f"no review at {review}")
    services = {"U": "universal-gallery", "P": "portfolio", "V": "vedfolnir", "G": "generative-art-gallery",
                "C": "client-templates"}
    rows = [line.split("\t") for line in review.read_text().splitlines()[1:] if line.strip()]
    open_rows = [(r[0], services[r[0][0]]) for r in rows if r[4] in ("W", "M", "NM")]
    assert len(open_rows) == 43  # the review's W/M/NM rows (52 statements: some rows hold several)
    decided = {s: yaml.safe_load((DEFAULT_DIRECTORY / "ledger" / f"{s}.yaml").read_text()).get("audit", {})
               for s in services.values()}
    missing = [row for row, service in open_rows if not decided[service].get(row, "").strip()]
    assert not missing, f"review rows without a decision: {missing}"
