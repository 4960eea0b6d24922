"""The order lists: the five list types of the API, per project, newest first.

Every order is one row of `order_lists_orders`, and one row of
`order_lists_items` per list it is in (its source's REQUESTED_BY_ME and ALL, its
destination's INBOX, later ACCEPTED_BY_ME or REFUSED_BY_ME, and ALL), so that a
page of any list is one range of that table's key; counts per project and list
type are kept in `order_lists_counts` so that `total_count` costs one row read
whatever the list's length; per project, `order_lists_versions`
counts the events that changed its lists, so that a reader holding a rendered
page (api/page_cache.py) checks it with one primary-key read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from domain import workflow
from domain.event_kinds import ORDER_TOPICS
from domain.order import Order
from projections.database import ViewDatabase
from projections.page_writer import Changes, Int32, Lookup, Table
from projections.view import ReadModel

NAME: Final = "order_lists"

# The list types of the API (the contract's `type`).
INBOX: Final = 0  # the project's unfinished orders, as their destination
ACCEPTED_BY_ME: Final = 1
REFUSED_BY_ME: Final = 2
REQUESTED_BY_ME: Final = 3
ALL: Final = 4
# Not a list of the API: how many of the orders a project asked for are unfinished
# (the limit on them reads it for every batch of requests), kept beside the lists'
# counts so that reading it is one row whatever the number of orders.
SENT_UNFINISHED: Final = -1

LIST_TYPES: Final = (INBOX, ACCEPTED_BY_ME, REFUSED_BY_ME, REQUESTED_BY_ME, ALL)
# A decided order moves from its destination's INBOX to the list of its state.
_DEST_LIST_OF_STATE: Final = {
    workflow.FINISHED: ACCEPTED_BY_ME,
    workflow.REFUSED: REFUSED_BY_ME,
}


@dataclass(slots=True)
class OrderRow:
    """One order as the lists keep and show it (times in seconds since the
    epoch, UTC). A column of `order_lists_orders` per field, in order."""

    id: int
    snids: str
    source_project: str
    dest_project: str
    user: str
    state: str
    mailto: str
    decided_by: str | None
    warning_count: Int32
    warned_at: float | None
    created_at: float
    updated_at: float
    # When the destination accepted or refused it (None while unfinished).
    decided_at: float | None = None


@dataclass(slots=True)
class ListItem:
    """Order `order_id` in `project`'s list `list_type` (and in its count)."""

    project: str
    list_type: Int32
    order_id: int


@dataclass(slots=True)
class ListCount:
    """How many orders `project`'s list `list_type` holds."""

    project: str
    list_type: Int32
    n: int


@dataclass(slots=True)
class ListsVersion:
    """How many events changed `project`'s lists: a reader that cached a page
    tells with one primary-key read whether the page may have changed. A count
    of events, not of pages: a rebuild (other pages) gives the same figures."""

    project: str
    n: int


ORDERS: Final = Table(
    "order_lists_orders",
    OrderRow,
    key=["id"],
    # `user` is a word PostgreSQL reserves.
    stored_as={"user": "user_name"},
    indexes=[
        # The warning scheduler's question: which unfinished orders waited longest.
        "CREATE INDEX IF NOT EXISTS order_lists_orders_waiting"
        " ON order_lists_orders (COALESCE(warned_at, created_at))"
        " WHERE state = 'unfinished'",
    ],
)
# A page of a list is a range of this key, newest first.
ITEMS: Final = Table(
    "order_lists_items", ListItem, key=["project", "list_type", "order_id"]
)
COUNTS: Final = Table("order_lists_counts", ListCount, key=["project", "list_type"])
VERSIONS: Final = Table("order_lists_versions", ListsVersion, key=["project"])

# For an order requested before the page: its parties, found by the statement
# itself (no read among the page's pipelined writes).
_ITS_DESTINATION: Final = Lookup(ORDERS, "id", (("project", "dest_project"),))
_ITS_SOURCE: Final = Lookup(ORDERS, "id", (("project", "source_project"),))

_SELECT_PAGE_COLUMNS: Final = ", ".join(f"o.{name}" for name in ORDERS.names)


# One statement, one round trip: the list's count, then the page's rows. The
# page's ids are a range of the items' key (a marker deep in a long list is a
# seek, not a walk), then joined; with no rows on the page, the outer join still
# gives one row that carries the count. The project's version comes from the same
# snapshot as the rows.
_SELECT_PAGE: Final = (
    "SELECT (SELECT n FROM order_lists_counts WHERE project = ? AND list_type = ?),"
    " (SELECT n FROM order_lists_versions WHERE project = ?),"
    f" {_SELECT_PAGE_COLUMNS}"
    " FROM (SELECT 1 AS one) AS always"
    " LEFT JOIN ("
    "  SELECT i.order_id FROM order_lists_items i"
    "  WHERE i.project = ? AND i.list_type = ? AND i.order_id < ?"
    "  ORDER BY i.order_id DESC LIMIT ?"
    " ) AS page ON TRUE"
    " LEFT JOIN order_lists_orders o ON o.id = page.order_id"
    " ORDER BY o.id DESC"
)
_SELECT_VERSION: Final = "SELECT n FROM order_lists_versions WHERE project = ?"

_SELECT_COUNT: Final = (
    "SELECT n FROM order_lists_counts WHERE project = ? AND list_type = ?"
)

# Every project's unfinished orders, oldest first (the admin API's), and how many.
_SELECT_UNFINISHED: Final = (
    f"SELECT {ORDERS.selected} FROM order_lists_orders"
    f" WHERE state = '{workflow.UNFINISHED}' AND id > ? ORDER BY id LIMIT ?"
)
_COUNT_UNFINISHED: Final = (
    f"SELECT SUM(n) FROM order_lists_counts WHERE list_type = {SENT_UNFINISHED}"
)

_SELECT_OVERDUE: Final = (
    "SELECT id FROM order_lists_orders"
    " WHERE state = 'unfinished' AND COALESCE(warned_at, created_at) <= ?"
    " AND warning_count < ?"
    " ORDER BY COALESCE(warned_at, created_at) LIMIT ?"
)


@dataclass(frozen=True)
class OrderPage:
    orders: list[OrderRow]
    total_count: int
    next_marker: int | None
    # The project's version when the page was read (None: no order ever).
    version: int | None = None


class OrderLists(ReadModel):
    """Projects Order events into the per-project lists, and answers list queries."""

    name = NAME
    layout = (ORDERS, ITEMS, COUNTS, VERSIONS)
    topics = ORDER_TOPICS

    def fold(self, event: Any, changes: Changes) -> None:
        """What each event changes, once: the page writer merges a change into a
        row the page inserts, and looks the order's parties up in the page or,
        for an order requested before it, in the database. Counts and versions
        are summed."""
        match event:
            case Order.Requested():
                at, number = event.at.timestamp(), event.number
                source_project = event.resource_project
                dest_project = event.dest_project
                order = OrderRow(
                    id=number,
                    snids=",".join(event.snids),
                    source_project=source_project,
                    dest_project=dest_project,
                    user=event.user,
                    state=workflow.UNFINISHED,
                    mailto=",".join(event.mailto),
                    decided_by=None,
                    warning_count=0,
                    warned_at=None,
                    created_at=at,
                    updated_at=at,
                )
                changes.insert(ORDERS, order)
                for project, list_type in (
                    (source_project, REQUESTED_BY_ME),
                    (source_project, ALL),
                    (dest_project, INBOX),
                    (dest_project, ALL),
                ):
                    changes.insert(ITEMS, ListItem(project, list_type, number))
                    changes.add(COUNTS, ListCount(project, list_type, 1))
                changes.add(COUNTS, ListCount(source_project, SENT_UNFINISHED, 1))
                _stamp_versions(changes, number)
            case Order.WarningRaised():
                at, number = event.at.timestamp(), event.number
                changes.update(
                    ORDERS,
                    {"id": number},
                    warning_count=event.count,
                    warned_at=at,
                    updated_at=at,
                )
                _stamp_versions(changes, number)
            case Order.Accepted() | Order.Rejected():
                # A decision is always taken from unfinished (the workflow says
                # so) and records the state it led to: no read needed. The order
                # leaves its destination's INBOX for the list of that state.
                after, number = event.state, event.number
                at, into = event.at.timestamp(), _DEST_LIST_OF_STATE[after]
                changes.update(
                    ORDERS,
                    {"id": number},
                    state=after,
                    decided_by=event.by,
                    updated_at=at,
                    decided_at=at,
                )
                its_dest = _ITS_DESTINATION
                changes.delete_through(
                    ITEMS, its_dest, number, list_type=INBOX, order_id=number
                )
                changes.insert_through(
                    ITEMS, its_dest, number, list_type=into, order_id=number
                )
                changes.add_through(COUNTS, its_dest, number, list_type=INBOX, n=-1)
                changes.add_through(COUNTS, its_dest, number, list_type=into, n=1)
                changes.add_through(
                    COUNTS, _ITS_SOURCE, number, list_type=SENT_UNFINISHED, n=-1
                )
                _stamp_versions(changes, number)

    # -- queries ---------------------------------------------------------------

    @staticmethod
    def page(
        db: ViewDatabase,
        project: str,
        list_type: int,
        *,
        limit: int,
        marker: int | None,
    ) -> OrderPage:
        """One page of `project`'s list `list_type`, newest first, after `marker`."""
        statement, params = OrderLists.page_query(
            project, list_type, limit=limit, marker=marker
        )
        return OrderLists.page_of(db.query(statement, params), limit)

    @staticmethod
    def page_query(
        project: str, list_type: int, *, limit: int, marker: int | None
    ) -> tuple[str, list[Any]]:
        """The one statement (with `?` marks) of a page, and its parameters."""
        if list_type not in LIST_TYPES:
            raise KeyError(list_type)
        params: list[Any] = [project, list_type, project, project, list_type]
        params += [marker if marker is not None else 2**62, limit + 1]
        return _SELECT_PAGE, params

    @staticmethod
    def page_of(rows: Sequence[Any], limit: int) -> OrderPage:
        """The page that page_query's rows make: each row is the list's count,
        the project's version, then an order's columns (none past the list's end)."""
        count, version, *_ = rows[0] if rows else (None, None)
        orders = [
            ORDERS.row_of((order_id, *columns))
            for _count, _version, order_id, *columns in rows[:limit]
            if order_id is not None
        ]
        more = len(rows) > limit
        return OrderPage(
            orders=orders,
            total_count=int(count or 0),
            next_marker=orders[-1].id if more else None,
            version=None if version is None else int(version),
        )

    @staticmethod
    def versions_query(projects: Sequence[str]) -> tuple[str, list[Any]]:
        """The statement of several projects' versions: rows of (project, version)
        for those that have one."""
        marks = ", ".join("?" * len(projects))
        return (
            f"SELECT project, n FROM order_lists_versions WHERE project IN ({marks})",
            list(projects),
        )

    @staticmethod
    def version(db: ViewDatabase, project: str) -> int | None:
        """`project`'s version: None (no row) until its first order."""
        for (n,) in db.query(_SELECT_VERSION, [project]):
            return int(n)
        return None

    @staticmethod
    def unfinished_as_source(db: ViewDatabase, project: str) -> int:
        """How many unfinished orders `project` has asked for (it is their source)."""
        for (n,) in db.query(_SELECT_COUNT, (project, SENT_UNFINISHED)):
            return int(n)
        return 0

    @staticmethod
    def unfinished(db: ViewDatabase, *, limit: int, marker: int | None) -> OrderPage:
        """Every project's unfinished orders, oldest first, after `marker`: those
        holding servers, for the cloud's administrators."""
        rows = db.query(_SELECT_UNFINISHED, (marker or 0, limit + 1))
        orders = [ORDERS.row_of(row) for row in rows[:limit]]
        total = db.query(_COUNT_UNFINISHED, ())
        return OrderPage(
            orders=orders,
            total_count=int(total[0][0] or 0) if total else 0,
            next_marker=orders[-1].id if len(rows) > limit else None,
        )

    @staticmethod
    def overdue(
        db: ViewDatabase, waited_since: float, most: int, limit: int = 500
    ) -> list[int]:
        """Unfinished orders untouched by a warning since `waited_since`, oldest first.

        Only a proposal: the order itself decides whether a warning is due.
        """
        with db.reading() as cursor:
            cursor.execute(db.sql(_SELECT_OVERDUE), (waited_since, most, limit))
            return [int(order_id) for (order_id,) in cursor.fetchall()]


def _stamp_versions(changes: Changes, number: int) -> None:
    """Add one to the versions of both parties of order `number`: the readers'
    caches compare them."""
    changes.add_through(VERSIONS, _ITS_SOURCE, number, n=1)
    changes.add_through(VERSIONS, _ITS_DESTINATION, number, n=1)
