"""Waiting in the async fault tests: for a condition (bounded), or for a blocking
call run in a thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

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
