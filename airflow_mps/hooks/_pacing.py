"""Client-side pacing of MPS API calls: a process-wide, thread-safe token bucket per account and action.

MPS limits each account (uin) per action per second (ProcessImage 20/s, Describe* 100/s), counting
in a sliding one-second window. Throttled calls are retried, but a throttle costs a round trip and a
backoff; pacing keeps us under the limit in the first place. The bucket is a GCRA (generic cell rate
algorithm): it keeps one "theoretical arrival time" and hands out *reservations* — the delay the
caller must wait before sending — so the same object serves threads (``time.sleep``) and coroutines
(``asyncio.sleep``) without a lock held while waiting.

Buckets are shared by every hook in the process that uses the same SecretId and endpoint (the limit
is per account, not per hook). Separate processes (several Airflow workers, several batch tasks of a
backfill) cannot see each other's buckets, so each bucket **adapts** (issue 13): it is cut when the
service answers ``RequestLimitExceeded`` and probes back up while calls succeed, the way TCP CUBIC
and botocore's ``adaptive`` retry mode do. K independent processes on one account then converge to
about limit ÷ K each with few throttles; one process alone converges to just under the limit (the
connection's configured rate is the ceiling, never exceeded).

The hook's side of the contract (see :class:`AdaptiveBucket`)::

    bucket.acquire()                # or: await bucket.aacquire()
    sent_at = bucket.now()
    ...send...
    bucket.on_success()             # the call was answered (anything but a throttle)
    bucket.on_throttled(sent_at, error.message)  # answered RequestLimitExceeded*

:class:`TokenBucket` is the fixed pacer (the feedback methods are no-ops); it is what
``use_adaptive_pacing(False)`` selects, e.g. for the benchmark's fixed-pacing baseline.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: Fraction of the configured rate a fixed bucket paces at, and the rate an adaptive bucket starts
#: at. The service counts requests in a sliding one-second window; pacing at exactly the limit lets
#: thread-scheduling and network jitter put a 21st request into some window (measured: ~4 throttles
#: per 100 submissions at 100 %). At 97 % twenty requests span 1.03 s, absorbing ~30 ms of jitter.
#: An adaptive bucket starts there and probes up to 100 % of the ceiling while nothing is throttled.
HEADROOM = 0.97

# The documented throttle message: "Your current request times equals to `21` in a second, which
# exceeds the frequency limit `20` for a second." (docs: /work/shared/reference/mps-api.md §5.4).
_THROTTLE_COUNTS = re.compile(r"equals to\D*(\d+)\D+?limit\D*(\d+)", re.IGNORECASE)


def demand_ratio(message: str | None) -> float | None:
    """``limit ÷ requests`` from a ``RequestLimitExceeded`` message, or None when it says neither.

    The service reports how many requests of the account it counted in the window and the limit:
    ``20 ÷ 21`` after a one-request overshoot, ``20 ÷ 160`` when eight processes each send at the
    full rate. It is how much the whole account must slow down; the bucket uses it to cut deeper
    than its default step when the overshoot is large.
    """
    if not message:
        return None
    match = _THROTTLE_COUNTS.search(message)
    if match is None:
        return None
    seen, limit = int(match.group(1)), int(match.group(2))
    if seen <= 0 or limit <= 0 or seen <= limit:
        return None
    return limit / seen


class TokenBucket:
    """Thread-safe rate limiter handing out send times at most ``rate`` per second (fixed pacing).

    ``burst`` is how many calls may go back to back after an idle period (default 1: evenly spaced,
    which keeps every 1-second window at or under ``rate``). A ledger of the most recent grant times
    is kept so tests and benchmarks can count grants per window. ``on_success``/``on_throttled``
    exist so the hook can report outcomes to any bucket; a fixed bucket ignores them.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        ledger_size: int = 10_000,
    ) -> None:
        _check_rate(rate)
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self._lock = threading.Lock()
        self._clock = clock
        self._rate = float(rate)
        self._burst = int(burst)
        self._tat = 0.0  # theoretical arrival time of the next call
        self.ledger: deque[float] = deque(maxlen=ledger_size)
        #: Outcomes reported by the hook (for benchmarks and logs).
        self.successes = 0
        self.throttles = 0

    @property
    def rate(self) -> float:
        """Calls per second this bucket allows now."""
        return self._rate

    @property
    def ceiling(self) -> float:
        """The configured rate (a fixed bucket's rate is its ceiling)."""
        return self._rate

    def now(self) -> float:
        """This bucket's clock (``time.monotonic`` unless a test injected another)."""
        return self._clock()

    def set_rate(self, rate: float) -> None:
        """Change the rate (e.g. a connection edited to another ``process_image_rate``)."""
        _check_rate(rate)
        with self._lock:
            self._retime(float(rate))

    def _retime(self, rate: float) -> None:
        """Switch to ``rate`` (lock held): the next slot is one *new* interval after the last one."""
        if rate == self._rate:
            return
        self._tat += 1.0 / rate - 1.0 / self._rate
        self._rate = rate

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

    def on_success(self, sent_at: float | None = None) -> None:
        """The service answered a call paced by this bucket (anything but a throttle)."""
        with self._lock:
            self.successes += 1

    def on_throttled(self, sent_at: float | None = None, message: str | None = None) -> None:
        """The service answered ``RequestLimitExceeded*`` to a call sent at ``sent_at`` (``now()``)."""
        with self._lock:
            self.throttles += 1

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


@dataclass(frozen=True)
class AdaptiveParams:
    """Tuning of :class:`AdaptiveBucket` (defaults: issue 13's simulation and bench P1/P8)."""

    window: float = 1.0
    start_margin: float = 1 / HEADROOM - 1
    min_margin: float = 0.005
    max_margin: float = 0.10
    margin_step: float = 0.01
    margin_decay: float = 0.002
    shared_margin: float = 0.015
    shared_memory: float = 60.0
    alone_others: int = 1
    hold: float = 1.0
    probe_interval: float = 10.0
    min_probe_interval: float = 0.0
    probe_window: float = 1.2
    storm_factor: float = 1.5
    quiet: float = 20.0


class AdaptiveBucket(TokenBucket):
    """A slotted, adaptive bucket (issue 13)."""

    def __init__(
        self,
        ceiling: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.time,
        ledger_size: int = 10_000,
        params: AdaptiveParams | None = None,
        seed: int | None = None,
    ) -> None:
        _check_rate(ceiling)
        super().__init__(ceiling, burst, clock=clock, ledger_size=ledger_size)
        self.params = p = params or AdaptiveParams()
        self._rng = random.Random(seed)
        self._slots = max(1, math.ceil(ceiling * p.window - 1e-9))
        self._owned: list[int] = list(range(self._slots))
        now = clock()
        self._margin = p.start_margin
        self._margin_at = now
        self._margin_base = p.start_margin
        self._shared_until = -math.inf
        self._last_grant = -math.inf
        self._last_cut = -math.inf
        self._storm_hold = -math.inf
        self._last_throttle = -math.inf
        self._probing: list[int] = []
        self._probe_started = 0.0
        self._next_probe = now + p.probe_interval * self._rng.uniform(0.5, 1.5)
        self._streak = 0
        self.cuts = 0
        self.widenings = 0
        self.probes = 0
        self.failed_probes = 0

    # ---- state ------------------------------------------------------------------------------
    @property
    def budget(self) -> int:
        """Requests per window this bucket sends now (the slots it owns)."""
        return len(self._owned)

    @property
    def pacing_rate(self) -> float:
        """Calls per second this bucket sends at now (≤ ``rate``)."""
        return len(self._owned) / self._period()

    def _shared(self, now: float) -> bool:
        return now < self._shared_until

    def _period(self) -> float:
        p = self.params
        margin = p.shared_margin if self._shared(self._clock()) else self._margin
        return max(p.window, self._slots / self._rate) * (1.0 + margin)

    def set_rate(self, rate: float) -> None:
        _check_rate(rate)
        with self._lock:
            full = len(self._owned) == self._slots
            self._rate = float(rate)
            self._slots = max(1, math.ceil(rate * self.params.window - 1e-9))
            kept = [j for j in self._owned if j < self._slots]
            self._owned = list(range(self._slots)) if full or not kept else kept

    # ---- reservations -------------------------------------------------------------------------
    def reserve(self) -> float:
        with self._lock:
            now = self._clock()
            period = self._period()
            gap = self.params.window / self._slots * (1 - 1e-9)  # never faster than the ceiling
            earliest = max(now, self._last_grant + gap)
            if not self._shared(now):  # alone: evenly spaced at the adaptive rate, any phase
                send_at = max(now, self._last_grant + period / len(self._owned))
            else:  # shared: the owned slots of the common grid
                width = period / self._slots
                cycle = math.floor(earliest / period)
                send_at = None
                while send_at is None:
                    base = cycle * period
                    for j in self._owned:
                        t = base + j * width
                        if t >= earliest:
                            send_at = t
                            break
                    cycle += 1
            self._last_grant = send_at
            self.ledger.append(send_at)
            return send_at - now

    def _slot_of(self, sent: float) -> int:
        period = self._period()
        return int((sent % period) / (period / self._slots) + 0.5) % self._slots

    # ---- feedback -----------------------------------------------------------------------------
    def on_success(self, sent_at: float | None = None) -> None:
        with self._lock:
            self.successes += 1
            p = self.params
            now = self._clock()
            self._margin = max(p.min_margin, self._margin_base - p.margin_decay * (now - self._margin_at))
            if self._probing and now >= self._probe_started + p.probe_window:
                self._probing = []
                self._streak += 1
                self._next_probe = now + self._interval()
            if not self._probing and len(self._owned) < self._slots and now >= self._next_probe:
                free = [j for j in range(self._slots) if j not in self._owned]
                quiet = now - self._last_throttle >= p.quiet
                step = min(len(free), 2 ** min(self._streak, 3)) if quiet else 1
                self._probing = self._rng.sample(free, step)
                self._owned = sorted(self._owned + self._probing)
                self._probe_started = now
                self.probes += 1

    def _interval(self) -> float:
        p = self.params
        quiet = self._clock() - self._last_throttle
        if self._streak and quiet >= p.quiet:  # nobody contested our probes for a while: speed up
            return p.min_probe_interval
        return p.probe_interval * self._rng.uniform(0.5, 1.5)

    def on_throttled(self, sent_at: float | None = None, message: str | None = None) -> None:
        with self._lock:
            self.throttles += 1
            p = self.params
            now = self._clock()
            sent = now if sent_at is None else sent_at
            counts = _counts(message)
            own = sum(1 for t in self.ledger if sent - p.window < t <= sent)
            if counts is not None and counts[0] - own <= p.alone_others and not self._shared(now):
                if self._margin < p.max_margin:  # alone: jitter pushed a request into the window
                    if sent >= self._last_cut + p.hold:
                        self._margin = self._margin_base = min(p.max_margin, self._margin + p.margin_step)
                        self._margin_at = now
                        self._last_cut = now
                        self.widenings += 1
                    return
            self._shared_until = now + p.shared_memory
            self._last_throttle = now
            if sent < self._storm_hold:  # the window is still full of the storm we already cut for
                return
            slot = self._slot_of(sent)
            if counts is not None and counts[0] >= p.storm_factor * counts[1] and sent >= self._last_cut + p.hold:
                seen, limit = counts
                keep = max(1, min(len(self._owned) - 1, round(own * limit / seen)))
                rest = [j for j in self._owned if j != slot]
                self._rng.shuffle(rest)
                self._owned = sorted(rest[:keep]) or self._owned[:1]
                self._last_cut = now
                self._storm_hold = now + p.hold
                self.cuts += 1
            elif slot in self._owned and len(self._owned) > 1:
                self._owned.remove(slot)  # lost this slot's contest to another process
                self.cuts += 1
            if slot in self._probing:
                self.failed_probes += 1
            self._probing = []
            self._streak = 0
            self._next_probe = now + self._interval()


def _counts(message: str | None) -> tuple[int, int] | None:
    if not message:
        return None
    match = _THROTTLE_COUNTS.search(message)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def _check_rate(rate: float) -> None:
    if rate <= 0:
        raise ValueError(f"rate must be > 0 requests/second, got {rate!r}")


_REGISTRY: dict[tuple[str, ...], TokenBucket] = {}
_REGISTRY_LOCK = threading.Lock()
_ADAPTIVE = True


def use_adaptive_pacing(enabled: bool) -> None:
    """Choose the kind of bucket ``shared_bucket`` creates from now on (adaptive by default).

    ``False`` restores fixed pacing at ``HEADROOM`` × the configured rate — the benchmark's baseline
    (P8) and a way to rule the controller out when diagnosing. Existing buckets are forgotten.
    """
    global _ADAPTIVE
    with _REGISTRY_LOCK:
        _ADAPTIVE = bool(enabled)
        _REGISTRY.clear()


def shared_bucket(key: tuple[str, ...], rate: float, burst: int = 1) -> TokenBucket:
    """Return the process-wide bucket for ``key`` (account, endpoint, action), creating it if needed.

    ``rate`` is the configured limit: an adaptive bucket's ceiling, a fixed bucket paces at
    ``HEADROOM`` of it. The most recently configured rate wins, so all hooks sharing the account
    follow one rate.
    """
    with _REGISTRY_LOCK:
        bucket = _REGISTRY.get(key)
        if bucket is None:
            if _ADAPTIVE:
                bucket = _REGISTRY[key] = AdaptiveBucket(rate, burst)
            else:
                bucket = _REGISTRY[key] = TokenBucket(rate * HEADROOM, burst)
        else:
            wanted = float(rate) if isinstance(bucket, AdaptiveBucket) else float(rate) * HEADROOM
            if bucket.ceiling != wanted:
                bucket.set_rate(wanted)
        return bucket


def reset_shared_buckets() -> None:
    """Forget every shared bucket (tests use this to start from an idle limiter)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
