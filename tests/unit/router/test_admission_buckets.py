"""Token buckets and the rate limiter, on an injected clock."""

from __future__ import annotations

import pytest

from llmservice.router.admission import RateLimiter, TokenBucket, go_duration
from llmservice.router.clients import ANONYMOUS, Client


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.012, "12ms"),
        (0.9994, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (59.25, "59.25s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (90.5, "1m30.5s"),
        (3600, "1h0m0s"),
        (3723, "1h2m3s"),
    ],
)
def test_reset_durations_are_written_as_the_openai_api_writes_them(
    seconds: float, text: str
) -> None:
    assert go_duration(seconds) == text


def test_a_bucket_bursts_to_a_minute_and_refills_at_the_rate() -> None:
    bucket = TokenBucket(60, now=0.0)  # one a second
    for _ in range(60):
        assert bucket.wait(0.0) == 0
        bucket.take(1)
    assert bucket.wait(0.0) == pytest.approx(1.0)
    assert bucket.wait(0.5) == pytest.approx(0.5)
    assert bucket.wait(1.0) == 0
    assert bucket.reset_after(1.0) == pytest.approx(59.0)
    assert bucket.refill(1000.0) == 60  # never above the burst


def test_requests_over_the_key_limit_are_refused_with_the_time_until_one_is_back() -> None:
    limiter = RateLimiter()
    client = Client("team-a", requests_per_minute=120)  # two a second
    for _ in range(120):
        assert limiter.admit(client, 10.0) is None
    refused = limiter.admit(client, 10.0)
    assert refused is not None
    assert refused.reason == "rate_limit_requests"
    assert refused.retry_after == pytest.approx(0.5)
    headers = dict(refused.headers)
    assert headers[b"x-ratelimit-limit-requests"] == b"120"
    assert headers[b"x-ratelimit-remaining-requests"] == b"0"
    assert headers[b"x-ratelimit-reset-requests"] == b"1m0s"
    assert b"x-ratelimit-limit-tokens" not in headers
    assert limiter.admit(client, 10.5) is None


def test_keys_have_buckets_of_their_own() -> None:
    limiter = RateLimiter()
    a, b = Client("a", requests_per_minute=1), Client("b", requests_per_minute=1)
    assert limiter.admit(a, 0.0) is None
    assert limiter.admit(a, 0.0) is not None
    assert limiter.admit(b, 0.0) is None


def test_a_refusal_by_one_bucket_takes_nothing_from_the_others() -> None:
    limiter = RateLimiter(global_requests_per_minute=2, now=0.0)
    limited = Client("limited", requests_per_minute=1)
    assert limiter.admit(limited, 0.0) is None
    for _ in range(5):  # refused by its own bucket: the global one keeps its second request
        refused = limiter.admit(limited, 0.0)
        assert refused is not None
        assert refused.reason == "rate_limit_requests"
    assert limiter.admit(ANONYMOUS, 0.0) is None
    refused = limiter.admit(ANONYMOUS, 0.0)
    assert refused is not None
    assert refused.reason == "global_rate_limit"
    assert refused.retry_after == pytest.approx(30.0)
    headers = dict(refused.headers)  # the global limit is the one that applies to anonymous
    assert headers[b"x-ratelimit-limit-requests"] == b"2"


def test_tokens_are_charged_at_the_end_may_go_negative_and_block_until_refilled() -> None:
    limiter = RateLimiter()
    client = Client("batch", tokens_per_minute=600)  # ten a second
    assert limiter.admit(client, 0.0) is None
    limiter.charge_tokens(client, 1600, 1.0)  # more than the whole burst
    refused = limiter.admit(client, 1.0)
    assert refused is not None
    assert refused.reason == "rate_limit_tokens"
    # 600 - 1600 = -1000 at t=1; one token is back after 100.1 s.
    assert refused.retry_after == pytest.approx(100.1)
    headers = dict(refused.headers)
    assert headers[b"x-ratelimit-limit-tokens"] == b"600"
    assert headers[b"x-ratelimit-remaining-tokens"] == b"0"
    assert headers[b"x-ratelimit-reset-tokens"] == b"2m40s"
    assert limiter.admit(client, 101.0) is not None
    assert limiter.admit(client, 101.2) is None


def test_accepted_requests_are_rate_times_time_plus_burst_at_three_times_the_rate() -> None:
    limiter = RateLimiter()
    client = Client("steady", requests_per_minute=600)  # 10 a second, burst 600
    accepted, now, step = 0, 0.0, 1 / 30  # offered at 30 a second
    while now < 600.0:
        accepted += limiter.admit(client, now) is None
        now += step
    expected = 10 * 600 + 600
    assert abs(accepted - expected) / expected < 0.02


def test_a_refund_gives_the_request_back_without_exceeding_the_burst() -> None:
    limiter = RateLimiter(global_requests_per_minute=1)
    client = Client("a", requests_per_minute=1)
    assert limiter.admit(client, 0.0) is None
    limiter.refund(client, 0.0)
    assert limiter.admit(client, 0.0) is None
    limiter.refund(client, 0.0)
    limiter.refund(client, 0.0)
    assert limiter.admit(client, 0.0) is None
    assert limiter.admit(client, 0.0) is not None


def test_a_changed_limit_keeps_what_the_key_has_used() -> None:
    limiter = RateLimiter()
    for _ in range(10):
        assert limiter.admit(Client("a", requests_per_minute=10), 0.0) is None
    raised = Client("a", requests_per_minute=100)
    # The new bucket starts where the old one was (empty), not full.
    refused = limiter.admit(raised, 0.0)
    assert refused is not None
    assert limiter.admit(raised, 0.6) is None


def test_headers_only_where_a_limit_applies() -> None:
    limiter = RateLimiter()
    assert limiter.headers(ANONYMOUS, 0.0) == ()
    assert not limiter.limited(ANONYMOUS)
    client = Client("a", requests_per_minute=60, tokens_per_minute=1000)
    assert limiter.admit(client, 0.0) is None
    headers = dict(limiter.headers(client, 0.0))
    assert headers[b"x-ratelimit-remaining-requests"] == b"59"
    assert headers[b"x-ratelimit-reset-requests"] == b"1s"
    assert headers[b"x-ratelimit-remaining-tokens"] == b"1000"
    assert headers[b"x-ratelimit-reset-tokens"] == b"0ms"
