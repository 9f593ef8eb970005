"""Checks of the generated files before any of them is written; a failure names the catalogue.

Run by `gen-rules build` and `check` between rendering and writing: every expression of every
rule file must parse as PromQL (promql-parser, always), then `promtool check rules` (which also
parses the annotation templates) and `amtool check-config` run on the rendered files when those
tools are installed. A problem is reported at the catalogue entry the rule or the routing came
from (`file:line: field: message`), so `gen-rules` exits 2 instead of writing a broken file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import promql_parser
import yaml

from .emit.files import ALERTMANAGER_FILE, INDICATORS_FILE, service_file
from .model import Model
from .spec import Where

#: How long an external checker may take before the build gives up on it.
TOOL_TIMEOUT = 120


def origins(model: Model) -> dict[str, tuple[Where, dict[str, Where]]]:
    """Per generated rule file: where the file as a whole and each rule by name came from."""
    shared = {r.record: r.where for r in model.recordings}
    out = {INDICATORS_FILE: (next(iter(shared.values())), shared)} if shared else {}
    for s in model.services:
        rules = {r.record: r.where for r in s.recordings} | {a.name: a.where for a in s.alerts}
        out[service_file(s.id)] = (s.where, rules)
    return out


def check(model: Model, outputs: Mapping[str, str]) -> None:
    """Raise ConfigError (at the catalogue's file:line) when an output would be invalid."""
    where = origins(model)
    for path, (_, rules) in where.items():
        for group in yaml.safe_load(outputs[path])["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule["record"]
                try:
                    promql_parser.parse(rule["expr"])
                except ValueError as e:
                    raise rules[name].error(f"the generated rule {name} is not valid PromQL ({e}): {rule['expr']}") from None
    _promtool(where, outputs)
    _amtool(model, outputs)


def _run(tool: str, args: list[str], files: Mapping[str, str]) -> tuple[int, str] | None:
    """Run a checker on the rendered files in a temporary directory; None when not installed."""
    binary = shutil.which(tool)
    if binary is None:
        return None
    with tempfile.TemporaryDirectory(prefix="gen-rules-") as tmp:
        for rel, text in files.items():
            (Path(tmp) / Path(rel).name).write_text(text, encoding="utf-8")
        result = subprocess.run([binary, *args, *(Path(rel).name for rel in files)], cwd=tmp,
                                capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    return result.returncode, (result.stdout + result.stderr).strip()


def _promtool(where: Mapping[str, tuple[Where, dict[str, Where]]], outputs: Mapping[str, str]) -> None:
    for path, (file_origin, rules) in where.items():
        found = _run("promtool", ["check", "rules"], {path: outputs[path]})
        if found is None:
            return
        code, output = found
        if code != 0:
            named = [rules[n] for n in re.findall(r'"([A-Za-z_:][A-Za-z0-9_:]*)"', output) if n in rules]
            origin = named[0] if named else file_origin
            raise origin.error(f"promtool check rules rejects the generated {Path(path).name}: {_gist(output)}")


def _amtool(model: Model, outputs: Mapping[str, str]) -> None:
    found = _run("amtool", ["check-config"], {ALERTMANAGER_FILE: outputs[ALERTMANAGER_FILE]})
    if found is not None and found[0] != 0:
        raise model.routing.where.error(f"amtool check-config rejects the generated alertmanager.yml: {_gist(found[1])}")


_CHATTER = re.compile(r"^(Checking \S+|SUCCESS.*|amtool: error: failed to validate.*)")


def _gist(output: str) -> str:
    """The checker's complaint on one line, without its Checking/SUCCESS chatter."""
    lines = (_CHATTER.sub("", ln.strip()).strip() for ln in output.splitlines())
    return " ".join(ln for ln in lines if ln)

