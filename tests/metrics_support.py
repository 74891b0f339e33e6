"""A stand-in for Airflow's ``Stats``: what the provider's metrics (``airflow_mps.utils.metrics``) would
have sent, recorded in order. The ``stats`` fixture (tests/conftest.py) installs one."""

from __future__ import annotations

from typing import Any


class StatsStub:
    """Records what Airflow's ``Stats`` would have been given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []

    def incr(self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, str] | None = None) -> None:
        self.calls.append(("incr", stat, count, dict(tags or {})))

    def timing(self, stat: str, dt: Any, *, tags: dict[str, str] | None = None) -> None:
        self.calls.append(("timing", stat, dt, dict(tags or {})))

    def counts(self) -> dict[str, int]:
        """Per metric: the sum of its increments, or how many timings it got."""
        out: dict[str, int] = {}
        for kind, stat, value, _ in self.calls:
            out[stat] = out.get(stat, 0) + (value if kind == "incr" else 1)
        return out

    def total(self, stat: str) -> int:
        return self.counts().get(stat, 0)

    def tags_of(self, stat: str) -> list[dict[str, str]]:
        return [tags for _, name, _, tags in self.calls if name == stat]
