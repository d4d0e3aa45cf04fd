"""Declarative parameter differences (STYLE §3): one engine applies drop / rename / defaults /
clamp / role maps to an OpenAI-shaped chat request, for a provider row and an offer row alike.

What the engine removes is reported as dropped and what it changes as adjusted, so the pipeline
can name both in response headers: a parameter is never lost silently (SPEC §2.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Quirks:
    drop: frozenset[str] = frozenset()
    rename: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    defaults: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    clamp: Mapping[str, tuple[float, float]] = field(default_factory=lambda: _EMPTY)
    roles: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # e.g. {"developer": "system"}

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, where: str) -> Quirks:
        if not raw:
            return EMPTY_QUIRKS
        unknown = set(raw) - {"drop", "rename", "defaults", "clamp", "roles"}
        if unknown:
            raise ValueError(f"{where}: unknown quirk kind(s) {sorted(unknown)}")
        clamp: dict[str, tuple[float, float]] = {}
        for name, bounds in dict(raw.get("clamp", {})).items():
            if not (isinstance(bounds, list | tuple) and len(bounds) == 2 and bounds[0] <= bounds[1]):
                raise ValueError(f"{where}: clamp.{name} must be [low, high]")
            clamp[name] = (bounds[0], bounds[1])
        return cls(
            drop=frozenset(raw.get("drop", ())),
            rename=MappingProxyType(dict(raw.get("rename", {}))),
            defaults=MappingProxyType(dict(raw.get("defaults", {}))),
            clamp=MappingProxyType(clamp),
            roles=MappingProxyType(dict(raw.get("roles", {}))),
        )

    def __bool__(self) -> bool:
        return bool(self.drop or self.rename or self.defaults or self.clamp or self.roles)

    def merged(self, other: Quirks) -> Quirks:
        """`other` (the more specific row, e.g. an offer) wins where both speak."""
        if not other:
            return self
        if not self:
            return other
        return Quirks(
            drop=self.drop | other.drop,
            rename=MappingProxyType({**self.rename, **other.rename}),
            defaults=MappingProxyType({**self.defaults, **other.defaults}),
            clamp=MappingProxyType({**self.clamp, **other.clamp}),
            roles=MappingProxyType({**self.roles, **other.roles}),
        )

    def apply(self, body: dict[str, Any], dropped: list[str], adjusted: list[str]) -> None:
        """Rewrite `body` in place (the caller passes its own copy)."""
        for name in self.drop:
            if name in body:
                del body[name]
                dropped.append(name)
        for name, (low, high) in self.clamp.items():
            value = body.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                bounded = min(max(value, low), high)
                if bounded != value:
                    body[name] = bounded
                    adjusted.append(name)
        for name, value in self.defaults.items():
            body.setdefault(name, value)
        for old, new in self.rename.items():
            if old in body:
                value = body.pop(old)
                body.setdefault(new, value)
        if self.roles and "messages" in body:
            messages = body["messages"]
            if any(isinstance(m, dict) and m.get("role") in self.roles for m in messages):
                body["messages"] = [
                    {**m, "role": self.roles[m["role"]]}
                    if isinstance(m, dict) and m.get("role") in self.roles
                    else m
                    for m in messages
                ]


EMPTY_QUIRKS = Quirks()
