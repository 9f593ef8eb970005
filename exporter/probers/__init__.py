"""The probers: one module per protocol, each defining a `PROBER`.

Discovered by module scan, so adding a prober is adding a file here (its config model and its
metric families included); neither the config loader nor the scheduler names any prober.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Prober


def _discover() -> dict[str, Prober]:
    found: dict[str, Prober] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        prober = getattr(module, "PROBER", None)
        if isinstance(prober, Prober):
            found[prober.name] = prober
    return found


PROBERS: dict[str, Prober] = _discover()
