"""Generates the README's reference tables (config fields per prober, every metric family)
from the code itself, so the documentation cannot drift: `python -m stackprobe.exporter.docs`
rewrites the marked sections of README.md, and a test fails when they are stale."""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from stackprobe.configsource import format_duration, parse_duration

from . import metrics
from .config import MODULE_FIELD, MODULES_KEY
from .probers import PROBERS

BEGIN = "<!-- BEGIN GENERATED: {name} (python -m stackprobe.exporter.docs) -->"
END = "<!-- END GENERATED: {name} -->"


def _is_duration(metadata: typing.Iterable[object]) -> bool:
    funcs = (getattr(m, "func", None) for m in metadata)  # parse_duration, or a partial of it with bounds
    return any(f is parse_duration or getattr(f, "func", None) is parse_duration for f in funcs)


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return "duration" if _is_duration(args[1:]) else _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping (" + ", ".join(annotation.model_fields) + ")"
    return getattr(annotation, "__name__", str(annotation)).replace("PosixPath", "path").replace("Path", "path")


def _default(name: str, info: FieldInfo, model: type) -> str:
    if name == "interval":
        return format_duration(model.default_interval)
    if name == "timeout":
        return f"{format_duration(model.default_timeout)} (at most the interval)"
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True) if info.default is PydanticUndefined else info.default
    if value is None or value == [] or value == {}:
        return ""
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and _is_duration(info.metadata):
        return format_duration(value)
    return f"`{value}`"


def config_tables() -> str:
    out = []
    for name, prober in PROBERS.items():
        model = prober.target_model
        out.append(f"#### `{name}`" + (f": {prober.summary}" if prober.summary else ""))
        out.append("")
        out.append("| field | type | default | meaning |")
        out.append("|---|---|---|---|")
        for field, info in model.model_fields.items():
            desc = (info.description or "").replace("|", "\\|").replace("\n", " ")
            kind = "duration" if _is_duration(info.metadata) else _type_name(info.annotation)
            out.append(f"| `{field}` | {kind} | {_default(field, info, model)} | {desc} |")
        out.append(f"| `{MODULE_FIELD}` | str |  | A module of `{MODULES_KEY}.{name}` whose fields this target "
                   "inherits (the target's own fields win). |")
        out.append("")
    return "\n".join(out).rstrip()


def metrics_table() -> str:
    out = ["| metric | type | labels | prober | meaning |", "|---|---|---|---|---|"]
    for fam in metrics.FAMILIES:
        labels = ", ".join(f"`{label}`" for label in fam.label_names)
        out.append(f"| `{fam.name}` | {fam.kind} | {labels} | {fam.prober or 'exporter'} | {fam.help} |")
    out.append("")
    out.append("Failure reasons (`reason` label of `stackprobe_probe_errors_total`): "
               + ", ".join(f"`{r}`" for r in metrics.ERROR_REASONS) + ".")
    return "\n".join(out)


SECTIONS = {"config": config_tables, "metrics": metrics_table}


def render(readme: str) -> str:
    """README text with every generated section replaced by its current content."""
    for name, build in SECTIONS.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(readme):
            raise ValueError(f"README.md has no section markers for {name!r}: add\n{begin}\n{end}")
        readme = pattern.sub(lambda _: f"{begin}\n{build()}\n{end}", readme)
    return readme


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    text = path.read_text(encoding="utf-8")
    new = render(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
        print(f"{path}: generated sections updated")
    else:
        print(f"{path}: generated sections already up to date")


if __name__ == "__main__":
    main()
