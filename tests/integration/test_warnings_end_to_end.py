"""A running service with a short PM_ORDER_WARN_AFTER and a real SMTP server: an
unanswered order is warned about, and every party on its `mailto` hears of it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from api.app import create_app
from api.context import FOLLOWING
from domain.service import OrderService
from service.store import Store
from tests.conftest import INVENTORY, Api, FakeClock
from tests.integration.processes import ApiServer
from tests.integration.smtp_server import SmtpServer

ZONE: Final = ZoneInfo("Asia/Shanghai")
SENDER: Final = "pm-order@example.com"
PARTIES: Final = ["alice@example.com", "bob@example.com"]
ORDER: Final = {
    "snids": "SN-A-001",
    "dest_project": "proj-b",
    "mailto": ",".join(PARTIES),
}


@pytest.fixture
async def service_api(
    store: Store,
    smtp_up: SmtpServer,
    clock: FakeClock,
    config_with: Any,
    aiohttp_client: Any,
) -> Api:
    """The whole service in this process: API and background work, warning after a
    second of its (fake) clock, mailing to `smtp_up`."""
    service = OrderService(store.app, clock=clock)
    service.register_servers(INVENTORY)
    config = config_with(
        warn_after=timedelta(seconds=1),
        smtp=smtp_up.settings,
        mail_from=SENDER,
        timezone=ZONE,
    )
    client = await aiohttp_client(create_app(config, store=store, clock=clock))
    return Api(client=client, store=store, service=service)


async def test_an_unanswered_order_is_warned_about_and_every_party_mailed(
    service_api: Api, smtp_up: SmtpServer, clock: FakeClock
) -> None:
    # given an order, its request mailed
    status, body = await service_api.request("tok-alice", "proj-a", ORDER)
    assert status == 200
    [requested] = await smtp_up.mailbox.wait_for(1)
    # when nobody answers for PM_ORDER_WARN_AFTER
    warned_at = clock.advance(seconds=1)
    warning = (await smtp_up.mailbox.wait_for(2))[1]
    # then every party is mailed the warning
    assert requested.rcpt_tos == warning.rcpt_tos == PARTIES
    assert warning.subject.startswith(
        f"[pm-order] Order {body['order_id']} still waiting (warning 1)"
    )
    assert f"raised at {warned_at.astimezone(ZONE):%Y-%m-%d %H:%M:%S}" in warning.body
    # and the order shows it
    app = service_api.client.app
    assert await app[FOLLOWING].caught_up(service_api.head(), 5)
    _, listed = await service_api.list("tok-bob", "proj-b", type=0)
    [shown] = listed["orders"]
    assert shown["warning_count"] == 1
    assert shown["warnning_times"] == f"{warned_at.astimezone(ZONE):%Y-%m-%d %H:%M:%S}"


async def test_a_decision_through_the_api_is_mailed_to_every_party(
    service_api: Api, smtp_up: SmtpServer, clock: FakeClock
) -> None:
    # given an order, its request mailed
    _, body = await service_api.request("tok-alice", "proj-a", ORDER)
    await smtp_up.mailbox.wait_for(1)
    # when bob refuses it
    decided_at = clock.advance(seconds=0.5)
    status, _ = await service_api.decide(
        "tok-bob", "proj-b", {"order_ids": str(body["order_id"]), "accept": 0}
    )
    assert status == 200
    refused = (await smtp_up.mailbox.wait_for(2))[1]
    # then every party hears of it: who refused, and when
    assert refused.rcpt_tos == PARTIES
    assert refused.subject.startswith(f"[pm-order] Order {body['order_id']} refused")
    when = f"{decided_at.astimezone(ZONE):%Y-%m-%d %H:%M:%S}"
    assert f"was refused by bob at {when} (Asia/Shanghai)." in refused.body


async def test_a_served_process_warns_after_a_real_second_and_mails_every_party(
    store: Store,
    store_url: str,
    smtp_up: SmtpServer,
    tokens_path: Path,
    tmp_path: Path,
) -> None:
    # given `pm-order serve` with PM_ORDER_WARN_AFTER=1s and the mail server
    OrderService(store.app).register_servers(INVENTORY)
    server = ApiServer(
        {
            "PM_ORDER_DATABASE_URL": store_url,
            "PM_ORDER_TOKENS_FILE": str(tokens_path),
            "PM_ORDER_WARN_AFTER": "1s",
            "PM_ORDER_WARN_MAX": "1",
            "PM_ORDER_SMTP_URL": smtp_up.url,
            "PM_ORDER_MAIL_FROM": SENDER,
            "PM_ORDER_TIMEZONE": "Asia/Shanghai",
        },
        tmp_path / "serve.log",
        api_only=False,
    )
    try:
        # when an order is made and nobody answers it
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{server.base_url}/mana_api/pm_order/proj-a",
                json=ORDER,
                headers={"X-Auth-Token": "tok-alice", "Sp-Agent": "scloudm"},
            ) as response,
        ):
            assert response.status == 200
            order_id = (await response.json())["order_id"]
        requested, warning = await smtp_up.mailbox.wait_for(2)
    finally:
        server.stop()
    # then both parties got the request, then the warning
    assert requested.rcpt_tos == warning.rcpt_tos == PARTIES
    assert requested.subject.startswith(f"[pm-order] Order {order_id} requested")
    assert warning.subject.startswith(
        f"[pm-order] Order {order_id} still waiting (warning 1)"
    )
    assert "(Asia/Shanghai)" in warning.body
