"""constraints.txt pins what ./dev.sh installs: every dependency pyproject.toml names is pinned,
and every pin satisfies pyproject's range, so the lock cannot drift from the declared ranges."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parent.parent


def pins() -> dict[str, Version]:
    out = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and name.strip() == name and version.strip() == version, f"constraints.txt:{n}: not NAME==VERSION: {line!r}"
        out[canonicalize_name(name)] = Version(version)
    return out


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = project["dependencies"] + [r for extra in project.get("optional-dependencies", {}).values() for r in extra]
    return [Requirement(t) for t in texts]


def test_every_declared_dependency_is_pinned_within_its_range():
    locked = pins()
    problems = []
    for req in declared():
        version = locked.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is not pinned (run ./dev.sh lock)")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} does not satisfy pyproject's {req.specifier} (run ./dev.sh lock)")
    assert not problems, "\n".join(problems)

