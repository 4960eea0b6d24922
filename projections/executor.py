"""Running a synchronous call in the bounded thread pool, off the event loop.

The call runs in a copy of the caller's context, so that context variables (the
request id of the log lines) reach the pool's threads; `run_in_executor` alone
does not carry them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


async def in_pool(
    executor: Executor, function: Callable[..., T], /, *args: Any, **kwargs: Any
) -> T:
    """`function(*args, **kwargs)` in `executor`, awaited without blocking the loop."""
    context = contextvars.copy_context()
    call = partial(context.run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, call)
