"""Every route, every caller, every order state: no project reads, moves or
decides another's orders, and every refusal leaves the store as it was.

One world per store, built once: proj-a has ordered servers to proj-b in every
state (unfinished, finished, refused, each with and without a warning); proj-c
is a bystander with servers of its own and no orders. The world's app needs an
approver role to decide, so that a destination member without it is a caller
too. A case that must succeed (the destination deciding an unfinished order, an
owner ordering its servers again) works on a fresh order of its own, so that the
world stays as built for the others.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.context import FOLLOWING, SERVICE
from domain.service import OrderService
from mail.ledger import DeliveryLedger
from projections.order_lists import OrderLists
from projections.reports import Reports
from projections.server_ownership import ServerOwnership
from service.config import Config, Limits
from service.store import Store, open_store
from tests.conftest import (
    BACKENDS,
    POSTGRES_URL,
    TOKENS,
    FakeClock,
    drop_postgres_schema,
    need_postgres,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PREFIX: Final = "/mana_api"
SOURCE, DEST, BYSTANDER = "proj-a", "proj-b", "proj-c"
PROJECTS: Final = (SOURCE, DEST, BYSTANDER)

# state name -> (state after the decision or None, warned)
STATES: Final[dict[str, tuple[str, bool]]] = {
    "unfinished": ("unfinished", False),
    "unfinished-warned": ("unfinished", True),
    "finished": ("finished", False),
    "finished-warned": ("finished", True),
    "refused": ("refused", False),
    "refused-warned": ("refused", True),
}
DEST_LIST_OF: Final = {"unfinished": 0, "finished": 1, "refused": 2}
UNKNOWN_SNID: Final = "SN-NOBODY-1"
UNKNOWN_ORDER: Final = 987654


@dataclass(frozen=True)
class Caller:
    token: str | None
    project: str  # the project whose URL it calls (its own, unless said otherwise)
    headers: dict[str, str] = field(default_factory=dict)


# Parties of the world's orders, each on its own URL.
PARTIES: Final = {
    "source": Caller("tok-alice", SOURCE),
    "destination": Caller("tok-bob", DEST),
    "destination-without-role": Caller("tok-bill", DEST),
    "other-project": Caller("tok-carol", BYSTANDER),
}

# Approvers of the source and of the bystander: the role is not what stops them.
APPROVERS: Final = {
    "source-approver": Caller("tok-alan", SOURCE),
    "other-project-approver": Caller("tok-cora", BYSTANDER),
}
# OpenStack's default personas, each on the destination's URL (its reader, its
# member, an administrator of the cloud holding the admin role there) and none
# holding the world's approver role.
PERSONAS: Final = {
    "reader": Caller("tok-rita", DEST),
    "member": Caller("tok-mel", DEST),
    "admin": Caller("tok-ada", DEST),
}
WORLD_TOKENS: Final = [
    *TOKENS,
    *(
        {"token": c.token, "user_name": name, "project_id": c.project, "roles": [name]}
        for name, c in PERSONAS.items()
    ),
    {
        "token": "tok-alan",
        "user_name": "alan",
        "project_id": SOURCE,
        "roles": ["approver"],
    },
    {
        "token": "tok-cora",
        "user_name": "cora",
        "project_id": BYSTANDER,
        "roles": ["approver"],
    },
]

# Each calls the URL of the party that could act (see `party_url`).
NOT_AUTHENTICATED: Final = {
    "no-token": None,
    "bad-token": "tok-nobody",
    "expired-token": "tok-expired",
}

# A token on another project's URL, claiming that project in headers it sends.
FORGED: Final = {"X-Project-Id": "{url}", "X-Roles": "approver,admin"}
MISMATCHED: Final = {
    "other-project-on-source-url": ("tok-carol", SOURCE),
    "other-project-on-destination-url": ("tok-carol", DEST),
    "source-on-destination-url": ("tok-alice", DEST),
    "destination-on-source-url": ("tok-bob", SOURCE),
}

LIST_ROUTES: Final = ["GET", *(f"GET type={t}" for t in range(5))]
PROJECT_ROUTES: Final = [*LIST_ROUTES, "POST", "PUT accept", "PUT refuse", "GET report"]
ADMIN_ROUTES: Final = ["GET admin-unfinished", "GET admin-server"]
EVERY_ROUTE: Final = [*PROJECT_ROUTES, *ADMIN_ROUTES]

# What the default policy lets each persona reach (api/policy.py); the rest is 403.
ALLOWED: Final = {
    "reader": {*LIST_ROUTES, "GET report"},
    "member": {*LIST_ROUTES, "GET report", "POST"},
    "admin": {*LIST_ROUTES, "GET report", "POST", *ADMIN_ROUTES},
}


@dataclass(frozen=True)
class Placed:
    """An order of the world: proj-a's servers asked for by proj-b."""

    id: int
    snids: list[str]
    state: str
    warned: bool


@dataclass(frozen=True)
class Snapshot:
    head: int
    lists: dict[tuple[str, int], Any]
    reports: Any
    servers: Any
    mail: Any


@dataclass
class World:
    client: TestClient[Any, Any]
    store: Store
    clock: FakeClock
    orders: dict[str, Placed] = field(default_factory=dict)
    _last: Snapshot | None = None
    _snids: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**6)))

    @property
    def service(self) -> OrderService:
        return self.client.app[SERVICE]

    def head(self) -> int:
        return self.service.head()

    async def caught_up(self) -> None:
        assert await self.client.app[FOLLOWING].caught_up(self.head(), 30)

    async def place(self, state_name: str) -> Placed:
        """A new order from proj-a to proj-b, brought to `state_name`."""
        state, warned = STATES[state_name]
        snids = [f"SN-A-{next(self._snids):04d}" for _ in range(2)]
        written = self.service.request_transfer(
            source_project=SOURCE,
            user="alice",
            snids=snids,
            dest_project=DEST,
            mailto=[],
        )
        number = written.order_id
        assert number is not None
        if warned:
            self.clock.advance(hours=2)
            self.service.raise_warning(number, every=timedelta(hours=1), most=3)
        if state != "unfinished":
            self.service.decide(
                project=DEST,
                user="bob",
                roles=frozenset({"approver"}),
                order_ids=[number],
                accept=state == "finished",
            )
        await self.caught_up()
        return Placed(number, snids, state, warned)

    async def before(self) -> Snapshot:
        """The snapshot as a case begins: the last one taken, while the log has not
        moved since (the views are a function of the log), else a new one."""
        if self._last is None or self._last.head != self.head():
            return await self.snapshot()
        return self._last

    async def snapshot(self) -> Snapshot:
        """Everything a client could read, from every read model, and the log's head."""
        await self.caught_up()
        views = self.store.views
        self._last = Snapshot(
            head=self.head(),
            lists={
                (tenant, list_type): OrderLists.page(
                    views, tenant, list_type, limit=1000, marker=None
                )
                for tenant in PROJECTS
                for list_type in range(5)
            },
            reports=Reports.figures(views, None, None, None),
            servers=ServerOwnership.servers(views),
            mail=DeliveryLedger.messages(views),
        )
        return self._last

    def owner(self, snid: str) -> tuple[str, int | None]:
        (row,) = [
            s for s in ServerOwnership.servers(self.store.views) if s.snid == snid
        ]
        return row.project, row.order_id

    async def send(
        self, route: str, caller: Caller, order: Placed, body: Any = None
    ) -> ClientResponse:
        """`route` as `caller`, about `order` (the body names its servers or id)."""
        method, _, rest = route.partition(" ")
        headers = {"Sp-Agent": "scloudm", **caller.headers}
        if caller.token is not None:
            headers["X-Auth-Token"] = caller.token
        path = f"{PREFIX}/pm_order/{caller.project}"
        params: dict[str, str] = {}
        if rest.startswith("type="):
            params["type"] = rest.removeprefix("type=")
        elif rest == "report":
            path = f"{PREFIX}/pm_order_report/{caller.project}"
        elif rest == "openapi":
            path = f"{PREFIX}/openapi.json"
        elif rest == "admin-unfinished":
            path = f"{PREFIX}/pm_order_admin/unfinished_orders"
        elif rest == "admin-server":
            path = f"{PREFIX}/pm_order_admin/servers/{order.snids[0]}"
        if body is None and method == "POST":
            other = DEST if caller.project == BYSTANDER else BYSTANDER
            body = {"snids": ",".join(order.snids), "dest_project": other}
        elif body is None and method == "PUT":
            body = {"order_ids": str(order.id), "accept": 1 if rest == "accept" else 0}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return await self.client.request(
            method, path, headers=headers, params=params, data=data
        )


@pytest.fixture(scope="module", params=BACKENDS)
def world_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like `store_url`, once per module: the world is built once per store."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('world')}/pm-order.sqlite3"
        return
    need_postgres()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    drop_postgres_schema(schema)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    world_store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    tokens: Path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    tokens.write_text(json.dumps({"tokens": WORLD_TOKENS}))
    config = Config(
        tokens_file=tokens,
        approver_roles=frozenset({"approver"}),
        warn_max=0,  # no warning but the world's own: the store changes only when told
        limits=Limits(rate_per_second=None, auth_failures_per_second=None),
    )
    store = open_store(world_store_url)
    clock = FakeClock()
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(config, store=store, clock=clock))
    )
    await client.start_server()
    try:
        world = World(client=client, store=store, clock=clock)
        world.service.register_servers(
            [
                *((f"SN-A-{n:04d}", SOURCE) for n in range(1, 101)),
                *((f"SN-B-{n:04d}", DEST) for n in range(1, 4)),
                *((f"SN-C-{n:04d}", BYSTANDER) for n in range(1, 4)),
            ]
        )
        for name in STATES:
            world.orders[name] = await world.place(name)
        yield world
    finally:
        await client.close()
        store.close()


async def error_of(response: ClientResponse, status: int) -> dict[str, Any]:
    """The contract's error JSON with `status`."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    assert set(body) == {"code", "msg", "reason"}
    assert body["code"] == status
    assert body["msg"]
    return body


def party_url(route: str) -> str:
    """Whose URL an attacker would aim at: the destination decides, the source
    lists, orders and reports."""
    return DEST if route.startswith("PUT") else SOURCE


# -- who is not authenticated reaches nothing ----------------------------------


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("caller", NOT_AUTHENTICATED)
@pytest.mark.parametrize("route", PROJECT_ROUTES)
async def test_without_a_valid_token_no_route_reads_or_changes_anything(
    world: World, route: str, caller: str, state: str
) -> None:
    # given
    order = world.orders[state]
    before = await world.before()
    # when
    response = await world.send(
        route, Caller(NOT_AUTHENTICATED[caller], party_url(route)), order
    )
    # then
    body = await error_of(response, 401)
    assert body["reason"] == "Unauthorized"
    assert response.headers["WWW-Authenticate"]
    assert await world.snapshot() == before


@pytest.mark.parametrize("caller", NOT_AUTHENTICATED)
@pytest.mark.parametrize("route", ADMIN_ROUTES)
async def test_without_a_valid_token_no_admin_route_answers(
    world: World, route: str, caller: str
) -> None:
    before = await world.before()
    response = await world.send(
        route, Caller(NOT_AUTHENTICATED[caller], SOURCE), world.orders["unfinished"]
    )
    await error_of(response, 401)
    assert await world.snapshot() == before


# -- the personas: each gets what the policy allows, on every route -------------


# (Orders whose servers are not the destination's: a POST allowed changes nothing.)
@pytest.mark.parametrize("state", ["unfinished", "refused-warned"])
@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("route", EVERY_ROUTE)
async def test_each_persona_gets_exactly_what_the_policy_allows(
    world: World, route: str, persona: str, state: str
) -> None:
    # given
    order = world.orders[state]
    before = await world.before()
    # when
    response = await world.send(route, PERSONAS[persona], order)
    # then: a refusal is the policy's 403 and changes nothing; what is allowed
    # passes the policy (a POST of another project's servers is then the
    # contract's 400)
    if route not in ALLOWED[persona]:
        body = await error_of(response, 403)
        assert "policy" in body["msg"]
    elif route == "POST":
        await error_of(response, 400)
    else:
        assert response.status == 200, await response.text()
    if route == "GET admin-unfinished" and route in ALLOWED[persona]:
        ids = [row["id"] for row in (await response.json())["orders"]]
        assert ids == sorted(ids)
        assert (order.id in ids) == (order.state == "unfinished")
    if route == "GET admin-server" and route in ALLOWED[persona]:
        body = await response.json()
        owner, held_by = world.owner(order.snids[0])
        assert (body["project"], body["order_id"]) == (owner, held_by)
        assert body["history"][0]["event"] == "registered"
    assert await world.snapshot() == before


@pytest.mark.parametrize("caller", PARTIES)
@pytest.mark.parametrize("route", ADMIN_ROUTES)
async def test_a_project_token_without_the_admin_role_reaches_no_admin_route(
    world: World, route: str, caller: str
) -> None:
    before = await world.before()
    response = await world.send(route, PARTIES[caller], world.orders["unfinished"])
    await error_of(response, 403)
    assert await world.snapshot() == before


# -- a token serves its own project's URL only ---------------------------------


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("caller", MISMATCHED)
@pytest.mark.parametrize("route", PROJECT_ROUTES)
async def test_a_token_on_another_projects_url_is_refused_whatever_it_claims(
    world: World, route: str, caller: str, state: str
) -> None:
    # given: headers claiming the URL's project and an approver role
    token, url = MISMATCHED[caller]
    forged = {k: v.format(url=url) for k, v in FORGED.items()}
    order = world.orders[state]
    before = await world.before()
    # when
    response = await world.send(route, Caller(token, url, forged), order)
    # then
    body = await error_of(response, 400)
    assert body["reason"] == "Unauthorized"
    assert body["msg"].startswith(f"Malformed request URL: URL's project_id '{url}'")
    assert await world.snapshot() == before


# -- lists: an order shows only to its two parties ------------------------------


def shown_in(caller: str, list_type: int | None, order: Placed) -> bool:
    if caller == "other-project":
        return False
    if caller == "source":
        return list_type in (None, 3, 4)
    return list_type in (None, 4, DEST_LIST_OF[order.state])


def belongs(tenant: str, list_type: int, row: dict[str, Any]) -> bool:
    """The contract's rule for a row of `tenant`'s list `list_type`."""
    if list_type == 3:
        return bool(row["resource_project"] == tenant)
    if list_type == 4:
        return tenant in (row["resource_project"], row["dest_project"])
    state = {0: "unfinished", 1: "finished", 2: "refused"}[list_type]
    return bool(row["dest_project"] == tenant and row["state"] == state)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("caller", PARTIES)
@pytest.mark.parametrize("route", LIST_ROUTES)
async def test_a_list_shows_an_order_to_its_parties_only(
    world: World, route: str, caller: str, state: str
) -> None:
    # given
    order = world.orders[state]
    before = await world.before()
    # when
    response = await world.send(route, PARTIES[caller], order)
    # then
    assert response.status == 200
    body = await response.json()
    tenant = PARTIES[caller].project
    list_type = int(route[-1]) if "type=" in route else None
    listed = {row["id"]: row for row in body["orders"]}
    assert (order.id in listed) == shown_in(caller, list_type, order)
    assert all(
        belongs(tenant, 4 if list_type is None else list_type, r)
        for r in listed.values()
    )
    if order.id in listed:
        assert listed[order.id]["state"] == order.state
        assert listed[order.id]["warning_count"] == int(order.warned)
    if caller == "other-project":
        assert body["total_count"] == 0
    assert await world.snapshot() == before


# -- the report: a project's own figures only -----------------------------------


@pytest.mark.parametrize("caller", PARTIES)
async def test_the_report_counts_the_callers_project_only(
    world: World, caller: str
) -> None:
    # given
    before = await world.before()
    tenant = PARTIES[caller].project
    # when
    response = await world.send("GET report", PARTIES[caller], world.orders["finished"])
    # then
    assert response.status == 200
    body = await response.json()
    assert body["tenant_id"] == tenant
    own = Reports.figures(world.store.views, tenant, None, None).summary_of(tenant)
    assert body["summary"]["requested"] == own.requested
    if caller == "other-project":
        assert body["days"] == []
        assert body["summary"]["requested"] == 0
        assert body["summary"]["servers_in"] == 0
    assert await world.snapshot() == before


# -- deciding: the destination only, with its role, once ------------------------


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("caller", APPROVERS)
@pytest.mark.parametrize("route", ["PUT accept", "PUT refuse"])
async def test_only_the_destination_decides_and_others_learn_nothing(
    world: World, route: str, caller: str, state: str
) -> None:
    # given
    order = world.orders[state]
    unknown = Placed(UNKNOWN_ORDER, [], state, False)
    before = await world.before()
    # when
    response = await world.send(route, APPROVERS[caller], order)
    about_unknown = await world.send(route, APPROVERS[caller], unknown)
    # then: the same 404 as for an order that does not exist
    body = await error_of(response, 404)
    assert str(order.id) in body["msg"]
    unknown_body = await error_of(about_unknown, 404)
    assert body["msg"].replace(str(order.id), str(UNKNOWN_ORDER)) == unknown_body["msg"]
    assert await world.snapshot() == before


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(
    "caller", ["destination-without-role", "source", "other-project"]
)
@pytest.mark.parametrize("route", ["PUT accept", "PUT refuse"])
async def test_a_caller_without_an_approver_role_cannot_decide(
    world: World, route: str, caller: str, state: str
) -> None:
    before = await world.before()
    response = await world.send(route, PARTIES[caller], world.orders[state])
    body = await error_of(response, 403)
    assert "approver" in body["msg"]
    assert await world.snapshot() == before


@pytest.mark.parametrize(
    "state", ["finished", "finished-warned", "refused", "refused-warned"]
)
@pytest.mark.parametrize("route", ["PUT accept", "PUT refuse"])
async def test_a_decided_order_is_never_decided_again(
    world: World, route: str, state: str
) -> None:
    # given
    order = world.orders[state]
    same = (route == "PUT accept") == (order.state == "finished")
    before = await world.before()
    # when
    response = await world.send(route, PARTIES["destination"], order)
    # then: the same decision is a success that writes nothing; the other a 409
    if same:
        assert response.status == 200
    else:
        body = await error_of(response, 409)
        assert f"{order.id} ({order.state})" in body["msg"]
    assert await world.snapshot() == before


@pytest.mark.parametrize("state", ["unfinished", "unfinished-warned"])
@pytest.mark.parametrize("route", ["PUT accept", "PUT refuse"])
async def test_the_destination_decides_an_unfinished_order(
    world: World, route: str, state: str
) -> None:
    # given
    order = await world.place(state)
    bystander = (await world.snapshot()).lists
    # when
    response = await world.send(route, PARTIES["destination"], order)
    # then
    assert response.status == 200
    after = await world.snapshot()
    accepted = route == "PUT accept"
    shown = [
        r for r in after.lists[DEST, 1 if accepted else 2].orders if r.id == order.id
    ]
    assert [r.state for r in shown] == ["finished" if accepted else "refused"]
    owner = DEST if accepted else SOURCE
    assert [world.owner(s) for s in order.snids] == [(owner, None)] * len(order.snids)
    assert {t: after.lists[BYSTANDER, t] for t in range(5)} == {
        t: bystander[BYSTANDER, t] for t in range(5)
    }


# -- ordering: only the owner of the servers, and only free ones -----------------

# (caller, state) -> status when asking for the world order's servers.
POST_STATUS: Final = {
    ("source", "unfinished"): 409,
    ("source", "finished"): 400,
    ("source", "refused"): 200,
    ("destination", "unfinished"): 400,
    ("destination", "finished"): 200,
    ("destination", "refused"): 400,
}


def post_status(caller: str, state: str) -> int:
    if caller == "other-project":
        return 400
    party = "destination" if caller.startswith("destination") else "source"
    return POST_STATUS[party, STATES[state][0]]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("caller", PARTIES)
async def test_only_the_owner_orders_its_servers_and_only_free_ones(
    world: World, caller: str, state: str
) -> None:
    status = post_status(caller, state)
    # given: an order of its own if this one is to succeed
    order = await world.place(state) if status == 200 else world.orders[state]
    before = await world.before()
    # when
    response = await world.send("POST", PARTIES[caller], order)
    # then
    if status == 200:
        assert response.status == 200, await response.text()
        new_id = (await response.json())["order_id"]
        tenant = PARTIES[caller].project
        assert [world.owner(s) for s in order.snids] == [(tenant, new_id)] * 2
        return
    body = await error_of(response, status)
    if status == 409:
        assert f"(order {order.id})" in body["msg"]
    else:
        # Foreign servers get the unknown servers' message: nothing leaks.
        unknown = Placed(0, [UNKNOWN_SNID, UNKNOWN_SNID[:-1] + "2"], state, False)
        about_unknown = await error_of(
            await world.send("POST", PARTIES[caller], unknown), 400
        )
        masked = body["msg"]
        for mine, theirs in zip(order.snids, unknown.snids, strict=True):
            masked = masked.replace(mine, theirs)
        assert masked == about_unknown["msg"]
    assert await world.snapshot() == before


# -- routing and the document answer whoever asks ------------------------------

EVERY_CALLER: Final = {
    **PARTIES,
    **{name: Caller(token, SOURCE) for name, token in NOT_AUTHENTICATED.items()},
}


@pytest.mark.parametrize("caller", EVERY_CALLER)
@pytest.mark.parametrize("method", ["DELETE", "PATCH"])
async def test_a_method_no_route_takes_is_405_for_everyone(
    world: World, method: str, caller: str
) -> None:
    before = await world.before()
    response = await world.send(
        method, EVERY_CALLER[caller], world.orders["unfinished"]
    )
    await error_of(response, 405)
    assert response.headers["Allow"]
    assert await world.snapshot() == before


@pytest.mark.parametrize("caller", EVERY_CALLER)
async def test_the_openapi_document_is_the_same_for_everyone(
    world: World, caller: str
) -> None:
    before = await world.before()
    response = await world.send(
        "GET openapi", EVERY_CALLER[caller], world.orders["unfinished"]
    )
    assert response.status == 200
    assert (await response.json())["openapi"].startswith("3.1")
    assert await world.snapshot() == before
