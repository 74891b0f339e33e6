"""Client-side pacing of MPS API calls: a process-wide, thread-safe bucket per account and action.

MPS limits each account (uin) per action (ProcessImage 20/s, Describe* 100/s), counting the requests
it accepted in a sliding one-second window; a refused request (``RequestLimitExceeded``) costs a round
trip and a backoff. Pacing keeps us under the limit in the first place. Buckets hand out
*reservations* — the delay the caller must wait before sending — so one object serves threads
(``time.sleep``) and coroutines (``asyncio.sleep``) without a lock held while waiting.

Buckets are shared by every hook in the process that uses the same SecretId and endpoint (the limit
is per account). Separate processes — several Airflow workers, the runs of a backfill — cannot see
each other's buckets, so the default bucket **adapts** to what the service answers (issue 13; the idea
of botocore's ``adaptive`` retry mode, a client rate that follows the throttling it sees): see
:class:`AdaptiveBucket`. Alone it paces just under the connection's rate (P1); K processes on one
account settle on about limit ÷ K each with few throttles (P8). The configured rate is the ceiling.

The hook's side of the contract::

    bucket.acquire()                     # or: await bucket.aacquire()
    sent_at = bucket.now()
    ...send...
    bucket.on_success(sent_at)           # answered, and not a throttle
    bucket.on_throttled(sent_at, error.message)   # answered RequestLimitExceeded*

:class:`TokenBucket` is the fixed pacer (a GCRA; the feedback methods only count); it is what
``use_adaptive_pacing(False)`` selects — the benchmark's baseline.
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Fraction of the configured rate a fixed bucket paces at. The service counts requests in a sliding
#: one-second window; pacing at exactly the limit lets thread scheduling and network jitter put a 21st
#: request into some window (measured: ~4 throttles per 100 submissions at 100 %). At 97 % twenty
#: requests span 1.03 s, absorbing ~30 ms of jitter. An adaptive bucket alone instead starts at a 2 %
#: margin, narrows it while nothing is refused (to 0.5 %) and widens it when jitter shows.
HEADROOM = 0.97

# The documented throttle message: "Your current request times equals to `21` in a second, which
# exceeds the frequency limit `20` for a second." (docs: /work/shared/reference/mps-api.md §5.4).
_THROTTLE_COUNTS = re.compile(r"equals to\D*(\d+)\D+?limit\D*(\d+)", re.IGNORECASE)


def throttle_counts(message: str | None) -> tuple[int, int] | None:
    """``(requests seen in the window, limit)`` from a ``RequestLimitExceeded`` message, or None.

    The service says how many requests of the account it counted in the window (accepted and
    refused) and the limit: ``(21, 20)`` after a one-request overshoot, ``(160, 20)``-ish when eight
    processes each send at the full rate.
    """
    if not message:
        return None
    match = _THROTTLE_COUNTS.search(message)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


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

    def acquire(self, sleep: Callable[[float], None] | None = None) -> float:
        """Block the calling thread until its slot; return the time waited (``sleep``: ``time.sleep``
        unless a test passes a fake; looked up per call, never bound at import).

        A reservation voided while waiting (the bucket paused, or gave up the slot it was in) is
        dropped and a new one made: it was planned for a rate the service has since refused.
        """
        waited = 0.0
        while True:
            delay, ticket = self._reserve()
            if delay > 0:
                (sleep or time.sleep)(delay)
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
    """Tuning of :class:`AdaptiveBucket`. The defaults come from the simulation in
    ``tests/unit/test_pacing_sim.py`` and bench P1/P8 (docs/performance.md); times are seconds."""

    #: The service's counting window.
    window: float = 1.0
    #: Jitter margin while alone: the period is ``window × (1 + margin)``. Starts at ``start_margin``,
    #: narrows by ``margin_decay`` per second of quiet down to ``min_margin``, and widens by
    #: ``margin_step`` (up to ``max_margin``) when a throttle shows jitter, not company. A jitter
    #: throttle wastes a whole slot (1/20 s), so the margin narrows slowly.
    start_margin: float = 0.02
    min_margin: float = 0.005
    max_margin: float = 0.10
    margin_step: float = 0.005
    margin_decay: float = 0.001
    #: A throttle is "alone" when at most ``alone_others`` of the window's requests were not ours
    #: (counting ours over the window + ``jitter``, the delay spread that squeezed them together).
    alone_others: int = 1
    jitter: float = 0.1
    #: Margin of the common slot grid once the account is shared (must be the same in every process).
    shared_margin: float = 0.015
    #: How long after the last throttle that showed company the bucket stays on the grid.
    shared_memory: float = 60.0
    #: A throttle reporting ``storm_factor × limit`` requests (or any in the first ``young`` seconds
    #: of this bucket) means several processes at full speed: cut to our share at once.
    storm_factor: float = 1.5
    young: float = 2.0
    #: Minimum growth of the reported count between two throttles to measure our share from it.
    min_growth: int = 15
    #: After a storm cut, throttles of requests sent within ``hold`` are echoes of the storm.
    hold: float = 1.0
    #: For ``settle`` seconds after a storm cut, a lost slot is moved rather than given up (slots were
    #: picked blindly); ``max_moves`` moves within ``move_memory`` mean the account is simply full.
    settle: float = 4.0
    max_moves: int = 3
    move_memory: float = 5.0
    #: Probing: the wait before taking one more slot is ``probe_interval × sqrt(share)`` (× 0.5–1.5
    #: at random), halved after every probe that was not refused, never below ``min_probe_interval``;
    #: a probe is good once ``probe_window`` has passed without a refusal.
    probe_interval: float = 30.0
    min_probe_interval: float = 0.3
    probe_window: float = 1.2
    #: Within a slot, a process sends ``yield_step`` later per slot it holds beyond one (at most
    #: ``max_yield`` and 40 % of a slot, under the grid margin): two requests in one slot go to the
    #: smaller holder.
    yield_step: float = 0.003
    max_yield: float = 0.012


class AdaptiveBucket(TokenBucket):
    """A pacer that shares one account's limit with other processes it cannot see (issue 13).

    The service refuses a request when ``limit`` requests were accepted in the last ``window``;
    refused requests cost nothing but a round trip. Evenly paced, independent processes at a total
    below the limit still collide in such a window (two requests 1 ms apart count like two), and
    one that probes up takes a slot from whoever sends next. So the bucket paces in **slots**:

    * **Alone** (no throttle has shown another process for ``shared_memory``): evenly spaced at
      ``ceiling ÷ (1 + margin)``; the margin follows jitter (starts at 2 %,
      narrows while nothing is refused, widens when a throttle shows only our own requests).
    * **Shared**: every process cuts time into the same grid — period ``window × (1 +
      shared_margin)`` of wall-clock time, ``ceiling × window`` slots — and sends only in the slots
      it holds. Processes holding different slots never exceed the limit in any window, whatever
      their number; two in one slot **contest** it: the service keeps the first request, the loser
      gives the slot up (the smaller holder sends first, so contests move slots toward a fair share).
    * **Storms** (a throttle reports ``storm_factor × limit`` requests, or we just started): our
      share is how much of the growth of the service's count was ours; keep that many slots and
      send nothing until the window has drained.
    * **Probing**: while holding fewer slots than the ceiling, take one more now and then (small
      holders more often); a refused probe gives it back; unrefused probes speed up the next.

    Feedback comes from the hook: ``on_success(sent_at)``, ``on_throttled(sent_at, message)``
    (``sent_at`` = ``now()`` just after ``acquire``; the message is the service's, whose counts are
    used). Thread- and asyncio-safe: state changes under one lock, no lock is held while waiting.
    The clock is wall time by default so that processes (and hosts, NTP-synced) share the grid.
    """

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
        self._slots = _slots(ceiling, p.window)
        self._owned: frozenset[int] = frozenset(range(self._slots))
        self._sorted: list[int] = sorted(self._owned)
        now = clock()
        self._margin = p.start_margin
        self._margin_base = p.start_margin
        self._margin_at = now
        self._last_widen = -math.inf
        self._shared_until = -math.inf
        self._last_grant = -math.inf
        self._born = math.inf
        self._storm_hold = -math.inf
        self._recent: deque[tuple[float, int]] = deque(maxlen=64)  # (sent, seen) of recent throttles
        self._moves: deque[float] = deque(maxlen=8)
        self._target = self._slots
        self._probing: frozenset[int] = frozenset()
        self._probe_started = 0.0
        self._streak = 0
        self._next_probe = now + self._interval()
        #: Counters for benchmarks and logs.
        self.cuts = 0
        self.widenings = 0
        self.probes = 0
        self.failed_probes = 0
        self.storms = 0

    # ---- state ------------------------------------------------------------------------------
    @property
    def budget(self) -> int:
        """Requests per period this bucket sends now (the slots it holds)."""
        return len(self._owned)

    @property
    def pacing_rate(self) -> float:
        """Calls per second this bucket sends at now (at most ``rate``)."""
        return len(self._owned) / self._period(self._clock())

    def shared(self) -> bool:
        """Whether the bucket paces on the common grid (another process was seen recently)."""
        return self._clock() < self._shared_until

    def _period(self, now: float) -> float:
        margin = self.params.shared_margin if now < self._shared_until else self._margin
        return max(self.params.window, self._slots / self._rate) * (1.0 + margin)

    def _hold(self, owned: frozenset[int] | set[int]) -> None:
        self._owned = frozenset(owned)
        self._sorted = sorted(self._owned)

    def set_rate(self, rate: float) -> None:
        """Change the ceiling (a connection edited to another ``process_image_rate``)."""
        _check_rate(rate)
        with self._lock:
            full = len(self._owned) == self._slots
            self._rate = float(rate)
            self._slots = _slots(rate, self.params.window)
            kept = {j for j in self._owned if j < self._slots}
            self._hold(set(range(self._slots)) if full or not kept else kept)
            self._target = min(self._target, self._slots)

    # ---- reservations -------------------------------------------------------------------------
    def _reserve(self) -> tuple[float, Any]:
        with self._lock:
            now = self._clock()
            p = self.params
            period = self._period(now)
            if self._last_grant > now + 60 * period:  # the wall clock stepped back: start afresh
                self._last_grant = -math.inf
            # Never two grants closer than the ceiling allows, whatever the grid does.
            earliest = max(now, self._last_grant + p.window / self._slots * (1 - 1e-9))
            slot: int | None = None
            if now >= self._shared_until:  # alone: evenly spaced, any phase
                send_at = max(now, self._last_grant + period / len(self._owned))
            else:  # shared: the next instance of a slot we hold
                width = period / self._slots
                offset = min(self._yield_offset(), 0.4 * width)  # stay inside our slot (100/s: 10 ms)
                cycle = math.floor(earliest / period)
                found: float | None = None
                while found is None:
                    base = cycle * period
                    for j in self._sorted:
                        t = base + j * width + offset
                        if t >= earliest:
                            found, slot = t, j
                            break
                    cycle += 1
                send_at = found
            self._last_grant = send_at
            self._born = min(self._born, send_at)
            self.ledger.append(send_at)
            return send_at - now, (self.epoch, slot)

    def still_valid(self, ticket: Any) -> bool:
        """A reservation stays good unless the bucket paused or gave its slot up meanwhile."""
        epoch, slot = ticket
        return bool(epoch == self.epoch and (slot is None or slot in self._owned))

    def _yield_offset(self) -> float:
        p = self.params
        held = len(self._owned) - len(self._probing)  # a probe competes at the size we had before it
        return min(p.max_yield, p.yield_step * max(0, held - 1))

    def _slot_of(self, sent: float) -> int:
        period = self._period(sent)
        return int((sent % period) / (period / self._slots) + 0.5) % self._slots

    # ---- feedback -----------------------------------------------------------------------------
    def on_success(self, sent_at: float | None = None) -> None:
        """A call paced by this bucket was answered (not throttled): narrow the margin; probe."""
        with self._lock:
            self.successes += 1
            p = self.params
            now = self._clock()
            self._margin = max(p.min_margin, self._margin_base - p.margin_decay * (now - self._margin_at))
            if self._probing and now >= self._probe_started + p.probe_window:
                self._probing = frozenset()  # nobody refused it: keep the slot(s), speed up
                self._streak += 1
                self._target = max(self._target, len(self._owned))
                self._next_probe = now + self._interval()
            if not self._probing and len(self._owned) < self._slots and now >= self._next_probe:
                free = [j for j in range(self._slots) if j not in self._owned]
                step = min(len(free), 2 ** max(0, min(self._streak - 1, 3)))
                self._probing = frozenset(self._rng.sample(free, step))
                self._hold(self._owned | self._probing)
                self._probe_started = now
                self.probes += 1

    def on_throttled(self, sent_at: float | None = None, message: str | None = None) -> None:
        """The service refused a call sent at ``sent_at`` with ``message`` (``RequestLimitExceeded``)."""
        with self._lock:
            self.throttles += 1
            p = self.params
            now = self._clock()
            sent = now if sent_at is None else sent_at
            counts = throttle_counts(message)
            # Jitter is what squeezes our own requests into one window: count ours a little wider.
            near = sum(1 for t in self.ledger if sent - p.window - p.jitter < t <= sent)
            alone = counts is not None and counts[0] - near <= p.alone_others and now >= self._shared_until
            if alone and self._margin < p.max_margin:  # only our own requests: jitter, widen the margin
                if sent >= self._last_widen + p.hold:
                    self._margin = self._margin_base = min(p.max_margin, self._margin + p.margin_step)
                    self._margin_at = self._last_widen = now
                    self.widenings += 1
                return
            self._shared_until = now + p.shared_memory
            if sent < self._storm_hold:  # the window is still full of the storm we cut for
                return
            slot = self._slot_of(sent)
            if slot in self._probing:
                self.failed_probes += 1
            if counts is not None:
                self._recent.append((sent, counts[0]))
            self._probing = frozenset()
            young = self._born <= sent < self._born + p.young
            stormy = counts is not None and (counts[0] >= p.storm_factor * counts[1] or young)
            if stormy and counts is not None and self._storm(sent, now, slot, *counts):
                return
            if slot in self._owned:
                self._contest_lost(slot, now)
            self._streak = 0
            self._next_probe = now + self._interval()

    def _interval(self) -> float:
        """Wait before the next probe: ``sqrt(share)`` makes small holders probe more often (their
        probes win contests against larger ones) while the whole account's probing rate grows only
        slowly with the number of processes; each unrefused probe in a row halves it."""
        p = self.params
        share = len(self._owned) / self._slots
        base = p.probe_interval * math.sqrt(share) * self._rng.uniform(0.5, 1.5)
        return max(p.min_probe_interval, base / 2**self._streak)

    def _contest_lost(self, slot: int, now: float) -> None:
        """Another process sent in our slot and the service kept theirs: give it up — or, right after
        a storm (slots picked blindly) and within our share, move to another slot."""
        p = self.params
        moves = sum(1 for t in self._moves if t > now - p.move_memory)
        settling = now < self._storm_hold + p.settle
        crowded = len(self._owned) > max(1, self._target) or moves >= p.max_moves
        if len(self._owned) > 1 and (crowded or not settling):
            self._hold(self._owned - {slot})
            self._target = min(self._target, len(self._owned))
            self.cuts += 1
            return
        others = [j for j in range(self._slots) if j not in self._owned]
        if others:  # our only slot (or settling): try another one
            self._hold((self._owned - {slot}) | {self._rng.choice(others)})
            self._moves.append(now)

    def _storm(self, sent: float, now: float, slot: int, seen: int, limit: int) -> bool:
        """Several processes at full speed: keep our share and wait for the window to drain.

        Our share is how much of the growth of the service's count, between an earlier throttle of
        ours and this one, was our requests. Growth, unlike totals, does not favour whoever started
        first (a process alone for a while fills most of the window itself). Without an earlier
        throttle to compare with, returns False: this one is handled as a lost contest, and the
        next one — a storm refuses again within a request or two — decides.
        """
        p = self.params
        share = None
        for then, seen_then in self._recent:
            if then >= sent - p.window and seen - seen_then >= p.min_growth:
                mine = sum(1 for t in self.ledger if then < t <= sent)
                share = min(1.0, mine / (seen - seen_then))
                break
        if share is None:
            return False
        self._target = max(1, min(len(self._owned) - 1, math.floor(share * limit * p.window)))
        rest = sorted(self._owned - {slot})
        self._rng.shuffle(rest)
        self._hold(set(rest[: self._target]) or {slot})
        self._storm_hold = now + p.hold
        self._streak = 0
        self._next_probe = now + p.hold + self._rng.uniform(0.5, 2.5)  # fill what rounding left
        self.cuts += 1
        self.storms += 1
        # The window stays full until the storm's requests age out: from one window after our
        # oldest request in it, no sooner (others' are no older when all started together).
        mine_now = [t for t in self.ledger if sent - p.window < t <= sent]
        resume = min(mine_now, default=sent) + p.window * (1 + p.shared_margin)
        if resume > now:
            self._last_grant = max(self._last_grant, resume - p.window / self._slots)
            self.epoch += 1
        return True


def _slots(ceiling: float, window: float) -> int:
    return max(1, math.ceil(ceiling * window - 1e-9))


def _check_rate(rate: float) -> None:
    if rate <= 0:
        raise ValueError(f"rate must be > 0 requests/second, got {rate!r}")


_REGISTRY: dict[tuple[str, ...], TokenBucket] = {}
_REGISTRY_LOCK = threading.Lock()


#: Fixed pacing (``HEADROOM`` × the configured rate) is the default. ``AIRFLOW_MPS_PACING=adaptive`` in
#: the environment of every worker opts in to :class:`AdaptiveBucket` — experimental: on one shared
#: account it cut throttled answers from 61-71 % to 4-7 % of ProcessImage calls, but its shares are
#: uneven, so a backfill's slowest task finishes later (docs/performance.md, P8).
def _adaptive_from_environment() -> bool:
    return os.environ.get("AIRFLOW_MPS_PACING", "fixed").strip().lower() == "adaptive"


_ADAPTIVE = _adaptive_from_environment()


def use_adaptive_pacing(enabled: bool) -> None:
    """Choose the kind of bucket ``shared_bucket`` creates from now on (fixed unless
    ``AIRFLOW_MPS_PACING=adaptive``).

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
