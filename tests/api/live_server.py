"""The real app on a real loopback server, in a thread with its own event loop.

For tests whose client is synchronous (schemathesis sends its requests with
`requests`): the server keeps answering while the test thread waits on a socket.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from aiohttp import web
from aiohttp.test_utils import TestServer

HOST: Final = "127.0.0.1"
START_SECONDS: Final = 30.0
STOP_SECONDS: Final = 30.0


@contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) while in the block: its base URL."""
    loop = asyncio.new_event_loop()
    server = TestServer(app, host=HOST, port=0)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start_server())
        except BaseException as error:  # noqa: BLE001 (raised in the test thread)
            failure.append(error)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="live-server", daemon=True)
    thread.start()
    if not started.wait(START_SECONDS):
        raise TimeoutError(f"the app did not start within {START_SECONDS}s")
    if failure:
        raise failure[0]
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        _call(loop, server.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_SECONDS)
        loop.close()


def _call(loop: asyncio.AbstractEventLoop, coroutine: Any) -> Any:
    """Run `coroutine` on the server's loop and wait for it, bounded in time."""
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(STOP_SECONDS)
