"""Per-replica concurrency caps, and the queue of requests waiting for a free slot.

Each routable replica takes at most ``cap`` requests at once (``None``: no cap). A replica is
*blocked* while it holds ``cap`` requests, the throughput gate has closed it (its
allowance of new requests until the gate's next sample is spent) or the outlier detector
has ejected it (`llmservice.router.outliers`); the rest are free. A
request takes a slot at once when nothing waits and some replica is free (the fast path:
one balancer pick, as without admission); otherwise it waits in a `FairQueue` under its
key's name and priority, bounded per key (the key's ``max_queued``) and in total
(``max_queued``), for at most ``queue_timeout`` seconds.

Whenever a slot frees, a replica opens or joins, the queue's next request (by weighted fair
queuing) is dispatched: the balancer picks its replica with the blocked ones excluded. A
queued request so goes to its session's replica when that one has room, and otherwise to
another replica with room, where the session then stays, as a session leaves an overloaded
replica. Waiting for the session's own replica instead would idle the free ones
(head-of-line blocking) while the queue grows, and the prefix cache a session would find there
is worth less than a request that waits for no reason. Because any free replica takes the
head of the queue, requests wait only while every replica is blocked.

A slot is released exactly once, whatever ends the request: the proxy releases the slot it
holds in a ``finally``; a waiter cancelled (client gone, total timeout) after it was given a
slot but before it could use it releases that slot here.

The refusals carry an honest ``Retry-After``: the time the queue is expected to take to
move one place for the key, from the rate at which slots have been freeing (`DecayingRate`)
and the key's share of dispatch among the keys waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import partial

from llmservice.router.admission.fair_queue import FairQueue
from llmservice.router.admission.rate import DecayingRate
from llmservice.router.balancer import Balancer, Choice
from llmservice.router.clients import Client
from llmservice.router.errors import (
    ColdStartTimeout,
    KeyQueueFull,
    QueueFull,
    QueueTimeout,
    RouterError,
)

__all__ = ["Dispatcher"]


@dataclass(eq=False, slots=True)
class _Waiter:
    future: asyncio.Future[Choice]
    key: str | None  # the routing key
    name: str  # the API key's name
    priority: int
    queued_at: float


class Dispatcher:
    """Slots per replica and the fair queue in front of them.

    ``loads`` is the proxy's in-flight count per replica (shared, not copied); the dispatcher
    raises it when it hands out a slot, and the proxy lowers it, then calls `freed`.
    ``release`` is the proxy's way of giving a slot back (used for a waiter cancelled after
    it got one). ``on_wait`` is told each dispatched waiter's key name and time waited.
    """

    def __init__(
        self,
        balancer: Balancer,
        loads: dict[str, int],
        release: Callable[[str], None],
        *,
        cap: int | None,
        max_queued: int,
        queue_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        if cap is not None and cap < 1:
            raise ValueError("a replica's cap must be at least 1")
        self.balancer = balancer
        self.loads = loads
        self.release = release
        self.cap = cap
        self.max_queued = max_queued
        self.queue_timeout = queue_timeout
        self.clock = clock
        self.on_wait = on_wait
        self.replicas: frozenset[str] = frozenset()
        self.blocked: set[str] = set()
        self.closed: set[str] = set()  # by the throughput gate
        self.ejected: set[str] = set()  # by the outlier detector
        self.allowance: dict[str, int] = {}  # the gate's: new requests until its next sample
        self.queue: FairQueue[_Waiter] = FairQueue()
        self.waiting = 0  # len(queue), kept as a plain int for the fast path
        self.departures = DecayingRate(now=clock())

    # -- replica state ------------------------------------------------------------------

    def _free(self, name: str) -> bool:
        return (
            name not in self.closed
            and name not in self.ejected
            and (self.cap is None or self.loads.get(name, 0) < self.cap)
        )

    def update(self, replicas: Collection[str]) -> None:
        """The routable replicas changed."""
        self.replicas = frozenset(replicas)
        self.closed &= self.replicas
        self.ejected &= self.replicas
        self.blocked = {name for name in self.replicas if not self._free(name)}
        self._dispatch()

    def set_allowance(self, name: str, allowance: int | None) -> None:
        """The throughput gate lets ``name`` take ``allowance`` more requests (None: any)."""
        if allowance is None:
            self.allowance.pop(name, None)
        else:
            self.allowance[name] = allowance
        if allowance is not None and allowance <= 0:
            self.closed.add(name)
            if name in self.replicas:
                self.blocked.add(name)
        else:
            self.closed.discard(name)
            if self._free(name):
                self.blocked.discard(name)
                self._dispatch()

    def set_ejected(self, name: str, ejected: bool) -> None:
        """The outlier detector ejected ``name`` (True) or readmitted it (False)."""
        if ejected:
            self.ejected.add(name)
            if name in self.replicas:
                self.blocked.add(name)
        else:
            self.ejected.discard(name)
            if name in self.replicas and self._free(name):
                self.blocked.discard(name)
                self._dispatch()

    def limits(self) -> Iterator[tuple[str, int]]:
        """(replica, cap) of every routable replica, when there is a cap."""
        if self.cap is not None:
            for name in sorted(self.replicas):
                yield name, self.cap

    def queued(self) -> Iterator[tuple[str, int]]:
        """(key name, requests waiting) for every key that has waited."""
        return self.queue.counts()

    # -- slots --------------------------------------------------------------------------

    def _take(self, name: str) -> None:
        load = self.loads.get(name, 0) + 1
        self.loads[name] = load
        if self.cap is not None and load >= self.cap:
            self.blocked.add(name)
        if self.allowance:
            left = self.allowance.get(name)
            if left is not None:
                self.allowance[name] = left - 1
                if left <= 1:
                    self.closed.add(name)
                    self.blocked.add(name)

    def try_acquire(self, key: str | None, tried: Collection[str]) -> Choice | None:
        """A free replica's slot for ``key`` at once, or None (all blocked, or others wait)."""
        if self.waiting and not tried:
            return None  # first come the requests already waiting
        blocked = self.blocked
        if len(blocked) >= len(self.replicas):
            return None
        choice = self.balancer.pick(key, self.loads, blocked.union(tried) if tried else blocked)
        if choice is not None:
            self._take(choice.replica)
        return choice

    def freed(self, name: str) -> None:
        """The proxy lowered ``name``'s load: one slot is free again."""
        self.departures.add(self.clock())
        if name in self.blocked and self._free(name):
            self.blocked.discard(name)
        if self.waiting:
            self._dispatch()

    def _dispatch(self) -> None:
        queue, blocked = self.queue, self.blocked
        while self.waiting and len(blocked) < len(self.replicas):
            waiter = queue.pop()
            self.waiting -= 1
            if waiter.future.done():  # cancelled; its task has not run its handler yet
                continue
            choice = self.balancer.pick(waiter.key, self.loads, blocked)
            if choice is None:  # pragma: no cover - a free replica is always eligible
                queue.push(waiter.name, waiter.priority, waiter)
                self.waiting += 1
                return
            self._take(choice.replica)
            waiter.future.set_result(choice)
            if self.on_wait is not None:
                self.on_wait(waiter.name, self.clock() - waiter.queued_at)

    # -- waiting ------------------------------------------------------------------------

    def expected_wait(self, client: Client | None) -> float:
        """Seconds until the queue moves one place for ``client`` (everyone when None)."""
        per_second = self.departures.per_second(self.clock())
        if per_second <= 0:
            return self.queue_timeout
        share = 1.0
        if client is not None:
            weights = self.queue.weights_waiting()
            weight = max(1, client.priority)
            if self.queue.waiting(client.name) == 0:
                weights += weight
            share = weight / max(weights, weight)
        return min(self.queue_timeout, 1.0 / (per_second * share))

    async def wait(self, key: str | None, client: Client, cold_start: float = 0.0) -> Choice:
        """Wait in the queue for a slot; the refusals are `TooManyRequests` errors.

        ``cold_start`` > 0: there is no replica yet, and the request waits up to that many
        seconds for one (in the same queue, so it counts in ``queued`` where an autoscaler
        sees it), then fails with `ColdStartTimeout` (503) rather than `QueueTimeout`.
        """
        name = client.name
        if client.max_queued is not None and self.queue.waiting(name) >= client.max_queued:
            raise KeyQueueFull(
                f"API key {name!r} already has {client.max_queued} requests waiting.",
                retry_after=self.expected_wait(client),
            )
        if self.waiting >= self.max_queued:
            raise QueueFull(
                f"The router's queue is full ({self.max_queued} requests waiting).",
                retry_after=self.expected_wait(None),
            )
        loop = asyncio.get_running_loop()
        weight = max(1, client.priority)  # a weight: the keys file allows nothing lower
        waiter = _Waiter(loop.create_future(), key, name, weight, self.clock())
        self.queue.push(name, weight, waiter)
        self.waiting += 1
        if cold_start > 0:
            refusal = partial(self._cold_start_timeout, cold_start)
            timer = loop.call_later(cold_start, self._expire, waiter, refusal)
        else:
            refusal = partial(self._queue_timeout, client)
            timer = loop.call_later(self.queue_timeout, self._expire, waiter, refusal)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(future.result().replica)  # dispatched just before the cancel
            elif self.queue.remove(name, waiter):
                self.waiting -= 1
            raise
        finally:
            timer.cancel()

    def _expire(self, waiter: _Waiter, refusal: Callable[[], RouterError]) -> None:
        """The waiter's time is up: it leaves the queue with ``refusal()``."""
        if waiter.future.done() or not self.queue.remove(waiter.name, waiter):
            return
        self.waiting -= 1
        waiter.future.set_exception(refusal())

    def _queue_timeout(self, client: Client) -> RouterError:
        return QueueTimeout(
            f"No engine replica had room within {self.queue_timeout:g} s.",
            retry_after=self.expected_wait(client),
        )

    @staticmethod
    def _cold_start_timeout(held: float) -> RouterError:
        return ColdStartTimeout(
            f"No engine replica became ready within {held:g} s; the engine may still be starting.",
            retry_after=min(held, 30.0),
        )
