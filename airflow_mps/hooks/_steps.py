"""Step machines: each hook decision written once, driven by one sync and one async loop.

The hooks make the same decisions on worker threads (operators, sensors) and on the triggerer's event
loop (triggers): the retry loop of one API call, ProcessImage's submit-and-reconcile loop, "which
listed task is ours". Each is a generator that *yields a step* — a small object naming one piece of
I/O (pace, send, sleep, list, describe) — and is *sent the step's result*, or *thrown its exception*,
so it never knows whether it runs sync or async (the pattern of :func:`airflow_mps.ownership.task_finder`,
issue 10 item 5). A step performs itself both ways (``run(hook)`` / ``await arun(hook)``, one or two lines
each), so :func:`drive` and :func:`adrive` below are the only sync/async twins there are.

Steps compose with ``yield from``: a machine that needs a whole API call delegates to the call's own
machine, and exceptions thrown in reach the innermost ``try`` as they would in straight-line code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

__all__ = ["Sleep", "Step", "Steps", "adrive", "drive", "relay"]

T = TypeVar("T")


class Step(Protocol):
    """One piece of I/O a step machine asks for, performed by the driver on ``hook``."""

    def run(self, hook: Any) -> Any:
        """Perform the step on the calling thread; return what the machine is sent."""

    async def arun(self, hook: Any) -> Any:
        """Perform the step on the running event loop, never blocking it."""


#: A step machine: yields steps, is sent their results, returns its answer.
Steps = Generator[Step, Any, T]


def _advance(steps: Steps[T], reply: Any, error: Exception | None) -> tuple[bool, Any]:
    """Resume a machine with a step's result (or exception): ``(False, next step)`` or ``(True, answer)``."""
    try:
        return False, (steps.send(reply) if error is None else steps.throw(error))
    except StopIteration as done:
        return True, done.value


def drive(steps: Steps[T], hook: Any) -> T:
    """Run a step machine on the calling thread; a step's exception is thrown into the machine."""
    done, value = _advance(steps, None, None)
    while not done:
        try:
            reply, error = value.run(hook), None
        except Exception as exc:
            reply, error = None, exc
        done, value = _advance(steps, reply, error)
    return cast("T", value)


async def adrive(steps: Steps[T], hook: Any) -> T:
    """Run a step machine on the running event loop (the async twin of :func:`drive`)."""
    done, value = _advance(steps, None, None)
    while not done:
        try:
            reply, error = await value.arun(hook), None
        except Exception as exc:
            reply, error = None, exc
        done, value = _advance(steps, reply, error)
    return cast("T", value)


def relay(machine: Generator[Any, Any, T], as_step: Callable[[Any], Step]) -> Steps[T]:
    """Run an I/O-free machine whose requests are not hook steps (e.g. the ownership rules' list and
    detail requests), turning each request into the hook step that answers it."""
    reply: Any = None
    while True:
        try:
            request = machine.send(reply)
        except StopIteration as done:
            return cast("T", done.value)
        reply = yield as_step(request)


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (a retry backoff, a reconciliation settle period)."""

    seconds: float

    def run(self, hook: Any) -> None:
        time.sleep(self.seconds)

    async def arun(self, hook: Any) -> None:
        await asyncio.sleep(self.seconds)
