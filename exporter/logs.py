"""Log lines a person can read and a machine can parse, like the Go exporters' `--log.format`.

One convention for every log call in the code base: the message template names its fields,

    log.warning("probe failed target=%s reason=%s", target.name, reason)

and the formatter turns each ` key=%s` of the template into a field of its own, rendered as
logfmt (`ts=... level=warn logger=... msg="probe failed" target=web reason=timeout`, values
quoted where logfmt needs it) or as one JSON object per line (numbers and bools as JSON values,
as `"targets": 8`). A message that does not follow the convention is kept whole in `msg`. Levels
are debug, info, warn and error; a traceback becomes one quoted field, so every record is exactly
one line.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time

#: --log.level values, as the Go exporters spell them.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
FORMATS = ("logfmt", "json")

_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
                logging.ERROR: "error", logging.CRITICAL: "error"}
#: ` key=%s`, ` key=%.3fs`: a field in a message template (conversion, then a literal suffix).
_FIELD = r" ([A-Za-z_][A-Za-z0-9_]*)=(%[-#0 +]*(?:\d+)?(?:\.\d+)?[sdifgrxeE])([^\s%]*)"
_FIELD_RE = re.compile(_FIELD)
_FIELDS_TAIL_RE = re.compile(f"(?:{_FIELD})+")
_CONVERSION_RE = re.compile(r"%[^%]|%%")
#: logfmt values with any of these are quoted (as go-logfmt does).
_NEEDS_QUOTES_RE = re.compile(r'[\s="\\\x00-\x1f\x7f]|^$')


def record_fields(record: logging.LogRecord, typed: bool = False) -> dict[str, object]:
    """ts, level, logger, msg, then the fields named in the template (and the traceback, if any).

    Values are text as logfmt writes them; `typed` keeps a field that is a plain number or bool
    (no unit suffix) a number or bool, for JSON readers that filter on `targets > 100`."""
    fields = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
        "logger": record.name,
    }
    fields.update(_template_fields(record, typed))
    if record.exc_info:
        fields["exception"] = logging.Formatter().formatException(record.exc_info)
    return fields


def _template_fields(record: logging.LogRecord, typed: bool) -> dict[str, object]:
    template, args = record.msg, record.args
    if isinstance(template, str) and isinstance(args, tuple):
        match = _FIELD_RE.search(template)
        if match is not None:
            head, tail = template[: match.start()], template[match.start():]
            if (_FIELDS_TAIL_RE.fullmatch(tail) and not _CONVERSION_RE.search(head)
                    and len(_FIELD_RE.findall(tail)) == len(args)):
                out: dict[str, object] = {"msg": head}
                try:
                    for (key, conversion, suffix), arg in zip(_FIELD_RE.findall(tail), args):
                        # %r was how a value got quotes before the formatter quoted; now it would double them.
                        value = _text(arg) if conversion in ("%s", "%r") else conversion % (arg,)
                        out[key] = _typed(arg, value) if typed and not suffix else value + suffix
                    return out
                except (TypeError, ValueError):
                    pass  # an argument that does not fit its conversion: keep the message whole
    return {"msg": record.getMessage()}


def _text(arg: object) -> str:
    """A %s/%r value as logfmt writes it: bools as true/false, the way the Go exporters log them."""
    if isinstance(arg, bool):
        return "true" if arg else "false"
    return str(arg)


def _typed(arg: object, text: str) -> object:
    """The JSON value of a field: bools and finite numbers as themselves (as %d or %.3f shaped them)."""
    if isinstance(arg, bool):
        return arg
    if isinstance(arg, (int, float)):
        for parse in (int, float):  # 8 from %d, 0.25 from %.3f; nan, inf and %x text stay text
            try:
                number = parse(text)
            except ValueError:
                continue
            return number if math.isfinite(number) else text
    return text


def logfmt_value(value: str) -> str:
    if not _NEEDS_QUOTES_RE.search(value):
        return value
    return json.dumps(value, ensure_ascii=False)  # "…" with \" \\ \n \t and \u00XX escapes, as logfmt readers expect


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={logfmt_value(str(value))}" for key, value in record_fields(record).items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_fields(record, typed=True), ensure_ascii=False)


def setup(level: str = "info", fmt: str = "logfmt") -> None:
    """Send every record to stderr, one line each, in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # httpx logs every request at INFO; one line per probe is noise for an exporter.
    logging.getLogger("httpx").setLevel(logging.WARNING)
