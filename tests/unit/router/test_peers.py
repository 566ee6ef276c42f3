"""Placements told to peer router replicas: the wire format, the table's side, real sockets."""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from llmservice.router import LeastLoadBalancer, StickyBalancer
from llmservice.router.config import PeerConfig
from llmservice.router.discovery import Replica
from llmservice.router.peers import MAX_DATAGRAM_BYTES, PeerSync, decode, encode
from llmservice.router.ring import hash64
from llmservice.router.sticky import EARLY_MAX, EARLY_SECONDS

from .conftest import run, until
from .test_sticky import Clock

FLEET = ["engine-a", "engine-b", "engine-c", "engine-d"]


def balancer(clock: Clock | None = None) -> StickyBalancer:
    made = StickyBalancer(fallback=LeastLoadBalancer(), clock=clock or Clock(), stable_keys=True)
    made.update(FLEET)
    return made


# -- the wire format ----------------------------------------------------------------------

names = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60)
placements = st.lists(st.tuples(st.integers(0, (1 << 64) - 1), names), max_size=200)


@given(placements)
def test_placements_survive_the_wire_in_datagrams_within_the_bound(
    sent: list[tuple[int, str]],
) -> None:
    datagrams = encode(sent)
    assert all(len(datagram) <= MAX_DATAGRAM_BYTES for datagram in datagrams)
    received = []
    for datagram in datagrams:
        decoded = decode(datagram)
        assert decoded is not None
        received += decoded
    assert received == sent


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"not json",
        b'{"placements": []}',
        b"[[1]]",
        b'[[1, "a", 2]]',
        b'[["1", "engine-a"]]',
        b'[[true, "engine-a"]]',
        b'[[1.0, "engine-a"]]',
        b'[[-1, "engine-a"]]',
        b'[[18446744073709551616, "engine-a"]]',
        b'[[1, ""]]',
        b"[[1, null]]",
        json.dumps([[1, "x" * 254]]).encode(),
        b"[" + b",".join([b'[1,"engine-a"]'] * 200) + b"]",  # over the size bound
    ],
)
def test_what_a_peer_does_not_send_is_refused_whole(datagram: bytes) -> None:
    assert decode(datagram) is None


# -- the session table's side -------------------------------------------------------------


def test_placements_made_here_are_told_and_stays_are_not() -> None:
    clock = Clock()
    placed: list[tuple[int, str]] = []
    sticky = balancer(clock)
    sticky.on_place = lambda slot, replica: placed.append((slot, replica))
    first = sticky.pick("session:s", {})
    assert first is not None
    assert placed == [(hash64("session:s"), first.replica)]
    sticky.pick("session:s", {})  # stays: nothing new to tell
    assert len(placed) == 1
    # Its replica overloaded (above the load bound of 2x the mean): moved, and told.
    loads = dict.fromkeys(FLEET, 1) | {first.replica: 12}
    moved = sticky.pick("session:s", loads)
    assert moved is not None
    assert moved.replica != first.replica
    assert placed[1:] == [(hash64("session:s"), moved.replica)]


def test_a_session_a_peer_placed_goes_there_and_counts_for_balance() -> None:
    clock = Clock()
    sticky = balancer(clock)
    slot = hash64("session:s")
    ring_first = sticky.ring.first(slot)
    elsewhere = next(replica for replica in FLEET if replica != ring_first)
    assert sticky.adopt(slot, elsewhere)
    assert not sticky.unknown("session:s")
    assert sticky.sessions.counts == {elsewhere: 1}
    clock.now += 5
    choice = sticky.pick("session:s", {})
    assert choice is not None
    assert choice.replica == elsewhere


def test_a_placement_on_a_replica_not_routable_yet_is_followed_when_it_arrives() -> None:
    # A scale-up: a peer saw the new engine Pod ready first and placed a session on it.
    clock = Clock()
    sticky = balancer(clock)
    placed_here = hash64("session:here")
    assert not sticky.adopt(hash64("session:s"), "engine-e")
    assert not sticky.adopt(placed_here, "engine-e")
    assert sticky.unknown("session:s")
    sticky.sessions.put(placed_here, "engine-a", clock.now)  # placed here meanwhile
    clock.now += 1.0
    sticky.update([*FLEET, "engine-e"])
    assert sticky.sessions.get(hash64("session:s")) == "engine-e"
    assert sticky.sessions.get(placed_here) == "engine-a"  # what the peers heard of last
    assert sticky.sessions.counts == {"engine-e": 1, "engine-a": 1}


def test_held_placements_expire_and_are_bounded() -> None:
    clock = Clock()
    sticky = balancer(clock)
    assert not sticky.adopt(hash64("session:old"), "engine-e")
    clock.now += EARLY_SECONDS
    for n in range(EARLY_MAX + 10):
        sticky.adopt(hash64(f"session:{n}"), "engine-f")
    assert len(sticky._early) == EARLY_MAX  # the expired one went first
    sticky.update([*FLEET, "engine-e"])  # too late for it
    assert sticky.unknown("session:old")
    assert len(sticky._early) == EARLY_MAX  # still waiting for engine-f


def test_placements_made_at_once_settle_on_the_same_replica_on_both_sides() -> None:
    clock = Clock()
    one, other = balancer(clock), balancer(clock)
    slot = hash64("session:s")
    one.sessions.put(slot, "engine-c", clock.now)  # each placed it, a moment apart
    clock.now += 0.01
    other.sessions.put(slot, "engine-b", clock.now)
    clock.now += 0.01
    one.adopt(slot, "engine-b")
    other.adopt(slot, "engine-c")
    assert one.sessions.get(slot) == other.sessions.get(slot) == "engine-b"


def test_a_later_move_by_a_peer_is_followed() -> None:
    clock = Clock()
    sticky = balancer(clock)
    slot = hash64("session:s")
    sticky.sessions.put(slot, "engine-c", clock.now)
    clock.now += 2.0  # a turn later: the peer moved it off an overloaded replica
    sticky.adopt(slot, "engine-d")
    assert sticky.sessions.get(slot) == "engine-d"
    assert sticky.sessions.counts == {"engine-d": 1}


def test_stable_keys_are_the_ring_hash_and_python_hash_is_the_default() -> None:
    assert balancer()._slot("session:s") == hash64("session:s")
    plain = StickyBalancer(fallback=LeastLoadBalancer())
    assert plain._slot("session:s") == hash("session:s")


# -- two router replicas' peer syncs over real sockets ------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sample(registry: CollectorRegistry, event: str) -> float:
    value = registry.get_sample_value("llmservice_router_peer_placements_total", {"event": event})
    return value or 0.0


def test_two_peer_syncs_tell_each_other_and_drop_strangers() -> None:
    async def scenario() -> None:
        ports = [free_udp_port(), free_udp_port()]
        balancers = [balancer(), balancer()]
        registries = [CollectorRegistry(), CollectorRegistry()]
        syncs = []
        for n in range(2):
            config = PeerConfig(
                port=ports[n], host="127.0.0.1", static=(f"127.0.0.1:{ports[1 - n]}",)
            )
            syncs.append(PeerSync(balancers[n], config, None, registries[n]))
            syncs[n].set_peers({"peer": Replica("peer", f"http://127.0.0.1:{ports[1 - n]}")})
        for sync in syncs:
            await sync.start()
        try:
            # A placement on one side is on the other a datagram later, and counted.
            first = balancers[0].pick("session:s", {})
            assert first is not None
            await until(lambda: not balancers[1].unknown("session:s"))
            assert balancers[1].sessions.get(hash64("session:s")) == first.replica
            assert sample(registries[0], "sent") == 1
            assert sample(registries[1], "adopted") == 1
            # A burst of placements goes out together, and arrives whole.
            for n in range(50):
                balancers[1].pick(f"session:{n}", {})
            await until(lambda: sample(registries[0], "adopted") == 50)
            for n in range(50):
                slot = hash64(f"session:{n}")
                assert balancers[0].sessions.get(slot) == balancers[1].sessions.get(slot)
            # From an address that is no peer (127.0.0.2 is loopback too), or not in a
            # peer's shape: refused, and nothing adopted.
            stranger = json.dumps([[hash64("session:x"), "engine-a"]]).encode()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.2", 0))
                sock.sendto(stranger, ("127.0.0.1", ports[0]))
            await until(lambda: sample(registries[0], "refused") == 1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"not json", ("127.0.0.1", ports[0]))  # from a peer's address
            await until(lambda: sample(registries[0], "refused") == 2)
            assert balancers[0].unknown("session:x")
            assert registries[0].get_sample_value("llmservice_router_peers") == 1
        finally:
            for sync in syncs:
                await sync.stop()

    run(scenario())


def test_a_router_replica_that_joins_is_told_the_active_sessions() -> None:
    # One router replica placed 2,000 sessions before the other started (a rollout): once
    # it finds the newcomer, it sends it every active session's placement, paced.
    async def scenario() -> None:
        ports = [free_udp_port(), free_udp_port()]
        balancers = [balancer(), balancer()]
        registries = [CollectorRegistry(), CollectorRegistry()]
        for n in range(2000):
            balancers[0].pick(f"session:{n}", {})
        syncs = [
            PeerSync(balancers[n], PeerConfig(port=ports[n], host="127.0.0.1"), None, registry)
            for n, registry in enumerate(registries)
        ]
        for sync in syncs:
            await sync.start()
        try:
            syncs[1].set_peers({"old": Replica("old", f"http://127.0.0.1:{ports[0]}")})
            syncs[0].set_peers({"new": Replica("new", f"http://127.0.0.1:{ports[1]}")})
            await until(lambda: sample(registries[1], "adopted") == 2000)
            assert balancers[1].sessions.counts == balancers[0].sessions.counts
            # Found again (the same peer in a later list): not sent again; a third is.
            tables_sent: list[tuple[str, int]] = []
            syncs[0]._send_table = tables_sent.append  # type: ignore[method-assign]
            new = Replica("new", f"http://127.0.0.1:{ports[1]}")
            syncs[0].set_peers({"new": new})
            assert tables_sent == []
            syncs[0].set_peers({"new": new, "third": Replica("third", "http://127.0.0.3:9")})
            assert tables_sent == [("127.0.0.3", 9)]
        finally:
            for sync in syncs:
                await sync.stop()

    run(scenario())


def test_a_peer_sync_leaves_itself_out_of_its_peers() -> None:
    sync = PeerSync(balancer(), PeerConfig(port=9, self_name="router-0"), None, CollectorRegistry())
    sync.set_peers(
        {
            "router-0": Replica("router-0", "http://10.0.0.1:8082"),
            "router-1": Replica("router-1", "http://10.0.0.2:8082"),
        }
    )
    assert sync.peers == [("10.0.0.2", 8082)]
