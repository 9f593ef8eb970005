"""`gen-rules build` / `gen-rules check`: compile the KPI catalogue into every generated file.

The pipeline, one way: rules/spec.py loads and validates the catalogue, rules/model.py resolves
it once, and every output comes from one emitter, `(model) -> {path relative to --out: content}`,
listed once in EMITTERS (rules/emit/*, grafana/provisioning.py). `build` renders everything in
memory, checks it (rules/verify.py), then replaces files atomically; a bad catalogue or an
invalid output (exit 2, at the catalogue's file:line) or any failure writes nothing. `check`
renders and checks the same way and compares with what is on disk, exiting 1 with a unified
diff when the committed files are stale.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from stackprobe.configsource import ConfigError
from stackprobe.grafana import provisioning as grafana_provisioning

from . import verify
from .emit import alertmanager, kubernetes, prometheus, promtests
from .model import Model, resolve
from .spec import load_catalogue
from .extract.command import default_playbooks, make_command, summary_table, verify_playbooks
from .spec import DEFAULT_DIRECTORY

Emitter = Callable[[Model], dict[str, str]]

#: Every output of `gen-rules build`; adding an output format is one entry here.
EMITTERS: list[Emitter] = [
    prometheus.emit,
    promtests.emit,
    alertmanager.emit,
    grafana_provisioning.emit,
    kubernetes.emit,
]

#: Extra outputs chosen with --format.
FORMATS: dict[str, Emitter] = {
    "prometheusrule": prometheus.emit_prometheusrule,
    "configmap": grafana_provisioning.emit_configmaps,
}


def render(model: Model, formats: tuple[str, ...] = ()) -> dict[str, str]:
    """All outputs in memory; two emitters claiming one path is a bug, not a silent overwrite."""
    out: dict[str, str] = {}
    for emitter in EMITTERS + [FORMATS[f] for f in formats]:
        for path, text in emitter(model).items():
            if path in out:
                raise RuntimeError(f"two emitters write {path}")
            out[path] = text
    return dict(sorted(out.items()))


def managed_dirs(paths: list[str]) -> set[str]:
    """The `.../generated` folders the outputs live in; stale files are only removed from these."""
    dirs = set()
    for p in paths:
        parts = Path(p).parts
        if "generated" not in parts:
            raise RuntimeError(f"output {p} is not under a `generated` folder")
        dirs.add(str(Path(*parts[: parts.index("generated") + 1])))
    return dirs


def on_disk(root: Path, dirs: set[str]) -> dict[str, str]:
    found = {}
    for d in sorted(dirs):
        for f in sorted((root / d).rglob("*")):
            if f.is_file():
                found[f.relative_to(root).as_posix()] = f.read_text(encoding="utf-8")
    return found


#: Mode of a new generated file (mkstemp's 0600 would hide rules from a Prometheus running as
#: another user); a replaced file keeps its own mode.
NEW_FILE_MODE = 0o644


def write(root: Path, outputs: dict[str, str]) -> tuple[list[str], list[str]]:
    """Write changed files and delete stale ones; returns (written, removed).

    Every changed file is first written in full to a temporary file next to it and flushed to
    disk; only when all of them are there does each replace its target (os.replace, atomic on
    POSIX), so a failure or a crash leaves every file either old or new, never half-written.
    """
    current = on_disk(root, managed_dirs(list(outputs)))
    temps: list[tuple[Path, Path]] = []
    try:
        for rel, text in outputs.items():
            if current.get(rel) == text:
                continue
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            temps.append((Path(tmp), target))
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fchmod(f.fileno(), target.stat().st_mode & 0o7777 if target.exists() else NEW_FILE_MODE)
                os.fsync(f.fileno())
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, target in temps:
        os.replace(tmp, target)
    stale = sorted(set(current) - set(outputs))
    for rel in stale:
        (root / rel).unlink()
    for directory in {t.parent for _, t in temps} | {(root / rel).parent for rel in stale}:
        _fsync_dir(directory)
    return [str(t.relative_to(root)) for _, t in temps], stale


def _fsync_dir(directory: Path) -> None:
    """Make the renames in a directory durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def diff(root: Path, outputs: dict[str, str]) -> str:
    """A unified diff from what is on disk to what the catalogue generates ('' when in step)."""
    current = on_disk(root, managed_dirs(list(outputs)))
    chunks = []
    for rel in sorted(set(current) | set(outputs)):
        old, new = current.get(rel), outputs.get(rel)
        if old == new:
            continue
        chunks += difflib.unified_diff(
            (old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True),
            fromfile=f"a/{rel}" if old is not None else "/dev/null",
            tofile=f"b/{rel}" if new is not None else "/dev/null",
        )
    return "".join(chunks)


def _load(path: Path | None) -> Model:
    try:
        return resolve(load_catalogue(path))
    except ConfigError as e:
        click.echo(f"gen-rules: invalid catalogue:\n{e}", err=True)
        sys.exit(2)


def _verified(model: Model, formats: tuple[str, ...]) -> dict[str, str]:
    """Render and verify; exit 2 at the catalogue's file:line when an output would be invalid."""
    outputs = render(model, formats)
    try:
        verify.check(model, outputs)
    except ConfigError as e:
        click.echo(f"gen-rules: the catalogue would generate invalid files (nothing written):\n{e}", err=True)
        sys.exit(2)
    return outputs


_catalogue_option = click.option(
    "--catalogue", "catalogue_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Catalogue directory (service YAMLs; optional indicators.yaml and routing.yaml). Default: the built-in one.")
_out_option = click.option(
    "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
    help="Root the outputs are written under (rules/generated/...): the repository root.")
_format_option = click.option(
    "--format", "formats", type=click.Choice(sorted(FORMATS)), multiple=True,
    help="Also emit this format (repeatable): prometheusrule = a prometheus-operator PrometheusRule manifest; "
         "configmap = the dashboards as Kubernetes ConfigMaps labelled for the Grafana sidecar.")


@click.group()
def main() -> None:
    """Compile the KPI catalogue into Prometheus rules, rule tests and an Alertmanager config."""


main.add_command(make_command(_load, DEFAULT_DIRECTORY))


@main.command()
@_catalogue_option
@_out_option
@_format_option
def build(catalogue_dir: Path | None, out: Path, formats: tuple[str, ...]) -> None:
    """Write every generated file under --out, after checking it: every rule parses as PromQL, and
    promtool check rules / amtool check-config accept the files when installed. Exit 2 names the
    catalogue's file:line; nothing is written if anything fails."""
    outputs = _verified(_load(catalogue_dir), formats)
    try:
        written, removed = write(out, outputs)
    except OSError as e:
        click.echo(f"gen-rules: cannot write under {out}: {e} (no file was replaced)", err=True)
        sys.exit(1)
    click.echo(f"gen-rules: {len(outputs)} files, {len(written)} written, {len(removed)} stale removed")


@main.command()
@_catalogue_option
@_out_option
@_format_option
@click.option("--playbooks", type=click.Path(file_okay=False, path_type=Path),
              help="Directory of the playbooks the ledgers account for. Default: ../shared/seeds beside --out "
                   "(or beside one of its parent directories).")
def check(catalogue_dir: Path | None, out: Path, formats: tuple[str, ...], playbooks: Path | None) -> None:
    """Exit 1 with a diff when the files under --out differ from what `build` would write, or when
    a playbook drifted from its ledger (file:line and the quote of each difference)."""
    catalogue = _load(catalogue_dir)
    delta = diff(out, _verified(catalogue, formats))
    problems, counts = verify_playbooks(catalogue, catalogue_dir or DEFAULT_DIRECTORY,
                                        playbooks or default_playbooks(out))
    if delta:
        click.echo(delta, nl=False)
        click.echo("gen-rules: generated files are stale; run `gen-rules build` and commit the result", err=True)
    else:
        click.echo("gen-rules: generated files are up to date")
    if counts:
        click.echo(summary_table(counts))
    for problem in problems:
        click.echo(f"gen-rules: {problem}", err=True)
    if problems:
        click.echo(f"gen-rules: {len(problems)} differences between the playbooks, their ledgers and the catalogue",
                   err=True)
    if delta or problems:
        sys.exit(1)
