"""The pacing simulator (issue 13): K processes share one account's 20/s sliding-window limit.

A deterministic discrete-event simulation on a fake clock — no threads, sockets or sleeps — with the
pieces that matter for pacing:

* the **service**: the emulator's limiter semantics (``emulator/mps/models.py`` ``RateLimiter``): per
  account, a sliding one-second window over *accepted* requests; a request is refused when
  ``limit`` were accepted in the last second; the refusal message carries the documented counts
  (every request seen in the window, and the limit);
* the **network**: each request reaches the service after a one-way delay (the bench's 150 ms
  injected latency + seeded jitter with a heavy tail) and the answer comes back a little later;
* each **client**: one real :class:`~airflow_mps.hooks._adaptive.AdaptiveBucket` (or fixed
  ``TokenBucket``) on the simulation clock, ``workers`` concurrent submitters (the batch operator's
  ``submit_concurrency``) that re-reserve a voided reservation as ``acquire`` does, and the hook's
  retry on throttling: full-jitter exponential backoff (``RetryPolicy``), paced by the bucket again.

Used by ``tests/unit/hooks/test_pacing_sim.py`` (what the rules add up to, asserted) and
``benchmarks/pacing_board.py`` (the same worlds over many seeds, to judge a change).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_mps.hooks._adaptive import AdaptiveBucket
from airflow_mps.hooks._pacing import AdaptiveParams, TokenBucket

THROTTLE_MESSAGE = (
    "Your current request times equals to `{seen}` in a second, which exceeds the frequency limit "
    "`{limit}` for a second. Please reduce the frequency of calls."
)


class SimClock:
    """The simulation's time; buckets read it, the event loop advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class SlidingWindowService:
    """The emulator's ``RateLimiter`` for one account and action, with a log of what it decided."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._accepted: deque[float] = deque()
        self._seen: deque[float] = deque()
        #: (arrival time, client index, accepted?)
        self.log: list[tuple[float, int, bool]] = []

    def check(self, now: float, client: int) -> tuple[bool, int]:
        horizon = now - self.window
        while self._accepted and self._accepted[0] <= horizon:
            self._accepted.popleft()
        while self._seen and self._seen[0] <= horizon:
            self._seen.popleft()
        self._seen.append(now)
        ok = len(self._accepted) < self.limit
        if ok:
            self._accepted.append(now)
        self.log.append((now, client, ok))
        return ok, len(self._seen)


@dataclass
class Network:
    """One-way delay to the service and back: base + exponential jitter + rare spikes (seeded)."""

    base: float = 0.150
    jitter_mean: float = 0.001
    spike_probability: float = 0.02
    spike_max: float = 0.030
    back: float = 0.003
    #: A host busy for the first ``busy_for`` seconds (every process starting at once on a small
    #: machine, the service on the same cores): requests sent then reach the service only when it
    #: catches up, in any order within ``busy_delay``.
    busy_for: float = 0.0
    busy_delay: float = 0.0

    def delay(self, rng: random.Random, elapsed: float = math.inf) -> float:
        extra = rng.expovariate(1.0 / self.jitter_mean) if self.jitter_mean > 0 else 0.0
        if rng.random() < self.spike_probability:
            extra += rng.uniform(0.0, self.spike_max)
        if elapsed < self.busy_for:  # held until the host catches up, then in any order
            extra += self.busy_for - elapsed + rng.uniform(0.0, self.busy_delay)
        return self.base + extra


@dataclass
class Client:
    """One process: a bucket, ``workers`` submitters, ``images`` to submit starting at ``start``."""

    index: int
    bucket: TokenBucket
    images: int
    workers: int = 8
    start: float = 0.0
    sent: int = 0
    accepted: int = 0
    throttled: int = 0
    failed: int = 0
    done_at: float | None = None
    accept_times: list[float] = field(default_factory=list)
    remaining: int = 0
    #: Times (``(from, to)``, on the simulation clock) this process is not scheduled: a request the
    #: bucket let go then leaves only at the end (its ``sent_at`` stays the bucket's time).
    stalls: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.remaining = self.images


@dataclass
class Outcome:
    clients: list[Client]
    service: SlidingWindowService
    end: float

    def accepted_between(self, t0: float, t1: float, client: int | None = None) -> int:
        return sum(
            1 for t, c, ok in self.service.log if ok and t0 <= t < t1 and (client is None or c == client)
        )

    def requests_between(self, t0: float, t1: float, client: int | None = None) -> tuple[int, int]:
        """(requests, throttled) that reached the service in [t0, t1)."""
        rows = [ok for t, c, ok in self.service.log if t0 <= t < t1 and (client is None or c == client)]
        return len(rows), sum(1 for ok in rows if not ok)


def make_bucket(
    clock: SimClock, ceiling: float, *, adaptive: bool = True, params: AdaptiveParams | None = None
) -> TokenBucket:
    if adaptive:
        return AdaptiveBucket(ceiling, clock=clock, params=params)
    return TokenBucket(ceiling * 0.97, clock=clock)


def simulate(
    clients: list[Client],
    clock: SimClock,
    *,
    limit: int = 20,
    network: Network | None = None,
    seed: int = 1,
    until: float = 600.0,
    base_delay: float = 0.2,
    max_delay: float = 10.0,
    max_attempts: int = 50,
    report_message: bool = True,
    on_event: Callable[[float], None] | None = None,
) -> Outcome:
    """Run every client to completion (or ``until`` seconds after the clock's start)."""
    rng = random.Random(seed)
    net = network or Network()
    service = SlidingWindowService(limit)
    t_start = clock.now
    seq = itertools.count()
    events: list[tuple[float, int, Callable[[], None]]] = []

    def at(when: float, action: Callable[[], None]) -> None:
        heapq.heappush(events, (when, next(seq), action))

    def worker_next(client: Client, attempt: int) -> None:
        """A free worker: take a new image (attempt 0) or retry; reserve a slot and send then."""
        if attempt == 0:
            if client.remaining == 0:
                return
            client.remaining -= 1
        delay, ticket = client.bucket._reserve()
        at(clock.now + delay, lambda: send(client, attempt, ticket))

    def send(client: Client, attempt: int, ticket: object) -> None:
        claimed = client.bucket._claim(ticket)
        if claimed is None:  # voided while waiting: reserve again (as acquire does)
            delay, ticket = client.bucket._reserve()
            at(clock.now + delay, lambda: send(client, attempt, ticket))
            return
        if claimed > 0:  # held back a little more
            at(clock.now + claimed, lambda: send(client, attempt, ticket))
            return
        sent_at = clock.now
        client.sent += 1
        leaves = next((end for begin, end in client.stalls if begin <= sent_at < end), sent_at)
        arrive = leaves + net.delay(rng, sent_at - t_start)

        def at_service() -> None:
            ok, seen = service.check(clock.now, client.index)
            at(clock.now + net.back, lambda: answered(client, attempt, sent_at, ok, seen))

        at(arrive, at_service)

    def answered(client: Client, attempt: int, sent_at: float, ok: bool, seen: int) -> None:
        if ok:
            client.accepted += 1
            client.accept_times.append(clock.now)
            client.bucket.on_success(sent_at)
            if client.remaining == 0 and client.accepted + client.failed == client.images:
                client.done_at = clock.now
            worker_next(client, 0)
            return
        client.throttled += 1
        message = THROTTLE_MESSAGE.format(seen=seen, limit=limit) if report_message else None
        client.bucket.on_throttled(sent_at, message)
        if attempt + 1 >= max_attempts:
            client.failed += 1
            worker_next(client, 0)
            return
        backoff = rng.uniform(0.0, min(max_delay, base_delay * 2 ** min(attempt, 30)))
        at(clock.now + backoff, lambda: worker_next(client, attempt + 1))

    def start(client: Client) -> Callable[[], None]:
        return lambda: worker_next(client, 0)

    for client in clients:
        for _ in range(min(client.workers, client.images)):
            at(t_start + client.start, start(client))

    while events:
        when, _, action = heapq.heappop(events)
        if when - t_start > until:
            break
        clock.now = when
        action()
        if on_event is not None:
            on_event(when)
    return Outcome(clients, service, clock.now)


# ---- the scenarios ----------------------------------------------------------------------------
LIMIT = 20


def processes(
    k: int, images: int, seed: int, *, adaptive: bool = True, spread: float = 0.05
) -> tuple[SimClock, list[Client]]:
    """``k`` processes with ``images`` each, started within ``spread`` seconds (a backfill's runs)."""
    clock = SimClock()
    rng = random.Random(seed)
    clients = [
        Client(
            i,
            AdaptiveBucket(LIMIT, clock=clock, seed=seed * 100 + i)
            if adaptive
            else make_bucket(clock, LIMIT, adaptive=False),
            images,
            start=rng.uniform(0.0, spread),
        )
        for i in range(k)
    ]
    return clock, clients


def stalls(
    rng: random.Random, start: float, *, until: float = 2.0, per_second: float = 5.0, mean: float = 0.03
) -> list[tuple[float, float]]:
    """A process starting on a host busier than its cores (eight Airflow workers and the emulator on
    two): descheduled ``per_second`` times a second for ``mean`` seconds on average (exponential),
    during its first ``until`` seconds."""
    stalls, t = [], 0.0
    while (t := t + rng.expovariate(per_second)) < until:
        length = rng.expovariate(1.0 / mean)
        stalls.append((start + t, start + t + length))
        t += length
    return stalls


def whole_run(outcome: Outcome, start: float) -> tuple[float, float, float]:
    """(aggregate ÷ limit, refused share, completion spread) from the first request sent to the last
    answer, as bench P8 measures them."""
    clients = outcome.clients
    done = [c.done_at for c in clients if c.done_at is not None]
    assert len(done) == len(clients), "a process did not finish"
    first = min(start + c.start for c in clients)
    images = sum(c.images for c in clients)
    requests, refused = outcome.requests_between(0, math.inf)
    return images / (max(done) - first) / LIMIT, refused / requests, max(done) - min(done)
