"""Unit tests run without the outside world: no sockets, no subprocesses, no real-time waits.

Anything that needs the emulator, a server, a child process or the wall clock belongs in
tests/integration/<room>/ (emulator, Airflow CLI, benchmark smoke in tests/integration/bench); this guard
(issue 10 item 7) turns such a slip into a clear failure instead of a slow or flaky unit test.

What is refused, and why each hook point:
- ``socket.socket.connect`` / ``connect_ex`` / ``bind``: every client (httpx, the Tencent SDK, the COS
  SDK) and every server (the emulator) ends up there. ``socket.socketpair`` stays allowed: asyncio's
  event loop uses it for its self-pipe, which never leaves the process.
- ``subprocess.Popen`` (``run``, ``check_output`` … go through it) and ``os.system``.
- ``time.sleep`` longer than ``MAX_SLEEP_SECONDS`` (in any thread): a short yield is fine, a real wait
  means the test should drive a fake clock instead.
- ``asyncio.sleep`` longer than ``MAX_ASYNC_SLEEP_SECONDS``: looser, because the trigger tests run
  real event loops with 0.05 s poll intervals (plus jitter) and a fake hook landing a result after
  0.1-0.15 s; a longer await is a real wait.
- the session ``emulator`` fixture (tests/conftest.py), which starts a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, NoReturn, TypeVar

import pytest

# Imported before the guard: croniter's import runs `file` through platform.architecture() to learn
# the word size, a subprocess no test asked for (Airflow imports it with the first cron timetable).
with contextlib.suppress(ImportError):
    import croniter  # noqa: F401

#: A unit test may yield the thread or the loop briefly but never wait in real time.
MAX_SLEEP_SECONDS = 0.05
#: The event-loop bound (see the module docstring for why it is looser).
MAX_ASYNC_SLEEP_SECONDS = 0.2


_T = TypeVar("_T")


def _moved(what: str) -> str:
    return (
        f"unit tests must not use {what}: move this test to tests/integration/<room>/ "
        "(emulator, Airflow CLI, benchmarks), see tests/unit/conftest.py"
    )


def _refuse(what: str) -> Callable[..., NoReturn]:
    def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise AssertionError(_moved(what))

    return refuse


@pytest.fixture(autouse=True)
def _no_outside_world(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse sockets, child processes and real-time sleeps for the duration of each unit test."""
    real_sleep = time.sleep
    real_async_sleep = asyncio.sleep

    def short_sleep(seconds: float) -> None:
        if seconds > MAX_SLEEP_SECONDS:
            raise AssertionError(_moved(f"a real-time wait (time.sleep({seconds}))") + "; use a fake clock")
        real_sleep(seconds)

    def short_async_sleep(delay: float, result: _T = None) -> Coroutine[Any, Any, _T]:  # type: ignore[assignment]  # mirrors asyncio.sleep's default
        if delay > MAX_ASYNC_SLEEP_SECONDS:
            raise AssertionError(_moved(f"a real-time wait (asyncio.sleep({delay}))") + "; use a fake clock")
        return real_async_sleep(delay, result)

    monkeypatch.setattr(socket.socket, "connect", _refuse("sockets (socket.connect)"))
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse("sockets (socket.connect_ex)"))
    monkeypatch.setattr(socket.socket, "bind", _refuse("sockets (socket.bind)"))
    monkeypatch.setattr(subprocess, "Popen", _refuse("subprocesses (subprocess.Popen)"))
    monkeypatch.setattr(os, "system", _refuse("subprocesses (os.system)"))
    monkeypatch.setattr(time, "sleep", short_sleep)
    monkeypatch.setattr(asyncio, "sleep", short_async_sleep)
    yield


@pytest.fixture(scope="session")
def emulator() -> NoReturn:
    """Shadow tests/conftest.py's session emulator: it starts a real server, which a unit test must not."""
    raise AssertionError(_moved("the emulator fixture (a real server)"))
