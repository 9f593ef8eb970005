"""`gen-rules extract` and the playbook half of `gen-rules check`."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import click
import yaml

from stackprobe.configsource import ConfigError
from stackprobe.rules.spec import INDICATORS_FILE, ROUTING_FILE, load_indicators as load_indicator_library

from .draft import draft_ledger, draft_service
from .ledger import LEDGER_DIR, SUMMARY_COLUMNS, Problem, ledger_path, load_ledger, dump, summary, verify
from .statements import Statement, extract_file
from .vocabulary import Vocabulary


def vocabulary(indicators: Mapping[str, Any]) -> Vocabulary:
    return Vocabulary({iid: ind.phrases for iid, ind in indicators.items()})


def load_indicators(directory: Path | None) -> dict[str, Any]:
    """The indicator library a catalogue directory uses (its own, else the built-in one)."""
    try:
        return load_indicator_library(directory)
    except ConfigError as e:
        click.echo(f"gen-rules: invalid indicators:\n{e}", err=True)
        sys.exit(2)


def _table(statements: list[Statement]) -> str:
    rows = [("where", "kind", "tier", "value", "unit", "for", "indicator", "subject")]
    for s in statements:
        value = "" if s.value is None else f"{s.comparator or ''}{s.value:.12g}"
        indicator = s.indicator or ("?" + "|".join(s.candidates) if s.candidates else "")
        rows.append((f"{s.file}:{s.line}", s.kind, s.tier or "", value, s.unit or "",
                     "" if s.for_ is None else f"{s.for_:g}", indicator, s.subject))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def read_statements(path: Path, vocab: Vocabulary) -> list[Statement]:
    """The playbook's statements; an unreadable file (missing, not UTF-8) exits 2 naming it."""
    try:
        return extract_file(path, vocab)
    except (OSError, UnicodeDecodeError) as e:
        click.echo(f"gen-rules: {path}: cannot read the playbook: {e}", err=True)
        sys.exit(2)


def render_statements(statements: list[Statement], fmt: str) -> str:
    data = [s.as_dict() for s in statements]
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120).rstrip()
    return _table(statements)


def _write_new(path: Path, text: str) -> None:
    """Write atomically; a draft never replaces a reviewed file."""
    if path.exists():
        raise click.ClickException(f"{path} exists; a draft never overwrites a reviewed file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def write_draft(path: Path, service_id: str | None, catalogue_dir: Path, load) -> list[str]:
    """Write `<id>.yaml` and `ledger/<id>.yaml` for a playbook the catalogue does not know yet."""
    indicators = load_indicators(catalogue_dir)
    statements = read_statements(path, vocabulary(indicators))
    title = next((line.lstrip("# ").strip() for line in path.read_text(encoding="utf-8").splitlines()
                  if line.startswith("# ")), path.stem)
    service_id = service_id or _slug(title)
    service_file = catalogue_dir / f"{service_id}.yaml"
    known = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in catalogue_dir.glob("*.yaml")
             if p.name not in (INDICATORS_FILE, ROUTING_FILE)]
    if service_file.exists() or any(isinstance(d, dict) and d.get("playbook") == path.name for d in known):
        raise click.ClickException(f"the catalogue already has {service_id} / {path.name}; edit its ledger instead")
    text = draft_service(service_id, title, path.name, statements, indicators)
    _write_new(service_file, text)
    try:
        service = load(catalogue_dir).service(service_id)
    except SystemExit:
        service_file.unlink()
        raise
    ledger = draft_ledger(service_id, path.name, statements, service)
    ledger_file = ledger_path(catalogue_dir, service_id)
    _write_new(ledger_file, dump(ledger, f"Ledger of {path.name}, drafted by `gen-rules extract --draft`; "
                                         "decide every `todo`."))
    return [str(service_file), str(ledger_file)]


def default_playbooks(root: Path) -> Path:
    """`../shared/seeds` beside the repository root (as CI clones it), or beside an ancestor
    (a git worktree under the checkout's parent); the first that exists."""
    for d in [root.resolve(), *root.resolve().parents]:
        if (d.parent / "shared" / "seeds").is_dir():
            return d.parent / "shared" / "seeds"
    return root.resolve().parent / "shared" / "seeds"


def verify_playbooks(model: Any, catalogue_dir: Path, playbooks: Path) -> tuple[list[Problem], list[tuple[str, dict[str, int]]]]:
    """Check every service's playbook against its ledger; returns (problems, per-playbook counts).

    A catalogue directory without a `ledger/` folder (a test catalogue) is not verified, and says so.
    """
    if not (catalogue_dir / LEDGER_DIR).is_dir():
        click.echo(f"gen-rules: {catalogue_dir} has no {LEDGER_DIR}/ folder: playbooks not verified", err=True)
        return [], []
    if not playbooks.is_dir():
        click.echo(f"gen-rules: playbooks directory {playbooks} not found; pass --playbooks DIR", err=True)
        sys.exit(2)
    vocab = vocabulary(load_indicators(catalogue_dir))
    problems: list[Problem] = []
    counts: list[tuple[str, dict[str, int]]] = []
    for service in model.services:
        source = playbooks / service.playbook
        lpath = ledger_path(catalogue_dir, service.id)
        if not source.is_file():
            problems.append(Problem(service.playbook, 0, service.id, f"playbook not found in {playbooks}"))
            continue
        if not lpath.is_file():
            problems.append(Problem(service.playbook, 0, service.id, f"no ledger {lpath}: start one with "
                                                                     "`gen-rules extract --draft`"))
            continue
        try:
            ledger = load_ledger(lpath)
        except ConfigError as e:
            click.echo(f"gen-rules: invalid ledger:\n{e}", err=True)
            sys.exit(2)
        rel = f"{lpath.parent.name}/{lpath.name}"
        problems += verify(service, ledger, read_statements(source, vocab), rel)
        counts.append((service.playbook, summary(ledger, service)))
    return problems, sorted(counts)


def summary_table(counts: list[tuple[str, dict[str, int]]]) -> str:
    columns = ["found"] + [d for d in SUMMARY_COLUMNS if any(c[d] for _, c in counts)]
    names = ["statements"] + [SUMMARY_COLUMNS[d] for d in columns[1:]]
    rows = [["playbook"] + names] + [[pb] + [str(c[d]) for d in columns] for pb, c in counts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def make_command(load, default_catalogue: Path) -> click.Command:
    """The `extract` command; `load(dir)` is the CLI's catalogue loader (exit 2 on a bad catalogue)."""

    @click.command("extract")
    @click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--format", "fmt", type=click.Choice(["json", "yaml", "table"]), default="json", show_default=True)
    @click.option("--catalogue", "catalogue_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                  help="Catalogue whose indicator phrases map subjects (and where --draft writes). Default: the built-in one.")
    @click.option("--draft", "as_draft", is_flag=True,
                  help="Write a draft catalogue file and ledger for a playbook the catalogue does not know yet.")
    @click.option("--service", "service_id", help="Service id of the draft (default: from the playbook's title).")
    def extract(files: tuple[Path, ...], fmt: str, catalogue_dir: Path | None, as_draft: bool, service_id: str | None) -> None:
        """Print every operational statement of the playbooks (thresholds, objectives, windows,
        frequencies, priorities, response times, retention) with file, line and section."""
        if as_draft:
            if len(files) != 1:
                raise click.UsageError("--draft takes exactly one playbook")
            for written in write_draft(files[0], service_id, catalogue_dir or default_catalogue, load):
                click.echo(f"gen-rules: wrote {written}")
            return
        vocab = vocabulary(load_indicators(catalogue_dir))
        click.echo(render_statements([s for f in files for s in read_statements(f, vocab)], fmt))

    return extract
