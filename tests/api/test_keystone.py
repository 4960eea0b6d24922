"""Tokens checked by Keystone v3: through the real app, against a fake Keystone
that speaks the v3 token API on 127.0.0.1 and counts its calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.auth import Authenticator
from api.keystone import KeystoneAuthenticator
from domain.service import OrderService
from service.config import Config, Limits
from service.keystone_settings import KeystoneSettings
from service.store import Store
from tests.api import given
from tests.api.conftest import ONE_BACKEND
from tests.api.fake_keystone import FakeKeystone, Scope
from tests.conftest import INVENTORY, Api, FakeClock

MakeApi = Callable[..., Awaitable[Api]]

MISMATCH = (
    "Malformed request URL: URL's project_id 'proj-a' doesn't match "
    "Context's project_id 'proj-b'"
)
# Bursts of one token, and many unknown tokens, are what is under test, not the
# limits.
UNLIMITED = Limits(rate_per_second=None, auth_failures_per_second=None)
# Short enough for a quick test, long enough for a loaded machine's loopback.
SLOW_TIMEOUT = 0.5


def settings_for(keystone: FakeKeystone, **changes: Any) -> KeystoneSettings:
    """The service's settings for the fake: its URL and the service account."""
    return KeystoneSettings(
        **{
            "url": keystone.url,
            "user": FakeKeystone.SERVICE_USER,
            "password": FakeKeystone.SERVICE_PASSWORD,
            "project": FakeKeystone.SERVICE_PROJECT,
            **changes,
        }
    )


@pytest.fixture
async def keystone(clock: FakeClock) -> AsyncIterator[FakeKeystone]:
    """A fake Keystone on the tests' clock."""
    fake = FakeKeystone(clock=clock)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def keystone_api(
    aiohttp_client: Any, store: Store, clock: FakeClock, keystone: FakeKeystone
) -> AsyncIterator[MakeApi]:
    """The real app checking tokens with Keystone: `await keystone_api(**settings)`.

    The authenticator runs on the tests' clock, as the fake does, so that tests
    can move time past a token's expiry or the cache's time to live.
    """
    clients: list[TestClient[Any, Any]] = []

    async def make(
        *,
        approver_roles: frozenset[str] = frozenset(),
        authenticator: Authenticator | None = None,
        limits: Limits = UNLIMITED,
        trusted_proxies: frozenset[str] = frozenset(),
        **changes: Any,
    ) -> Api:
        settings = settings_for(keystone, **changes)
        config = Config(
            keystone=settings,
            approver_roles=approver_roles,
            limits=limits,
            trusted_proxies=trusted_proxies,
        )
        service = OrderService(store.app, clock=clock)
        service.register_servers(INVENTORY)
        app = create_app(
            config,
            store=store,
            clock=clock,
            authenticator=authenticator
            or KeystoneAuthenticator(
                settings, clock=clock, timer=lambda: clock().timestamp()
            ),
        )
        client = await aiohttp_client(app)
        clients.append(client)
        return Api(client=client, store=store, service=service)

    yield make
    for client in clients:
        await client.close()


async def get(api: Api, token: str, tenant: str = "proj-a") -> ClientResponse:
    response = await api.client.get(api.url(tenant), headers=api.headers(token))
    await response.read()
    return response


async def post(api: Api, token: str, tenant: str = "proj-a") -> ClientResponse:
    response = await api.client.post(
        api.url(tenant),
        headers=api.headers(token),
        json={"snids": "SN-A-001", "dest_project": "proj-b"},
    )
    await response.read()
    return response


async def unavailable(keystone: FakeKeystone, mode: str) -> None:
    """Put the fake Keystone in `mode`: down (refusing), slow or answering 500."""
    if mode == "down":
        await keystone.down()
    else:
        keystone.mode = "slow" if mode == "slow" else "error"


# -- who the token is ----------------------------------------------------------


async def test_a_project_token_orders_and_lists_as_its_user(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given
    api = await keystone_api()
    token = keystone.issue("alice", "proj-a")
    # when
    ordered = await post(api, token)
    body = await given.listed(api, token, "proj-a", type=3)
    # then
    assert ordered.status == 200
    assert [(o["snids"], o["user"]) for o in body["orders"]] == [("SN-A-001", "alice")]
    assert api.owner("SN-A-001") == ("proj-a", body["orders"][0]["id"])


@ONE_BACKEND
async def test_an_unknown_token_is_unauthorized_naming_keystones_public_url(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given
    api = await keystone_api(public_url="https://keystone.example.com/v3")
    head = api.head()
    # when
    response = await post(api, "gAAAAAnot-a-token-keystone-knows")
    # then
    assert response.status == 401
    assert (
        response.headers["WWW-Authenticate"]
        == 'Keystone uri="https://keystone.example.com/v3"'
    )
    body = await response.json()
    assert body["reason"] == "Unauthorized"
    assert keystone.validations["gAAAAAnot-a-token-keystone-knows"] == 1
    assert api.head() == head


@ONE_BACKEND
async def test_an_expired_token_is_unauthorized(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given
    api = await keystone_api()
    token = keystone.issue(expires_in=timedelta(minutes=-1))
    # when
    response = await get(api, token)
    # then
    assert response.status == 401
    assert keystone.validations[token] == 1


@ONE_BACKEND
@pytest.mark.parametrize("scope", ["domain", "system", "unscoped"])
async def test_a_token_not_scoped_to_a_project_is_unauthorized(
    keystone_api: MakeApi, keystone: FakeKeystone, scope: Scope
) -> None:
    # given
    api = await keystone_api()
    token = keystone.issue("alice", scope=scope, roles=("admin",))
    # when
    response = await get(api, token)
    # then
    assert response.status == 401
    assert keystone.validations[token] == 1


@ONE_BACKEND
async def test_another_projects_token_on_this_url_is_refused_as_the_contract_says(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given
    api = await keystone_api()
    token = keystone.issue("bob", "proj-b")
    # when
    response = await get(api, token, tenant="proj-a")
    # then
    assert response.status == 400
    assert await response.json() == {
        "code": 400,
        "msg": MISMATCH,
        "reason": "Unauthorized",
    }


async def test_deciding_needs_an_approver_role_from_keystone(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given an order to proj-b, and two of proj-b's users
    api = await keystone_api(approver_roles=frozenset({"approver"}))
    order_id = await given.ordered(api, "SN-A-001", token=keystone.issue())
    member = keystone.issue("bill", "proj-b", ("member",))
    approver = keystone.issue("bob", "proj-b", ("member", "approver"))
    head = api.head()
    # when the member tries to accept it
    status, body = await api.decide(
        member, "proj-b", {"order_ids": [order_id], "accept": 1}
    )
    # then it is refused and nothing changes
    assert (status, body["code"]) == (403, 403)
    assert api.head() == head
    assert api.owner("SN-A-001") == ("proj-a", order_id)
    # and the approver may
    status, _ = await api.decide(
        approver, "proj-b", {"order_ids": [order_id], "accept": 1}
    )
    assert status == 200
    assert api.owner("SN-A-001") == ("proj-b", None)


# -- the cache -----------------------------------------------------------------


@ONE_BACKEND
async def test_many_requests_with_one_token_ask_keystone_once(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given
    api = await keystone_api()
    alice, bob = keystone.issue("alice", "proj-a"), keystone.issue("bob", "proj-b")
    # when
    statuses = [(await get(api, alice)).status for _ in range(10)]
    statuses += [(await get(api, bob, "proj-b")).status for _ in range(3)]
    # then
    assert statuses == [200] * 13
    assert keystone.validations[alice] == 1
    assert keystone.validations[bob] == 1
    assert keystone.logins == 1


@ONE_BACKEND
async def test_fifty_concurrent_first_requests_with_one_token_share_one_validation(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given
    api = await keystone_api()
    token = keystone.issue("alice", "proj-a")
    # when
    responses = await asyncio.gather(*(get(api, token) for _ in range(50)))
    # then
    assert [r.status for r in responses] == [200] * 50
    assert keystone.validations[token] == 1
    assert keystone.logins == 1


@ONE_BACKEND
async def test_a_cached_token_is_checked_again_after_the_cache_time(
    keystone_api: MakeApi, keystone: FakeKeystone, clock: FakeClock
) -> None:
    # given a token valid for a day, and a cache time of 300 s
    api = await keystone_api(cache_seconds=300)
    token = keystone.issue(expires_in=timedelta(days=1))
    assert (await get(api, token)).status == 200
    # when
    clock.advance(seconds=299)
    within = await get(api, token)
    clock.advance(seconds=2)
    after = await get(api, token)
    # then
    assert (within.status, after.status) == (200, 200)
    assert keystone.validations[token] == 2


@ONE_BACKEND
async def test_a_cached_token_stops_working_when_it_expires(
    keystone_api: MakeApi, keystone: FakeKeystone, clock: FakeClock
) -> None:
    # given a token that expires in 60 s, shorter than the cache time
    api = await keystone_api(cache_seconds=300)
    token = keystone.issue(expires_in=timedelta(seconds=60))
    assert (await get(api, token)).status == 200
    # when
    clock.advance(seconds=59)
    before = await get(api, token)
    clock.advance(seconds=2)
    after = await get(api, token)
    # then
    assert (before.status, after.status) == (200, 401)
    assert keystone.validations[token] == 2


@ONE_BACKEND
async def test_a_refused_token_is_remembered_for_a_few_seconds(
    keystone_api: MakeApi, keystone: FakeKeystone, clock: FakeClock
) -> None:
    # given
    api = await keystone_api(invalid_cache_seconds=5)
    unknown = "gAAAAAthis-one-is-unknown"
    # when
    statuses = [(await get(api, unknown)).status for _ in range(5)]
    clock.advance(seconds=6)
    statuses.append((await get(api, unknown)).status)
    # then
    assert statuses == [401] * 6
    assert keystone.validations[unknown] == 2


@ONE_BACKEND
async def test_a_token_that_cannot_be_a_keystone_token_is_refused_without_asking(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given
    api = await keystone_api()
    # when
    response = await get(api, "has spaces in it")
    # then
    assert response.status == 401
    assert sum(keystone.validations.values()) == 0


# -- Keystone unavailable --------------------------------------------------------


@pytest.mark.parametrize("mode", ["down", "slow", "error"])
async def test_keystone_unavailable_is_503_with_retry_after_and_changes_nothing(
    keystone_api: MakeApi, keystone: FakeKeystone, mode: str
) -> None:
    # given
    api = await keystone_api(timeout_seconds=SLOW_TIMEOUT)
    token = keystone.issue("alice", "proj-a")
    head = api.head()
    await unavailable(keystone, mode)
    # when
    started = time.monotonic()
    response = await post(api, token)
    took = time.monotonic() - started
    # then
    assert response.status == 503
    assert response.headers["Retry-After"].isdigit()
    body = await response.json()
    assert body["code"] == 503
    assert "identity service" in body["msg"]
    assert took < SLOW_TIMEOUT * 3 + 5
    assert api.head() == head
    assert api.owner("SN-A-001") == ("proj-a", None)


@ONE_BACKEND
async def test_keystone_failing_is_not_remembered(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given a token first checked while Keystone answers 500
    api = await keystone_api()
    token = keystone.issue("alice", "proj-a")
    keystone.mode = "error"
    assert (await get(api, token)).status == 503
    # when Keystone is back
    keystone.mode = "up"
    response = await get(api, token)
    # then
    assert response.status == 200


async def test_a_cached_token_keeps_working_while_keystone_is_down(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given a token already checked
    api = await keystone_api()
    known = keystone.issue("alice", "proj-a")
    assert (await get(api, known)).status == 200
    new = keystone.issue("alice", "proj-a")
    # when Keystone goes down
    await keystone.down()
    listing = await get(api, known)
    ordering = await post(api, known)
    other = await get(api, new)
    # then
    assert (listing.status, ordering.status) == (200, 200)
    assert api.owner("SN-A-001")[0] == "proj-a"
    assert api.owner("SN-A-001")[1] is not None
    assert other.status == 503


# -- the service's own token ------------------------------------------------------


@ONE_BACKEND
async def test_a_rejected_service_token_is_renewed_once_and_the_request_succeeds(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given the service has logged in, then Keystone revokes its token
    api = await keystone_api()
    assert (await get(api, keystone.issue())).status == 200
    keystone.revoke_service_tokens()
    token = keystone.issue("alice", "proj-a")
    # when
    response = await get(api, token)
    # then
    assert response.status == 200
    assert keystone.logins == 2
    assert keystone.validations[token] == 2


@ONE_BACKEND
async def test_the_service_token_is_renewed_before_it_expires(
    keystone_api: MakeApi, keystone: FakeKeystone, clock: FakeClock
) -> None:
    # given a service token valid for an hour, renewed 60 s before the end
    api = await keystone_api(renew_before_seconds=60)
    assert (await get(api, keystone.issue())).status == 200
    # when
    clock.advance(seconds=3600 - 61)
    still = await get(api, keystone.issue())
    clock.advance(seconds=2)
    renewed = await get(api, keystone.issue())
    # then
    assert (still.status, renewed.status) == (200, 200)
    assert keystone.logins == 2
    assert sum(keystone.validations.values()) == 3


@ONE_BACKEND
async def test_refused_service_credentials_are_503_not_401(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given
    api = await keystone_api(password="not-the-password")
    # when
    response = await get(api, keystone.issue())
    # then
    assert response.status == 503
    assert "Retry-After" in response.headers
    assert keystone.logins == 1


@ONE_BACKEND
async def test_the_service_may_log_in_with_an_application_credential(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given
    api = await keystone_api(
        user=None,
        password=None,
        project=None,
        app_credential_id=FakeKeystone.APP_CREDENTIAL_ID,
        app_credential_secret=FakeKeystone.APP_CREDENTIAL_SECRET,
    )
    # when
    response = await get(api, keystone.issue())
    # then
    assert response.status == 200
    assert keystone.logins == 1


@ONE_BACKEND
async def test_the_configuration_alone_checks_tokens_with_keystone(
    aiohttp_client: Any, store: Store
) -> None:
    # given a Keystone on the real clock, and the app built from settings only
    keystone = FakeKeystone()
    await keystone.start()
    try:
        config = Config(keystone=settings_for(keystone))
        OrderService(store.app).register_servers(INVENTORY)
        client = await aiohttp_client(create_app(config, store=store))
        api = Api(client=client, store=store, service=OrderService(store.app))
        # when
        known = await get(api, keystone.issue("alice", "proj-a"))
        unknown = await get(api, "gAAAAAunknown")
        await client.close()
    finally:
        await keystone.stop()
    # then
    assert known.status == 200
    assert unknown.status == 401
    assert unknown.headers["WWW-Authenticate"] == f'Keystone uri="{keystone.url}"'


@ONE_BACKEND
async def test_a_system_scoped_admin_reads_the_admin_routes_and_no_project_route(
    keystone_api: MakeApi, keystone: FakeKeystone
) -> None:
    # given: a cloud administrator's token, scoped to the system
    api = await keystone_api()
    admin = keystone.issue("root", scope="system", roles=("reader",))
    reader = keystone.issue("rita", "proj-a", roles=("reader",))
    # when
    unfinished = await api.client.get(
        "/mana_api/pm_order_admin/unfinished_orders", headers=api.headers(admin)
    )
    project_route = await get(api, admin)
    not_admin = await api.client.get(
        "/mana_api/pm_order_admin/unfinished_orders", headers=api.headers(reader)
    )
    # then: system scope is the admin rule's; a project route wants a project
    assert unfinished.status == 200, await unfinished.text()
    assert project_route.status == 401
    assert not_admin.status == 403
