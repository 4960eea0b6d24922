"""Exporting the event log as JSON lines, and importing it into an empty store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.event_archive import ImportRefused, export_events, import_events
from domain.order import order_aggregate_id
from domain.server import server_aggregate_id
from domain.service import OrderService
from mail import ledger
from mail.ledger import DeliveryLedger
from projections.order_lists import LIST_TYPES, OrderLists
from projections.server_ownership import ServerOwnership
from service.store import Store, open_store
from tests.application.conftest import INVENTORY, decide, request
from tests.conftest import (
    BACKENDS,
    POSTGRES_URL,
    FakeClock,
    drop_postgres_schema,
    need_postgres,
)

PROJECTS = ("proj-a", "proj-b", "proj-c", "proj-nobody")


def fill(store: Store, clock: FakeClock) -> None:
    """Orders in every state over three projects, some with mail, a server moved
    twice (SN-A-1: proj-a -> proj-b -> proj-c) and a warning.

    1: proj-a -> proj-b, SN-A-1 and SN-A-2, mailed, accepted
    2: proj-a -> proj-c, SN-A-3, refused
    3: proj-a -> proj-b, SN-A-4, mailed, warned
    4: proj-b -> proj-c, SN-A-1, accepted
    5: proj-b -> proj-a, SN-B-1, unfinished
    """
    service = OrderService(store.app, clock=clock)
    service.register_servers(INVENTORY)
    clock.advance(minutes=5)
    mailed = service.request_transfer(
        source_project="proj-a",
        user="alice",
        snids=["SN-A-1", "SN-A-2"],
        dest_project="proj-b",
        mailto=["ops@example.com"],
    ).order_id
    assert mailed is not None
    refused = request(service, ["SN-A-3"], dest_project="proj-c")
    warned = service.request_transfer(
        source_project="proj-a",
        user="ann",
        snids=["SN-A-4"],
        dest_project="proj-b",
        mailto=["ann@example.com"],
    ).order_id
    assert warned is not None
    clock.advance(minutes=10)
    decide(service, [mailed], accept=True)
    decide(service, [refused], accept=False, project="proj-c")
    onwards = request(
        service, ["SN-A-1"], source_project="proj-b", dest_project="proj-c", user="bob"
    )
    decide(service, [onwards], accept=True, project="proj-c")
    request(
        service, ["SN-B-1"], source_project="proj-b", dest_project="proj-a", user="bob"
    )
    clock.advance(hours=1)
    service.raise_warning(warned, every=timedelta(hours=1), most=3)
    store.catch_up()


@pytest.fixture
def filled(store: Store, clock: FakeClock) -> Store:
    fill(store, clock)
    return store


@pytest.fixture(params=BACKENDS)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A second store, on each backend, filled: the deployment exported from."""
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/source.sqlite3"
    else:
        need_postgres()
        schema = f"test_source_{uuid.uuid4().hex[:12]}"
        url = f"{POSTGRES_URL}?schema={schema}"
    opened = open_store(url)
    fill(opened, FakeClock())
    yield opened
    opened.close()
    if schema:
        drop_postgres_schema(schema)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    """The whole log of a filled (SQLite) store, exported to a file."""
    opened = open_store(f"sqlite:///{tmp_path}/exported.sqlite3")
    try:
        fill(opened, FakeClock())
        return write(tmp_path / "log.jsonl", export_events(opened.app))
    finally:
        opened.close()


def write(path: Path, records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")
    return path


def lists(store: Store) -> dict[tuple[str, int], Any]:
    """Every project's every list, as the API would page it."""
    return {
        (project, list_type): OrderLists.page(
            store.views, project, list_type, limit=1000, marker=None
        )
        for project in PROJECTS
        for list_type in LIST_TYPES
    }


def head(store: Store) -> int:
    return store.app.recorder.max_notification_id() or 0


# -- moving a deployment -----------------------------------------------------------


def test_export_then_import_gives_identical_lists_for_every_project_and_type(
    source: Store, store: Store, tmp_path: Path
) -> None:
    # given a deployment with orders in every state, on either backend
    exported = write(tmp_path / "log.jsonl", export_events(source.app))
    # when its log is imported into an empty store, on either backend
    import_events(store, exported)
    # then every list of every project reads the same
    assert lists(store) == lists(source)
    assert sum(page.total_count for page in lists(store).values()) > 0


def test_export_then_import_gives_identical_server_ownership(
    source: Store, store: Store, tmp_path: Path
) -> None:
    # given a deployment where servers changed hands
    exported = write(tmp_path / "log.jsonl", export_events(source.app))
    # when its log is imported into an empty store
    import_events(store, exported)
    # then every server has the same owner and holding order
    assert ServerOwnership.servers(store.views) == ServerOwnership.servers(source.views)


def test_imported_events_are_stored_exactly_as_they_were(
    filled: Store, tmp_path: Path, clock: FakeClock
) -> None:
    # given a filled store's log, exported
    exported = write(tmp_path / "log.jsonl", export_events(filled.app))
    target = open_store(f"sqlite:///{tmp_path}/target.sqlite3")
    try:
        # when it is imported into an empty store
        import_events(target, exported)
        # then each aggregate's stored events are the same, byte for byte
        for aggregate_id in [
            *(order_aggregate_id(n) for n in range(1, 6)),
            *(server_aggregate_id(snid) for snid, _ in INVENTORY),
        ]:
            assert target.app.recorder.select_events(
                aggregate_id
            ) == filled.app.recorder.select_events(aggregate_id)
    finally:
        target.close()


def test_importing_records_the_old_deployments_mail_as_delivered(
    store: Store, log_file: Path
) -> None:
    # given a log with orders that mailed people
    # when it is imported
    imported = import_events(store, log_file)
    # then their messages are in the outbox, none waiting to be sent again
    messages = DeliveryLedger.messages(store.views)
    assert imported.mail_marked_sent == len(messages) > 0
    assert {m.state for m in messages} == {ledger.SENT}


def test_importing_with_send_mail_leaves_the_mail_to_send(
    store: Store, log_file: Path
) -> None:
    # given a log with orders that mailed people
    # when it is imported asking for the mail to be sent
    imported = import_events(store, log_file, send_mail=True)
    # then their messages wait for the mailer
    assert imported.mail_marked_sent == 0
    assert {m.state for m in DeliveryLedger.messages(store.views)} == {ledger.PENDING}


def test_import_reports_what_it_wrote(store: Store, log_file: Path) -> None:
    # given a whole log of 5 orders and 10 servers
    # when it is imported in small batches
    imported = import_events(store, log_file, batch_size=4)
    # then every line is stored and counted
    lines = log_file.read_text().splitlines()
    assert (imported.events, imported.aggregates) == (len(lines), 15)
    assert imported.position == head(store) == len(lines)


# -- refusals ------------------------------------------------------------------------


def test_import_into_a_store_that_holds_events_is_refused_and_writes_nothing(
    filled: Store, log_file: Path
) -> None:
    # given a store that already holds events
    before = head(filled)
    # when a log is imported into it
    # then it is refused and nothing is written
    with pytest.raises(ImportRefused, match="already holds events"):
        import_events(filled, log_file)
    assert head(filled) == before


def _replace_data(record: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {**record, "data": {**record["data"], **data}}


def _without_data(record: dict[str, Any], name: str) -> dict[str, Any]:
    return {**record, "data": {k: v for k, v in record["data"].items() if k != name}}


BAD_LAST_LINES = {
    "not JSON": (lambda r: "{not json", "not JSON"),
    "unknown topic": (
        lambda r: {**r, "topic": "os:system"},
        "unknown event topic 'os:system'",
    ),
    "a missing field": (
        lambda r: _without_data(r, "at"),
        r"missing \['at'\]",
    ),
    "an unexpected field": (
        lambda r: _replace_data(r, colour="red"),
        r"unexpected \['colour'\]",
    ),
    "a time without offset": (
        lambda r: _replace_data(r, at="2026-11-27 10:00:00"),
        "ISO-8601 time with its offset",
    ),
    "a wrong field type": (
        lambda r: _replace_data(r, number="1"),
        "data.number: expected int",
    ),
    "a version gap": (
        lambda r: {**r, "version": r["version"] + 1},
        "not a whole log",
    ),
    "an id out of order": (lambda r: {**r, "id": 1}, "log order"),
    "a type that contradicts the topic": (
        lambda r: {**r, "type": "Server.Released"},
        "does not match topic",
    ),
    "an aggregate id that contradicts the data": (
        lambda r: _replace_data(r, number=r["data"]["number"] + 100),
        "does not match its data",
    ),
}


def damaged(log_file: Path, change: Any) -> int:
    """Damage the last line of `log_file` with `change`; its line number."""
    lines = log_file.read_text().splitlines()
    line = change(json.loads(lines[-1]))
    lines[-1] = line if isinstance(line, str) else json.dumps(line)
    log_file.write_text("\n".join(lines) + "\n")
    return len(lines)


def test_a_bad_line_refuses_the_whole_file_and_writes_nothing(
    store: Store, log_file: Path
) -> None:
    # given a whole log whose last line is damaged
    last = damaged(log_file, lambda r: {**r, "version": r["version"] + 1})
    # when it is imported, in batches that would have written the lines before it
    # then it is refused, naming the line, and not one event is written
    with pytest.raises(ImportRefused, match=f"line {last}: "):
        import_events(store, log_file, batch_size=2)
    assert head(store) == 0


@pytest.fixture
def empty_store(tmp_path: Path) -> Iterator[Store]:
    """An empty SQLite store: checking a file reads no store, so one backend does."""
    opened = open_store(f"sqlite:///{tmp_path}/empty.sqlite3")
    yield opened
    opened.close()


@pytest.mark.parametrize("damage", BAD_LAST_LINES.values(), ids=list(BAD_LAST_LINES))
def test_each_kind_of_bad_line_is_named_in_the_refusal(
    empty_store: Store, log_file: Path, damage: Any
) -> None:
    # given a whole log whose last line is damaged in one way
    change, message = damage
    last = damaged(log_file, change)
    # when it is imported
    # then the refusal names the line and what is wrong with it
    with pytest.raises(ImportRefused, match=message) as refused:
        import_events(empty_store, log_file, batch_size=2)
    assert str(refused.value).startswith(f"line {last}: ")
    assert head(empty_store) == 0


def test_an_export_after_an_id_cannot_be_imported_alone(
    store: Store, log_file: Path
) -> None:
    # given the tail of a log (what an export after notification 20 gives)
    lines = log_file.read_text().splitlines()
    log_file.write_text("".join(f"{line}\n" for line in lines[20:]))
    # when it is imported into an empty store
    # then it is refused as not a whole log
    with pytest.raises(ImportRefused, match="not a whole log"):
        import_events(store, log_file)
    assert head(store) == 0


# -- export --------------------------------------------------------------------------


def test_each_exported_line_is_one_decoded_event(filled: Store) -> None:
    # given a filled store
    # when its log is exported
    first = next(export_events(filled.app))
    # then each line names the event and carries its fields, times as ISO strings
    assert first == {
        "id": 1,
        "aggregate_id": str(server_aggregate_id("SN-A-1")),
        "aggregate_type": "Server",
        "version": 1,
        "time": first["time"],
        "type": "Server.Registered",
        "topic": "domain.server:Server.Registered",
        "data": {
            "snid": "SN-A-1",
            "project_id": "proj-a",
            "at": "2026-11-27T09:00:00+00:00",
        },
    }
    assert datetime.fromisoformat(first["time"]).utcoffset() == timedelta(0)


def test_the_export_follows_the_log_order(filled: Store) -> None:
    # given a filled store
    # when its log is exported
    ids = [record["id"] for record in export_events(filled.app)]
    # then every event comes once, in the log's order
    assert ids == list(range(1, head(filled) + 1))


def test_the_export_reads_the_log_page_by_page(filled: Store) -> None:
    # given a filled store
    # when its log is exported in pages of 3 events
    # then the export is the same as in one page
    assert list(export_events(filled.app, page_size=3)) == list(
        export_events(filled.app, page_size=1000)
    )


def test_an_export_after_an_id_starts_after_it(filled: Store) -> None:
    # given a filled store
    # when the log after notification 12 is exported
    ids = [record["id"] for record in export_events(filled.app, after=12)]
    # then it starts at 13 and runs to the end
    assert ids == list(range(13, head(filled) + 1))


def test_a_project_export_keeps_only_orders_the_project_is_party_to(
    filled: Store,
) -> None:
    # given orders among proj-a, proj-b and proj-c
    # when proj-c's events are exported
    records = list(export_events(filled.app, project="proj-c"))
    # then the order events are those of the orders to or from proj-c
    numbers = {r["data"]["number"] for r in records if r["aggregate_type"] == "Order"}
    assert numbers == {2, 4}


def test_a_project_export_follows_its_servers_from_when_it_was_given_them(
    filled: Store,
) -> None:
    # given SN-A-1 moved proj-a -> proj-b (order 1), then proj-b -> proj-c (order 4)
    # when proj-b's events are exported
    records = list(export_events(filled.app, project="proj-b"))
    # then SN-A-1's events are those while proj-b owned it: given, reserved, given on
    moves = [
        (r["type"], r["data"]["order_id"])
        for r in records
        if r["aggregate_type"] == "Server" and r["data"]["snid"] == "SN-A-1"
    ]
    assert moves == [
        ("Server.Transferred", 1),
        ("Server.Reserved", 4),
        ("Server.Transferred", 4),
    ]


def test_a_project_export_leaves_out_other_projects_servers(filled: Store) -> None:
    # given servers registered to three projects
    # when proj-c's events are exported
    records = list(export_events(filled.app, project="proj-c"))
    # then of the registrations only proj-c's are there
    registered = {
        r["data"]["snid"] for r in records if r["type"] == "Server.Registered"
    }
    assert registered == {"SN-C-1"}


def test_a_project_export_after_an_id_still_knows_what_the_project_owned(
    filled: Store,
) -> None:
    # given a filled store, and proj-b's whole export
    whole = list(export_events(filled.app, project="proj-b"))
    # when proj-b's events after notification 12 are exported
    tail = list(export_events(filled.app, project="proj-b", after=12))
    # then it is the whole export's tail: ownership learnt before 12 still counts
    assert tail == [r for r in whole if r["id"] > 12]
    assert any(r["aggregate_type"] == "Server" for r in tail)


def test_an_empty_store_exports_nothing(store: Store) -> None:
    # given an empty store
    # when its log is exported
    # then there is not one line
    assert list(export_events(store.app)) == []


def test_export_times_are_utc_whatever_the_events_carry(filled: Store) -> None:
    # given a filled store
    # when its log is exported
    records = list(export_events(filled.app))
    # then every recorded time is in UTC, and the domain times as they were
    assert {datetime.fromisoformat(r["time"]).tzinfo for r in records} == {UTC}
    assert records[-1]["data"]["at"] == "2026-11-27T10:15:00+00:00"


def test_orders_after_an_import_are_numbered_after_the_imported_ones(
    store: Store, log_file: Path, clock: FakeClock
) -> None:
    # given a log imported into an empty store, on either backend
    import_events(store, log_file)
    imported = [json.loads(line) for line in log_file.read_text().splitlines() if line]
    last = max(
        record["data"]["number"]
        for record in imported
        if record["type"] == "Order.Requested"
    )
    # when a new order is requested there
    service = OrderService(store.app, clock=clock)
    service.register_servers([("SN-NEW-1", "proj-a")])
    number = request(service, ["SN-NEW-1"])
    # then its number follows the imported ones, found without a conflict
    assert number == last + 1
    assert store.app.conflicts == 0  # type: ignore[attr-defined]
