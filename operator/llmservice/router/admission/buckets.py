"""Token buckets: per-key request and token limits and the router's global request limit.

A bucket holds up to one minute's worth of its limit (the burst) and refills continuously at
``limit / 60`` per second, so over any span ``t`` it admits at most ``limit * t / 60 + limit``.
This is the model the OpenAI API reports in its ``x-ratelimit-*`` headers: *limit* is the
per-minute figure, *remaining* what the bucket holds now, *reset* the time until it is full.

Requests are taken when a request arrives. Tokens cannot be known until the engine has
answered, so a key's token bucket is charged from the response's ``usage`` when the request
ends; it may go negative, and the key's requests are refused until it has refilled to at
least one token. `RateLimiter.admit` checks every bucket that applies and only then takes from
them, in one synchronous call: the router serves from one event loop thread, so nothing can
run between the check and the take (no check-then-increment race), and a request refused by
one bucket takes nothing from the others.

Pure: the caller passes the time (``now``, seconds on a monotonic clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmservice.router.clients import Client

__all__ = ["RateLimited", "RateLimiter", "TokenBucket", "go_duration"]


def go_duration(seconds: float) -> str:
    """``seconds`` as the OpenAI API writes its reset headers (Go durations): 12ms, 1.5s, 6m0s."""
    millis = max(0, round(seconds * 1000))
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return text + (f"{whole}.{fraction:03d}".rstrip("0") if fraction else str(whole)) + "s"


class TokenBucket:
    """``per_minute`` units a minute, bursting to ``per_minute``; the level may go negative."""

    __slots__ = ("capacity", "level", "per_minute", "rate", "updated")

    def __init__(self, per_minute: int, now: float) -> None:
        if per_minute < 1:
            raise ValueError("a bucket's limit must be at least 1 a minute")
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> float:
        """Bring the level up to ``now`` and return it."""
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now
        return self.level

    def wait(self, now: float, amount: float = 1.0) -> float:
        """Seconds until the bucket holds ``amount``; 0 when it already does."""
        missing = amount - self.refill(now)
        return missing / self.rate if missing > 0 else 0.0

    def take(self, amount: float) -> None:
        """Remove ``amount`` (after `refill`); the level may go below zero."""
        self.level -= amount

    def reset_after(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        return (self.capacity - self.refill(now)) / self.rate


@dataclass(frozen=True, slots=True)
class RateLimited:
    """A refusal: which limit (``reason``), how long until it lets one through, the headers."""

    reason: str
    retry_after: float
    headers: tuple[tuple[bytes, bytes], ...]


class _KeyBuckets:
    __slots__ = ("requests", "tokens")

    def __init__(self) -> None:
        self.requests: TokenBucket | None = None
        self.tokens: TokenBucket | None = None


def _resized(bucket: TokenBucket | None, per_minute: int | None, now: float) -> TokenBucket | None:
    """``bucket`` if its limit is still ``per_minute``, else one with the new limit.

    A key whose limit changed (the keys file was rotated) keeps what it has used: the new
    bucket starts at the old level, capped at the new burst.
    """
    if per_minute is None:
        return None
    if bucket is not None and bucket.per_minute == per_minute:
        return bucket
    fresh = TokenBucket(per_minute, now)
    if bucket is not None:
        fresh.level = min(fresh.capacity, bucket.refill(now))
    return fresh


def _header_set(kind: bytes, bucket: TokenBucket, now: float) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ratelimit-limit-" + kind, str(bucket.per_minute).encode()),
        (b"x-ratelimit-remaining-" + kind, str(max(0, math.floor(bucket.level))).encode()),
        (b"x-ratelimit-reset-" + kind, go_duration(bucket.reset_after(now)).encode()),
    ]


class RateLimiter:
    """Every key's buckets (by key name) and the global request bucket."""

    def __init__(self, global_requests_per_minute: int | None = None, now: float = 0.0) -> None:
        self.global_requests = (
            None
            if global_requests_per_minute is None
            else TokenBucket(global_requests_per_minute, now)
        )
        self._keys: dict[str, _KeyBuckets] = {}

    def _buckets(self, client: Client, now: float) -> _KeyBuckets:
        buckets = self._keys.get(client.name)
        if buckets is None:
            buckets = self._keys[client.name] = _KeyBuckets()
        buckets.requests = _resized(buckets.requests, client.requests_per_minute, now)
        buckets.tokens = _resized(buckets.tokens, client.tokens_per_minute, now)
        return buckets

    def limited(self, client: Client) -> bool:
        """Whether any bucket applies to ``client``'s requests."""
        return (
            self.global_requests is not None
            or client.requests_per_minute is not None
            or client.tokens_per_minute is not None
        )

    def admit(self, client: Client, now: float) -> RateLimited | None:
        """Take one request from every bucket that applies, or refuse and take nothing."""
        buckets = self._buckets(client, now)
        requests, tokens, shared = buckets.requests, buckets.tokens, self.global_requests
        refusal: tuple[str, float] | None = None
        if requests is not None and (wait := requests.wait(now)) > 0:
            refusal = ("rate_limit_requests", wait)
        elif tokens is not None and (wait := tokens.wait(now)) > 0:
            refusal = ("rate_limit_tokens", wait)
        elif shared is not None and (wait := shared.wait(now)) > 0:
            refusal = ("global_rate_limit", wait)
        if refusal is not None:
            return RateLimited(refusal[0], refusal[1], self._headers(buckets, now))
        if requests is not None:
            requests.take(1)
        if shared is not None:
            shared.take(1)
        return None

    def refund(self, client: Client, now: float) -> None:
        """Give back the request `admit` took, for a request refused before it was served."""
        buckets = self._buckets(client, now)
        for bucket in (buckets.requests, self.global_requests):
            if bucket is not None:
                bucket.refill(now)
                bucket.level = min(bucket.capacity, bucket.level + 1)

    def charge_tokens(self, client: Client, tokens: int, now: float) -> None:
        """Charge a finished request's tokens to its key, if the key has a token limit."""
        if client.tokens_per_minute is None or tokens <= 0:
            return
        bucket = self._buckets(client, now).tokens
        if bucket is not None:
            bucket.refill(now)
            bucket.take(tokens)

    def headers(self, client: Client, now: float) -> tuple[tuple[bytes, bytes], ...]:
        """The ``x-ratelimit-*`` headers for ``client`` now (none when no limit applies)."""
        if not self.limited(client):
            return ()
        return self._headers(self._buckets(client, now), now)

    def _headers(self, buckets: _KeyBuckets, now: float) -> tuple[tuple[bytes, bytes], ...]:
        # The key's own request limit when it has one, else the router's global one.
        requests = buckets.requests or self.global_requests
        headers: list[tuple[bytes, bytes]] = []
        if requests is not None:
            requests.refill(now)
            headers += _header_set(b"requests", requests, now)
        if buckets.tokens is not None:
            buckets.tokens.refill(now)
            headers += _header_set(b"tokens", buckets.tokens, now)
        return tuple(headers)
