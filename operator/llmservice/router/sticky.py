"""Sticky sessions placed for balance: each session stays where its KV cache is.

Why not plain consistent hashing with bounded loads (CHWBL) on the session key: a bound on
requests in flight is crossed by ordinary bursts (with 10-25 requests in flight over four
replicas, 1.25 times the mean is 4-8), and every spilled turn re-prefills its whole
conversation on a replica that holds none of it, evicting other sessions' blocks there.
Without a bound, hashing leaves session counts as uneven as chance makes them (the busiest
replica of four often gets 1.2-1.3 times the mean). So placement and stickiness are split:

- **A new session is placed for balance**: among the replicas holding at most
  ``placement_bound`` times the mean requests in flight, the one with the fewest active
  sessions (a request in the last ``active_seconds``); ties go to the first of them on the
  hash ring from the session's key, so router replicas with the same counts agree. The
  placement bound is tight (1.0: not above the mean) because stickiness keeps whatever a
  placement does: with a looser one a replica took new sessions while it was busy, and its
  sessions then spoke at once: one replica held twice the others' requests in flight for
  seconds (the TTFT tail). The fewest sessions rather than, as before, the first replica
  on the ring under 1.05 times the mean count: on the routing benchmark, with one router
  replica, it kept as much of the prefix caches or up to 0.7 points more (three runs, two
  layouts of the ring) with a TTFT tail as low or lower, and as much with two
  (bench/README.md, "Fewest sessions").
- **A known session stays** on the replica that served its previous turn, whatever the
  counts, unless that replica is excluded (failed, ejected, at its concurrency cap) or holds
  more than ``load_bound`` times the mean requests in flight: moving costs a full re-prefill
  of the conversation, so only an overload is worth it (a bound that let shorter
  conversations leave sooner moved ten times as many turns and shortened no tail:
  bench/README.md). A moved session stays where it moved.

What the decisions weigh: the router's own counts, exact at the moment of the pick (the
requests in flight per replica, which with one router replica are the engine's running and
waiting requests, and the active sessions). Not the engines' scraped signals
(``vllm:num_requests_waiting``, KV-cache usage): read every scrape interval they lag the
pile-ups that make the TTFT tail, which build and drain within one to two seconds, and
router replicas that scraped at different moments would place the same session apart.

The table is bounded: at most ``max_sessions`` entries (least recently used first out), and
sessions idle for ``idle_seconds`` are forgotten; a session stops counting for placement
``active_seconds`` after its last request, so ended sessions weigh on nobody. An entry
is a 64-bit key hash, a reference to a replica name and a time: about 220 bytes with its
OrderedDict links, 260 once sessions have gone quiet and both of the table's maps have
grown (measured with tracemalloc), so the default bound of 65,536 sessions holds under
17 MB whatever the session ids are.

Fleet changes: a new replica takes new sessions until its count is even (no live session
moves to it); a removed replica's sessions are placed again, and no other session moves.
Several router replicas share no state: they agree on a new session whenever their counts
have the same fewest replicas (with counts even, the first of them on the ring), and each
follows the sessions it placed itself.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from llmservice.router.config import (
    DEFAULT_LOAD_BOUND,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_PLACEMENT_BOUND,
    DEFAULT_SESSION_ACTIVE_SECONDS,
    DEFAULT_SESSION_IDLE_SECONDS,
)
from llmservice.router.ring import Balancer, Choice, HashRing, hash64

__all__ = ["SessionTable", "StickyBalancer"]


class SessionTable:
    """Where each session is (kept ``idle_seconds`` after its last request), and how many
    sessions each replica has that sent a request in the last ``active_seconds``.

    Placement balances the active counts: a session that ended stops weighing on its
    replica within ``active_seconds``, while its home is remembered for longer in case it
    comes back. At most ``max_sessions`` sessions are kept, the least recently seen first
    out.

    Each session is in one of two maps, oldest first: ``active`` (seen in the last
    ``active_seconds``, counted) or ``dormant`` (seen before that, not counted; expiry moves
    sessions there in the order they were seen, so it stays sorted too). A request of an
    active session, the common case, updates one entry in place.
    """

    def __init__(self, *, max_sessions: int, idle_seconds: float, active_seconds: float) -> None:
        if max_sessions < 1 or idle_seconds <= 0 or active_seconds <= 0:
            raise ValueError("max sessions, idle and active seconds must be positive")
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self.active_seconds = min(active_seconds, idle_seconds)
        # OrderedDicts, not dicts: taking the oldest entry of a plain dict again and again
        # walks over the slots of the entries already taken (until it is resized), which
        # made a full table's pick cost 100 us. Active entries are [replica, last seen]
        # lists, updated in place.
        self._active: OrderedDict[int, list[Any]] = OrderedDict()
        self._dormant: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._active) + len(self._dormant)

    @property
    def counts(self) -> dict[str, int]:
        """Active sessions per replica (replicas without one are absent)."""
        return self._counts

    def get(self, key: int) -> str | None:
        entry = self._active.get(key)
        if entry is not None:
            return entry[0]  # type: ignore[no-any-return]
        dormant = self._dormant.get(key)
        return None if dormant is None else dormant[0]

    def put(self, key: int, replica: str, now: float) -> None:
        """Record that ``key`` was served by ``replica`` at ``now`` (a move or a touch)."""
        active = self._active
        entry = active.get(key)
        if entry is not None:
            active.move_to_end(key)
            entry[1] = now
            if entry[0] != replica:  # a move: a touch, the common case, keeps the counts
                self._uncount(entry[0])
                entry[0] = replica
                self._count(replica)
            return
        if self._dormant.pop(key, None) is None and len(self) >= self.max_sessions:
            if self._dormant:
                self._dormant.popitem(last=False)
            else:
                self._uncount(active.popitem(last=False)[1][0])
        active[key] = [replica, now]
        self._count(replica)

    def expire(self, now: float) -> None:
        """Forget idle sessions, and stop counting those no longer active."""
        active, dormant = self._active, self._dormant
        oldest_active = now - self.active_seconds
        while active:
            key, (replica, seen) = next(iter(active.items()))
            if seen >= oldest_active:
                break
            del active[key]
            self._uncount(replica)
            dormant[key] = (replica, seen)
        oldest_kept = now - self.idle_seconds
        while dormant:
            key, (_, seen) = next(iter(dormant.items()))
            if seen >= oldest_kept:
                return
            del dormant[key]

    def forget_replicas(self, gone: Collection[str]) -> None:
        """Drop the sessions of replicas that left the fleet."""
        if gone:
            self._active = OrderedDict((k, v) for k, v in self._active.items() if v[0] not in gone)
            self._dormant = OrderedDict(
                (k, v) for k, v in self._dormant.items() if v[0] not in gone
            )
            for replica in gone:
                self._counts.pop(replica, None)

    def _count(self, replica: str) -> None:
        self._counts[replica] = self._counts.get(replica, 0) + 1

    def _uncount(self, replica: str) -> None:
        left = self._counts.get(replica, 0) - 1
        if left > 0:
            self._counts[replica] = left
        else:
            self._counts.pop(replica, None)


class StickyBalancer:
    """Sessions stay on their replica; new ones are placed by session count on the ring."""

    def __init__(
        self,
        *,
        fallback: Balancer,
        load_bound: float = DEFAULT_LOAD_BOUND,
        placement_bound: float = DEFAULT_PLACEMENT_BOUND,
        virtual_nodes: int = 1000,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS,
        active_seconds: float = DEFAULT_SESSION_ACTIVE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(load_bound, placement_bound) < 1.0:
            raise ValueError("load and placement bounds must be >= 1.0")
        self.load_bound = load_bound
        self.placement_bound = placement_bound
        self.ring = HashRing(virtual_nodes)
        self.sessions = SessionTable(
            max_sessions=max_sessions, idle_seconds=idle_seconds, active_seconds=active_seconds
        )
        self._fallback = fallback  # for requests without a key
        self._clock = clock
        # Expiry runs at most this often, not on every pick: a session then counts for
        # up to this much longer, a negligible part of its windows.
        self._expire_every = min(1.0, active_seconds / 10, idle_seconds / 10)
        self._next_expiry = -math.inf
        # A session that stays is the common answer: one immutable Choice per replica.
        self._stays: dict[str, Choice] = {}

    def update(self, replicas: Collection[str]) -> None:
        before = set(self.ring.replicas)
        self.ring.update(replicas)
        self._fallback.update(replicas)
        self.sessions.forget_replicas(before.difference(self.ring.replicas))
        self._stays = {replica: Choice(replica, primary=True) for replica in self.ring.replicas}

    def pick(
        self, key: str | None, loads: Mapping[str, int], exclude: Collection[str] = ()
    ) -> Choice | None:
        if key is None:
            return self._fallback.pick(None, loads, exclude)
        replicas = self.ring.replicas
        eligible = [r for r in replicas if r not in exclude] if exclude else replicas
        if not eligible:
            return None
        now = self._clock()
        table = self.sessions
        if now >= self._next_expiry:
            table.expire(now)
            self._next_expiry = now + self._expire_every
        # The table is this process's own: Python's string hash (cached, 64 bits) keys it.
        # The ring needs a hash every router process agrees on, only to place a session.
        slot = hash(key)
        load_cap = _cap(self.load_bound, loads, eligible)
        home = table.get(slot)
        if home is not None and home not in exclude and loads.get(home, 0) < load_cap:
            table.put(slot, home, now)
            return self._stays[home]
        hashed = hash64(key)
        chosen = self._place(hashed, loads, eligible, exclude, load_cap)
        table.put(slot, chosen, now)
        # "primary": the session's first turn went to its ring point; a later turn that
        # had to leave its replica is a spill, as is a placement past the ring point.
        return Choice(chosen, primary=home is None and chosen == self.ring.first(hashed))

    def _place(
        self,
        hashed: int,
        loads: Mapping[str, int],
        eligible: Sequence[str],
        exclude: Collection[str],
        load_cap: int,
    ) -> str:
        counts = self.sessions.counts
        place_cap = min(load_cap, _cap(self.placement_bound, loads, eligible))
        chosen: str | None = None
        fewest = math.inf
        # In ring order from the session's point: the first replica with the fewest wins.
        for replica in self.ring.walk(hashed, exclude):
            if loads.get(replica, 0) >= place_cap:
                continue
            count = counts.get(replica, 0)
            if count < fewest:
                chosen, fewest = replica, count
        # One is always under the cap (the least-loaded eligible replica is below a bound
        # of at least 1); the fallback only keeps the type honest.
        return chosen if chosen is not None else eligible[0]


def _cap(bound: float, counts: Mapping[str, int], eligible: Sequence[str]) -> int:
    """The most a replica may hold after taking one more, at ``bound`` times the mean."""
    total = 0
    for replica in eligible:  # a plain loop: half the time of sum() over a list or map
        total += counts.get(replica, 0)
    # Less a rounding error's worth, so 1.1 * 400 / 4 is 110 and not 110.00000000000001.
    return math.ceil(bound * (total + 1) / len(eligible) - 1e-9)
