"""Every order event announced on RabbitMQ as an OpenStack notification, read by
oslo.messaging's own notification listener (the documented consumer, run as a
process): each once after de-duplication, in each order's event order, also
across a broker restart and a SIGKILL of the worker."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import pytest

from api.app import create_app
from domain.service import OrderService
from notifications.envelope import action_of, message_id
from notifications.publisher import ORDER_TOPIC_PREFIX
from service.config import Config
from service.store import Store, open_store
from tests.api.given import decided, ordered
from tests.conftest import INVENTORY, Api, FakeClock
from tests.integration.processes import (
    ApiServer,
    PmOrderProcess,
    run_pm_order,
    wait_until,
)
from tests.integration.rabbitmq import (
    BROKER_URL,
    Consumer,
    OwnRabbitNode,
    delete_queue,
    need_broker,
    settings,
    unique_topic,
)
from tests.integration.waiting import in_thread

Announced = tuple[str, int, str]  # (message_id, order, action)
ROOT: Final = Path(__file__).resolve().parents[2]


def announced_events(store: Store, after: int = 0) -> list[Announced]:
    """The order events of the log after `after`, in log order, as announced."""
    app = store.app
    return [
        (message_id(event), event.number, action_of(event))
        for n in app.recorder.select_notifications(
            start=after, limit=10**6, inclusive_of_start=False
        )
        if n.topic.startswith(ORDER_TOPIC_PREFIX)
        for event in [app.mapper.to_domain_event(n)]
    ]


def assert_once_each_in_order(
    received: list[dict[str, Any]], expected: list[Announced]
) -> None:
    """Each expected notification came exactly once, each order's in its order."""
    ids = [m["message_id"] for m in received]
    assert len(ids) == len(set(ids)), "the consumer printed a repeat"
    wanted = {m for m, _, _ in expected}
    got = [m for m in received if m["message_id"] in wanted]
    assert {m["message_id"] for m in got} == wanted
    for order in {o for _, o, _ in expected}:
        assert [m["action"] for m in got if m["order_id"] == order] == [
            a for _, o, a in expected if o == order
        ]


@pytest.fixture
def topic() -> Iterator[str]:
    need_broker()
    name = unique_topic()
    yield name
    delete_queue(BROKER_URL, name)


@pytest.fixture
def consumer(topic: str, tmp_path: Path) -> Iterator[Consumer]:
    listening = Consumer(BROKER_URL, topic, tmp_path)
    yield listening
    listening.stop()


async def test_every_event_of_an_api_run_comes_once_in_order_as_a_notification(
    aiohttp_client: Any,
    store: Store,
    config: Config,
    clock: FakeClock,
    topic: str,
    consumer: Consumer,
) -> None:
    # given: the API announcing on the broker
    service = OrderService(store.app, clock=clock)
    service.register_servers(INVENTORY)
    app = create_app(
        replace(config, notifications=settings(BROKER_URL, topic)),
        store=store,
        clock=clock,
    )
    api = Api(client=await aiohttp_client(app), store=store, service=service)
    # when: orders requested, accepted, refused, warned about
    accepted = await ordered(api, "SN-A-001,SN-A-002")
    refused = await ordered(api, "SN-A-003")
    warned = await ordered(
        api, "SN-B-001", dest="proj-a", token="tok-bob", tenant="proj-b"
    )
    await decided(api, [accepted], accept=True)
    await decided(api, [refused], accept=False)
    clock.advance(hours=2)
    service.raise_warning(warned, every=timedelta(hours=1), most=3)
    # then
    expected = announced_events(store)
    assert [a for _, _, a in expected].count("warning") == 1
    received = await in_thread(consumer.wait_for, {m for m, _, _ in expected})
    assert_once_each_in_order(received, expected)
    first = next(m for m in received if m["order_id"] == accepted)
    assert first["event_type"] == "pm_order.order.requested"
    assert first["publisher_id"].startswith("pm-order.")
    assert first["payload_version"] == "1.0"
    assert (first["source_project"], first["dest_project"]) == ("proj-a", "proj-b")
    assert first["snids"] == ["SN-A-001", "SN-A-002"]
    assert {m["event_type"] for m in received} == {
        "pm_order.order.requested",
        "pm_order.order.accepted",
        "pm_order.order.refused",
        "pm_order.order.warning",
    }

    # and the backlog drains to nothing, as /readyz says
    async def drained() -> bool:
        response = await api.client.get("/readyz")
        return (await response.json())["checks"]["notifications"]["backlog_events"] == 0

    for _ in range(100):
        if await drained():
            break
    else:
        raise AssertionError("the backlog never drained")


async def test_a_new_outbox_announces_from_then_on_and_a_replay_the_past(
    aiohttp_client: Any,
    store: Store,
    store_url: str,
    config: Config,
    clock: FakeClock,
    topic: str,
    consumer: Consumer,
    tmp_path: Path,
) -> None:
    # given: orders stored before any notifier ran
    service = OrderService(store.app, clock=clock)
    service.register_servers(INVENTORY)
    before = [
        service.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=[snid],
            dest_project="proj-b",
            mailto=[],
        ).order_id
        for snid in ("SN-A-001", "SN-A-002")
    ]
    head = service.head()
    # when: the API starts announcing, and an order follows
    app = create_app(
        replace(config, notifications=settings(BROKER_URL, topic)),
        store=store,
        clock=clock,
    )
    api = Api(client=await aiohttp_client(app), store=store, service=service)
    after = await ordered(api, "SN-A-003")
    # then: only the new order is announced
    new = announced_events(store, after=head)
    received = await in_thread(consumer.wait_for, {m for m, _, _ in new})
    assert {m["order_id"] for m in received} == {after}
    # when: the operator replays the past
    env = {
        "PM_ORDER_DATABASE_URL": store_url,
        "PM_ORDER_TRANSPORT_URL": BROKER_URL,
        "PM_ORDER_NOTIFICATION_TOPIC": topic,
        "PM_ORDER_TOKENS_FILE": str(config.tokens_file),
    }
    done = await in_thread(
        lambda: run_pm_order(
            "notifications",
            "replay",
            "--from",
            "1",
            "--to",
            str(head),
            cwd=ROOT,
            env=env,
        )
    )
    # then: the earlier orders come too, each once
    assert done.returncode == 0, done.stderr
    assert "guest:***@" in done.stdout
    assert ":guest@" not in done.stdout
    old = announced_events(store)[: len(before)]
    received = await in_thread(consumer.wait_for, {m for m, _, _ in old})
    assert {m["order_id"] for m in received} == {*before, after}
    # and `projections status` shows the announcements beside the views
    status = await in_thread(
        lambda: run_pm_order("projections", "status", "--json", cwd=ROOT, env=env)
    )
    assert status.returncode == 0, status.stderr
    rows = [json.loads(line) for line in status.stdout.splitlines()]
    (announced,) = [row for row in rows if row["name"] == "notifications"]
    assert announced["position"] <= announced["head"]


# -- through a broker restart and a SIGKILL of the worker ---------------------------


@pytest.fixture(scope="module")
def own_node() -> Iterator[OwnRabbitNode]:
    """A RabbitMQ node this module may stop (the machine's is never stopped)."""
    try:
        node = OwnRabbitNode()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        pytest.fail(f"cannot start a RabbitMQ node of the test's own: {error}")
    yield node
    node.destroy()


class Client:
    """The API over HTTP, as a client would call it; retries a 503 (the store
    or the views not ready while a worker restarts), as the contract says."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        for _ in range(300):
            request = urllib.request.Request(
                self.base_url + path,
                data=data,
                method=method,
                headers={
                    "X-Auth-Token": token,
                    "Sp-Agent": "scloudm",
                    "Content-Type": "application/json",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                error.close()
                if error.code != 503:
                    raise
            time.sleep(0.1)
        raise AssertionError(f"{method} {path} answered 503 for 30 s")

    def order(self, snid: str) -> int:
        body = {"snids": snid, "dest_project": "proj-b"}
        return int(
            self.call("POST", "/mana_api/pm_order/proj-a", "tok-alice", body)[
                "order_id"
            ]
        )

    def decide(self, order: int, accept: bool) -> None:
        body = {"order_ids": str(order), "accept": 1 if accept else 0}
        self.call("PUT", "/mana_api/pm_order/proj-b", "tok-bob", body)

    def get(self, path: str) -> str:
        """The body of GET `path`, whatever the status (/readyz may be 503)."""
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=10) as response:
                return str(response.read().decode())
        except urllib.error.HTTPError as error:
            with error:
                return str(error.read().decode())


@pytest.mark.postgres
def test_notifications_survive_a_broker_restart_and_a_killed_worker(
    own_node: OwnRabbitNode,
    postgres_schema_url: str,
    tokens_path: Path,
    tmp_path: Path,
) -> None:
    # given: an API process and a worker announcing on the test's own broker
    topic = unique_topic()
    store = open_store(postgres_schema_url)
    OrderService(store.app).register_servers(
        [(f"SN-K-{n:03d}", "proj-a") for n in range(1, 41)]
    )
    env = {
        "PM_ORDER_DATABASE_URL": postgres_schema_url,
        "PM_ORDER_TOKENS_FILE": str(tokens_path),
        "PM_ORDER_TRANSPORT_URL": own_node.url,
        "PM_ORDER_NOTIFICATION_TOPIC": topic,
        "PM_ORDER_RATE_LIMIT": "off",
    }
    worker = PmOrderProcess(["worker"], env, tmp_path / "worker-1.log")
    api = ApiServer(env, tmp_path / "api.log")
    consumer = Consumer(own_node.url, topic, tmp_path)
    client = Client(api.base_url)
    snids = iter(f"SN-K-{n:03d}" for n in range(1, 41))
    try:
        worker.wait_for_log("running the notifier here")
        orders = [client.order(next(snids)) for _ in range(5)]
        # when: the broker stops while orders keep coming
        own_node.stop_broker()
        orders += [client.order(next(snids)) for _ in range(5)]
        client.decide(orders[0], accept=True)
        # then: the backlog shows
        wait_until(lambda: _backlog(client) > 0, "the backlog to show in /readyz", 30)
        assert "pm_order_notifications_backlog_events" in client.get("/metrics")
        # when: the broker is back, and the worker is killed in the middle of work
        own_node.start_broker()
        orders += [client.order(next(snids)) for _ in range(5)]
        worker.kill()
        worker.stop()  # (its log file)
        worker = PmOrderProcess(["worker"], env, tmp_path / "worker-2.log")
        orders += [client.order(next(snids)) for _ in range(5)]
        for order in orders[1:6]:
            client.decide(order, accept=order % 2 == 0)
        # then: every event came, once each, each order's in order
        expected = announced_events(store)
        received = consumer.wait_for({m for m, _, _ in expected}, 120)
        assert_once_each_in_order(received, expected)
        wait_until(lambda: _backlog(client) == 0, "the backlog to drain", 60)
    finally:
        consumer.stop()
        worker.stop()
        api.stop()
        store.close()


def _backlog(client: Client) -> int:
    body = json.loads(client.get("/readyz"))
    return int(body["checks"]["notifications"].get("backlog_events", -1))
