"""A page is sent to PostgreSQL as one pipeline: every view's statements go out
without waiting for each answer. A view that reads inside the page must get its
own rows, whatever answers of earlier statements arrive meanwhile.

To make "meanwhile" certain rather than a matter of luck, each view below is
wrapped so that, before each of its events, the server is asked to send every
answer it owes (a pipeline flush request) and the test waits until they are on
the socket: the next statement then finds them there unread. A view that read on
a cursor shared with earlier pipelined writes then got one of their answers
("the last operation didn't produce records (command status: UPDATE 2)").
"""

from __future__ import annotations

import select
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.service import OrderService
from projections.database import Cursor, PostgresViews, SQLiteViews, ViewDatabase
from projections.mail_outbox import MailOutbox
from projections.order_lists import OrderLists
from projections.projector import Projector, view_contents
from projections.reports import Reports
from projections.server_ownership import ServerOwnership
from projections.view import Events, View
from service.store import Store, open_store
from tests.application.conftest import decide
from tests.conftest import POSTGRES_URL, FakeClock, drop_postgres_schema, need_postgres

pytestmark = pytest.mark.postgres


class AnswersWaiting:
    """`view`, with the answers to everything sent so far waiting unread on the
    connection's socket before each of its events is applied."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.name = view.name
        self.tables = view.tables
        self.topics = view.topics

    def create_tables(self, cursor: Cursor, db: ViewDatabase) -> None:
        self.view.create_tables(cursor, db)

    def apply_page(self, cursor: Cursor, db: ViewDatabase, events: Events) -> None:
        connection: Any = getattr(cursor, "connection")  # noqa: B009
        for event in events:
            pgconn, pipeline = connection.pgconn, connection._pipeline
            if pipeline is None or not pipeline.result_queue:  # nothing owed
                self.view.apply_page(cursor, db, [event])
                continue
            pgconn.send_flush_request()
            while pgconn.flush():  # 1: more to send
                select.select([], [pgconn.socket], [])
            # The server answers what it was sent: wait until the answers arrive.
            select.select([pgconn.socket], [], [])
            self.view.apply_page(cursor, db, [event])


def views() -> list[View]:
    return [OrderLists(), ServerOwnership(), MailOutbox(), Reports()]


@pytest.fixture
def postgres_store() -> Iterator[Store]:
    """A fresh store on PostgreSQL alone: the pipeline is PostgreSQL's."""
    need_postgres()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    store = open_store(f"{POSTGRES_URL}?schema={schema}")
    assert isinstance(store.views, PostgresViews)
    yield store
    store.close()
    drop_postgres_schema(schema)


def test_views_reading_inside_a_pipelined_page_get_their_own_rows(
    postgres_store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    store = postgres_store
    service = OrderService(store.app, clock=clock)
    service.register_servers([(f"SN-{n}", "proj-a") for n in range(1, 9)])
    orders = [
        service.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=[f"SN-{n}"],
            dest_project="proj-b",
            mailto=["ops@a.example.com"],
        ).order_id
        for n in range(1, 9)
    ]
    assert all(orders)
    numbers = [n for n in orders if n is not None]
    clock.advance(minutes=5)
    service.raise_warning(numbers[0], every=timedelta(minutes=1), most=3)
    decide(service, numbers[:3], accept=True, project="proj-b")
    decide(service, numbers[3:6], accept=False, project="proj-b")

    # Pages that mix requests, warnings and decisions, each view slowed down as
    # above; every view in one projector (as the service runs them).
    projector = Projector(
        store.app.recorder,
        store.app.mapper,
        store.views,
        [AnswersWaiting(view) for view in views()],
        page_size=7,
    )
    projector.create_tables()
    projector.catch_up()

    reference = SQLiteViews(tmp_path / "reference.sqlite3")
    try:
        fresh = Projector(store.app.recorder, store.app.mapper, reference, views())
        fresh.create_tables()
        fresh.catch_up()
        for view in views():
            assert view_contents(store.views, view) == view_contents(reference, view)
    finally:
        reference.close()
