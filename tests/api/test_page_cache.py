"""Cached list pages: the same bytes as a fresh read, and never stale, even when
the write was answered by another process (read-your-writes).

The reader is a second app on a store of its own (its own connections, its own
cache), as a second `serve --api-only` process behind a load balancer would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api import responses
from api.app import create_app
from api.context import PAGE_CACHE
from api.page_cache import PageCache
from projections.order_lists import OrderLists
from service.config import Config
from service.store import Store, open_store
from tests.api import given
from tests.conftest import Api, FakeClock

ALICE = ("tok-alice", "proj-a")
BOB = ("tok-bob", "proj-b")


# Pages are cached where they are read on the event loop: on PostgreSQL only.
postgres_only = pytest.mark.parametrize(
    "store_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def postgres_url(store_url: str) -> str:
    assert store_url.startswith("postgresql")
    return store_url


@pytest.fixture
async def reader(
    postgres_url: str, api: Api, aiohttp_client: Any, config: Config, clock: FakeClock
) -> AsyncIterator[TestClient[Any, Any]]:
    """Another API process on the same database: it only reads the views."""
    store = open_store(postgres_url)
    app = create_app(config, store=store, clock=clock, background=False)
    client = await aiohttp_client(app)
    yield client
    await client.close()
    store.close()


async def raw_list(
    client: TestClient[Any, Any], who: tuple[str, str], **params: Any
) -> bytes:
    token, tenant = who
    response = await client.get(
        f"/mana_api/pm_order/{tenant}",
        headers=Api.headers(token),
        params={k: str(v) for k, v in params.items()},
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    return await response.read()


def fresh_body(
    store: Store, config: Config, tenant: str, list_type: int, **query: Any
) -> bytes:
    """What the list answers when nothing is cached: read and rendered now."""
    page = OrderLists.page(
        store.views,
        tenant,
        list_type,
        limit=query.get("limit", 10),
        marker=query.get("marker"),
    )
    return responses.order_list_body(page, config.timezone)


@postgres_only
async def test_a_cached_page_has_the_bytes_of_a_fresh_read(
    api: Api, reader: TestClient[Any, Any], config: Config
) -> None:
    # given orders in every state
    ids = [await given.ordered(api, f"SN-A-{n:03d}") for n in range(1, 8)]
    await given.decided(api, ids[:2], accept=True)
    await given.decided(api, ids[2:4], accept=False)
    queries: list[dict[str, Any]] = [{}, {"limit": 1}, {"limit": 2}]
    queries += [{"limit": 2, "marker": ids[5]}, {"limit": 3, "marker": ids[3]}]
    for who in (ALICE, BOB):
        for list_type in range(5):
            for query in queries:
                # when read twice (the second from the cache)
                first = await raw_list(reader, who, type=list_type, **query)
                second = await raw_list(reader, who, type=list_type, **query)
                # then both are what a fresh read renders
                want = fresh_body(api.store, config, who[1], list_type, **query)
                assert first == second == want, (who, list_type, query)
    assert len(reader.app[PAGE_CACHE]) == 2 * 5 * len(queries)


@postgres_only
async def test_a_write_answered_by_another_process_shows_in_a_cached_page(
    api: Api, reader: TestClient[Any, Any], config: Config
) -> None:
    for n in range(1, 6):
        # given the lists read (and cached) by the reader
        for who, list_type in ((BOB, 0), (BOB, 1), (BOB, 2), (ALICE, 3), (ALICE, 4)):
            await raw_list(reader, who, type=list_type)
            await raw_list(reader, who, type=list_type, limit=1)
        # when the other process answers a request
        order_id = await given.ordered(api, f"SN-A-{n:03d}")
        # then the reader's very next reads show it
        inbox = await given.listed(api, *BOB, type=0)
        assert order_id in given.ids(inbox)
        for who, list_type in ((BOB, 0), (BOB, 4), (ALICE, 3), (ALICE, 4)):
            body = await raw_list(reader, who, type=list_type, limit=1)
            assert body == fresh_body(api.store, config, who[1], list_type, limit=1), (
                n,
                who,
                list_type,
            )
            assert f'"id":{order_id},'.encode() in body
        # when the other process answers a decision
        await given.decided(api, [order_id], accept=n % 2 == 1)
        # then the reader's very next reads show it too
        decided_list = 1 if n % 2 == 1 else 2
        for who, list_type in ((BOB, 0), (BOB, decided_list), (ALICE, 3)):
            body = await raw_list(reader, who, type=list_type)
            assert body == fresh_body(api.store, config, who[1], list_type)
        inbox_after = await raw_list(reader, BOB, type=0)
        assert f'"id":{order_id},'.encode() not in inbox_after


@postgres_only
async def test_an_untouched_tenants_pages_stay_cached(
    api: Api, reader: TestClient[Any, Any]
) -> None:
    # given proj-c's list read, and its version
    await given.ordered(api, "SN-A-001", dest="proj-c")
    before = await raw_list(reader, ("tok-carol", "proj-c"), type=0)
    version = OrderLists.version(api.store.views, "proj-c")
    # when proj-a orders for proj-b only
    await given.ordered(api, "SN-A-002")
    # then proj-c's version has not moved, and its answer is the same
    assert OrderLists.version(api.store.views, "proj-c") == version
    assert await raw_list(reader, ("tok-carol", "proj-c"), type=0) == before


def test_the_cache_holds_at_most_its_bytes_least_recently_used_out_first() -> None:
    cache = PageCache(max_bytes=10)
    cache.put(("a", "type=0"), 1, b"1234")
    cache.put(("b", "type=0"), 1, b"1234")
    assert cache.get(("a", "type=0")) is not None  # a is now the newest
    cache.put(("c", "type=0"), 2, b"1234")
    assert cache.get(("b", "type=0")) is None
    assert cache.get(("a", "type=0")) is not None
    assert cache.get(("c", "type=0")) == cache.get(("c", "type=0"))
    assert cache.bytes == 8
    cache.put(("a", "type=0"), 3, b"12")
    assert cache.bytes == 6
    cache.put(("d", "type=0"), 3, b"x" * 11)  # larger than the whole cache
    assert cache.get(("d", "type=0")) is None
    assert len(cache) == 2


async def test_each_tenants_version_counts_the_events_of_its_lists(api: Api) -> None:
    # (both backends: the projector writes the versions wherever it runs)
    views = api.store.views
    assert OrderLists.version(views, "proj-a") is None
    # when proj-a orders twice for proj-b, once for proj-c, and proj-b decides one
    first = await given.ordered(api, "SN-A-001")
    await given.ordered(api, "SN-A-002")
    await given.ordered(api, "SN-A-003", dest="proj-c")
    await given.decided(api, [first], accept=True)
    # then each party's version counts the events of its orders
    assert OrderLists.version(views, "proj-a") == 4
    assert OrderLists.version(views, "proj-b") == 3
    assert OrderLists.version(views, "proj-c") == 1


@postgres_only
async def test_concurrent_reads_after_a_write_all_show_it(
    api: Api, reader: TestClient[Any, Any], config: Config
) -> None:
    # (many reads at once share their version reads: none may use an older one)
    parties = [BOB, ALICE, ("tok-carol", "proj-c")]
    for n in range(1, 5):
        # given every list cached by the reader
        for who in parties:
            for list_type in range(5):
                await raw_list(reader, who, type=list_type)
        # when the other process answers a request
        order_id = await given.ordered(api, f"SN-A-{n:03d}")
        # then many reads at once, on every list, each show it where it belongs
        reads = [(who, t) for who in parties for t in range(5)] * 3
        bodies = await asyncio.gather(
            *(raw_list(reader, who, type=list_type) for who, list_type in reads)
        )
        for (who, list_type), body in zip(reads, bodies, strict=True):
            assert body == fresh_body(api.store, config, who[1], list_type)
        assert f'"id":{order_id},'.encode() in bodies[0]  # proj-b's inbox


@postgres_only
async def test_queries_are_cached_by_their_text_and_only_when_valid(
    api: Api, reader: TestClient[Any, Any], config: Config
) -> None:
    # given orders, and one query cached under one spelling
    ids = [await given.ordered(api, f"SN-A-{n:03d}") for n in range(1, 5)]
    want = fresh_body(api.store, config, "proj-a", 3, limit=2, marker=ids[-1])
    spellings = [
        f"type=3&limit=2&marker={ids[-1]}",
        f"marker={ids[-1]}&limit=2&type=3",
        f"limit=2&marker={ids[-1]}&type=3",
    ]
    for query in spellings:
        # when asked under any spelling, twice
        for _ in range(2):
            response = await reader.get(
                f"/mana_api/pm_order/proj-a?{query}", headers=Api.headers("tok-alice")
            )
            # then the same answer
            assert response.status == 200, query
            assert await response.read() == want, query
    # and an invalid query is refused every time, never cached
    for query in ["type=7", f"{spellings[0]}&limit=2"] * 2:
        response = await reader.get(
            f"/mana_api/pm_order/proj-a?{query}", headers=Api.headers("tok-alice")
        )
        assert response.status == 400, query
    assert len(reader.app[PAGE_CACHE]) == len(spellings)
