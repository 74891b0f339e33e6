"""I/O-free cores of the waits (issue 10 item 5), and the two loops that drive them.

A wait is written once, as a *step machine*: a generator that yields the I/O it needs as a small step
object (``Describe(task_id)``, ``Sleep(seconds)``, …), is sent the reply, and finally returns its
outcome. Every decision — what counts as finished, which errors end the wait and which are polled
through, when the deadline has passed, how long to sleep — lives in the machine; a driver only performs
the steps. So the sync paths (an operator polling in its worker, a sensor's poke) and the async ones (a
trigger on the triggerer's event loop) share the very same rules, the pattern ``MpsHook.find_tasks_for``
uses for its reconciliation.

* :mod:`airflow_mps.waits.task` — waiting for one MPS image task.

:func:`run_steps` and :func:`arun_steps` are the generic drivers: they feed each step to ``perform``
and send its return value back. ``perform`` returns an exception *as a value* when the call's failure is
an answer the machine should judge (an MPS error, a network error); anything it raises ends the wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar, cast

__all__ = ["arun_steps", "run_steps"]

StepT = TypeVar("StepT")
OutcomeT = TypeVar("OutcomeT")


def run_steps(steps: Generator[StepT, Any, OutcomeT], perform: Callable[[StepT], Any]) -> OutcomeT:
    """Drive a step machine synchronously; returns its outcome."""
    reply: Any = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration as done:
            return cast(OutcomeT, done.value)  # StopIteration.value is untyped
        reply = perform(step)


async def arun_steps(
    steps: Generator[StepT, Any, OutcomeT], perform: Callable[[StepT], Awaitable[Any]]
) -> OutcomeT:
    """Drive a step machine on the event loop; returns its outcome."""
    reply: Any = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration as done:
            return cast(OutcomeT, done.value)  # StopIteration.value is untyped
        reply = await perform(step)
