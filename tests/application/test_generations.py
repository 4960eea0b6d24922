"""Each release's read models are a generation of their own: built beside the
older one from the event log, never altering the older one's tables, served from
once caught up; the tables every release shares are only ever expanded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from domain.service import OrderService
from mail.ledger import DeliveryLedger
from projections.generations import generation
from projections.order_lists import LIST_TYPES, OrderLists
from projections.projector import view_contents
from service.config import ConfigError
from service.release import VERSION
from service.store import Store, open_store, postgres_settings
from tests.application.conftest import decide, request
from tests.conftest import POSTGRES_URL, drop_postgres_schema, need_postgres

PROJECTS = ("proj-a", "proj-b", "proj-c")


@pytest.fixture
def older(store_url: str, clock: object) -> Iterator[Store]:
    """A store with history, served by this release's read models (standing in
    for an older release's): orders requested, accepted, refused, mailed."""
    store = open_store(store_url)
    service = OrderService(store.app, clock=clock)  # type: ignore[arg-type]
    service.register_servers(
        [(f"SN-A-{n:03d}", "proj-a") for n in range(1, 7)]
        + [(f"SN-B-{n:03d}", "proj-b") for n in range(1, 3)]
    )
    for n in range(1, 4):
        service.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=[f"SN-A-{n:03d}"],
            dest_project="proj-b",
            mailto=["ops@example.com"],
        )
    request(service, ["SN-B-001"], source_project="proj-b", dest_project="proj-c")
    decide(service, [1], accept=True)
    decide(service, [2], accept=False)
    store.catch_up()
    yield store
    store.close()


@pytest.fixture
def changed_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The order lists' fold changed (its version raised): another generation."""
    monkeypatch.setattr(OrderLists, "fold_version", OrderLists.fold_version + 1)


def every_page(store: Store) -> dict[tuple[str, int], object]:
    return {
        (project, list_type): OrderLists.page(
            store.views, project, list_type, limit=1000, marker=None
        )
        for project in PROJECTS
        for list_type in LIST_TYPES
    }


def test_a_release_with_other_read_models_builds_them_beside_the_older_ones(
    older: Store, store_url: str, changed_fold: None
) -> None:
    # Given: the older generation's rows
    before = {v.name: view_contents(older.views, v) for v in older.all_views}
    # When: a release whose order lists differ opens the same store
    newer = open_store(store_url)
    try:
        # Then: it has a generation of its own, not yet caught up
        assert newer.generation != older.generation
        made = generation(newer.views, newer.generation)
        assert made is not None
        assert made.release == VERSION
        assert not made.caught_up
        # and once built from the log, it answers as the older one does
        newer.catch_up()
        made = generation(newer.views, newer.generation)
        assert made is not None
        assert made.caught_up
        assert every_page(newer) == every_page(older)
        # while the older generation's tables are as they were
        after = {v.name: view_contents(older.views, v) for v in older.all_views}
        assert after == before
    finally:
        newer.close()


def test_a_new_store_serves_from_its_generation_at_once(store: Store) -> None:
    made = generation(store.views, store.generation)
    assert made is not None
    assert made.caught_up  # an empty log: nothing to build


def test_the_same_release_finds_its_generation_again(
    older: Store, store_url: str
) -> None:
    again = open_store(store_url)
    try:
        assert again.generation == older.generation
        assert every_page(again) == every_page(older)
    finally:
        again.close()


def test_a_new_generation_sends_no_mail_an_older_one_sent(
    older: Store, store_url: str, changed_fold: None
) -> None:
    # Given: the older generation's mailer sent every message of its outbox
    now = time.time()
    sent = DeliveryLedger.due(older.views, now)
    assert len(sent) == 5  # three requests, a decision of each of two
    for mail in sent:
        DeliveryLedger.mark_sent(older.views, mail.message_id, now)
    # When: a newer generation is built from the log
    newer = open_store(store_url)
    try:
        newer.catch_up()
        # Then: its outbox holds the same messages, all accounted for
        assert len(DeliveryLedger.messages(newer.views)) == 5
        assert DeliveryLedger.due(newer.views, now + 3600) == []
    finally:
        newer.close()


def test_the_tables_shape_is_checked_against_what_the_release_reads(
    store: Store,
) -> None:
    assert store.shape_problems() == []
    with store.views.writing() as cursor:
        cursor.execute("ALTER TABLE order_lists_orders DROP COLUMN mailto")
        cursor.execute("DROP TABLE reports_days")
    assert store.shape_problems() == [
        "order_lists_orders lacks mailto",
        "reports_days is missing",
    ]


def test_a_generation_never_made_is_refused_without_creating_tables(
    older: Store, store_url: str, changed_fold: None
) -> None:
    with pytest.raises(ConfigError, match="run `pm-order db upgrade`"):
        open_store(store_url, create_tables=False)


# -- the shared tables' mark (PostgreSQL: SQLite has one process) --------------


def shared_schema(url: str) -> Identifier:
    return Identifier(str(postgres_settings(url).schema))


def execute(url: str, statement: SQL, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url.split("?")[0], autocommit=True) as db:
        cursor = db.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema's URL on PostgreSQL (where several processes, and so
    several releases, share the tables)."""
    need_postgres()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    drop_postgres_schema(schema)


def test_the_previous_releases_mark_is_left_as_it_was(postgres_url: str) -> None:
    # Given: a database as release 0.1.0 left it (its tables, its mark: 4)
    open_store(postgres_url).close()
    schema = shared_schema(postgres_url)
    execute(postgres_url, SQL("DROP TABLE {}.pm_order_shared_schema").format(schema))
    execute(
        postgres_url,
        SQL("CREATE TABLE {}.pm_order_schema (version INTEGER NOT NULL)").format(
            schema
        ),
    )
    execute(
        postgres_url, SQL("INSERT INTO {}.pm_order_schema VALUES (4)").format(schema)
    )
    # When: this release starts on it
    open_store(postgres_url).close()
    # Then: 0.1.0 still finds its own mark (it compares it for equality), and
    # this release's is beside it
    assert execute(
        postgres_url, SQL("SELECT version FROM {}.pm_order_schema").format(schema)
    ) == [(4,)]
    assert execute(
        postgres_url,
        SQL("SELECT version, readable_from FROM {}.pm_order_shared_schema").format(
            schema
        ),
    ) == [(5, 4)]


def test_the_shared_mark_never_goes_down(postgres_url: str) -> None:
    # Given: a later release expanded the shared tables (its mark is higher)
    open_store(postgres_url).close()
    schema = shared_schema(postgres_url)
    execute(
        postgres_url,
        SQL("UPDATE {}.pm_order_shared_schema SET version = 9").format(schema),
    )
    # When: this release starts again, and upgrades
    open_store(postgres_url).close()
    open_store(postgres_url, upgrade=True).close()
    # Then: the mark is the later release's
    assert execute(
        postgres_url,
        SQL("SELECT version, readable_from FROM {}.pm_order_shared_schema").format(
            schema
        ),
    ) == [(9, 4)]


def test_a_database_a_later_release_made_unusable_is_refused(
    postgres_url: str,
) -> None:
    open_store(postgres_url).close()
    schema = shared_schema(postgres_url)
    execute(
        postgres_url,
        SQL(
            "UPDATE {}.pm_order_shared_schema SET version = 9, readable_from = 7"
        ).format(schema),
    )
    with pytest.raises(ConfigError, match=f"release {VERSION} uses version 5"):
        open_store(postgres_url)
