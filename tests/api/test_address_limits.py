"""The limit on tokens not known valid, per client address group (issue 26,
findings 3 and 5): only tokens Keystone refused count, so users sharing an
address (a NAT) are never refused for being many; an IPv6 client is limited by
its /64; X-Forwarded-For hops written `ip:port` or `[v6]:port` name the client.
Through the real app behind a trusted proxy, against the fake Keystone."""

from __future__ import annotations

import asyncio
import secrets
from typing import Final

import pytest
from aiohttp import ClientResponse

from service.config import Limits
from tests.api.conftest import ONE_BACKEND
from tests.api.fake_keystone import FakeKeystone
from tests.api.test_keystone import MakeApi, keystone, keystone_api
from tests.conftest import Api

__all__ = ["keystone", "keystone_api"]  # the fixtures of test_keystone.py

PROXY: Final = "127.0.0.1"
# The default burst, refilled slowly enough that no refusal comes back in a test.
LIMITS: Final = Limits(rate_per_second=None, auth_failures_per_second=0.001)
BURST: Final = LIMITS.auth_failure_burst


@pytest.fixture
async def api(keystone_api: MakeApi) -> Api:
    return await keystone_api(limits=LIMITS, trusted_proxies=frozenset({PROXY}))


async def get_from(api: Api, forwarded_for: str, token: str) -> ClientResponse:
    """A list request that the trusted proxy forwards, naming `forwarded_for`."""
    response = await api.client.get(
        api.url("proj-a"),
        headers=api.headers(token, **{"X-Forwarded-For": forwarded_for}),
    )
    await response.read()
    return response


def made_up() -> str:
    return "gAAAAA" + secrets.token_urlsafe(132)


@ONE_BACKEND
@pytest.mark.parametrize("users", [BURST + 1, 60])
async def test_new_users_behind_one_address_at_once_are_never_refused(
    api: Api, keystone: FakeKeystone, users: int
) -> None:
    # given Keystone 50 ms away, and more users than the burst behind one NAT
    keystone.latency = 0.05
    tokens = [keystone.issue("alice", "proj-a") for _ in range(users)]
    # when all present their new tokens at once
    answers = await asyncio.gather(
        *(get_from(api, "198.51.100.7", token) for token in tokens)
    )
    # then every one is served; validations from there were bounded apart
    assert [a.status for a in answers] == [200] * users
    assert keystone.most_in_flight <= LIMITS.auth_validations_per_address
    # and made-up tokens from there still count, up to the burst
    statuses = [
        (await get_from(api, "198.51.100.7", made_up())).status
        for _ in range(BURST + 1)
    ]
    assert statuses == [401] * BURST + [429]


@ONE_BACKEND
async def test_an_ipv6_client_rotating_within_its_64_is_limited_as_one(
    api: Api, keystone: FakeKeystone
) -> None:
    # when a client sends each made-up token from another address of its /64
    statuses = [
        (await get_from(api, f"2001:db8:1:2::{n:x}", made_up())).status
        for n in range(1, BURST + 6)
    ]
    # then they count as one address's
    assert statuses == [401] * BURST + [429] * 5
    assert len(keystone.validations) == BURST
    # while a client of the next /64 is not concerned
    assert (await get_from(api, "2001:db8:1:3::1", made_up())).status == 401


@ONE_BACKEND
async def test_the_ipv6_prefix_is_a_setting(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given every IPv6 address limited on its own
    limits = Limits(rate_per_second=None, auth_failure_burst=2, auth_ipv6_prefix=128)
    api = await keystone_api(limits=limits, trusted_proxies=frozenset({PROXY}))
    # when / then
    first = [(await get_from(api, "2001:db8::1", made_up())).status for _ in range(3)]
    other = (await get_from(api, "2001:db8::2", made_up())).status
    assert (first, other) == ([401, 401, 429], 401)


@ONE_BACKEND
@pytest.mark.parametrize(
    ("flooder", "user"),
    [
        ("203.0.113.9:51234", "198.51.100.7:40000"),
        ("[2001:db8:9::1]:443", "[2001:db8:7::1]:443"),
        ("unknown, 203.0.113.9:51234", "198.51.100.7:40000"),
    ],
)
async def test_hops_written_with_a_port_name_the_client(
    api: Api, keystone: FakeKeystone, flooder: str, user: str
) -> None:
    # given one client that has used up its allowance
    for _ in range(BURST):
        assert (await get_from(api, flooder, made_up())).status == 401
    assert (await get_from(api, flooder, made_up())).status == 429
    # when another client, through the same proxy, shows a new valid token
    answer = await get_from(api, user, keystone.issue("alice", "proj-a"))
    # then it is served: the two are not taken for the proxy
    assert answer.status == 200
