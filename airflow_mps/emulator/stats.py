"""Request and task counters the tests and benchmarks read through `GET /_emulator/stats`."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque
from typing import Any

OUTCOMES = ("received", "succeeded", "throttled", "faulted", "failed")
#: The limiter-lag samples kept per action (the latest ones; percentiles are over these).
LAG_SAMPLES = 50_000


class Stats:
    """Thread-safe counters: per action (received/succeeded/throttled/faulted/failed), tasks created,
    and per-input submission counts (so a test can assert that no input was submitted twice).

    Also the **limiter lag** per action: how long after a request reached the service (its receipt
    plus the injected network delay) the rate limiter decided on it. That is the emulator's own load
    — a busy host, handler threads waiting for the interpreter — which the real service's gateway
    does not add; a benchmark of pacing reports it so as to tell the emulator's delays from the
    clients' (bench P8).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self._actions: dict[str, Counter[str]] = defaultdict(Counter)
            self._errors: dict[str, Counter[str]] = defaultdict(Counter)
            self._tasks_created = 0
            self._tasks_finished: Counter[str] = Counter()
            self._submissions: Counter[str] = Counter()
            self._lag: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=LAG_SAMPLES))

    def count(self, action: str, outcome: str, error_code: str | None = None) -> None:
        with self._lock:
            self._actions[action][outcome] += 1
            if error_code:
                self._errors[action][error_code] += 1

    def limiter_lag(self, action: str, seconds: float) -> None:
        with self._lock:
            self._lag[action].append(max(0.0, seconds))

    def task_created(self, input_key: str) -> None:
        with self._lock:
            self._tasks_created += 1
            self._submissions[input_key] += 1

    def task_finished(self, succeeded: bool) -> None:
        with self._lock:
            self._tasks_finished["succeeded" if succeeded else "failed"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "actions": {
                    action: {name: counts.get(name, 0) for name in OUTCOMES}
                    for action, counts in sorted(self._actions.items())
                },
                "errors": {action: dict(codes) for action, codes in sorted(self._errors.items())},
                "tasks_created": self._tasks_created,
                "tasks_finished": {
                    "succeeded": self._tasks_finished.get("succeeded", 0),
                    "failed": self._tasks_finished.get("failed", 0),
                },
                "submissions_by_input": dict(self._submissions),
                "duplicate_submissions": {k: v for k, v in self._submissions.items() if v > 1},
                "limiter_lag_ms": {action: _lag_summary(lags) for action, lags in sorted(self._lag.items())},
            }


def _lag_summary(lags: deque[float]) -> dict[str, float | int]:
    """Count, median, 99th percentile and maximum of limiter-lag samples, in milliseconds."""
    ordered = sorted(lags)
    n = len(ordered)
    return {
        "n": n,
        "p50": round(ordered[n // 2] * 1000, 2),
        "p99": round(ordered[min(n - 1, (99 * n) // 100)] * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
    }
