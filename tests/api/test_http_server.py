"""What the HTTP server does before (or instead of) the app (issue 16, findings
3, 4 and 5): slow clients are cut off, a client that leaves mid-body is a 499,
the parser's refusals are the API's JSON errors, and no answer names the
software's versions. On a real server (the one `pm-order serve` runs), spoken
to over raw sockets."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import pytest
from aiohttp import web

from api.app import create_app
from api.server import GuardedAppRunner
from domain.service import OrderService
from service.config import Config
from service.store import Store
from tests.api.conftest import ONE_BACKEND
from tests.conftest import INVENTORY, FakeClock

CLIENT_TIMEOUT: Final = 0.5
# Far beyond CLIENT_TIMEOUT: a connection still open then was not cut off.
GIVE_UP_SECONDS: Final = 10.0
SECRET: Final = "SECRET-TOKEN-VALUE"


@asynccontextmanager
async def serving(
    config: Config, store: Store, clock: FakeClock
) -> AsyncIterator[tuple[int, web.Application]]:
    """The app on a real loopback server, as `pm-order serve` runs it."""
    OrderService(store.app, clock=clock).register_servers(INVENTORY)
    app = create_app(config, store=store, clock=clock)
    runner = GuardedAppRunner(
        app,
        client_timeout=config.client_timeout,
        send_timeout=config.send_timeout,
        send_buffer_bytes=config.send_buffer_bytes,
        access_log=None,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield int(runner.addresses[0][1]), app
    finally:
        await runner.cleanup()


@pytest.fixture
async def server(
    store: Store, config_with: Any, clock: FakeClock
) -> AsyncIterator[tuple[int, web.Application]]:
    async with serving(
        config_with(client_timeout=CLIENT_TIMEOUT), store, clock
    ) as served:
        yield served


async def exchange(port: int, *parts: bytes) -> bytes:
    """Send `parts`, then read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
        async with asyncio.timeout(GIVE_UP_SECONDS):
            return await reader.read()  # to the end: the server closed it
    finally:
        writer.close()


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(GIVE_UP_SECONDS):
        while not condition():
            await asyncio.sleep(0.01)


# -- slow clients (finding 3) ---------------------------------------------------


@ONE_BACKEND
@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag"],
    ids=["nothing", "half the headers"],
)
async def test_a_connection_without_complete_headers_in_time_is_closed(
    server: tuple[int, web.Application], sent: bytes
) -> None:
    port, _ = server
    # when: the client sends `sent` and then nothing; then: the server hangs up
    assert await exchange(port, sent) == b""


@ONE_BACKEND
async def test_a_body_that_stops_halfway_is_a_408_and_the_connection_closes(
    server: tuple[int, web.Application],
) -> None:
    port, _ = server
    head = (
        b"POST /mana_api/pm_order/proj-a HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"X-Auth-Token: tok-alice\r\nSp-Agent: scloudm\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    status, headers, body = parse(await exchange(port, head, b'{"snids": "SN-'))
    assert status == 408
    assert headers["connection"] == "close"
    assert (
        json.loads(body)["msg"]
        == f"the body did not arrive within {CLIENT_TIMEOUT:g} s"
    )


@ONE_BACKEND
async def test_a_slow_client_does_not_hold_a_quick_one(
    server: tuple[int, web.Application],
) -> None:
    port, _ = server
    slow = asyncio.create_task(exchange(port, b"GET /healthz HTTP/1.1\r\n"))
    status, _, _ = parse(
        await exchange(
            port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    )
    assert status == 200
    assert await slow == b""


# -- a client that leaves mid-body (finding 4) ------------------------------------


@ONE_BACKEND
async def test_a_client_that_leaves_mid_body_is_a_499_not_an_error(
    server: tuple[int, web.Application], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, _ = server
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /mana_api/pm_order/proj-a HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"X-Auth-Token: tok-alice\r\nSp-Agent: scloudm\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        + b'{"snids": "SN-A-001", '
    )
    await writer.drain()
    writer.transport.abort()  # the client is gone, mid-body

    def access_lines() -> list[Any]:
        return [r for r in caplog.records if r.name == "pm_order.access"]

    await until(lambda: bool(access_lines()))
    (line,) = access_lines()
    assert line.status == 499
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- the parser's refusals (finding 5) ---------------------------------------------


@ONE_BACKEND
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /mana_api/pm_order/proj-a HTTP/1.1\r\nHost: x\r\n"
        b"X-Auth-Token: " + SECRET.encode() + b"\x7f\r\n\r\n",
        b"GET /mana_api/pm_order/proj-a?" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Auth-Token: " + SECRET.encode() * 500 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Name: " + SECRET.encode() + b"\r\n\r\n",
    ],
    ids=["control byte in a header", "URL over 8 KiB", "header over 8 KiB", "bad name"],
)
async def test_a_request_the_parser_refuses_is_a_json_400_with_a_request_id(
    server: tuple[int, web.Application],
    caplog: pytest.LogCaptureFixture,
    request_bytes: bytes,
) -> None:
    caplog.set_level(logging.DEBUG)
    port, _ = server
    status, headers, body = parse(await exchange(port, request_bytes))
    assert status == 400
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["x-openstack-request-id"].startswith("req-")
    assert headers["server"] == "pm-order"
    error = json.loads(body)
    assert (error["code"], error["reason"]) == (400, "Bad Request")
    assert error["msg"].startswith("malformed HTTP request: ")
    assert SECRET not in body.decode()
    # the log names the fault, never what was sent
    assert caplog.records
    assert not [r for r in caplog.records if SECRET in r.getMessage()]
    assert not [r for r in caplog.records if r.exc_info]


@ONE_BACKEND
async def test_no_answer_names_the_server_software_or_its_versions(
    server: tuple[int, web.Application],
) -> None:
    port, _ = server
    for path in (b"/healthz", b"/mana_api/pm_order/proj-a", b"/nowhere"):
        _, headers, _ = parse(
            await exchange(
                port,
                b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
        )
        assert headers["server"] == "pm-order"


@ONE_BACKEND
async def test_error_bodies_are_compact_json_like_success_bodies(
    server: tuple[int, web.Application],
) -> None:
    port, _ = server
    _, _, body = parse(
        await exchange(
            port,
            b"GET /mana_api/pm_order/proj-a HTTP/1.1\r\n"
            b"Host: x\r\nConnection: close\r\n\r\n",
        )
    )
    assert body == (
        b'{"code":401,"msg":"a valid X-Auth-Token is required","reason":"Unauthorized"}'
    )
