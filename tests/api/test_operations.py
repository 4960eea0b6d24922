"""Operating the service: request ids, /healthz, /readyz, /metrics, the log."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from api.app import create_app
from api.context import BACKGROUND
from projections.executor import in_pool
from service.config import Config
from service.logs import REQUEST_ID, Redacting, RequestContext
from tests.api import given
from tests.api.conftest import ONE_BACKEND, MakeApi
from tests.conftest import Api

REQUEST_ID_SHAPE = re.compile(
    r"req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
INBOUND = "req-0f6d3c1e-2b4a-4c5d-9e8f-1a2b3c4d5e6f"


@ONE_BACKEND
async def test_every_answer_carries_its_own_request_id_errors_included(
    api: Api,
) -> None:
    answers = [
        await api.client.get(api.url("proj-a"), headers=api.headers("tok-alice")),
        await api.client.get(api.url("proj-a"), headers=api.headers("tok-nobody")),
        await api.client.get("/mana_api/nowhere"),
        await api.client.delete(api.url("proj-a"), headers=api.headers("tok-alice")),
        await api.client.get("/healthz"),
    ]
    assert [a.status for a in answers] == [200, 401, 404, 405, 200]
    ids = [a.headers["X-Openstack-Request-Id"] for a in answers]
    assert all(REQUEST_ID_SHAPE.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


@ONE_BACKEND
async def test_a_request_is_logged_once_with_route_status_project_user_and_ids(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestContext())  # as on the service's own handler
    response = await api.client.get(
        api.url("proj-a"),
        headers=api.headers("tok-alice", **{"X-Openstack-Request-Id": INBOUND}),
    )
    own = response.headers["X-Openstack-Request-Id"]
    assert own != INBOUND  # the caller's id is the global one; ours is new
    lines = [r for r in caplog.records if r.name == "pm_order.access"]
    assert len(lines) == 1
    line: Any = lines[0]
    assert (line.method, line.route, line.status) == (
        "GET",
        "/mana_api/pm_order/{tenant_id}",
        200,
    )
    assert (line.project, line.user) == ("proj-a", "alice")
    assert line.duration_seconds > 0
    assert (line.request_id, line.global_request_id) == (own, INBOUND)


@ONE_BACKEND
async def test_an_inbound_id_of_another_shape_is_not_kept(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestContext())
    await api.client.get("/healthz", headers={"X-Openstack-Request-Id": "req-1234"})
    (line,) = [r for r in caplog.records if r.name == "pm_order.access"]
    assert not hasattr(line, "global_request_id")


def test_credentials_in_a_logged_url_are_blanked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.handler.addFilter(Redacting())
    logging.getLogger("test").warning(
        "cannot reach %s", "smtp://mailer:hunter2@mail.example.com:25"
    )
    assert caplog.records[-1].getMessage() == (
        "cannot reach smtp://***@mail.example.com:25"
    )


async def test_the_request_id_reaches_the_store_threads() -> None:
    executor = ThreadPoolExecutor(1)
    REQUEST_ID.set("req-in-the-loop")
    try:
        assert await in_pool(executor, REQUEST_ID.get) == "req-in-the-loop"
        assert await in_pool(executor, contextvars.copy_context().get, REQUEST_ID)
    finally:
        executor.shutdown()


async def test_healthz_and_readyz_answer_without_a_token_outside_the_prefix(
    api: Api,
) -> None:
    alive = await api.client.get("/healthz")
    assert alive.status == 200
    assert (await alive.json())["msg"] == "alive"
    # ready once the listener (PostgreSQL) has heard its first heartbeat
    deadline = time.monotonic() + 10
    while True:
        ready = await api.client.get("/readyz")
        body = await ready.json()
        if ready.status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert ready.status == 200, body
    assert {k: v["ok"] for k, v in body["checks"].items()} == {
        "store": True,
        "generation": True,
        "views": True,
        "listener": True,
        # Shown only when announcing (PM_ORDER_TRANSPORT_URL); never failed on.
        "notifications": None,
    }
    assert (await api.client.get("/mana_api/readyz")).status == 404


async def test_readyz_names_a_stuck_view(make_api: MakeApi) -> None:
    # given: the projector has stopped (as one that died would)
    api = await make_api(ready_stuck_after=1.0)
    await api.client.app[BACKGROUND].following.stop()
    # when events arrive that no projector applies
    api.service.register_servers([("SN-NEW-1", "proj-a")])
    # then, once a second has passed with no move, readiness fails on the views
    body: dict[str, Any] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = await api.client.get("/readyz")
        body = await response.json()
        if "views" in body.get("failed", []):
            break
        await asyncio.sleep(0.2)
    # (on PostgreSQL the stopped listener fails too)
    assert response.status == 503
    assert "views" in body["failed"], body
    assert "stuck" in body["msg"]
    assert body["checks"]["views"]["views"]["order_lists"]["state"] == "stuck"
    assert body["checks"]["store"]["ok"] is True


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_metrics_name_routes_by_template_and_count_events_by_type(
    api: Api,
) -> None:
    await given.ordered(api, "SN-A-001")
    response = await api.client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert (
        'pm_order_http_request_duration_seconds_count{method="POST",'
        'route="/mana_api/pm_order/{tenant_id}",status="200"} 1.0'
    ) in text
    assert "proj-a" not in text  # never a raw path
    assert 'pm_order_events_appended_total{type="Order.Requested"} 1.0' in text
    assert "pm_order_read_your_writes_wait_seconds_count 1.0" in text
    assert "pm_order_read_your_writes_timeouts_total 0.0" in text
    assert 'pm_order_view_lag_events{view="order_lists"} 0.0' in text
    assert 'pm_order_leader{role="projector"} 1.0' in text
    assert 'pm_order_mail_outbox_messages{state="pending"}' in text
    assert "pm_order_conflicts_retried_total 0.0" in text
    assert "pm_order_conflicts_given_up_total 0.0" in text
    assert "pm_order_build_info{" in text


async def test_the_app_serves_with_the_store_it_opens_itself(
    aiohttp_client: Any, config: Config, tmp_path: Any
) -> None:
    # As `pm-order serve` does: no store given; warnings are errors here.
    app = create_app(
        Config(
            tokens_file=config.tokens_file,
            database_url=f"sqlite:///{tmp_path}/own.sqlite3",
        )
    )
    client = await aiohttp_client(app)
    response = await client.get(
        "/mana_api/pm_order/proj-a",
        headers={"X-Auth-Token": "tok-alice", "Sp-Agent": "scloudm"},
    )
    assert response.status == 200
    assert (await response.json())["total_count"] == 0
    await client.close()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r for r in caplog.records if r.name == "pm_order.access"]


@ONE_BACKEND
async def test_the_access_line_has_client_request_line_status_size_and_agent(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 16, finding 9: these were missing, so token guessing had no address
    caplog.set_level(logging.INFO)
    ok = await api.client.get(
        api.url("proj-a") + "?type=0",
        headers=api.headers("tok-alice", **{"User-Agent": 'probe/1.0 "x" \u00e9'}),
    )
    body = await ok.read()
    refused = await api.client.get(api.url("proj-a"), headers=api.headers("guess"))
    await refused.read()
    first, second = access_lines(caplog)
    assert first.client == "127.0.0.1"
    assert first.request_line == "GET /mana_api/pm_order/proj-a?type=0 HTTP/1.1"
    assert (first.status, first.size) == (200, len(body))
    assert first.user_agent == 'probe/1.0 \\"x\\" \\xe9'
    assert first.getMessage().startswith(
        '127.0.0.1 "GET /mana_api/pm_order/proj-a?type=0 HTTP/1.1" 200 '
    )
    assert (second.client, second.status, second.project) == ("127.0.0.1", 401, None)


@ONE_BACKEND
@pytest.mark.parametrize(
    ("trusted", "forwarded", "client"),
    [
        (frozenset(), "198.51.100.7", "127.0.0.1"),
        (frozenset({"127.0.0.1"}), "198.51.100.7", "198.51.100.7"),
        # the client's own prefix is not believed: the proxy appends the peer
        (frozenset({"127.0.0.1"}), "10.9.9.9, 198.51.100.7", "198.51.100.7"),
        (
            frozenset({"127.0.0.1", "10.0.0.2"}),
            "198.51.100.7, 10.0.0.2",
            "198.51.100.7",
        ),
        # networks too
        (
            frozenset({"127.0.0.0/8", "10.0.0.0/8"}),
            "198.51.100.7, 10.9.8.7",
            "198.51.100.7",
        ),
        (frozenset({"127.0.0.1"}), "not an address", "127.0.0.1"),
    ],
)
async def test_the_client_is_the_peer_or_what_a_trusted_proxy_says(
    make_api: MakeApi,
    caplog: pytest.LogCaptureFixture,
    trusted: frozenset[str],
    forwarded: str,
    client: str,
) -> None:
    caplog.set_level(logging.INFO)
    api = await make_api(trusted_proxies=trusted)
    response = await api.client.get("/healthz", headers={"X-Forwarded-For": forwarded})
    await response.read()
    (line,) = access_lines(caplog)
    assert line.client == client
