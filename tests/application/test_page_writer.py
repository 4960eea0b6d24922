"""The page writer: a table described by its row, and a page's changes written as
one statement per kind of change, the same on both stores."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest

from projections.database import ViewDatabase
from projections.page_writer import Changes, Int32, Lookup, Table
from service.store import Store


@dataclass(slots=True)
class Shelf:
    shelf_id: int
    owner: str
    day: date
    label: str | None


@dataclass(slots=True)
class Tally:
    owner: str
    kind: Int32
    n: int


SHELVES = Table("test_shelves", Shelf, key=["shelf_id"], stored_as={"owner": "who"})
TALLIES = Table("test_tallies", Tally, key=["owner", "kind"])
OWNER_OF_SHELF = Lookup(SHELVES, "shelf_id", (("owner", "owner"),))


def create(db: ViewDatabase) -> None:
    with db.writing() as cursor:
        for table in (SHELVES, TALLIES):
            for statement in table.ddl():
                cursor.execute(statement)


def write(db: ViewDatabase, changes: Changes) -> None:
    with db.writing() as cursor:
        changes.write(cursor, db)


def shelves(db: ViewDatabase) -> list[Shelf]:
    rows = db.query(f"SELECT {SHELVES.selected} FROM test_shelves ORDER BY shelf_id")
    return [SHELVES.row_of(row) for row in rows]


def tallies(db: ViewDatabase) -> dict[tuple[str, int], int]:
    rows = db.query("SELECT owner, kind, n FROM test_tallies")
    return {(owner, kind): n for owner, kind, n in rows}


def test_a_table_s_columns_follow_its_row_s_fields_and_types() -> None:
    [create_table] = list(SHELVES.ddl())
    assert create_table == (
        "CREATE TABLE IF NOT EXISTS test_shelves (shelf_id BIGINT NOT NULL,"
        " who TEXT NOT NULL, day TEXT NOT NULL, label TEXT, PRIMARY KEY (shelf_id))"
    )
    assert [c.sql_type for c in TALLIES.columns] == ["TEXT", "INTEGER", "BIGINT"]


def test_rows_counts_updates_and_looked_up_counts_land_as_folded(store: Store) -> None:
    # given two shelves written by an earlier page
    db = store.views
    create(db)
    first = Changes()
    first.insert(SHELVES, Shelf(1, "ann", date(2026, 11, 27), None))
    first.insert(SHELVES, Shelf(2, "bob", date(2026, 11, 28), "old"))
    write(db, first)
    # when a page inserts a third (and changes it before it is written), labels
    # the first two in two shapes, and counts per owner, directly and through
    # the shelves' own rows
    page = Changes()
    page.insert(SHELVES, Shelf(3, "cid", date(2026, 11, 29), None))
    third = page.inserted(SHELVES, 3)
    assert third is not None
    third.label = "new"
    page.update(SHELVES, {"shelf_id": 1}, label="first")
    page.update(SHELVES, {"shelf_id": 2}, label=None, day=date(2026, 12, 1))
    page.add(TALLIES, Tally("cid", 1, 1))
    page.add(TALLIES, Tally("cid", 1, 2))
    page.add_through(TALLIES, OWNER_OF_SHELF, 1, kind=1, n=5)
    page.add_through(TALLIES, OWNER_OF_SHELF, 1, kind=1, n=-1)
    page.add_through(TALLIES, OWNER_OF_SHELF, 2, kind=2, n=1)
    write(db, page)
    # then every row is as the changes left it, days read back as days
    assert shelves(db) == [
        Shelf(1, "ann", date(2026, 11, 27), "first"),
        Shelf(2, "bob", date(2026, 12, 1), None),
        Shelf(3, "cid", date(2026, 11, 29), "new"),
    ]
    assert tallies(db) == {("cid", 1): 3, ("ann", 1): 4, ("bob", 2): 1}
    # and a second page adds to the counts it finds
    again = Changes()
    again.add(TALLIES, Tally("cid", 1, 10))
    again.add_through(TALLIES, OWNER_OF_SHELF, 2, kind=2, n=1)
    write(db, again)
    assert tallies(db) == {("cid", 1): 13, ("ann", 1): 4, ("bob", 2): 2}


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            lambda page: page.update(SHELVES, {"shelf_id": 1}, colour="red"),
            "test_shelves has no column for 'colour'",
        ),
        (
            lambda page: page.update(SHELVES, {"shelf": 1}, label="red"),
            "test_shelves has no column for 'shelf'",
        ),
        (
            lambda page: page.add_through(TALLIES, OWNER_OF_SHELF, 1, kind=1, count=1),
            "test_tallies has no column for 'count'",
        ),
        (
            lambda page: page.add_through(TALLIES, OWNER_OF_SHELF, 1, kind=1),
            "test_tallies: a change through test_shelves gives kind, not kind, n",
        ),
    ],
)
def test_a_change_naming_a_column_its_table_lacks_refuses_its_whole_page(
    store: Store, change: Callable[[Changes], None], refusal: str
) -> None:
    # given a shelf
    db = store.views
    create(db)
    first = Changes()
    first.insert(SHELVES, Shelf(1, "ann", date(2026, 11, 27), None))
    write(db, first)
    # when a page that inserts a second shelf also names a column the table lacks
    page = Changes()
    page.insert(SHELVES, Shelf(2, "bob", date(2026, 11, 28), None))
    change(page)
    # then writing it is refused, and the page changes nothing
    with pytest.raises(ValueError, match=re.escape(refusal)):
        write(db, page)
    assert shelves(db) == [Shelf(1, "ann", date(2026, 11, 27), None)]


@dataclass(slots=True)
class Label:
    owner: str
    kind: Int32
    shelf_id: int


LABELS = Table("test_labels", Label, key=["owner", "kind", "shelf_id"])
LABEL_OWNER = Lookup(SHELVES, "shelf_id", (("owner", "owner"),))


def labels(db: ViewDatabase) -> list[Label]:
    rows = db.query(f"SELECT {LABELS.selected} FROM test_labels")
    return sorted((LABELS.row_of(row) for row in rows), key=repr)


def test_rows_are_deleted_by_key_or_through_another_table_s_row(store: Store) -> None:
    # given shelves of ann and bob with labels, written by an earlier page
    db = store.views
    create(db)
    with db.writing() as cursor:
        for statement in LABELS.ddl():
            cursor.execute(statement)
    first = Changes()
    first.insert(SHELVES, Shelf(1, "ann", date(2026, 11, 27), None))
    first.insert(SHELVES, Shelf(2, "bob", date(2026, 11, 28), None))
    for label in (Label("ann", 0, 1), Label("ann", 1, 1), Label("bob", 0, 2)):
        first.insert(LABELS, label)
    write(db, first)
    # when a page deletes one label by its key, another through its shelf's
    # owner, moves a label it inserted itself, and deletes one it never wrote
    page = Changes()
    page.delete(LABELS, ("ann", 1, 1))
    page.delete_through(LABELS, LABEL_OWNER, 2, kind=0, shelf_id=2)
    page.insert(LABELS, Label("cid", 0, 3))
    page.delete(LABELS, ("cid", 0, 3))
    page.insert(LABELS, Label("cid", 2, 3))
    page.delete_through(LABELS, LABEL_OWNER, 1, kind=2, shelf_id=1)  # no such row
    write(db, page)
    # then only those are gone, and the page's own row is written as it ended
    assert labels(db) == [Label("ann", 0, 1), Label("cid", 2, 3)]


def test_a_row_deleted_and_inserted_again_in_one_page_stays(store: Store) -> None:
    db = store.views
    create(db)
    first = Changes()
    first.insert(SHELVES, Shelf(1, "ann", date(2026, 11, 27), "old"))
    write(db, first)
    page = Changes()
    page.delete(SHELVES, 1)
    page.insert(SHELVES, Shelf(1, "ann", date(2026, 11, 30), "new"))
    write(db, page)
    assert shelves(db) == [Shelf(1, "ann", date(2026, 11, 30), "new")]
