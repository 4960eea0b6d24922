"""Processes starting together on a fresh PostgreSQL schema all come up."""

from __future__ import annotations

import threading

import pytest

from service.store import Store, open_store

STARTING: int = 6


@pytest.mark.postgres
@pytest.mark.parametrize("attempt", range(3))
def test_stores_opened_together_on_a_fresh_schema_all_create_their_tables(
    postgres_schema_url: str, attempt: int
) -> None:
    # given several starts released at the same moment
    ready = threading.Barrier(STARTING)
    stores: list[Store] = []
    errors: list[BaseException] = []

    def start() -> None:
        ready.wait()
        try:
            stores.append(open_store(postgres_schema_url, create_tables=True))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(STARTING)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then every one of them opened the store, and the tables work
    try:
        assert errors == []
        assert len(stores) == STARTING
        assert stores[0].app.recorder.max_notification_id() in (None, 0)
    finally:
        for store in stores:
            store.close()
