"""The token bucket: a burst at once, then the rate; each token on its own."""

from __future__ import annotations

import pytest

from api.rate_limit import RateLimiter, retry_after


class Ticks:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_may_make_a_burst_of_requests_at_once() -> None:
    limiter = RateLimiter(2.0, 5, clock=Ticks())
    assert [limiter.take("tok") for _ in range(5)] == [None] * 5
    assert limiter.take("tok") == pytest.approx(0.5)


def test_the_bucket_refills_at_the_rate() -> None:
    ticks = Ticks()
    limiter = RateLimiter(2.0, 5, clock=ticks)
    for _ in range(5):
        limiter.take("tok")
    ticks.now += 0.25
    assert limiter.take("tok") == pytest.approx(0.25)
    ticks.now += 0.25
    assert limiter.take("tok") is None
    assert limiter.take("tok") == pytest.approx(0.5)


def test_a_refused_request_is_not_counted() -> None:
    ticks = Ticks()
    limiter = RateLimiter(1.0, 1, clock=ticks)
    assert limiter.take("tok") is None
    for _ in range(10):
        assert limiter.take("tok") is not None
    ticks.now += 1.0
    assert limiter.take("tok") is None


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    ticks = Ticks()
    limiter = RateLimiter(10.0, 3, clock=ticks)
    limiter.take("tok")
    ticks.now += 3600
    assert [limiter.take("tok") for _ in range(4)][-1] is not None


def test_each_token_has_a_bucket_of_its_own() -> None:
    limiter = RateLimiter(1.0, 1, clock=Ticks())
    assert limiter.take("tok-alice") is None
    assert limiter.take("tok-alice") is not None
    assert limiter.take("tok-bob") is None


def test_no_rate_lets_every_request_through() -> None:
    limiter = RateLimiter(None, 1, clock=Ticks())
    assert all(limiter.take("tok") is None for _ in range(1000))
    assert limiter.tracked() == 0


def test_memory_stays_bounded_forgetting_full_buckets_first() -> None:
    ticks = Ticks()
    limiter = RateLimiter(1.0, 10, clock=ticks, max_tracked=10)
    for _ in range(10):
        limiter.take("busy")
    for n in range(9):
        limiter.take(f"tok-{n}")
    ticks.now += 1.0  # the nine are full again; "busy" has one request back
    limiter.take("tok-9")
    assert limiter.tracked() == 2
    assert limiter.take("busy") is None
    assert limiter.take("busy") is not None  # remembered, not a fresh bucket


def test_memory_stays_bounded_when_no_bucket_is_full() -> None:
    limiter = RateLimiter(1.0, 2, clock=Ticks(), max_tracked=10)
    for n in range(100):
        limiter.take(f"tok-{n}")
    assert limiter.tracked() <= 10
    assert limiter.take("tok-99") is None  # the latest are kept
    assert limiter.take("tok-99") is not None


def test_buckets_are_keyed_by_the_tokens_hash_never_the_token() -> None:
    limiter = RateLimiter(1.0, 1, clock=Ticks())
    limiter.take("tok-secret")
    assert "tok-secret" not in repr(vars(limiter))


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.01, 2), (59.5, 60)]
)
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: int) -> None:
    assert retry_after(seconds) == header
