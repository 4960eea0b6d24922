"""List pages read on the event loop, from an async psycopg pool (PostgreSQL).

The synchronous read costs a hop to the thread pool and back for every request,
about a third of a list answer's CPU time in the profile (bench/README.md); an
async connection answers on the loop itself. Statements are prepared on each
connection's first use of them (prepare_threshold=0): the page's plan is made
once per connection, not once per request.
"""

from __future__ import annotations

import contextlib
from typing import Any

from projections.database import PostgresViews, ViewDatabaseUnavailable
from projections.order_lists import OrderLists, OrderPage


class AsyncListReads:
    """The order lists' page query, on the event loop."""

    def __init__(self, views: PostgresViews, *, max_size: int = 4) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.views = views
        self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            views.conninfo,
            min_size=1,
            max_size=max_size,
            timeout=views.connect_timeout,
            kwargs={
                **views.connect_kwargs,
                "autocommit": True,
                "prepare_threshold": 0,
            },
            open=False,
        )

    async def open(self) -> None:
        # Not waiting for the first connection: a database that is down at start
        # gives 503s, as the synchronous reads do, not a server that never starts.
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def page(
        self, tenant: str, list_type: int, *, limit: int, marker: int | None
    ) -> OrderPage:
        """OrderLists.page, read on the event loop."""
        statement, params = OrderLists.page_query(
            tenant, list_type, limit=limit, marker=marker
        )
        return OrderLists.page_of(await self._rows(statement, params), limit)

    async def version(self, tenant: str) -> int | None:
        """OrderLists.version, read on the event loop: one primary-key read."""
        rows = await self._rows(*OrderLists.version_query(tenant))
        return int(rows[0][0]) if rows else None

    async def _rows(self, statement: str, params: list[Any]) -> list[Any]:
        import psycopg
        import psycopg_pool

        statement = self.views.sql(statement)
        for attempt in (1, 2):
            try:
                async with self._pool.connection() as connection:
                    cursor = await connection.execute(statement, params)
                    rows: list[Any] = await cursor.fetchall()
                    return rows
            except psycopg.OperationalError as error:
                # A connection from before a database restart: its idle siblings
                # are as dead; replace them and read once more.
                with contextlib.suppress(Exception):
                    await self._pool.check()
                if attempt == 2:
                    raise ViewDatabaseUnavailable(str(error)) from error
            except psycopg_pool.PoolTimeout as error:
                raise ViewDatabaseUnavailable(str(error)) from error
        raise AssertionError("unreachable")
