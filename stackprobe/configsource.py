"""YAML files validated by pydantic models, with every error pointing at file:line and field.

Both pipelines read hand-written YAML (the exporter config, the web config, the KPI catalogue).
pydantic does the typing; this module only remembers where each key and value sits in the file
so that an error reads `config.yaml:12: mysql[0].timeout: ...` instead of a Python traceback.
It also refuses, with the line, what would crash, freeze or silently mislead a loader (alias
bombs, duplicate keys, deep nesting, huge numbers, control characters, invalid UTF-8): the
exporter runs it on its event loop at every SIGHUP.
"""

from __future__ import annotations

import functools
import math
import os
import re
import stat
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


#: RFC 7230 token: the characters a header field name may hold.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Visible ASCII, spaces and tabs: no CR/LF (a second header or a body injected), no NUL or other
#: control character. Shared by every config that sets HTTP headers, sent or served.
_HEADER_VALUE_RE = re.compile(r"[\x20-\x7e\t]*")


def header_name(name: str) -> str:
    """Validator of a configured HTTP header name (the name is shown: it is not secret)."""
    if not _HEADER_NAME_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)")
    return name


def header_value(value: str) -> str:
    """Validator of a configured HTTP header value; the message never quotes it (it may be a key)."""
    if not _HEADER_VALUE_RE.fullmatch(value):
        raise ValueError("a header value may only hold visible ASCII characters and spaces (no line breaks or control characters)")
    return value


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


#: Any duration lies in [1ms, 365d]: below, a timer fires so often it freezes the event loop;
#: above, it overflows the timeouts of threading and asyncio.
MIN_DURATION_SECONDS = 0.001
MAX_DURATION_SECONDS = 365 * 86400.0


def parse_duration(value: Any, minimum: float = MIN_DURATION_SECONDS, maximum: float = MAX_DURATION_SECONDS) -> float:
    """Seconds from a Prometheus-style duration ("30s", "5m", "1h30m", "500ms") or a number,
    refused outside [minimum, maximum] (a field's own bounds, so its message names them)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value and _DURATION_RE.sub("", value) == "":
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(value))
    else:
        raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 1h30m, 500ms)")
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError("a duration must be positive")
    if math.isinf(seconds):
        raise ValueError(f"a duration that long is out of range {_in_one_unit(minimum)} to {_in_one_unit(maximum)}")
    if not minimum <= seconds <= maximum:
        raise ValueError(f"{_in_one_unit(seconds)} is out of range {_in_one_unit(minimum)} to {_in_one_unit(maximum)}")
    return seconds


def _in_one_unit(seconds: float) -> str:
    """1w, 365d, 10ms: a bound as people write it (format_duration would say 52w1d)."""
    for unit in ("w", "d", "h", "m", "s"):
        if seconds >= _UNIT_SECONDS[unit] and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds / _UNIT_SECONDS[unit]:g}{unit}"
    return f"{seconds * 1000:g}ms"


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


def bounded_duration(minimum: float, maximum: float) -> Any:
    """A Duration type that only accepts [minimum, maximum] seconds, and says so when refusing."""
    parse = functools.partial(parse_duration, minimum=minimum, maximum=maximum)
    return Annotated[float, BeforeValidator(parse), PlainSerializer(format_duration, return_type=str)]


#: Limits of what a hand-written config may contain. Each is far beyond any real file and far
#: below what would freeze the process: the loader runs on the exporter's event loop at SIGHUP.
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
#: Nodes after expanding every alias; an alias may repeat a value, never multiply a file
#: ("billion laughs": 400 bytes that expand to gigabytes).
MAX_EXPANDED_NODES = 100_000
MAX_NUMBER_DIGITS = 64
_INT_OR_FLOAT_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
#: C0 controls other than tab, LF and CR, DEL and C1 controls: never meant in a config value
#: (a NUL or an escape sequence written as "\x1b" in a double-quoted string).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class _Problem(Exception):
    """Raised inside the loader with the 1-based line (and the field, where known) it concerns."""

    def __init__(self, line: int | None, message: str, loc: Loc = ()):
        self.line, self.message, self.field = line, message, field_name(loc)
        super().__init__(message)


#: libyaml when PyYAML has it: 40x faster than the pure-Python parser (60 ms for the deploy example).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPENING_EVENTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSING_EVENTS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _check_depth(text: str) -> None:
    """Refuse deep nesting before composing: PyYAML's composers recurse once per level (the C one
    on the C stack), so a deep document would end in RecursionError or worse. The event parser
    keeps its own stack, so counting its events is safe at any depth."""
    depth = 0
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if isinstance(event, _OPENING_EVENTS):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Problem(event.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, _CLOSING_EVENTS):
            depth -= 1


def _check_tree(root: yaml.Node) -> None:
    """Refuse what pydantic and the line mapping must never see: duplicate keys, aliases that
    refer to themselves or multiply the document, huge numbers and control characters.

    Walks every distinct node once (aliases share nodes), so it costs O(file size).
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def expanded(node: yaml.Node, loc: Loc) -> int:
        """Nodes under node, aliases expanded; loc is the first path that reaches it."""
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise _Problem(node.start_mark.line + 1, "an alias refers to the value that contains it", loc)
        in_progress.add(key)
        line = node.start_mark.line + 1
        total = 1
        if isinstance(node, yaml.ScalarNode):
            _check_scalar(node, line, loc)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(expanded(item, loc + (i,)) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    name = key_node.value
                    if (key_node.tag, name) in first_line:
                        raise _Problem(key_node.start_mark.line + 1,
                                       f"duplicate key {name!r} (first at line {first_line[key_node.tag, name]}); "
                                       "YAML keeps only one of them", loc + (name,))
                    first_line[key_node.tag, name] = key_node.start_mark.line + 1
                child = loc + (str(key_node.value),)
                total += expanded(key_node, child) + expanded(value_node, child)
        in_progress.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise _Problem(line, f"more than {MAX_EXPANDED_NODES} values once aliases are expanded; "
                                 "an alias may repeat a value, not multiply the file", loc)
        sizes[key] = total
        return total

    expanded(root, ())


def _check_scalar(node: yaml.ScalarNode, line: int, loc: Loc) -> None:
    value = node.value
    if node.tag in _INT_OR_FLOAT_TAGS and len(value) > MAX_NUMBER_DIGITS:
        raise _Problem(line, f"a number of {len(value)} characters (at most {MAX_NUMBER_DIGITS})", loc)
    if (bad := _CONTROL_RE.search(value)) is not None:
        raise _Problem(line, f"control character U+{ord(bad.group()):04X} in a value", loc)


def _decode(path: str | Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        # The byte itself is not shown: a line of a config may hold something secret-adjacent.
        raise ConfigError(path, [(line, "", f"not valid UTF-8 (column {column}); save the file as UTF-8")]) from None


def _read(path: str | Path) -> str:
    try:
        # O_NONBLOCK: a FIFO (or a device) must not hang the open, which runs on the exporter's
        # event loop at SIGHUP; anything but a regular file is refused before reading.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(path, [(None, "", "not a regular file")])
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(path, [(None, "", f"cannot read file: {e.strerror or e}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(path, [(None, "", f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; not a config file")])
    return _decode(path, raw)


def _parse(path: str | Path, text: str) -> tuple[Any, yaml.Node | None]:
    loader = None
    try:
        _check_depth(text)
        loader = _YAML_LOADER(text)
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_tree(node)
        return loader.construct_document(node), node
    except _Problem as e:
        raise ConfigError(path, [(e.line, e.field, e.message)]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ConfigError(path, [(mark.line + 1 if mark else None, "", f"invalid YAML: {e.problem or e.context}")]) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, most controls)
        # libyaml counts the position in UTF-8 bytes, the pure-Python reader in characters.
        before = text.encode()[: e.position].decode(errors="ignore") if _YAML_LOADER is not yaml.SafeLoader \
            else text[: e.position]
        line = before.count("\n") + 1
        raise ConfigError(path, [(line, "", f"invalid YAML: character U+{e.character:04X} is not allowed")]) from None
    except yaml.YAMLError as e:
        raise ConfigError(path, [(None, "", f"invalid YAML: {e}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


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
    """Parse YAML and return (data, line of every key path).

    Everything that is not a plain config (syntax errors, invalid UTF-8, duplicate keys, alias
    bombs, deep nesting, huge numbers, control characters, an empty file) is a ConfigError with
    the line it concerns, never another exception.
    """
    text = _read(path) if text is None else text
    data, node = _parse(path, text)
    if node is None:
        raise ConfigError(path, [(1, "", "the file is empty (no YAML document)")])
    marks: dict[Loc, int] = {}
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
