"""Waiting in the async fault tests: for a condition (bounded), for a blocking
call run in a thread, or for /readyz to answer as wanted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")


async def until(condition: Callable[[], bool], what: str, seconds: float) -> None:
    """Return once `condition()` holds; TimeoutError after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


async def in_thread(function: Callable[..., T], *args: object) -> T:
    """`function(*args)` in the default executor, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(
        None, partial(function, *args)
    )


async def readiness(
    session: aiohttp.ClientSession,
    base_url: str,
    wanted: int,
    seconds: float,
    *,
    failing: str | None = None,
) -> dict[str, Any]:
    """/readyz's answer once its status is `wanted` (200 or 503), and the check
    `failing` among those failed if given; AssertionError naming its latest
    answer after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        async with session.get(f"{base_url}/readyz") as response:
            status, body = response.status, await response.json()
        if status == wanted and (failing is None or failing in body["failed"]):
            return dict(body)
        assert time.monotonic() < deadline, f"/readyz never answered {wanted}: {body}"
        await asyncio.sleep(0.1)
