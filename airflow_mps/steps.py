"""The one driver of step machines, sync and async: every decision of the package written once.

A *step machine* is a generator that yields a *step* — a small object naming one piece of I/O it needs
(list tasks, describe one, HEAD an object, sleep) — is sent the step's reply, and finally returns its
answer. It performs no I/O itself, so the same machine runs on a worker thread (an operator, a sensor's
poke) and on the triggerer's event loop (a trigger); only the loop that performs the steps differs, and
that loop is written here, once (issue 10 item 5; the pattern of
:func:`airflow_mps.ownership.task_finder`). Used by the hooks' call and reconciliation machines
(:mod:`airflow_mps.hooks._steps`), the waits (:mod:`airflow_mps.waits`) and their drivers in
operators, sensors and triggers.

The contract, for both :func:`drive` and :func:`adrive`:

* ``perform(step)`` (``await aperform(step)``) does the step's I/O and returns the reply, which the
  machine is *sent*.
* If ``perform`` raises an exception of one of the ``throw`` classes (default: any ``Exception``), the
  exception is *thrown into the machine* at its ``yield``, as if that line had raised it: a machine that
  catches it decides (poll again, give up); one that does not ends, and the exception leaves the
  driver unchanged. Anything else (``asyncio.CancelledError``, ``KeyboardInterrupt``, a class outside
  ``throw``) leaves the driver at once and the machine is abandoned.
* A machine that wants to judge a failure *as a value* (the waits' ``isinstance(reply,
  BaseException)``) simply gets one: its ``perform`` catches and returns the exception.

Plain Python (standard library only), at the bottom of the package map: any room may import it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar, cast

__all__ = ["Machine", "adrive", "drive", "drive_until", "relay"]

S = TypeVar("S")
R = TypeVar("R")
T = TypeVar("T")

#: A step machine: yields steps of type ``S``, is sent their replies, returns ``T``.
Machine = Generator[S, Any, T]

_ANY: tuple[type[BaseException], ...] = (Exception,)


def _advance(machine: Machine[S, T], reply: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Resume ``machine`` with a reply (or an exception): ``(False, next step)`` or ``(True, answer)``."""
    try:
        return False, (machine.send(reply) if error is None else machine.throw(error))
    except StopIteration as done:
        return True, done.value


def _never(step: Any) -> bool:
    return False


def drive_until(
    machine: Machine[S, T],
    perform: Callable[[S], Any],
    stop: Callable[[S], bool],
    *,
    throw: tuple[type[BaseException], ...] = _ANY,
) -> T | None:
    """Run ``machine`` on the calling thread until it returns (its answer) or yields a step for which
    ``stop(step)`` is true (``None``; the step is not performed — a sensor's poke ends at the wait's
    first sleep, which is the next poke)."""
    done, value = _advance(machine, None, None)
    while not done:
        if stop(value):
            machine.close()
            return None
        try:
            reply, error = perform(value), None
        except throw as exc:
            reply, error = None, exc
        done, value = _advance(machine, reply, error)
    return cast("T", value)  # StopIteration.value is untyped


def drive(
    machine: Machine[S, T], perform: Callable[[S], Any], *, throw: tuple[type[BaseException], ...] = _ANY
) -> T:
    """Run ``machine`` to its answer on the calling thread (the module docstring has the contract)."""
    return cast("T", drive_until(machine, perform, _never, throw=throw))


async def adrive(
    machine: Machine[S, T],
    aperform: Callable[[S], Awaitable[Any]],
    *,
    throw: tuple[type[BaseException], ...] = _ANY,
) -> T:
    """Run ``machine`` to its answer on the running event loop (the async twin of :func:`drive`)."""
    done, value = _advance(machine, None, None)
    while not done:
        try:
            reply, error = await aperform(value), None
        except throw as exc:
            reply, error = None, exc
        done, value = _advance(machine, reply, error)
    return cast("T", value)


def relay(machine: Generator[R, Any, T], as_step: Callable[[R], S]) -> Machine[S, T]:
    """Run a machine whose requests are not the driver's steps (e.g. the ownership rules' list and
    detail requests inside a hook), turning each request into the step that answers it. An exception
    thrown into the relay ends it (and leaves the inner machine unfinished): the inner machine never
    judges failures."""
    reply: Any = None
    while True:
        try:
            request = machine.send(reply)
        except StopIteration as done:
            return cast("T", done.value)
        reply = yield as_step(request)
