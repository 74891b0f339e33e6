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
from typing import Any

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
        #: Bumped when reservations handed out earlier must be re-made (an adaptive bucket's pause).
        self.epoch = 0
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
        return self._reserve()[0]

    def _reserve(self) -> tuple[float, Any]:
        """``(delay, ticket)``: ``still_valid(ticket)`` says after the wait whether to send."""
        return self._reserve_slot(), self.epoch

    def still_valid(self, ticket: Any) -> bool:
        """Whether a reservation made with ``ticket`` may still be used (nothing voided it since)."""
        return ticket == self.epoch

    def _reserve_slot(self) -> float:
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
        """Block the calling thread until its slot; return the time waited.

        A reservation voided while waiting (the bucket paused, or gave up the slot it was in) is
        dropped and a new one made: it was planned for a rate the service has since refused.
        """
        waited = 0.0
        while True:
            delay, ticket = self._reserve()
            if delay > 0:
                sleep(delay)
                waited += delay
            if self.still_valid(ticket):
                return waited

    async def aacquire(self) -> float:
        """Wait (without blocking the event loop) until the caller's slot; return the time waited."""
        import asyncio

        waited = 0.0
        while True:
            delay, ticket = self._reserve()
            if delay > 0:
                await asyncio.sleep(delay)
                waited += delay
            if self.still_valid(ticket):
                return waited

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
    phases: int = 1
    start_margin: float = 1 / HEADROOM - 1
    min_margin: float = 0.005
    max_margin: float = 0.10
    margin_step: float = 0.01
    margin_decay: float = 0.002
    shared_margin: float = 0.015
    shared_memory: float = 60.0
    alone_others: int = 1
    hold: float = 1.0
    probe_interval: float = 30.0
    min_probe_interval: float = 0.3
    probe_window: float = 1.2
    storm_factor: float = 1.5
    min_growth: int = 5
    move_memory: float = 5.0
    max_moves: int = 3
    settle: float = 4.0
    young: float = 2.0
    quiet: float = 20.0
    yield_step: float = 0.003
    max_yield: float = 0.012


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
        self._owned: set[int] = set(range(self._slots * p.phases))
        self._by_phase = self._index()
        now = clock()
        self._margin = p.start_margin
        self._margin_at = now
        self._margin_base = p.start_margin
        self._shared_until = -math.inf
        self._last_grant = -math.inf
        self._born = math.inf  # first grant
        self._last_widen = -math.inf
        self._storm_hold = -math.inf
        self._probing: set[int] = set()
        self._probe_started = 0.0
        self._streak = 0
        self._next_probe = now + self._interval()
        self._target = len(self._owned)
        self._recent: deque[tuple[float, int]] = deque(maxlen=64)  # (sent, seen) of recent throttles
        self._moves: deque[float] = deque(maxlen=8)
        self.cuts = 0
        self.widenings = 0
        self.probes = 0
        self.failed_probes = 0

    # ---- state ------------------------------------------------------------------------------
    @property
    def units(self) -> int:
        """Send opportunities per ``phases`` periods this bucket owns (``slots × phases`` at most)."""
        return len(self._owned)

    @property
    def budget(self) -> float:
        """Requests per period this bucket sends now (owned units ÷ phases)."""
        return len(self._owned) / self.params.phases

    @property
    def pacing_rate(self) -> float:
        """Calls per second this bucket sends at now (≤ ``rate``)."""
        return self.budget / self._period(self._clock())

    def _shared(self, now: float) -> bool:
        return now < self._shared_until

    def _period(self, now: float) -> float:
        p = self.params
        margin = p.shared_margin if self._shared(now) else self._margin
        return max(p.window, self._slots / self._rate) * (1.0 + margin)

    def _index(self) -> list[list[int]]:
        by_phase: list[list[int]] = [[] for _ in range(self.params.phases)]
        for unit in sorted(self._owned):
            by_phase[unit // self._slots].append(unit % self._slots)
        return by_phase

    def _set_owned(self, owned: set[int]) -> None:
        self._owned = owned
        self._by_phase = self._index()

    def set_rate(self, rate: float) -> None:
        _check_rate(rate)
        with self._lock:
            p = self.params
            full = len(self._owned) == self._slots * p.phases
            self._rate = float(rate)
            self._slots = max(1, math.ceil(rate * p.window - 1e-9))
            total = self._slots * p.phases
            kept = {u for u in self._owned if u % self._slots < self._slots and u < total}
            self._set_owned(set(range(total)) if full or not kept else kept)

    # ---- reservations -------------------------------------------------------------------------
    def _reserve(self) -> tuple[float, Any]:
        with self._lock:
            now = self._clock()
            p = self.params
            period = self._period(now)
            unit = None
            gap = p.window / self._slots * (1 - 1e-9)  # never faster than the ceiling
            earliest = max(now, self._last_grant + gap)
            if not self._shared(now):  # alone: evenly spaced at the adaptive rate, any phase
                send_at = max(now, self._last_grant + period / self.budget)
            else:  # shared: the owned units of the common grid
                width = period / self._slots
                cycle = math.floor(earliest / period)
                send_at = None
                while send_at is None:
                    base = cycle * period
                    for j in self._by_phase[cycle % p.phases]:
                        t = base + j * width + self._yield_offset()
                        if t >= earliest:
                            send_at = t
                            unit = (cycle % p.phases) * self._slots + j
                            break
                    cycle += 1
            self._last_grant = send_at
            self._born = min(self._born, send_at)
            self.ledger.append(send_at)
            return send_at - now, (self.epoch, unit)

    def still_valid(self, ticket: Any) -> bool:
        epoch, unit = ticket
        return epoch == self.epoch and (unit is None or unit in self._owned)

    def _yield_offset(self) -> float:
        """Send a little later the more units we hold: when two processes send in the same unit,
        the service keeps the earlier request, so contests go to the smaller holder (fairness)."""
        p = self.params
        held = len(self._owned) - len(self._probing)  # a probe competes at the size we had before it
        return min(p.max_yield, p.yield_step * max(0.0, held / p.phases - 1))

    def _unit_of(self, sent: float) -> int:
        period = self._period(sent)
        cycle = math.floor(sent / period + 0.5 / self._slots)
        slot = int((sent - cycle * period) / (period / self._slots) + 0.5) % self._slots
        return (cycle % self.params.phases) * self._slots + slot

    # ---- feedback -----------------------------------------------------------------------------
    def on_success(self, sent_at: float | None = None) -> None:
        with self._lock:
            self.successes += 1
            p = self.params
            now = self._clock()
            self._margin = max(p.min_margin, self._margin_base - p.margin_decay * (now - self._margin_at))
            if self._probing and now >= self._probe_started + p.probe_window:
                self._probing = set()
                # Speed up only while nothing of ours is refused: in a full account a won probe evicts
                # someone (and our next one is likely refused); after others left, every probe wins.
                self._streak = self._streak + 1 if now - self._last_throttle >= p.quiet else 0
                self._target = max(self._target, len(self._owned))
                self._next_probe = now + self._interval()
            total = self._slots * p.phases
            if not self._probing and len(self._owned) < total and now >= self._next_probe:
                free = [u for u in range(total) if u not in self._owned]
                step = min(len(free), 2 ** max(0, min(self._streak - 1, 6)))
                self._probing = set(self._rng.sample(free, step))
                self._set_owned(self._owned | self._probing)
                self._probe_started = now
                self.probes += 1

    def _interval(self) -> float:
        """Seconds to the next probe: small holders probe more often than large ones, so contests
        move units toward a fair share and the account-wide probing rate hardly depends on how many
        processes share it; every won probe in a row halves the wait (capacity freed up)."""
        p = self.params
        share = len(self._owned) / (self._slots * p.phases)
        base = p.probe_interval * math.sqrt(share) * self._rng.uniform(0.5, 1.5)
        return max(p.min_probe_interval, base / 2**self._streak)

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
                    if sent >= self._last_widen + p.hold:
                        self._margin = self._margin_base = min(p.max_margin, self._margin + p.margin_step)
                        self._margin_at = now
                        self._last_widen = now
                        self.widenings += 1
                    return
            self._shared_until = now + p.shared_memory
            self._last_throttle = now
            if sent < self._storm_hold:  # the window is still full of the storm we already cut for
                return
            unit = self._unit_of(sent)
            if unit in self._probing:
                self.failed_probes += 1
            if counts is not None:
                self._recent.append((sent, counts[0]))
            self._probing = set()
            young = sent < self._born + p.young  # we just started: others were here first
            if counts is not None and (counts[0] >= p.storm_factor * counts[1] or young):
                self._storm(sent, now, unit, own, *counts)
                return
            if unit in self._owned:
                self._contest_lost(unit, now)
            self._streak = 0
            self._next_probe = now + self._interval()

    def _contest_lost(self, unit: int, now: float) -> None:
        """Another process sent in the same unit and the service kept theirs: give the unit up if we
        hold more than our share (or keep losing), otherwise move to another unit."""
        p = self.params
        recent_moves = sum(1 for t in self._moves if t > now - p.move_memory)
        settling = now < self._storm_hold + p.settle  # right after a storm cut: units were picked blindly
        crowded = len(self._owned) > max(1, self._target) or recent_moves >= p.max_moves
        if len(self._owned) > 1 and (crowded or not settling):
            self._set_owned(self._owned - {unit})
            self._target = min(self._target, len(self._owned))
            self.cuts += 1
            return
        total = self._slots * p.phases
        others = [u for u in range(total) if u not in self._owned]
        if others:
            self._set_owned((self._owned - {unit}) | {self._rng.choice(others)})
            self._moves.append(now)

    def _storm(self, sent: float, now: float, unit: int, own: int, seen: int, limit: int) -> None:
        """Many processes at once: keep our share of the limit and wait for the window to drain.

        Our share is how much of the account's recent *growth* in requests was ours: between an
        earlier throttle's count and this one, the service saw ``seen - seen_then`` requests and we
        sent some of them. Growth, unlike totals, does not favour the process that started first.
        """
        p = self.params
        share = own / seen
        for then, seen_then in self._recent:
            if then >= sent - p.window and seen - seen_then >= p.min_growth:
                mine = sum(1 for t in self.ledger if then < t <= sent)
                share = min(1.0, mine / (seen - seen_then))
                break
        total = self._slots * p.phases
        self._target = max(1, min(len(self._owned) - 1, math.floor(share * limit / self._slots * total)))
        rest = sorted(self._owned - {unit})
        self._rng.shuffle(rest)
        self._set_owned(set(rest[: self._target]) or {unit})
        self._storm_hold = now + p.hold
        self.cuts += 1
        self._streak = 0
        self._next_probe = now + p.hold + self._rng.uniform(0.5, 2.5)  # fill what rounding left free
        mine_now = [t for t in self.ledger if sent - p.window < t <= sent]
        resume = min(mine_now, default=sent) + p.window * (1 + p.shared_margin)
        if resume > now:
            self._last_grant = max(self._last_grant, resume - p.window / self._slots)
            self.epoch += 1


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
