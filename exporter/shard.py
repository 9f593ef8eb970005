"""Sharding: N replicas run one shared config, each probing the targets that hash to its index.

A target belongs to shard `hashmod(name, COUNT)`, computed exactly as Prometheus' `hashmod`
relabel action computes it (the last 8 bytes of the MD5 of the value, big-endian, modulo
COUNT), so every target has exactly one owner (no gap, no overlap), the assignment does not
depend on the order of the file or on the other targets, and a Prometheus `hashmod` rule over
target names (the `/probe` setups) picks the same replica as `--shard` does.

The config is filtered here, before it reaches the scheduler: a replica's scheduler, snapshot
and /metrics only ever see the targets it owns; the names it does not own are kept with their
owner so that `/probe` can say which shard to ask.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass

from .config import Config

_SPEC = re.compile(r"^(\d+)/(\d+)$")


def owner_of(name: str, count: int) -> int:
    """The shard index that owns target `name` out of `count` (Prometheus hashmod of the name)."""
    digest = hashlib.md5(name.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % count


@dataclass(frozen=True)
class Shard:
    """This replica's place in the fleet: index INDEX of COUNT (0-based)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, spec: str) -> "Shard":
        """`INDEX/COUNT`, e.g. `0/3`; raises ValueError with a message a person can act on."""
        match = _SPEC.match(spec.strip())
        if not match:
            raise ValueError(f"{spec!r} is not INDEX/COUNT (e.g. 0/3: the first of three replicas)")
        index, count = int(match[1]), int(match[2])
        if count < 1 or index >= count:
            raise ValueError(f"{spec!r}: COUNT must be at least 1 and INDEX between 0 and COUNT-1")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, config: Config) -> Config:
        """The part of `config` this shard probes; the other targets are remembered by owner."""
        if self.count == 1:
            return config
        owned, elsewhere = [], {}
        for target in config.targets:
            owner = owner_of(target.name, self.count)
            if owner == self.index:
                owned.append(target)
            else:
                elsewhere[target.name] = str(Shard(owner, self.count))
        return dataclasses.replace(config, targets=tuple(owned), elsewhere=elsewhere)
