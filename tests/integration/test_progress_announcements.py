"""A process that waits on another's projector learns how far the views got from
the projector's announcements (NOTIFY), without reading the tracking table."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from domain.service import OrderService
from service import following
from service.store import open_store
from tests.integration.waiting import until

pytestmark = pytest.mark.postgres


async def test_a_waiter_is_released_by_the_announcement_alone(
    postgres_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a projecting process and a watching one (API only) on one store
    projecting, watching = (
        open_store(postgres_schema_url),
        open_store(postgres_schema_url),
    )
    executor = ThreadPoolExecutor(4)
    projector = projecting.following(executor, run_projectors=True)
    watcher = watching.following(executor, run_projectors=False)
    reads: list[object] = []
    read = following.tracked_positions

    def counted(*args: Any) -> dict[str, int]:
        reads.append(args)
        return read(*args)

    try:
        await projector.start()
        await watcher.start()
        await until(lambda: watcher.listener_alive() is True, "the watcher hears", 10)
        monkeypatch.setattr(following, "tracked_positions", counted)
        # When: an order is stored, and the watching process waits for the views
        service = OrderService(projecting.app)
        service.register_servers([("SN-1", "proj-a")])
        written = service.request_transfer(
            source_project="proj-a",
            user="u",
            snids=["SN-1"],
            dest_project="proj-b",
            mailto=[],
        )
        projector.wake()
        # Then: the projector's announcement releases it, with no read of its own
        assert await watcher.caught_up(written.position, 10)
        assert reads == []
    finally:
        await watcher.stop()
        await projector.stop()
        executor.shutdown()
        watching.close()
        projecting.close()
