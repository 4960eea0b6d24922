"""Random sequences of requests against the real app and store, checked after
every step against a small model of what the contract says.

Three projects request transfers, accept and refuse them, list their orders (every
type, page by page) and have servers imported, in any order hypothesis picks. The
model knows who owns each server, which orders are unfinished and what each list
type returns; after every step the store and the lists must agree with it.

The app runs on an aiohttp TestServer on 127.0.0.1 and is spoken to over HTTP by
aiohttp's client, both on an event loop this test owns: hypothesis' stateful tests
are synchronous, and each step runs the loop until its request is answered (the
app's background work, the projector among it, runs on the same loop meanwhile).
One loop and no second thread means each step is over, its answer and the views
it waited for included, before the model is checked, and a failure shows where it
happened.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from api.app import create_app
from domain.exceptions import InvalidInput
from domain.server import Server, server_aggregate_id
from domain.service import OrderService
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

TOKEN_OF: Final = {"proj-a": "tok-alice", "proj-b": "tok-bob", "proj-c": "tok-carol"}
USER_OF: Final = {"proj-a": "alice", "proj-b": "bob", "proj-c": "carol"}
PROJECTS: Final = tuple(TOKEN_OF)
UNKNOWN_SNID: Final = "SN-NOBODY"
PAGE_LIMITS: Final = (1, 2, 3, 1000)

projects = st.sampled_from(PROJECTS)


@dataclass
class ModelOrder:
    id: int
    snids: list[str]
    source: str
    dest: str
    user: str
    state: str = "unfinished"


@dataclass
class Model:
    """What the contract says the service holds."""

    owner: dict[str, str] = field(default_factory=dict)
    orders: dict[int, ModelOrder] = field(default_factory=dict)

    def holder(self, snid: str) -> int | None:
        held = [
            o.id
            for o in self.orders.values()
            if o.state == "unfinished" and snid in o.snids
        ]
        assert len(held) <= 1
        return held[0] if held else None

    def listed(self, tenant: str, list_type: int) -> list[int]:
        """Ids of `tenant`'s list `list_type`, newest first."""

        def wanted(o: ModelOrder) -> bool:
            return {
                0: o.dest == tenant and o.state == "unfinished",
                1: o.dest == tenant and o.state == "finished",
                2: o.dest == tenant and o.state == "refused",
                3: o.source == tenant,
                4: tenant in (o.source, o.dest),
            }[list_type]

        return sorted((o.id for o in self.orders.values() if wanted(o)), reverse=True)


class Backend:
    """Fresh stores, one per example, on one backend."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self._schemas: list[str] = []

    def open(self) -> tuple[Store, Callable[[], None]]:
        if self.name == "sqlite":
            path = self.directory / f"{uuid.uuid4().hex}.sqlite3"
            store = open_store(f"sqlite:///{path}")
            return store, store.close
        schema = f"test_{uuid.uuid4().hex[:12]}"
        store = open_store(f"{POSTGRES_URL}?schema={schema}")

        def close() -> None:
            store.close()
            drop_postgres_schema(schema)

        return store, close


class OrdersMachine(RuleBasedStateMachine):
    """Three projects use the service; the model says what must come of it."""

    backend: Backend
    config: Config

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.loop = asyncio.new_event_loop()
        self.store, self._close_store = self.backend.open()
        self.clock = FakeClock()
        self.service = OrderService(self.store.app, clock=self.clock)
        app = create_app(self.config, store=self.store, clock=self.clock)

        async def start() -> TestClient[Any, Any]:
            client: TestClient[Any, Any] = TestClient(
                TestServer(app, host="127.0.0.1", port=0)
            )
            await client.start_server()
            return client

        try:
            self.client = self.loop.run_until_complete(start())
        except BaseException:
            self.loop.close()
            self._close_store()
            raise
        self.serial = 0

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.client.close())
        finally:
            self.loop.close()
            self._close_store()

    # -- speaking to the app ----------------------------------------------------

    def call(
        self, method: str, tenant: str, *, params: Any = None, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        async def send() -> tuple[int, dict[str, Any]]:
            async with self.client.request(
                method,
                f"/mana_api/pm_order/{tenant}",
                headers={"X-Auth-Token": TOKEN_OF[tenant], "Sp-Agent": "scloudm"},
                params=params,
                json=body,
            ) as response:
                return response.status, await response.json()

        return self.loop.run_until_complete(send())

    def list_all(self, tenant: str, list_type: int, limit: int) -> list[int]:
        """Every page of a list, following next_marker: the ids in order."""
        seen: list[int] = []
        marker: int | None = None
        total = len(self.model.listed(tenant, list_type))
        for _ in range(total // limit + 2):  # bounded: one page more than needed
            params = {"type": str(list_type), "limit": str(limit)}
            if marker is not None:
                params["marker"] = str(marker)
            status, body = self.call("GET", tenant, params=params)
            assert status == 200, body
            assert body["total_count"] == total, (tenant, list_type, body)
            page = [order["id"] for order in body["orders"]]
            assert len(page) <= limit
            self._check_orders(body["orders"])
            seen += page
            if "next_marker" not in body:
                return seen
            assert body["next_marker"] == page[-1]
            marker = body["next_marker"]
        raise AssertionError(f"paging of {tenant} type {list_type} did not end")

    def _check_orders(self, orders: list[dict[str, Any]]) -> None:
        for order in orders:
            expected = self.model.orders[order["id"]]
            assert order["snids"] == ",".join(expected.snids)
            assert order["resource_project"] == expected.source
            assert order["dest_project"] == expected.dest
            assert order["user"] == expected.user
            assert order["state"] == expected.state

    # -- rules ------------------------------------------------------------------

    @rule(project=projects, count=st.integers(min_value=1, max_value=3))
    def import_servers(self, project: str, count: int) -> None:
        """New servers are imported for `project`."""
        rows = []
        for _ in range(count):
            self.serial += 1
            rows.append((f"SN-{self.serial:04d}", project))
        self.service.register_servers(rows)
        self.model.owner.update(rows)

    @precondition(lambda self: self.model.owner)
    @rule(data=st.data())
    def import_known_servers(self, data: st.DataObject) -> None:
        """Re-importing a server as it is changes nothing; importing it for
        another project is refused and changes nothing."""
        snid = data.draw(st.sampled_from(sorted(self.model.owner)))
        project = data.draw(projects)
        head = self.service.head()
        if project == self.model.owner[snid]:
            self.service.register_servers([(snid, project)])
        else:
            with pytest.raises(InvalidInput):
                self.service.register_servers([(snid, project)])
        assert self.service.head() == head

    @precondition(lambda self: self.model.owner)
    @rule(data=st.data(), tenant=projects, dest=projects)
    def request_transfer(self, data: st.DataObject, tenant: str, dest: str) -> None:
        """`tenant` asks to move some servers (its own or not) to `dest`."""
        own = [s for s, p in sorted(self.model.owner.items()) if p == tenant]
        anyone = [*sorted(self.model.owner), UNKNOWN_SNID]
        # Mostly the caller's own servers; now and then anyone's, or none known.
        pool = data.draw(
            st.sampled_from([own, own, own, anyone]) if own else st.just(anyone)
        )
        snids = data.draw(
            st.lists(st.sampled_from(pool), min_size=1, max_size=4, unique=True)
        )
        as_text = data.draw(st.booleans())
        head = self.service.head()

        status, body = self.call(
            "POST",
            tenant,
            body={"snids": ",".join(snids) if as_text else snids, "dest_project": dest},
        )

        not_owned = [s for s in snids if self.model.owner.get(s) != tenant]
        held = [s for s in snids if self.model.holder(s) is not None]
        if dest == tenant or not_owned:
            assert status == 400, body
        elif held:
            assert status == 409, body
            for snid in held:
                assert f"{snid} (order {self.model.holder(snid)})" in body["msg"]
        else:
            assert status == 200, body
            order_id = body["order_id"]
            assert order_id > max(self.model.orders, default=0)
            self.model.orders[order_id] = ModelOrder(
                id=order_id, snids=snids, source=tenant, dest=dest, user=USER_OF[tenant]
            )
            return
        assert self.service.head() == head, "a refused request changed nothing"

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data(), tenant=projects, accept=st.booleans())
    def decide(self, data: st.DataObject, tenant: str, accept: bool) -> None:
        """`tenant` accepts or refuses some orders (its own to decide or not)."""
        mine = [i for i, o in sorted(self.model.orders.items()) if o.dest == tenant]
        anyone = [*sorted(self.model.orders), max(self.model.orders) + 1]
        # Mostly orders the caller may decide; now and then anyone's, or unknown.
        pool = data.draw(
            st.sampled_from([mine, mine, mine, anyone]) if mine else st.just(anyone)
        )
        order_ids = data.draw(
            st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True)
        )
        head = self.service.head()

        status, body = self.call(
            "PUT", tenant, body={"order_ids": order_ids, "accept": 1 if accept else 0}
        )

        orders = [self.model.orders.get(i) for i in order_ids]
        wanted = "finished" if accept else "refused"
        if any(o is None or o.dest != tenant for o in orders):
            assert status == 404, body
        elif any(
            o is not None and o.state not in ("unfinished", wanted) for o in orders
        ):
            assert status == 409, body
        else:
            assert status == 200, body
            for order in orders:
                assert order is not None
                if order.state == "unfinished":
                    order.state = wanted
                    if accept:
                        for snid in order.snids:
                            self.model.owner[snid] = order.dest
            return
        assert self.service.head() == head, "a refused decision changed nothing"

    @rule(
        tenant=projects,
        list_type=st.integers(min_value=0, max_value=4),
        limit=st.sampled_from(PAGE_LIMITS),
    )
    def list_orders(self, tenant: str, list_type: int, limit: int) -> None:
        """Every page of one of `tenant`'s lists, in the model's order."""
        assert self.list_all(tenant, list_type, limit) == self.model.listed(
            tenant, list_type
        )

    # -- after every step -------------------------------------------------------

    @invariant()
    def servers_are_owned_and_held_as_the_model_says(self) -> None:
        for snid, project in self.model.owner.items():
            server = self.store.app.repository.get(server_aggregate_id(snid))
            assert isinstance(server, Server)
            assert (server.project_id, server.order_id) == (
                project,
                self.model.holder(snid),
            ), snid

    @invariant()
    def each_projects_inbox_and_orders_are_the_models(self) -> None:
        for tenant in PROJECTS:
            for list_type in (0, 4):
                status, body = self.call("GET", tenant, params={"type": str(list_type)})
                assert status == 200, body
                assert [o["id"] for o in body["orders"]] == self.model.listed(
                    tenant, list_type
                )
                assert body["total_count"] == len(body["orders"])
                self._check_orders(body["orders"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_sequences_of_requests_agree_with_the_model(
    backend: str, tmp_path: Path
) -> None:
    if backend == "postgresql":
        need_postgres()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": TOKENS}))

    class Machine(OrdersMachine):
        pass

    Machine.backend = Backend(backend, tmp_path)
    # Every step is one token's request: the per-token rate limit is not modelled.
    Machine.config = Config(
        tokens_file=tokens,
        limits=Limits(rate_per_second=None, auth_failures_per_second=None),
    )

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=50,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
