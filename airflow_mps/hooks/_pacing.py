"""Client-side pacing of MPS API calls: a process-wide, thread-safe token bucket per account and action.

MPS limits each account (uin) per action per second (ProcessImage 20/s, Describe* 100/s). Throttled
calls are retried, but a throttle costs a round trip and a backoff; pacing keeps us under the limit
in the first place. The bucket is a GCRA (generic cell rate algorithm): it keeps one "theoretical
arrival time" and hands out *reservations* — the delay the caller must wait before sending — so the
same object serves threads (``time.sleep``) and coroutines (``asyncio.sleep``) without a lock held
while waiting.

Buckets are shared by every hook in the process that uses the same SecretId and endpoint (the limit
is per account, not per hook). Separate processes (several Airflow workers) each have their own
bucket; the throttling retry covers that case.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class TokenBucket:
    """Thread-safe rate limiter handing out send times at most ``rate`` per second.

    ``burst`` is how many calls may go back to back after an idle period (default 1: evenly spaced,
    which keeps every 1-second window at or under ``rate``). A ledger of the most recent grant times
    is kept so tests and benchmarks can count grants per window.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        ledger_size: int = 10_000,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests/second, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self._lock = threading.Lock()
        self._clock = clock
        self._rate = float(rate)
        self._burst = int(burst)
        self._tat = 0.0  # theoretical arrival time of the next call
        self.ledger: deque[float] = deque(maxlen=ledger_size)

    @property
    def rate(self) -> float:
        """Calls per second this bucket allows."""
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the rate (e.g. a connection edited to another ``process_image_rate``)."""
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests/second, got {rate!r}")
        with self._lock:
            self._rate = float(rate)

    def reserve(self) -> float:
        """Reserve the next slot; return how many seconds the caller must wait before sending."""
        with self._lock:
            now = self._clock()
            interval = 1.0 / self._rate
            tolerance = (self._burst - 1) * interval
            tat = max(self._tat, now)
            send_at = max(now, tat - tolerance)
            self._tat = tat + interval
            self.ledger.append(send_at)
            return send_at - now

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Block the calling thread until its slot; return the time waited."""
        delay = self.reserve()
        if delay > 0:
            sleep(delay)
        return delay

    async def aacquire(self) -> float:
        """Wait (without blocking the event loop) until the caller's slot; return the time waited."""
        import asyncio

        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
        return delay

    def max_in_window(self, window: float = 1.0) -> int:
        """Largest number of grants in any half-open window of ``window`` seconds (from the ledger)."""
        times = sorted(self.ledger)
        best = 0
        start = 0
        for end, t in enumerate(times):
            while t - times[start] >= window - 1e-9:  # float tolerance on the boundary
                start += 1
            best = max(best, end - start + 1)
        return best


_REGISTRY: dict[tuple[str, ...], TokenBucket] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_bucket(key: tuple[str, ...], rate: float, burst: int = 1) -> TokenBucket:
    """Return the process-wide bucket for ``key`` (account, endpoint, action), creating it if needed.

    The most recently configured rate wins, so all hooks sharing the account follow one rate.
    """
    with _REGISTRY_LOCK:
        bucket = _REGISTRY.get(key)
        if bucket is None:
            bucket = _REGISTRY[key] = TokenBucket(rate, burst)
        elif bucket.rate != float(rate):
            bucket.set_rate(rate)
        return bucket


def reset_shared_buckets() -> None:
    """Forget every shared bucket (tests use this to start from an idle limiter)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
