"""Hook steps: the I/O of the hooks' step machines, each performing itself sync and async.

The hooks make the same decisions on worker threads (operators, sensors) and on the triggerer's event
loop (triggers): the retry loop of one API call, ProcessImage's submit-and-reconcile loop, "which
listed task is ours". Each is a step machine (:mod:`airflow_mps.steps`, the package's one driver): it
*yields a step* — a small object naming one piece of I/O (pace, send, sleep, list, describe) — and is
*sent the step's result*, or *thrown its exception*, so it never knows whether it runs sync or async.
A hook step performs itself both ways (``run(hook)`` / ``await arun(hook)``, one or two lines each), so
:func:`drive` and :func:`adrive` below are :func:`airflow_mps.steps.drive`/``adrive`` with the step's
own method as ``perform``.

Steps compose with ``yield from``: a machine that needs a whole API call delegates to the call's own
machine, and exceptions thrown in reach the innermost ``try`` as they would in straight-line code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from airflow_mps import steps as machines
from airflow_mps.steps import relay

__all__ = ["Sleep", "Step", "Steps", "adrive", "drive", "relay"]

T = TypeVar("T")


class Step(Protocol):
    """One piece of I/O a step machine asks for, performed by the driver on ``hook``."""

    def run(self, hook: Any) -> Any:
        """Perform the step on the calling thread; return what the machine is sent."""

    async def arun(self, hook: Any) -> Any:
        """Perform the step on the running event loop, never blocking it."""


#: A step machine of hook steps: yields steps, is sent their results, returns its answer.
Steps = Generator[Step, Any, T]


def drive(steps: Steps[T], hook: Any) -> T:
    """Run a step machine on the calling thread; a step's exception is thrown into the machine."""
    return machines.drive(steps, lambda step: step.run(hook))


async def adrive(steps: Steps[T], hook: Any) -> T:
    """Run a step machine on the running event loop (the async twin of :func:`drive`)."""
    return await machines.adrive(steps, lambda step: step.arun(hook))


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (a retry backoff, a reconciliation settle period)."""

    seconds: float

    def run(self, hook: Any) -> None:
        time.sleep(self.seconds)

    async def arun(self, hook: Any) -> None:
        await asyncio.sleep(self.seconds)
