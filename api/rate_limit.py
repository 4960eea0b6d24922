"""Requests per token: a token bucket per token, in this process's memory.

Each valid token (known by its SHA-256, never by itself) may make `burst` requests
at once and `per_second` on average; past that the answer is 429 with
Retry-After. The buckets live in one process: behind a load balancer with N
processes a token may get up to N times the rate.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from api.errors import ApiError
from service.config import Limits

# Beyond this many tokens seen within one refill time, the oldest are forgotten
# (a forgotten token starts again with a full bucket): memory stays bounded.
MAX_TRACKED_TOKENS: Final = 100_000


@dataclass
class _Bucket:
    level: float
    at: float


class RateLimiter:
    """Token buckets keyed by a token's hash; `per_second=None` lets all through."""

    def __init__(
        self,
        per_second: float | None,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED_TOKENS,
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self.max_tracked = max_tracked
        self._buckets: dict[str, _Bucket] = {}

    @classmethod
    def from_limits(cls, limits: Limits) -> RateLimiter:
        return cls(limits.rate_per_second, limits.rate_burst)

    @classmethod
    def for_addresses(cls, limits: Limits) -> RateLimiter:
        """Tokens not known valid, per client address (api/app.py)."""
        return cls(limits.auth_failures_per_second, limits.auth_failure_burst)

    def take(self, token: str) -> float | None:
        """Count one request of `token`: None if it may go ahead, else the seconds
        until it may (nothing is counted then)."""
        return self.take_key(hashlib.sha256(token.encode()).hexdigest())

    def give_back(self, key: str) -> None:
        """Undo one `take_key(key)` that turned out not to count."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.level = min(float(self.burst), bucket.level + 1)

    def take_key(self, key: str) -> float | None:
        """`take` for a key that is no secret (a client address)."""
        if self.per_second is None:
            return None
        now = self.clock()
        bucket = self._buckets.pop(key, None)
        level = self.burst if bucket is None else self._level(bucket, now)
        # Re-inserted last: the dict's order is then least recently used first.
        if level >= 1:
            self._buckets[key] = _Bucket(level - 1, now)
            self._forget_some(now)
            return None
        self._buckets[key] = _Bucket(level, now)
        return (1 - level) / self.per_second

    def tracked(self) -> int:
        return len(self._buckets)

    def _level(self, bucket: _Bucket, now: float) -> float:
        assert self.per_second is not None
        return min(
            float(self.burst), bucket.level + (now - bucket.at) * self.per_second
        )

    def _forget_some(self, now: float) -> None:
        if len(self._buckets) <= self.max_tracked:
            return
        # A full bucket is the same as none: forget those first, then the least
        # recently used, down to 90% so that the next sweep is many requests away.
        for key in [
            k for k, b in self._buckets.items() if self._level(b, now) >= self.burst
        ]:
            del self._buckets[key]
        while len(self._buckets) > self.max_tracked * 9 // 10:
            del self._buckets[next(iter(self._buckets))]


RATE_LIMITER: Final = web.AppKey("rate_limiter", RateLimiter)
# Per client address: tokens presented that were not known to be valid.
ADDRESS_LIMITER: Final = web.AppKey("address_limiter", RateLimiter)


def retry_after(seconds: float) -> int:
    """Whole seconds, rounded up, at least 1 (what Retry-After can say)."""
    return max(1, math.ceil(seconds))


def refuse_when_limited(request: web.Request) -> None:
    """429 once a token has used up its requests. Called by the authentication
    middleware once the token, Sp-Agent and project are accepted: only such
    requests count (one middleware layer fewer per request)."""
    limiter = request.app[RATE_LIMITER]
    wait = limiter.take(request.headers["X-Auth-Token"])
    if wait is not None:
        raise too_many(
            f"too many requests with this token: at most {limiter.burst} at once "
            f"and {limiter.per_second:g} per second",
            wait,
        )


def too_many(what: str, wait: float) -> ApiError:
    """429: `what`, and in how many whole seconds to try again."""
    seconds = retry_after(wait)
    return ApiError(
        429,
        f"{what}; try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )
