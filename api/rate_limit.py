"""Requests per token: a token bucket per token, in this process's memory.

Each valid token (known by its SHA-256, never by itself) may make `burst` requests
at once and `per_second` on average; past that the answer is 429 with
Retry-After. The buckets live in one process: behind a load balancer with N
processes a token may get up to N times the rate.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from api.auth import Identity
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

    def take(self, token: str) -> float | None:
        """Count one request of `token`: None if it may go ahead, else the seconds
        until it may (nothing is counted then)."""
        return self.take_key(hashlib.sha256(token.encode()).hexdigest())

    def level(self, key: str) -> float:
        """How many requests `key` may make now (inf without a limit); nothing
        is counted."""
        if self.per_second is None:
            return math.inf
        bucket = self._buckets.get(key)
        return self.burst if bucket is None else self._level(bucket, self.clock())

    def wait(self, key: str) -> float | None:
        """None if `key` may make a request now, else the seconds until it may;
        nothing is counted."""
        level = self.level(key)
        if level >= 1:
            return None
        assert self.per_second is not None
        return (1 - level) / self.per_second

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


@dataclass
class _Checks:
    """The validations in flight for one address group, and who waits for one."""

    in_flight: int = 0
    waiting: int = 0
    ended: asyncio.Condition = field(default_factory=asyncio.Condition)


class AddressGate:
    """Tokens not known valid, per client address group (an IPv4 address, an IPv6
    /64 by default: api/clients.py), before each costs a call to Keystone.

    Only the tokens the identity service refused are counted, in a bucket of
    `burst` refusals refilled at `per_second`: a valid token never uses up its
    address's allowance, however many users share the address (a NAT, a proxy).
    Validations in flight are bounded apart, per group: at most `most_in_flight`
    at once, and never more than the refusals the group has left, so that a
    flood reaches Keystone at most `burst` times; the others wait for one to
    end (at most `wait_seconds`, and at most MOST_WAITING of them), then go on
    or are refused with 429.
    """

    def __init__(
        self, refusals: RateLimiter, most_in_flight: int, wait_seconds: float
    ) -> None:
        self.refusals = refusals
        self.most_in_flight = most_in_flight
        self.wait_seconds = wait_seconds
        self._checks: dict[str, _Checks] = {}

    @classmethod
    def from_limits(cls, limits: Limits) -> AddressGate:
        return cls(
            RateLimiter(limits.auth_failures_per_second, limits.auth_failure_burst),
            limits.auth_validations_per_address,
            VALIDATION_WAIT_SECONDS,
        )

    async def identify(
        self, group: str, check: Callable[[], Awaitable[Identity | None]]
    ) -> Identity | None:
        """`check()`'s identity; a refusal (None) is counted against `group`;
        429 when the group has no refusals left or waited too long for a turn."""
        checks = self._checks.setdefault(group, _Checks())
        try:
            await self._turn(group, checks)
            try:
                identity = await check()
                if identity is None:
                    self.refusals.take_key(group)
                return identity
            finally:
                checks.in_flight -= 1
                async with checks.ended:
                    checks.ended.notify_all()
        finally:
            if checks.in_flight == 0 and checks.waiting == 0:
                self._checks.pop(group, None)

    async def _turn(self, group: str, checks: _Checks) -> None:
        """Wait until `group` may start one more validation (counted in flight)."""
        if checks.waiting >= MOST_WAITING:
            raise too_many(f"too many new tokens from {group} are being checked", 1)
        checks.waiting += 1
        try:
            async with asyncio.timeout(self.wait_seconds), checks.ended:
                while True:
                    wait = self.refusals.wait(group)
                    if wait is not None:
                        raise too_many(
                            f"too many unknown or expired tokens from {group}", wait
                        )
                    allowed = min(self.most_in_flight, self.refusals.level(group))
                    if checks.in_flight < allowed:
                        checks.in_flight += 1
                        return
                    await checks.ended.wait()
        except TimeoutError:
            raise too_many(
                f"too many new tokens from {group} are being checked", 1
            ) from None
        finally:
            checks.waiting -= 1


# How long a request may wait for its address group's turn to have its token
# checked, and how many may wait (more are refused at once).
VALIDATION_WAIT_SECONDS: Final = 10.0
MOST_WAITING: Final = 1000

RATE_LIMITER: Final = web.AppKey("rate_limiter", RateLimiter)
# Per client address group: tokens presented that were not known to be valid.
ADDRESS_GATE: Final = web.AppKey("address_gate", AddressGate)


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
