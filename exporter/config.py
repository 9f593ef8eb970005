"""The exporter's YAML config: one list of targets per prober, validated into typed models.

    modules:                       # optional, blackbox-style reusable settings per prober
      mysql:
        monitoring: {user: stackprobe, password_env: STACKPROBE_MYSQL_PASSWORD}
    mysql:   [ {name, service, module: monitoring, host, ...}, ... ]
    redis:   [ ... ]
    http:    [ ... ]

The other top-level keys are the discovered probers' names; errors name file, line and field.
A target naming a module inherits each of its fields that it does not set itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pydantic import create_model

from stackprobe.configsource import (
    MAX_EXPANDED_NODES,
    ConfigError,
    Loc,
    StrictModel,
    field_name,
    line_of,
    load_yaml,
    validate,
)

from .probers import PROBERS
from .probers.base import NAME_PATTERN, TargetConfig

#: The config `stackprobe` runs when no --config is given (shipped inside the package).
DEFAULT_CONFIG_NAME = "default-config.yaml"

_FileModel = create_model(  # type: ignore[call-overload]
    "ExporterConfigFile",
    __base__=StrictModel,
    **{name: (list[p.target_model], []) for name, p in PROBERS.items()},  # type: ignore[valid-type]
)


@dataclass(frozen=True)
class Config:
    """A validated config: every target, in file order, plus where it came from."""

    source: str
    targets: tuple[TargetConfig, ...]
    #: Targets of the file that another shard probes: name -> the owner as INDEX/COUNT (shard.py).
    elsewhere: Mapping[str, str] = field(default_factory=dict)

    def prober_of(self, target: TargetConfig) -> str:
        return next(name for name, p in PROBERS.items() if isinstance(target, p.target_model))

    def by_name(self) -> dict[str, TargetConfig]:
        return {t.name: t for t in self.targets}


def parse(path: str | Path, text: str | None = None) -> Config:
    """Load and validate a config file; raises ConfigError naming file:line:field."""
    data, marks = load_yaml(path, text)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(path, [(1, "", "the config must be a mapping of prober name to a list of targets")])
    if data is not None and MODULES_KEY in data:
        data = apply_modules(data, marks, path)
    model = validate(_FileModel, data, path, marks)
    targets: list[TargetConfig] = []
    seen: dict[str, tuple] = {}
    problems = []
    for prober in PROBERS:
        for i, target in enumerate(getattr(model, prober)):
            loc = (prober, i, "name")
            if target.name in seen:
                problems.append((line_of(loc, marks), f"{prober}[{i}].name",
                                 f"duplicate target name {target.name!r} (first used at line {line_of(seen[target.name], marks)})"))
            else:
                seen[target.name] = loc
            targets.append(target)
    if problems:
        raise ConfigError(path, problems)
    return Config(str(path), tuple(targets))


#: Target fields that only say when to probe: changing them leaves the counters meaningful.
SCHEDULE_FIELDS = ("interval", "timeout")


def keeps_counters(old: TargetConfig, new: TargetConfig) -> bool:
    """True if `new` probes exactly what `old` did, only on another schedule, so the target's
    counters (errors per reason, histograms) carry on rather than restart from zero. Any other
    change (address, credentials, checks, service) makes them count something else."""
    if type(old) is not type(new):
        return False
    return old.model_copy(update={f: getattr(new, f) for f in SCHEDULE_FIELDS}) == new


#: The top-level key holding the reusable per-prober settings.
MODULES_KEY = "modules"
#: The target field naming the module it inherits from.
MODULE_FIELD = "module"


def apply_modules(data: dict, marks: dict[Loc, int], path: str | Path) -> dict:
    """The config with `modules:` folded into the targets that name one.

    A target's own fields win over its module's (one level: a nested mapping such as `tls` is
    taken whole from whichever sets it). Inherited fields keep the module's line numbers, so a
    mistake in a module is reported where it is written.
    """
    problems: list[tuple[int | None, str, str]] = []

    def problem(loc: Loc, message: str) -> None:
        problems.append((line_of(loc, marks), field_name(loc), message))

    modules = _check_modules(data[MODULES_KEY], marks, problem)
    module_marks: dict[tuple, list[tuple[Loc, int]]] = {}  # (prober, module) -> lines below it
    for loc, line in marks.items():
        if len(loc) > 3 and loc[0] == MODULES_KEY:
            module_marks.setdefault(loc[1:3], []).append((loc[3:], line))
    out = {k: v for k, v in data.items() if k != MODULES_KEY}
    inherited_values = 0
    for prober, targets in out.items():
        if prober not in PROBERS or not isinstance(targets, list):
            continue  # the model reports these
        merged_targets = []
        for i, target in enumerate(targets):
            if not isinstance(target, dict) or MODULE_FIELD not in target:
                merged_targets.append(target)
                continue
            name = target[MODULE_FIELD]
            module = modules.get(prober, {}).get(name) if isinstance(name, str) else None
            if module is None:
                known = ", ".join(modules.get(prober, {})) or "none"
                problem((prober, i, MODULE_FIELD), f"unknown module {name!r} (modules.{prober} has: {known})")
                merged_targets.append({k: v for k, v in target.items() if k != MODULE_FIELD})
                continue
            merged = {k: v for k, v in module.items() if k not in target}
            merged.update((k, v) for k, v in target.items() if k != MODULE_FIELD)
            for rel, line in module_marks.get((prober, name), ()):
                if rel[0] not in target:
                    marks.setdefault((prober, i) + rel, line)
                    inherited_values += 1
            if inherited_values > MAX_EXPANDED_NODES:
                problem((prober, i, MODULE_FIELD), f"modules expand to more than {MAX_EXPANDED_NODES} values")
                raise ConfigError(path, problems)
            merged_targets.append(merged)
        out[prober] = merged_targets
    if problems:
        raise ConfigError(path, problems)
    return out


def _check_modules(section: object, marks: dict[Loc, int], problem) -> dict[str, dict[str, dict]]:
    """modules: {prober: {name: {field: value}}}, with only fields the prober's targets have."""
    if not isinstance(section, dict):
        problem((MODULES_KEY,), "must map prober names to their modules")
        return {}
    out: dict[str, dict[str, dict]] = {}
    for prober, named in section.items():
        loc: Loc = (MODULES_KEY, str(prober))
        if prober not in PROBERS:
            problem(loc, f"unknown prober (one of: {', '.join(PROBERS)})")
            continue
        if not isinstance(named, dict):
            problem(loc, "must map module names to target fields")
            continue
        fields = set(PROBERS[prober].target_model.model_fields) - {"name"}
        for name, module in named.items():
            mloc = loc + (str(name),)
            if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
                problem(mloc, f"module name must match {NAME_PATTERN}")
            elif not isinstance(module, dict):
                problem(mloc, "a module is a mapping of target fields")
            else:
                for key in module:
                    if key not in fields:
                        problem(mloc + (str(key),), "unknown field for a module (any target field but name)")
                out.setdefault(prober, {})[name] = module
    return out


def load_default() -> Config:
    """The embedded default config, for `stackprobe` run without --config."""
    ref = resources.files(__package__).joinpath(DEFAULT_CONFIG_NAME)
    return parse(f"<embedded {DEFAULT_CONFIG_NAME}>", ref.read_text(encoding="utf-8"))
