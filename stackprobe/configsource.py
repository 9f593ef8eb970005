"""YAML files validated by pydantic models, with every error pointing at file:line and field.

Both pipelines read hand-written YAML (the exporter config, the web config, the KPI catalogue).
pydantic does the typing; this module only remembers where each key and value sits in the file
so that an error reads `config.yaml:12: mysql[0].timeout: ...` instead of a Python traceback.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A mistake in a YAML file; str() gives `file:line: field: message` lines."""

    def __init__(self, path: str | Path, problems: list[tuple[int | None, str, str]]):
        self.path = str(path)
        self.problems = problems  # (line, field, message)
        super().__init__("\n".join(self.format_lines()))

    def format_lines(self) -> list[str]:
        out = []
        for line, field, message in self.problems:
            where = f"{self.path}:{line}" if line else self.path
            out.append(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        return out


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """Seconds from a Prometheus-style duration ("30s", "5m", "1h30m", "500ms") or a number."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value and _DURATION_RE.sub("", value) == "":
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(value))
    else:
        raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 1h30m, 500ms)")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration string for a number of seconds (inverse of parse_duration)."""
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    rest, parts = int(seconds), []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


#: Seconds in the model, written as a duration string in YAML.
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


def _marks(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = loc + (key.value if isinstance(key, yaml.ScalarNode) else str(key.value),)
            out[child] = key.start_mark.line + 1
            _marks(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _marks(item, loc + (i,), out)


def load_yaml(path: str | Path, text: str | None = None) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML and return (data, line of every key path). Syntax errors become ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8") if text is None else text
    except OSError as e:
        raise ConfigError(path, [(None, "", f"cannot read file: {e.strerror or e}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise ConfigError(path, [(line, "", f"invalid YAML: {e.problem}")]) from None
    except yaml.YAMLError as e:
        raise ConfigError(path, [(None, "", f"invalid YAML: {e}")]) from None
    marks: dict[Loc, int] = {}
    if node is not None:
        _marks(node, (), marks)
    return data, marks


def field_name(loc: Loc) -> str:
    """`mysql[0].timeout` from ('mysql', 0, 'timeout')."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def line_of(loc: Loc, marks: dict[Loc, int]) -> int | None:
    """The line of the deepest part of loc present in the file (a missing key points at its parent)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in marks:
            return marks[loc[:end]]
    return None


def _readable(loc: Loc) -> Loc:
    """Drop pydantic's internal location parts (union branch and validator names)."""
    return tuple(p for p in loc if isinstance(p, int) or not (str(p).startswith("function-") or "[" in str(p)))


def validate(model: type[M], data: Any, path: str | Path, marks: dict[Loc, int], context: dict | None = None) -> M:
    """Validate data against model; every problem is reported with its file line and field."""
    try:
        return model.model_validate({} if data is None else data, context=context)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False):
            loc = _readable(tuple(err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling; unknown keys are errors)"
            problems.append((line_of(loc, marks), field_name(loc), msg))
        raise ConfigError(path, problems) from None


def load(model: type[M], path: str | Path, text: str | None = None, context: dict | None = None) -> M:
    """Read, parse and validate a YAML file in one step."""
    data, marks = load_yaml(path, text)
    return validate(model, data, path, marks, context)
