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

Several router replicas share at most their placements. Told each other's
(`llmservice.router.peers`: ``on_place`` for every placement made here, ``adopt`` for a
peer's), each follows a session wherever any of them placed it, and the session counts for
the balance of each; the table is then keyed by the ring's hash (``stable_keys``), which
every router process computes alike. Without peers, they share no state. When each
conversation's turns reach one router replica (clients that keep their connection), each
places and follows its own sessions as above. When a load balancer spreads the turns over
several, a router replica without peers hears later turns of conversations another one
placed; it must then place them where the other did, from what both know. The requests in
flight are not that (each counts only the requests it sent itself, so two rarely agree on
which replicas are above the mean); the session counts nearly are (each hears from nearly
every conversation going on). So a router replica that sees such turns (a request whose
messages hold an earlier answer, under a key it has no record of: ``note_continued``) for at
least ``SHARED_SHARE`` of its placements places by counts and ring alone (**shared**
placement): the first replica on the ring from the session's key among those within
``placement_slack`` active sessions of the fewest, whatever their load, so that counts a
session or two apart still give the same replica. A known session whose replica is above the
load bound in one router replica's view then only spills that turn to another replica and
keeps its home, which the others share. On the routing benchmark with two router replicas
this moved a third fewer turns than before (92 against 138-144) and kept 0.739 of the
prompts cached against 0.726 (vllm-router's `sticky_least_loaded`: 0.733, 108 moves);
placing alone, as with one router replica, is unchanged (bench/README.md, "Placement shared
by router replicas")."""

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
    DEFAULT_PLACEMENT_SLACK,
    DEFAULT_SESSION_ACTIVE_SECONDS,
    DEFAULT_SESSION_IDLE_SECONDS,
)
from llmservice.router.ring import Balancer, Choice, HashRing, hash64

__all__ = ["SessionTable", "StickyBalancer"]

# Placement is shared (see `StickyBalancer.note_continued`) while at least this share of
# the sessions placed in the last two windows were later turns of conversations another
# router replica had placed: with two router replicas and turns spread over both, 0.3 to
# 0.5 on the routing benchmark; with one, none (a restart makes some for a minute at most).
SHARED_SHARE = 0.1
SHARED_WINDOW_SECONDS = 5.0
# Fewer placements than this in two windows leave the mode as it was.
SHARED_MIN_PLACEMENTS = 10
# Two placements of one session this close together, one here and one told by a peer
# (`adopt`), were made at once: both router replicas keep the same one of the two.
CONCURRENT_SECONDS = 0.1
# A peer's placement on a replica this router replica does not route to yet (an engine Pod
# it has not yet seen become ready) is held this long, at most this many, and followed when
# the replica arrives, so that a scale-up does not move the sessions placed on it.
EARLY_SECONDS = 10.0
EARLY_MAX = 4096


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

    def seen(self, key: int) -> float | None:
        """When ``key`` was last served or placed, or None if it is not kept."""
        entry = self._active.get(key) or self._dormant.get(key)
        return None if entry is None else entry[1]

    def active_placements(self) -> list[tuple[int, str]]:
        """(key, replica) of every active session, oldest first."""
        return [(key, entry[0]) for key, entry in self._active.items()]

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
        placement_slack: int = DEFAULT_PLACEMENT_SLACK,
        virtual_nodes: int = 1000,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS,
        active_seconds: float = DEFAULT_SESSION_ACTIVE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        stable_keys: bool = False,
    ) -> None:
        if min(load_bound, placement_bound) < 1.0:
            raise ValueError("load and placement bounds must be >= 1.0")
        if placement_slack < 0:
            raise ValueError("the placement slack must be >= 0")
        self.load_bound = load_bound
        self.placement_bound = placement_bound
        self.placement_slack = placement_slack
        # Whether other router replicas place sessions too, and the evidence: placements
        # and foreign ones (`note_continued`) in the current window and the one before.
        self.shared = False
        self._placed = [0, 0]
        self._foreign = [0, 0]
        self._window_ends = -math.inf
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
        # The table's key for a session key: Python's string hash (cached, 64 bits) is the
        # cheapest, but differs between processes; placements told to other router
        # replicas (`on_place`, `adopt`) need the ring's hash, the same in every one.
        self.stable_keys = stable_keys
        self._slot: Callable[[str], int] = hash64 if stable_keys else hash
        # Called with (table key, replica) for every placement made here: a new session
        # or one moved (`llmservice.router.peers` tells the other router replicas).
        self.on_place: Callable[[int, str], None] | None = None
        # Peers' placements on replicas not routable here yet: (table key, replica, when).
        self._early: list[tuple[int, str, float]] = []

    def update(self, replicas: Collection[str]) -> None:
        before = set(self.ring.replicas)
        self.ring.update(replicas)
        self._fallback.update(replicas)
        self.sessions.forget_replicas(before.difference(self.ring.replicas))
        self._stays = {replica: Choice(replica, primary=True) for replica in self.ring.replicas}
        if self._early:
            self._adopt_early()

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
            if now >= self._window_ends:
                self._next_window(now)
        slot = self._slot(key)
        load_cap = _cap(self.load_bound, loads, eligible)
        home = table.get(slot)
        if home is not None and home not in exclude and loads.get(home, 0) < load_cap:
            table.put(slot, home, now)
            return self._stays[home]
        # The ring needs a hash every router process agrees on, only to place a session.
        hashed = slot if self.stable_keys else hash64(key)
        if home is None:
            self._placed[1] += 1
        elif self.shared and home not in exclude:
            # Above the load bound in this router replica's view, which the others do not
            # share: this turn goes elsewhere (placed as if alone), the session stays homed
            # where the other router replicas have it too.
            table.put(slot, home, now)
            others = [r for r in eligible if r != home]
            if not others:
                return self._stays[home]
            spill = self._place(hashed, loads, others, (*exclude, home), load_cap, alone=True)
            return Choice(spill, primary=False)
        chosen = self._place(hashed, loads, eligible, exclude, load_cap, alone=not self.shared)
        table.put(slot, chosen, now)
        if self.on_place is not None and chosen != home:
            self.on_place(slot, chosen)
        # "primary": the session's first turn went to its ring point; a later turn that
        # had to leave its replica is a spill, as is a placement past the ring point.
        return Choice(chosen, primary=home is None and chosen == self.ring.first(hashed))

    def unknown(self, key: str) -> bool:
        """Whether ``key`` has no replica here yet (its next request places it)."""
        return self.sessions.get(self._slot(key)) is None

    def adopt(self, slot: int, replica: str) -> bool:
        """Another router replica placed the session kept under ``slot`` on ``replica``:
        its next turn here goes there too, and it counts for balance. False when ``replica``
        is not one this router routes to yet: the placement is then held, and followed if
        the replica becomes routable within ``EARLY_SECONDS``.

        A placement of the same session made here in the last ``CONCURRENT_SECONDS`` to
        another replica was made at the same moment; each router replica then keeps the
        replica first in name order, so that both keep the same.
        """
        now = self._clock()
        if replica not in self._stays:
            self._hold(slot, replica, now)
            return False
        table = self.sessions
        home, seen = table.get(slot), table.seen(slot)
        if home not in (None, replica) and seen is not None and now - seen < CONCURRENT_SECONDS:
            replica = min(home, replica)
        table.put(slot, replica, now)
        return True

    def _hold(self, slot: int, replica: str, now: float) -> None:
        """Keep a peer's placement on a replica not routable here yet (see EARLY_SECONDS)."""
        early = self._early
        if early and now - early[0][2] >= EARLY_SECONDS:
            self._early = early = [entry for entry in early if now - entry[2] < EARLY_SECONDS]
        if len(early) < EARLY_MAX:
            early.append((slot, replica, now))

    def _adopt_early(self) -> None:
        """Follow the held placements whose replica is routable now; sessions placed here
        in the meantime keep their replica (the peers heard of that placement too)."""
        now = self._clock()
        table, kept = self.sessions, []
        for slot, replica, when in self._early:
            if now - when >= EARLY_SECONDS:
                continue
            if replica not in self._stays:
                kept.append((slot, replica, when))
            elif table.get(slot) is None:
                table.put(slot, replica, now)
        self._early = kept

    def note_continued(self, key: str) -> None:
        """A later turn of a conversation (it holds an answer) under ``key``, unknown here.

        Another router replica placed it: the sign that placements must agree across
        router replicas that share no state.
        """
        if self.unknown(key):
            self._foreign[1] += 1

    def _next_window(self, now: float) -> None:
        placed, foreign = sum(self._placed), sum(self._foreign)
        if placed >= SHARED_MIN_PLACEMENTS:
            self.shared = foreign >= SHARED_SHARE * placed
        self._placed = [self._placed[1], 0]
        self._foreign = [self._foreign[1], 0]
        self._window_ends = now + SHARED_WINDOW_SECONDS

    def _place(
        self,
        hashed: int,
        loads: Mapping[str, int],
        eligible: Sequence[str],
        exclude: Collection[str],
        load_cap: int,
        *,
        alone: bool,
    ) -> str:
        """The first replica on the ring from ``hashed`` of those it may go to.

        Placing ``alone``: those under the placement bound (and so the load bound) with
        the fewest active sessions. Shared: those within the slack of the fewest sessions,
        whatever their requests in flight: each router replica counts only the requests it
        sent itself, so two would rarely agree on which replicas are above a bound, while
        their session counts (each hears from nearly every conversation) differ by a
        session or two.
        """
        counts = self.sessions.counts
        place_cap: float = math.inf
        slack = self.placement_slack
        if alone:
            place_cap, slack = min(load_cap, _cap(self.placement_bound, loads, eligible)), 0
        # One is always under the cap (shared, there is none; alone, the least-loaded
        # eligible replica is below a bound of at least 1), so ``fewest`` is finite and the
        # walk below finds a replica; the fallback only keeps the type honest.
        fewest = math.inf
        for replica in eligible:
            if loads.get(replica, 0) < place_cap:
                count = counts.get(replica, 0)
                if count < fewest:
                    fewest = count
        most = fewest + slack
        for replica in self.ring.walk(hashed, exclude):
            if loads.get(replica, 0) < place_cap and counts.get(replica, 0) <= most:
                return replica
        return eligible[0]


def _cap(bound: float, counts: Mapping[str, int], eligible: Sequence[str]) -> int:
    """The most a replica may hold after taking one more, at ``bound`` times the mean."""
    total = 0
    for replica in eligible:  # a plain loop: half the time of sum() over a list or map
        total += counts.get(replica, 0)
    # Less a rounding error's worth, so 1.1 * 400 / 4 is 110 and not 110.00000000000001.
    return math.ceil(bound * (total + 1) / len(eligible) - 1e-9)
