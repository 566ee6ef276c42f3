"""Placements told to the other router replicas, so that each follows a session any placed.

Why: when a load balancer in front spreads a conversation's turns over several router
replicas (an Ingress controller balancing each request), a router replica hears turns of
conversations another one placed. Placing them again from what it knows alone (the shared
placement of `llmservice.router.sticky`) agrees with the other router replica often, not
always, and every disagreement moves the conversation and re-prefills it. On the routing
benchmark with two router replicas and each turn sent to either at random, 17% of the turns
moved that way and 0.700 of the prompt tokens were cached (vllm-router's
`sticky_least_loaded`: 23%, 0.679); told each other's placements, the router replicas moved
1% of the turns and cached 0.772, as one router replica does (bench/README.md, "Placements
told to peers").

What is shared: for each placement a router replica makes (a new session's replica, or a
session moved off an overloaded or failed one), the session's table key (its key's
``hash64``, the same in every router process; never the key itself, which may be a
prompt's head) and the replica's name (the engine Pod's name, the same in every router
replica), in JSON datagrams over UDP to every peer, at most ``MAX_DATAGRAM_BYTES`` each,
sent once the event loop has handled what is ready (the placements made for a burst of
requests go out together, none waits for a timer). A peer puts the session in its table as
if it had placed it (`StickyBalancer.adopt`): that router replica's next turn of it goes
there, and it counts for that router replica's balance.

How it stays consistent: a conversation's turns follow each other (a turn is sent once the
answer to the one before has arrived), and a placement is sent before the request it
places is forwarded, so it reaches the peers a datagram's trip later, long before the
answer; the last placement heard is where the session is. Two placements of one session
made at the same moment (a client sending one session's requests in parallel to two router
replicas) are settled the same way by both (`StickyBalancer.adopt`). A router replica that
joins (a rollout, a restart) is sent the placements of the sessions active at each peer
once it is found. A datagram lost leaves a router replica as it was without peers: it
places the session's next turn itself and tells the others.

Who is a peer: the router Pods matching a selector, found as the engine Pods are (a Pod
watch; the router's Role already allows it), at ``port``, except this one; or a fixed list.
Datagrams from any other address are dropped unread, and what a peer sends is checked
(shape, sizes) before it is used; a placement on an engine replica this router replica has
not seen become ready yet is held for a few seconds and followed when it does. The worst a peer that
lies can do is place sessions badly: the load bound still moves a session off an overloaded
replica.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge

from llmservice.router.config import PeerConfig
from llmservice.router.discovery import Discovery, Replica, StaticDiscovery
from llmservice.router.sticky import StickyBalancer

__all__ = ["MAX_DATAGRAM_BYTES", "PeerSync", "decode", "encode", "static_peers"]

log = logging.getLogger("llmservice.router.peers")

# Below a Pod network's MTU (1,450 with VXLAN), so a datagram is never fragmented.
MAX_DATAGRAM_BYTES = 1200
# A joining peer gets the active sessions' placements this many datagrams at a time (a
# tenth of a default receive buffer), this far apart: 65,536 sessions in about a second.
TABLE_BATCH = 16
TABLE_PAUSE = 0.005
_MAX_SLOT = 1 << 64
_MAX_NAME = 253  # a Pod name's or a URL's length in practice; longer is not a replica


def encode(placements: Iterable[tuple[int, str]]) -> list[bytes]:
    """The datagrams carrying ``placements`` (table key, replica), each within the bound."""
    datagrams: list[bytes] = []
    items: list[bytes] = []
    size = 2  # the brackets
    for slot, replica in placements:
        item = json.dumps([slot, replica], separators=(",", ":")).encode()
        if items and size + len(item) + 1 > MAX_DATAGRAM_BYTES:
            datagrams.append(b"[" + b",".join(items) + b"]")
            items, size = [], 2
        items.append(item)
        size += len(item) + 1
    if items:
        datagrams.append(b"[" + b",".join(items) + b"]")
    return datagrams


def decode(datagram: bytes) -> list[tuple[int, str]] | None:
    """The placements of a datagram; None when it is not what a peer sends."""
    if len(datagram) > MAX_DATAGRAM_BYTES:
        return None
    try:
        items: Any = json.loads(datagram)
    except ValueError:
        return None
    if not isinstance(items, list):
        return None
    placements = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2):
            return None
        slot, replica = item
        if type(slot) is not int or not 0 <= slot < _MAX_SLOT:
            return None
        if not isinstance(replica, str) or not 0 < len(replica) <= _MAX_NAME:
            return None
        placements.append((slot, replica))
    return placements


def static_peers(config: PeerConfig) -> Discovery | None:
    """A fixed list's discovery (the API server's is made by the caller), or None."""
    if config.static:
        return StaticDiscovery(tuple(f"http://{peer}" for peer in config.static))
    return None


class PeerSync(asyncio.DatagramProtocol):
    """Sends this router replica's placements to its peers and adopts theirs."""

    def __init__(
        self,
        balancer: StickyBalancer,
        config: PeerConfig,
        discovery: Discovery | None,
        registry: CollectorRegistry,
    ) -> None:
        self.balancer = balancer
        self.config = config
        self.discovery = discovery
        self.self_name = config.self_name or socket.gethostname()
        self.peers: list[tuple[str, int]] = []
        self._hosts: frozenset[str] = frozenset()
        self._pending: list[tuple[int, str]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.placements = Counter(
            "llmservice_router_peer_placements",
            "Placements sent to peer router replicas (one per peer), adopted from them, or"
            " refused (a datagram that is not a peer's, or a replica this router does not"
            " route to yet: followed if it arrives within 10 s)",
            ["event"],
            registry=registry,
        )
        self._sent = self.placements.labels("sent")
        self._adopted = self.placements.labels("adopted")
        self._refused = self.placements.labels("refused")
        self.peer_count = Gauge(
            "llmservice_router_peers",
            "Peer router replicas told of this one's placements",
            registry=registry,
        )

    async def start(self) -> None:
        """Listen for peers' placements, find the peers, and send ours from now on."""
        loop = self._loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.config.host, self.config.port or 0)
        )
        self.balancer.on_place = self.placed
        if self.discovery is not None:
            await self.discovery.start(self.set_peers)

    async def stop(self) -> None:
        self.balancer.on_place = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self.discovery is not None:
            await self.discovery.stop()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def set_peers(self, replicas: dict[str, Replica]) -> None:
        """The peers now: every router replica found but this one (a discovery listener)."""
        peers = []
        for name, replica in replicas.items():
            if name == self.self_name:
                continue
            parts = urlsplit(replica.url)
            if parts.hostname is not None and parts.port is not None:
                peers.append((parts.hostname, parts.port))
        joined = [peer for peer in peers if peer not in self.peers]
        self.peers = peers
        self._hosts = frozenset(host for host, _ in peers)
        self.peer_count.set(len(peers))
        for peer in joined:
            self._send_table(peer)

    def _send_table(self, peer: tuple[str, int]) -> None:
        """Tell a router replica that just joined (or restarted) where the sessions active
        here are: without them, it would place again every conversation it hears of, and
        tell the others, moving them."""
        if self._transport is None:
            return
        datagrams = encode(self.balancer.sessions.active_placements())
        if datagrams:
            self._send_paced(peer, datagrams, 0)

    def _send_paced(self, peer: tuple[str, int], datagrams: list[bytes], start: int) -> None:
        """``TABLE_BATCH`` datagrams now, the next batch ``TABLE_PAUSE`` seconds later: a
        whole table at once would overflow the peer's receive buffer, which drops the rest."""
        transport = self._transport
        if transport is None or peer not in self.peers or self._loop is None:
            return
        end = start + TABLE_BATCH
        for datagram in datagrams[start:end]:
            transport.sendto(datagram, peer)
        if end < len(datagrams):
            self._loop.call_later(TABLE_PAUSE, self._send_paced, peer, datagrams, end)

    # -- sending -------------------------------------------------------------------------

    def placed(self, slot: int, replica: str) -> None:
        """A placement made here (`StickyBalancer.on_place`): sent with the others made in
        this pass of the event loop."""
        if not self.peers:
            return
        self._pending.append((slot, replica))
        if self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        pending, self._pending = self._pending, []
        transport = self._transport
        if transport is None or not pending:
            return
        for datagram in encode(pending):
            for peer in self.peers:
                transport.sendto(datagram, peer)
        self._sent.inc(len(pending) * len(self.peers))

    # -- receiving -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if addr[0] not in self._hosts:
            self._refused.inc()
            return
        placements = decode(data)
        if placements is None:
            self._refused.inc()
            return
        adopt = self.balancer.adopt
        adopted = sum(adopt(slot, replica) for slot, replica in placements)
        self._adopted.inc(adopted)
        if adopted < len(placements):
            self._refused.inc(len(placements) - adopted)

    def error_received(self, exc: Exception) -> None:
        # A peer that went away (ICMP port unreachable): its Pod's deletion removes it.
        log.debug("peer datagram error: %s", exc)
