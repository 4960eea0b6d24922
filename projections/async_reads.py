"""List pages read on the event loop, from an async psycopg pool (PostgreSQL).

The synchronous read costs a hop to the thread pool and back for every request,
about a third of a list answer's CPU time in the profile (bench/README.md); an
async connection answers on the loop itself. Statements are prepared on each
connection's first use of them (prepare_threshold=0): the page's plan is made
once per connection, not once per request.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from projections.database import (
    POOL_RECONNECT_SECONDS,
    PostgresViews,
    read_attempts,
)
from projections.order_lists import OrderLists, OrderPage


class AsyncListReads:
    """The order lists' page query, on the event loop."""

    def __init__(self, views: PostgresViews, *, max_size: int | None = None) -> None:
        """`max_size`: as the synchronous reads' pool, unless given."""
        from psycopg_pool import AsyncConnectionPool

        self.views = views
        self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            views.conninfo,
            min_size=1,
            max_size=views.max_size if max_size is None else max_size,
            timeout=views.connect_timeout,
            reconnect_timeout=POOL_RECONNECT_SECONDS,
            kwargs={
                **views.connect_kwargs,
                "autocommit": True,
                "prepare_threshold": 0,
            },
            configure=self._configure_session,
            open=False,
        )
        # version(): the calls waiting for the next read, and the task reading.
        self._waiting: list[tuple[str, asyncio.Future[int | None]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def _configure_session(self, connection: Any) -> None:
        """As the views' pool: their settings, set by the session itself."""
        await connection.execute(*self.views.session_statement())

    async def open(self) -> None:
        # Not waiting for the first connection: a database that is down at start
        # gives 503s, as the synchronous reads do, not a server that never starts.
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def page(
        self, project: str, list_type: int, *, limit: int, marker: int | None
    ) -> OrderPage:
        """OrderLists.page, read on the event loop."""
        statement, params = OrderLists.page_query(
            project, list_type, limit=limit, marker=marker
        )
        return OrderLists.page_of(await self._rows(statement, params), limit)

    async def version(self, project: str) -> int | None:
        """OrderLists.version, read on the event loop, by a read that starts after
        this call: whatever was committed before the call shows.

        Concurrent calls share their reads: those that come while a read is on
        its way wait for the next one, which asks for all their projects at once
        (one round trip for many requests, not one each).
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int | None] = loop.create_future()
        self._waiting.append((project, waiter))
        if self._reader is None:
            self._reader = loop.create_task(self._read_versions())
        return await waiter

    async def _read_versions(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    projects = sorted({project for project, _ in batch})
                    rows = await self._rows(*OrderLists.versions_query(projects))
                except Exception as error:  # noqa: BLE001 - each caller raises it (a 503)
                    for _, waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(error)
                    continue
                except BaseException:  # cancelled: the app is stopping
                    for _, waiter in batch + self._waiting:
                        waiter.cancel()
                    self._waiting = []
                    raise
                found = {project: int(n) for project, n in rows}
                for project, waiter in batch:
                    if not waiter.done():
                        waiter.set_result(found.get(project))
        finally:
            self._reader = None

    async def _rows(self, statement: str, params: list[Any]) -> list[Any]:
        statement = self.views.sql(statement)
        for attempt in read_attempts():
            with attempt:
                async with self._pool.connection() as connection:
                    cursor = await connection.execute(statement, params)
                    rows: list[Any] = await cursor.fetchall()
                    return rows
            with contextlib.suppress(Exception):
                await self._pool.check()
            attempt.unless_last()
        raise AssertionError("unreachable")
