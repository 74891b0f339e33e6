"""Adaptive pacing, simulated: K processes share one account's 20/s sliding-window limit (issue 13).

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

The assertions are the issue's, measured as bench P1/P8 measure them (from the first request sent
to the last answer): one process alone at ≥ 98 % of the limit; K = 4 and 8 processes that start
together at ≥ 95 % of the limit with ≤ 5 % of requests refused, each at limit ÷ K, finishing
together, none ever above the ceiling — also when the host is too busy to answer in order while
they meet; a process recovers after another one's burst; the fixed pacer does far worse on the
same world. Processes that start seconds apart are only shown to stay safe (no failures, few
refusals): the first keeps most of the limit until it finishes (see that test).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

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


def _processes(
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


def _stalls(
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


def _whole_run(outcome: Outcome, start: float) -> tuple[float, float, float]:
    """(aggregate ÷ limit, refused share, completion spread) from the first request sent to the last
    answer, as bench P8 measures them."""
    clients = outcome.clients
    done = [c.done_at for c in clients if c.done_at is not None]
    assert len(done) == len(clients), "a process did not finish"
    first = min(start + c.start for c in clients)
    images = sum(c.images for c in clients)
    requests, refused = outcome.requests_between(0, math.inf)
    return images / (max(done) - first) / LIMIT, refused / requests, max(done) - min(done)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_process_alone_runs_just_under_the_limit(seed: int) -> None:
    """P1: alone, the bucket narrows its jitter margin while nothing is refused, and holds back a
    request whose predecessor a window earlier answered late (2 % of requests here are up to 30 ms
    late, harsher than the bench) instead of having it refused."""
    clock, clients = _processes(1, 600, seed=seed)
    start = clock.now
    outcome = simulate(clients, clock, seed=seed)
    (client,) = clients
    assert client.accepted == 600 and client.failed == 0
    aggregate, refused, _ = _whole_run(outcome, start)
    assert aggregate >= 0.98
    assert refused <= 0.005
    assert client.bucket.max_in_window(1.0) <= LIMIT


def _share(k: int, images: int, seed: int, network: Network | None = None, aggregate: float = 0.95) -> None:
    clock, clients = _processes(k, images, seed)
    start = clock.now
    outcome = simulate(clients, clock, seed=seed, network=network)
    measured, refused, spread = _whole_run(outcome, start)
    assert measured >= aggregate  # the whole run, start-up and tail included
    assert refused <= 0.05
    assert spread <= 3.0  # equal turns, equal work: they finish together
    # Fair: while all K submit, each gets limit ÷ K (within 5 %).
    t0 = start + 2.0
    t1 = min(c.done_at for c in clients if c.done_at is not None)
    for client in clients:
        rate = outcome.accepted_between(t0, t1, client.index) / (t1 - t0)
        assert rate == pytest.approx(LIMIT / k, rel=0.05), client.index
    assert all(c.failed == 0 and c.accepted == images for c in clients)
    assert all(c.bucket.max_in_window(1.0) <= LIMIT for c in clients)


@pytest.mark.parametrize(("k", "images"), [(4, 300), (8, 300)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_processes_that_start_together_take_turns(k: int, images: int, seed: int) -> None:
    """P8: K processes start within 50 ms at the full rate; the storm's counts give each the group
    size and a rank of its own; they take turns on the common grid."""
    _share(k, images, seed)


@pytest.mark.parametrize(("k", "images"), [(2, 600), (4, 300)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_processes_that_start_together_take_turns_at_short_round_trips(
    k: int, images: int, seed: int
) -> None:
    """The same at a 5 ms round trip (the real service from its own region; the emulator on the
    same host): an answer is back before the next request leaves, so a refusal finds nothing of
    ours in flight to measure the group with — the bucket keeps measuring for ``gaps`` more sends.
    (Without it: 0.59-0.78 of the limit over eight seeds. K = 8 × 300 here, the pacing board's ten
    seeds at 34cef65: P8's targets met in eight; in the other two the turns are misread, down to
    0.73, docs/performance.md.)"""
    _share(k, images, seed, network=Network(base=0.005, jitter_mean=0.002))


@pytest.mark.parametrize(("k", "images"), [(4, 300), (8, 300)])
@pytest.mark.parametrize("seed", [1, 2])
def test_processes_that_meet_while_the_host_is_too_busy_still_take_turns(
    k: int, images: int, seed: int
) -> None:
    """A 2-core host with the service on it, K processes starting at once: requests sent in the
    first 0.7 s reach the service only when it catches up, in any order. Slow start keeps each at
    two unanswered requests until the answers come back steadily, so the processes meet in the
    service's window afterwards, in order. (The 0.7 s lost count in the whole run: ≥ 0.94.)"""
    _share(k, images, seed, network=Network(busy_for=0.7, busy_delay=0.1), aggregate=0.94)


def test_processes_that_start_seconds_apart_stay_safe() -> None:
    """Runs that start 2 s apart: the first has the account to itself and keeps most of it — a
    latecomer meets a full window, learns no group size from it, and takes one slot per window, then
    probes. What holds: nothing fails, few requests are refused, nobody exceeds the ceiling, and
    everyone progresses. (The whole run stays below the limit: a median of 0.79 over thirty seeds,
    0.72 at worst; 10 s apart 0.73, 0.62 at worst — benchmarks/pacing_board.py's seeding, 34cef65.)"""
    clock = SimClock()
    clients = [
        Client(i, AdaptiveBucket(LIMIT, clock=clock, seed=40 + i), 300, start=2.0 * i) for i in range(4)
    ]
    _stays_safe(clock, clients, seed=4, refused_at_most=0.06)


def _stays_safe(clock: SimClock, clients: list[Client], *, seed: int, refused_at_most: float) -> None:
    """Whatever the shares came out as: few refusals, every image submitted, never above the ceiling."""
    start = clock.now
    outcome = simulate(clients, clock, seed=seed)
    _, refused, _ = _whole_run(outcome, start)
    assert refused <= refused_at_most
    assert all(c.failed == 0 and c.accepted == c.images for c in clients)
    assert all(c.bucket.max_in_window(1.0) <= LIMIT for c in clients)


def test_eight_processes_starting_within_a_third_of_a_second_stay_safe() -> None:
    """K = 8 whose starts spread over 0.3 s (bench P8's K = 8 runs that missed the target started
    their first submissions 0.26-0.28 s apart). With storms of three intervals the late ones were
    still in slow start when the counts were read: groups of about 6 where there are 8, shares
    halved and probed back slowly (0.49-0.78 of the limit over ten seeds, median 0.70). With seven:
    0.95-0.96 over the same ten seeds, but 6.7-7.5 % refused at 150 images each (the storm's cost;
    at 300 images P8's targets are met in 24 seeds of 30). What holds: nothing fails, few refusals,
    nobody exceeds the ceiling."""
    clock, clients = _processes(8, 150, seed=1, spread=0.3)
    _stays_safe(clock, clients, seed=1, refused_at_most=0.10)


def test_eight_processes_that_stall_while_starting_stay_safe() -> None:
    """Bench P8's K = 8 on its 2-core host, in three runs of 2026-11-30: the emulator decided within
    4 ms of receiving a request (p99, measured), yet each process's storm tickets came back out of
    order — requests held on the client for tens of milliseconds, then sent in a bunch — while
    K = 4's were in order (four later runs, timed end to end, held nothing). Modelled as each
    process descheduled five times a second for 30 ms on average during its first 2 s: the counts
    grow unevenly, groups of 3-10 are read where there are 8 and two processes often take one
    turn. What holds: nothing fails, nobody exceeds the ceiling. (Seven-interval storms read it
    right more often — P8's targets met in 10 seeds of 30 at 300 images, was 2; 16 since turns are
    refined no finer than a window (959e568) — but not reliably; docs/performance.md.)"""
    clock, clients = _processes(8, 150, seed=1)
    rng = random.Random(1)
    for client in clients:
        client.stalls = _stalls(rng, clock.now + client.start)
    _stays_safe(clock, clients, seed=1, refused_at_most=0.10)


def test_fixed_pacing_on_the_same_world_throttles_far_more() -> None:
    """The baseline: every process at 97 % of the limit, relying on throttle retries."""
    rates = []
    for adaptive in (True, False):
        clock, clients = _processes(8, 150, seed=2, adaptive=adaptive)
        outcome = simulate(clients, clock, seed=2)
        requests, throttled = outcome.requests_between(0, math.inf)
        rates.append(throttled / requests)
    adaptive_share, fixed_share = rates
    assert fixed_share > 0.5 and adaptive_share < fixed_share / 8


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recovers_after_another_process_bursts(seed: int) -> None:
    """A process alone at the limit; another one bursts at 40/s for 2 s (80 requests, no pacing of
    ours, retried for a while) and stops: the first yields during the burst and finds the freed
    limit again by probing — tens of seconds, not minutes."""
    clock = SimClock()
    steady = Client(0, AdaptiveBucket(LIMIT, clock=clock, seed=seed), 3000)
    burst = Client(1, TokenBucket(40, clock=clock), 80, start=20.0)
    start = clock.now
    outcome = simulate([steady, burst], clock, seed=seed, until=120)

    def rate(t0: float, t1: float) -> float:
        return outcome.accepted_between(start + t0, start + t1, 0) / (t1 - t0)

    assert rate(10, 20) >= 0.95 * LIMIT  # before: alone, just under the limit
    assert rate(23, 25) <= 0.6 * LIMIT  # during: it yielded to the burst instead of fighting it
    assert burst.done_at is not None and burst.failed == 0
    back = burst.done_at - start + 70  # the burst's retries end; within 70 s (probing) ...
    assert rate(back, back + 10) >= 0.9 * LIMIT  # ... it is back near the limit
    assert steady.bucket.max_in_window(1.0) <= LIMIT


def test_no_process_exceeds_the_ceiling_even_when_probing() -> None:
    """Sends, not just acceptances: whatever the controller does, a bucket never sends more than the
    configured rate in any one-second window (the connection's rate is the ceiling)."""
    clock, clients = _processes(4, 300, seed=5)
    simulate(clients, clock, seed=5)
    for client in clients:
        assert client.bucket.max_in_window(1.0) <= LIMIT
        assert isinstance(client.bucket, AdaptiveBucket) and client.bucket.probes > 0
