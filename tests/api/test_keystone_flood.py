"""A flood of made-up tokens (issue 16, finding 1): each client address may
present only so many tokens that are not known valid, so that a flood from one
address neither reaches Keystone nor delays users at other addresses. Through the
real app, behind a trusted proxy (X-Forwarded-For names the client), against the
fake Keystone speaking the v3 token API."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Final

import pytest
from aiohttp import ClientResponse

from api.keystone import MOST_IN_FLIGHT
from service.config import Limits
from tests.api.conftest import ONE_BACKEND
from tests.api.fake_keystone import FakeKeystone
from tests.api.test_keystone import MakeApi, keystone, keystone_api
from tests.conftest import Api

__all__ = ["keystone", "keystone_api"]  # the fixtures of test_keystone.py

# Below the test client's 100 connections: the flood waits, and a user must get one.
FLOOD: Final = 60
FLOODER: Final = "203.0.113.9"
USER_ADDRESS: Final = "198.51.100.7"
PROXY: Final = "127.0.0.1"
# The address limit at its default burst, refilled slowly enough that no
# refusal comes back during a test; the per-token rate is off.
LIMITS: Final = Limits(rate_per_second=None, auth_failures_per_second=0.001)


@pytest.fixture
async def api_behind_proxy(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> AsyncIterator[Api]:
    yield await keystone_api(limits=LIMITS, trusted_proxies=frozenset({PROXY}))
    keystone.release()  # what a test left held


async def get_from(api: Api, address: str, token: str) -> ClientResponse:
    """A list request that the trusted proxy forwards from `address`."""
    response = await api.client.get(
        api.url("proj-a"),
        headers=api.headers(token, **{"X-Forwarded-For": address}),
    )
    await response.read()
    return response


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until `condition()` holds (bounded)."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.005)


def made_up() -> str:
    return "gAAAAA" + secrets.token_urlsafe(132)


@ONE_BACKEND
async def test_a_flood_from_one_address_neither_reaches_keystone_nor_delays_others(
    api_behind_proxy: Api, keystone: FakeKeystone
) -> None:
    api = api_behind_proxy
    burst = LIMITS.auth_failure_burst
    # given: a Keystone slowed down by unknown tokens (it holds them)
    keystone.hold_unknown = True
    # when: one address sends a flood of made-up tokens at once
    flood = [
        asyncio.create_task(get_from(api, FLOODER, made_up())) for _ in range(FLOOD)
    ]
    # then: only the address's burst reached Keystone; the rest wait their turn
    await until(lambda: keystone.in_flight == burst)
    assert len(keystone.validations) == burst
    assert not any(task.done() for task in flood)
    # and a user at another address, with a new token, is answered while the
    # flood's validations are still held
    user_token = keystone.issue("alice", "proj-a")
    answer = await get_from(api, USER_ADDRESS, user_token)
    assert answer.status == 200
    # when Keystone answers the held ones: each is an unknown token, 401, and
    # counted: the address has none left, and the others are refused with 429
    # without a call
    keystone.release()
    answers = await asyncio.gather(*flood)
    assert sorted(a.status for a in answers) == [401] * burst + [429] * (FLOOD - burst)
    assert all(a.headers["Retry-After"].isdigit() for a in answers if a.status == 429)
    assert len(keystone.validations) == burst + 1  # and the user's
    # then: the flooding address gets 429 for any token not known valid, without
    # Keystone being asked...
    asked = keystone.validations.total()
    assert (await get_from(api, FLOODER, made_up())).status == 429
    assert keystone.validations.total() == asked
    # ... while a token already known valid still works from there
    assert (await get_from(api, FLOODER, user_token)).status == 200


@ONE_BACKEND
async def test_valid_tokens_never_use_up_their_address_s_allowance(
    api_behind_proxy: Api, keystone: FakeKeystone
) -> None:
    api = api_behind_proxy
    # given: more users than the burst behind one address (a NAT), each with a
    # new token
    tokens = [keystone.issue("alice", "proj-a") for _ in range(40)]
    # when / then: each is asked of Keystone once and accepted
    for token in tokens:
        assert (await get_from(api, USER_ADDRESS, token)).status == 200
    # and a made-up token from there is still a plain 401
    assert (await get_from(api, USER_ADDRESS, made_up())).status == 401


@ONE_BACKEND
async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(
    keystone_api: MakeApi,
) -> None:
    # given: no trusted proxy: every request's address is its peer, 127.0.0.1
    api = await keystone_api(limits=Limits(rate_per_second=None, auth_failure_burst=3))
    # when: each made-up token claims another address
    statuses = [
        (await get_from(api, f"192.0.2.{n}", made_up())).status for n in range(5)
    ]
    # then: they all counted against the peer
    assert statuses == [401, 401, 401, 429, 429]


@ONE_BACKEND
async def test_validations_in_flight_are_bounded_whatever_the_addresses(
    api_behind_proxy: Api, keystone: FakeKeystone
) -> None:
    api = api_behind_proxy
    # given: a Keystone that holds unknown tokens
    keystone.hold_unknown = True
    # when: more made-up tokens than the bound, each from an address of its own
    flood = [
        asyncio.create_task(get_from(api, f"198.18.{n // 250}.{n % 250}", made_up()))
        for n in range(MOST_IN_FLIGHT + 10)
    ]
    # then: Keystone is asked at most the bound at once; the others wait
    await until(lambda: keystone.in_flight == MOST_IN_FLIGHT)
    assert not any(task.done() for task in flood)
    keystone.release()
    answers = await asyncio.gather(*flood)
    assert {a.status for a in answers} == {401}
    assert keystone.most_in_flight == MOST_IN_FLIGHT
