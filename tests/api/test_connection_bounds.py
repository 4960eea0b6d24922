"""Bounds on what a client holds (issue 26, finding 6): the headers' time bound
covers every request of a keep-alive connection. On a real server (the one
`pm-order serve` runs), spoken to over raw sockets."""

from __future__ import annotations

import asyncio
from typing import Final

import pytest
from aiohttp import web

from tests.api.conftest import ONE_BACKEND
from tests.api.test_http_server import CLIENT_TIMEOUT, parse, server

__all__ = ["server"]  # the fixture of test_http_server.py

FIRST: Final = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HALF: Final = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag"
# Far below the keep-alive's 75 s, far above CLIENT_TIMEOUT.
CLOSED_WITHIN: Final = 5.0


async def closed_after(port: int, *writes: bytes) -> tuple[bytes, float]:
    """Send each of `writes` (the next once an answer has come); what arrived
    until the server closed the connection, and how long that took."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        received = b""
        for number, data in enumerate(writes):
            writer.write(data)
            await writer.drain()
            if number < len(writes) - 1:
                received += await reader.readuntil(b'"pid"')
        started = loop.time()
        async with asyncio.timeout(CLOSED_WITHIN):
            received += await reader.read()
        return received, loop.time() - started
    finally:
        writer.close()


@ONE_BACKEND
@pytest.mark.parametrize(
    "writes",
    [(FIRST + HALF,), (FIRST, HALF), (FIRST + FIRST + HALF,)],
    ids=["in the first's packet", "after the first's answer", "after two"],
)
async def test_the_next_request_s_headers_have_the_same_bound_as_the_first_s(
    server: tuple[int, web.Application], writes: tuple[bytes, ...]
) -> None:
    port, _ = server
    # when a request is followed by half the headers of the next, then nothing
    answer, waited = await closed_after(port, *writes)
    # then the complete ones are answered and the connection closed in time
    status, _headers, _body = parse(answer)
    assert status == 200
    assert answer.count(b"HTTP/1.1 200") == b"".join(writes).count(FIRST)
    assert waited < CLIENT_TIMEOUT * 4
