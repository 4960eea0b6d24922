"""The order lists: the five list types of the API, per project, newest first.

Every order is one row of `order_lists_orders` and one entry per party (source
and destination) in `order_lists_entries`, indexed for each list type; counts per
project and list type are kept in `order_lists_counts` so that `total_count`
costs one row read whatever the list's length; per project, `order_lists_versions`
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
from projections.renamed_columns import RenamingReadModel

NAME: Final = "order_lists"

SOURCE: Final = "source"
DEST: Final = "dest"

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

# List type -> the entries it selects: (role or None for both, state or None for any).
LIST_TYPES: Final[dict[int, tuple[str | None, str | None]]] = {
    INBOX: (DEST, workflow.UNFINISHED),
    ACCEPTED_BY_ME: (DEST, workflow.FINISHED),
    REFUSED_BY_ME: (DEST, workflow.REFUSED),
    REQUESTED_BY_ME: (SOURCE, None),
    ALL: (None, None),
}
_DEST_LIST_OF_STATE: Final = {
    state: t for t, (r, state) in LIST_TYPES.items() if r == DEST and state
}


@dataclass(slots=True)
class OrderRow:
    """One order as the lists keep and show it (times in seconds since the
    epoch, UTC). A column of `order_lists_orders` per field, in order."""

    id: int
    snids: str
    resource_project: str
    dest_project: str
    user: str
    state: str
    mailto: str
    decided_by: str | None
    warning_count: Int32
    warned_at: float | None
    created_at: float
    updated_at: float


@dataclass(slots=True)
class ListEntry:
    """An order in the lists of one of its parties (its `role`: source or dest)."""

    project: str
    order_id: int
    role: str
    state: str


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
# The lists' `project` columns were called `tenant` before schema version 3.
ENTRIES: Final = Table(
    "order_lists_entries",
    ListEntry,
    key=["project", "order_id"],
    renamed={"tenant": "project"},
    indexes=[
        "CREATE INDEX IF NOT EXISTS order_lists_entries_by_role"
        " ON order_lists_entries (project, role, order_id)",
        # A decision updates both entries of its order.
        "CREATE INDEX IF NOT EXISTS order_lists_entries_by_order"
        " ON order_lists_entries (order_id)",
        "CREATE INDEX IF NOT EXISTS order_lists_entries_by_role_state"
        " ON order_lists_entries (project, role, state, order_id)",
    ],
)
COUNTS: Final = Table(
    "order_lists_counts",
    ListCount,
    key=["project", "list_type"],
    renamed={"tenant": "project"},
)
VERSIONS: Final = Table(
    "order_lists_versions",
    ListsVersion,
    key=["project"],
    renamed={"tenant": "project"},
)

# Lists made before the versions were (an upgraded database) get the versions
# their events would have stamped: per order, its request, each warning and its
# decision. (Empty lists, or versions already there: nothing to do.)
_BACKFILL_VERSIONS: Final = (
    "INSERT INTO order_lists_versions (project, n)"
    " SELECT e.project, SUM(1 + o.warning_count"
    " + CASE WHEN o.state = 'unfinished' THEN 0 ELSE 1 END)"
    " FROM order_lists_entries e JOIN order_lists_orders o ON o.id = e.order_id"
    " WHERE NOT EXISTS (SELECT 1 FROM order_lists_versions)"
    " GROUP BY e.project"
)

# Databases whose counts predate SENT_UNFINISHED get it from their entries, once
# (the fold keeps it from then on).
_BACKFILL_SENT_UNFINISHED: Final = (
    "INSERT INTO order_lists_counts (project, list_type, n)"
    f" SELECT project, {SENT_UNFINISHED}, COUNT(*) FROM order_lists_entries"
    f" WHERE role = '{SOURCE}' AND state = '{workflow.UNFINISHED}'"
    " AND NOT EXISTS"
    f" (SELECT 1 FROM order_lists_counts WHERE list_type = {SENT_UNFINISHED})"
    " GROUP BY project"
)

# For an order requested before the page: its destination's counts, and both
# its parties' versions, found by the statement itself (no read among the
# page's pipelined writes).
_ITS_DESTINATION: Final = Lookup(ORDERS, "id", (("project", "dest_project"),))
_ITS_SOURCE: Final = Lookup(ORDERS, "id", (("project", "resource_project"),))
_ITS_PARTIES: Final = Lookup(ENTRIES, "order_id", (("project", "project"),))

_SELECT_PAGE_COLUMNS: Final = ", ".join(f"o.{name}" for name in ORDERS.names)


def _select_page(role: str | None, state: str | None) -> str:
    where = "e.project = ?"
    if role is not None:
        where += " AND e.role = ?"
    if state is not None:
        where += " AND e.state = ?"
    # One statement, one round trip: the list's count, then the page's rows. The
    # page's ids are chosen first on the entries index (so a marker deep in a long
    # list is a seek, not a walk), then joined; with no rows on the page, the outer
    # join still gives one row that carries the count.
    # The project's version comes from the same snapshot as the rows.
    return (
        "SELECT (SELECT n FROM order_lists_counts WHERE project = ? AND list_type = ?),"
        " (SELECT n FROM order_lists_versions WHERE project = ?),"
        f" {_SELECT_PAGE_COLUMNS}"
        " FROM (SELECT 1 AS one) AS always"
        " LEFT JOIN ("
        "  SELECT e.order_id FROM order_lists_entries e"
        f"  WHERE {where} AND e.order_id < ?"
        "  ORDER BY e.order_id DESC LIMIT ?"
        " ) AS page ON TRUE"
        " LEFT JOIN order_lists_orders o ON o.id = page.order_id"
        " ORDER BY o.id DESC"
    )


_SELECT_PAGE: Final = {t: _select_page(*selects) for t, selects in LIST_TYPES.items()}
_SELECT_VERSION: Final = "SELECT n FROM order_lists_versions WHERE project = ?"

_SELECT_COUNT: Final = (
    "SELECT n FROM order_lists_counts WHERE project = ? AND list_type = ?"
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


class OrderLists(RenamingReadModel):
    """Projects Order events into the per-project lists, and answers list queries."""

    name = NAME
    layout = (ORDERS, ENTRIES, COUNTS, VERSIONS)
    after_tables = (_BACKFILL_VERSIONS, _BACKFILL_SENT_UNFINISHED)
    topics = ORDER_TOPICS

    def fold(self, event: Any, changes: Changes) -> None:
        """An order requested in the page is inserted as its last event left it;
        one requested before gets one update. Counts and versions are summed."""
        order: OrderRow | None
        match event:
            case Order.Requested():
                at, number = event.at.timestamp(), event.number
                source_project, dest_project = (
                    event.resource_project,
                    event.dest_project,
                )
                order = OrderRow(
                    id=number,
                    snids=",".join(event.snids),
                    resource_project=source_project,
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
                changes.insert(
                    ENTRIES,
                    ListEntry(source_project, number, SOURCE, workflow.UNFINISHED),
                )
                changes.insert(
                    ENTRIES, ListEntry(dest_project, number, DEST, workflow.UNFINISHED)
                )
                changes.add(COUNTS, ListCount(source_project, REQUESTED_BY_ME, 1))
                changes.add(COUNTS, ListCount(source_project, SENT_UNFINISHED, 1))
                changes.add(COUNTS, ListCount(source_project, ALL, 1))
                changes.add(COUNTS, ListCount(dest_project, INBOX, 1))
                changes.add(COUNTS, ListCount(dest_project, ALL, 1))
                _stamp_versions(changes, number, order)
            case Order.WarningRaised():
                at, number = event.at.timestamp(), event.number
                if (order := changes.inserted(ORDERS, number)) is not None:
                    order.warning_count, order.warned_at = event.count, at
                    order.updated_at = at
                else:
                    changes.update(
                        ORDERS,
                        {"id": number},
                        warning_count=event.count,
                        warned_at=at,
                        updated_at=at,
                    )
                _stamp_versions(changes, number, order)
            case Order.Accepted() | Order.Rejected():
                # A decision is always taken from unfinished (the workflow says
                # so) and records the state it led to: no read needed.
                after, number = event.state, event.number
                at, into = event.at.timestamp(), _DEST_LIST_OF_STATE[after]
                if (order := changes.inserted(ORDERS, number)) is not None:
                    order.state, order.decided_by, order.updated_at = (
                        after,
                        event.by,
                        at,
                    )
                    for project in (order.resource_project, order.dest_project):
                        entry = changes.inserted(ENTRIES, (project, number))
                        assert entry is not None  # inserted with its order
                        entry.state = after
                    changes.add(COUNTS, ListCount(order.dest_project, INBOX, -1))
                    changes.add(COUNTS, ListCount(order.dest_project, into, 1))
                    changes.add(
                        COUNTS, ListCount(order.resource_project, SENT_UNFINISHED, -1)
                    )
                else:
                    changes.update(
                        ORDERS,
                        {"id": number},
                        state=after,
                        decided_by=event.by,
                        updated_at=at,
                    )
                    changes.update(ENTRIES, {"order_id": number}, state=after)
                    changes.add_through(
                        COUNTS, _ITS_DESTINATION, number, list_type=INBOX, n=-1
                    )
                    changes.add_through(
                        COUNTS, _ITS_DESTINATION, number, list_type=into, n=1
                    )
                    changes.add_through(
                        COUNTS, _ITS_SOURCE, number, list_type=SENT_UNFINISHED, n=-1
                    )
                _stamp_versions(changes, number, order)

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
        role, state = LIST_TYPES[list_type]
        params: list[Any] = [project, list_type, project, project]
        if role is not None:
            params.append(role)
        if state is not None:
            params.append(state)
        params += [marker if marker is not None else 2**62, limit + 1]
        return _SELECT_PAGE[list_type], params

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
    def overdue(
        db: ViewDatabase, waited_since: float, most: int, limit: int = 500
    ) -> list[int]:
        """Unfinished orders untouched by a warning since `waited_since`, oldest first.

        Only a proposal: the order itself decides whether a warning is due.
        """
        with db.reading() as cursor:
            cursor.execute(db.sql(_SELECT_OVERDUE), (waited_since, most, limit))
            return [int(order_id) for (order_id,) in cursor.fetchall()]


def _stamp_versions(changes: Changes, number: int, order: OrderRow | None) -> None:
    """Add one to the versions of both parties of order `number` (`order`, if
    requested in the page): the readers' caches compare them."""
    if order is not None:
        changes.add(VERSIONS, ListsVersion(order.resource_project, 1))
        changes.add(VERSIONS, ListsVersion(order.dest_project, 1))
    else:
        changes.add_through(VERSIONS, _ITS_PARTIES, number, n=1)
