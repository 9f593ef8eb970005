"""The exporter's YAML config: one list of targets per prober, validated into typed models.

    mysql:   [ {name, service, interval, timeout, host, ...}, ... ]
    redis:   [ ... ]
    http:    [ ... ]

The top-level keys are the discovered probers' names; errors name file, line and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pydantic import create_model

from stackprobe.configsource import ConfigError, StrictModel, line_of, load_yaml, validate

from .probers import PROBERS
from .probers.base import TargetConfig

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


def load_default() -> Config:
    """The embedded default config, for `stackprobe` run without --config."""
    ref = resources.files(__package__).joinpath(DEFAULT_CONFIG_NAME)
    return parse(f"<embedded {DEFAULT_CONFIG_NAME}>", ref.read_text(encoding="utf-8"))
