"""The order lists: the five list types of the API, per tenant, newest first.

Every order is one row of `order_lists_orders` and one entry per party (source
and destination) in `order_lists_entries`, indexed for each list type; counts per
tenant and list type are kept in `order_lists_counts` so that `total_count`
costs one row read whatever the list's length; per tenant, `order_lists_versions`
counts the events that changed its lists, so that a reader holding a rendered
page (api/page_cache.py) checks it with one primary-key read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from eventsourcing.utils import get_topic

from domain import workflow
from domain.order import Order
from projections.database import Cursor, RowsStatement, ViewDatabase
from projections.view import Events, TablesFromDdl

NAME: Final = "order_lists"

SOURCE: Final = "source"
DEST: Final = "dest"

# List type -> the entries it selects: (role or None for both, state or None for any).
LIST_TYPES: Final[dict[int, tuple[str | None, str | None]]] = {
    0: (DEST, workflow.UNFINISHED),
    1: (DEST, workflow.FINISHED),
    2: (DEST, workflow.REFUSED),
    3: (SOURCE, None),
    4: (None, None),
}
_DEST_LIST_OF_STATE: Final = {
    state: t for t, (r, state) in LIST_TYPES.items() if r == DEST and state
}

_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS order_lists_orders ("
    " id BIGINT PRIMARY KEY,"
    " snids TEXT NOT NULL,"
    " resource_project TEXT NOT NULL,"
    " dest_project TEXT NOT NULL,"
    " user_name TEXT NOT NULL,"
    " state TEXT NOT NULL,"
    " mailto TEXT NOT NULL,"
    " decided_by TEXT,"
    " warning_count INTEGER NOT NULL,"
    " warned_at DOUBLE PRECISION,"
    " created_at DOUBLE PRECISION NOT NULL,"
    " updated_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS order_lists_entries ("
    " tenant TEXT NOT NULL,"
    " order_id BIGINT NOT NULL,"
    " role TEXT NOT NULL,"
    " state TEXT NOT NULL,"
    " PRIMARY KEY (tenant, order_id))",
    "CREATE INDEX IF NOT EXISTS order_lists_entries_by_role"
    " ON order_lists_entries (tenant, role, order_id)",
    # A decision updates both entries of its order.
    "CREATE INDEX IF NOT EXISTS order_lists_entries_by_order"
    " ON order_lists_entries (order_id)",
    "CREATE INDEX IF NOT EXISTS order_lists_entries_by_role_state"
    " ON order_lists_entries (tenant, role, state, order_id)",
    # The warning scheduler's question: which unfinished orders waited longest.
    "CREATE INDEX IF NOT EXISTS order_lists_orders_waiting"
    " ON order_lists_orders (COALESCE(warned_at, created_at))"
    " WHERE state = 'unfinished'",
    "CREATE TABLE IF NOT EXISTS order_lists_counts ("
    " tenant TEXT NOT NULL,"
    " list_type INTEGER NOT NULL,"
    " n BIGINT NOT NULL,"
    " PRIMARY KEY (tenant, list_type))",
    # Per tenant, how many events changed its lists: written in the same
    # transaction as the rows and the tracking, so that a reader that cached a page
    # can tell with one primary-key read whether the page may have changed. A count
    # of events, not of pages: a rebuild (other pages) gives the same figures.
    "CREATE TABLE IF NOT EXISTS order_lists_versions ("
    " tenant TEXT PRIMARY KEY,"
    " n BIGINT NOT NULL)",
    # Lists made before the versions were (an upgraded database) get the versions
    # their events would have stamped: per order, its request, each warning and
    # its decision. (Empty lists, or versions already there: nothing to do.)
    "INSERT INTO order_lists_versions (tenant, n)"
    " SELECT e.tenant, SUM(1 + o.warning_count"
    " + CASE WHEN o.state = 'unfinished' THEN 0 ELSE 1 END)"
    " FROM order_lists_entries e JOIN order_lists_orders o ON o.id = e.order_id"
    " WHERE NOT EXISTS (SELECT 1 FROM order_lists_versions)"
    " GROUP BY e.tenant",
)

_INSERT_ORDERS: Final = RowsStatement(
    each="INSERT INTO order_lists_orders (id, snids, resource_project, dest_project,"
    " user_name, state, mailto, decided_by, warning_count, warned_at, created_at,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    arrays="INSERT INTO order_lists_orders (id, snids, resource_project, dest_project,"
    " user_name, state, mailto, decided_by, warning_count, warned_at, created_at,"
    " updated_at) SELECT * FROM unnest(?::bigint[], ?::text[], ?::text[], ?::text[],"
    " ?::text[], ?::text[], ?::text[], ?::text[], ?::integer[],"
    " ?::double precision[], ?::double precision[], ?::double precision[])",
)
_INSERT_ENTRIES: Final = RowsStatement(
    each="INSERT INTO order_lists_entries (tenant, order_id, role, state)"
    " VALUES (?, ?, ?, ?)",
    arrays="INSERT INTO order_lists_entries (tenant, order_id, role, state)"
    " SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[], ?::text[])",
)
# Each (tenant, list type) once per statement: summed over the page beforehand.
_ADD_TO_COUNTS: Final = RowsStatement(
    each="INSERT INTO order_lists_counts (tenant, list_type, n) VALUES (?, ?, ?)"
    " ON CONFLICT (tenant, list_type) DO UPDATE"
    " SET n = order_lists_counts.n + excluded.n",
    arrays="INSERT INTO order_lists_counts (tenant, list_type, n)"
    " SELECT * FROM unnest(?::text[], ?::integer[], ?::bigint[])"
    " ON CONFLICT (tenant, list_type) DO UPDATE"
    " SET n = order_lists_counts.n + excluded.n",
)
# The counts of orders requested before the page: their destination is in the
# orders table. Summed per destination and list type in the statement.
_ADD_TO_DEST_COUNTS: Final = RowsStatement(
    each="INSERT INTO order_lists_counts (tenant, list_type, n)"
    " SELECT dest_project, ?, ? FROM order_lists_orders WHERE id = ?"
    " ON CONFLICT (tenant, list_type) DO UPDATE"
    " SET n = order_lists_counts.n + excluded.n",
    arrays="INSERT INTO order_lists_counts (tenant, list_type, n)"
    " SELECT o.dest_project, d.list_type, SUM(d.n)"
    " FROM unnest(?::integer[], ?::bigint[], ?::bigint[]) AS d (list_type, n, id)"
    " JOIN order_lists_orders o ON o.id = d.id"
    " GROUP BY o.dest_project, d.list_type"
    " ON CONFLICT (tenant, list_type) DO UPDATE"
    " SET n = order_lists_counts.n + excluded.n",
)
# What the page's warnings and decisions did to an order requested before it
# (NULL: left as it was); one row per order.
_CHANGE_ORDERS: Final = RowsStatement(
    each="UPDATE order_lists_orders SET state = COALESCE(?, state),"
    " decided_by = COALESCE(?, decided_by),"
    " warning_count = COALESCE(?, warning_count),"
    " warned_at = COALESCE(?, warned_at), updated_at = ? WHERE id = ?",
    arrays="UPDATE order_lists_orders o SET state = COALESCE(c.state, o.state),"
    " decided_by = COALESCE(c.decided_by, o.decided_by),"
    " warning_count = COALESCE(c.warning_count, o.warning_count),"
    " warned_at = COALESCE(c.warned_at, o.warned_at), updated_at = c.updated_at"
    " FROM unnest(?::text[], ?::text[], ?::integer[], ?::double precision[],"
    " ?::double precision[], ?::bigint[])"
    " AS c (state, decided_by, warning_count, warned_at, updated_at, id)"
    " WHERE o.id = c.id",
)
_SET_ENTRY_STATES: Final = RowsStatement(
    each="UPDATE order_lists_entries SET state = ? WHERE order_id = ?",
    arrays="UPDATE order_lists_entries e SET state = c.state"
    " FROM unnest(?::text[], ?::bigint[]) AS c (state, order_id)"
    " WHERE e.order_id = c.order_id",
)

# Where each column of an order's row is, while a page folds its events into it.
_STATE, _DECIDED_BY, _WARNING_COUNT, _WARNED_AT, _UPDATED_AT = 5, 7, 8, 9, 11
# And of a change to an order requested before the page.
_C_STATE, _C_DECIDED_BY, _C_WARNING_COUNT, _C_WARNED_AT, _C_UPDATED_AT = range(5)
_UNFINISHED_LIST: Final = _DEST_LIST_OF_STATE[workflow.UNFINISHED]
# Each tenant's version: how many events changed its lists (see _stamp_versions).
_ADD_TO_VERSIONS: Final = RowsStatement(
    each="INSERT INTO order_lists_versions (tenant, n) VALUES (?, ?)"
    " ON CONFLICT (tenant) DO UPDATE SET n = order_lists_versions.n + excluded.n",
    arrays="INSERT INTO order_lists_versions (tenant, n)"
    " SELECT * FROM unnest(?::text[], ?::bigint[])"
    " ON CONFLICT (tenant) DO UPDATE SET n = order_lists_versions.n + excluded.n",
)
# The same for both parties of orders requested before the page (per order: n,
# order id), summed per tenant: one row may be changed only once per statement.
_ADD_TO_VERSIONS_OF_ORDERS: Final = RowsStatement(
    each="INSERT INTO order_lists_versions (tenant, n)"
    " SELECT tenant, ? FROM order_lists_entries WHERE order_id = ?"
    " ON CONFLICT (tenant) DO UPDATE SET n = order_lists_versions.n + excluded.n",
    arrays="INSERT INTO order_lists_versions (tenant, n)"
    " SELECT e.tenant, SUM(c.n)::bigint"
    " FROM unnest(?::bigint[], ?::bigint[]) AS c (n, order_id)"
    " JOIN order_lists_entries e ON e.order_id = c.order_id"
    " GROUP BY e.tenant"
    " ON CONFLICT (tenant) DO UPDATE SET n = order_lists_versions.n + excluded.n",
)
_SELECT_VERSION: Final = "SELECT n FROM order_lists_versions WHERE tenant = ?"

_COLUMNS: Final = (
    "o.id, o.snids, o.resource_project, o.dest_project, o.user_name, o.state,"
    " o.warning_count, o.warned_at, o.created_at, o.updated_at"
)


def _select_page(role: str | None, state: str | None) -> str:
    where = "e.tenant = ?"
    if role is not None:
        where += " AND e.role = ?"
    if state is not None:
        where += " AND e.state = ?"
    # One statement, one round trip: the list's count, then the page's rows. The
    # page's ids are chosen first on the entries index (so a marker deep in a long
    # list is a seek, not a walk), then joined; with no rows on the page, the outer
    # join still gives one row that carries the count.
    # The tenant's version comes from the same snapshot as the rows.
    return (
        "SELECT (SELECT n FROM order_lists_counts WHERE tenant = ? AND list_type = ?),"
        " (SELECT n FROM order_lists_versions WHERE tenant = ?),"
        f" {_COLUMNS}"
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

# The limit on unfinished orders keeps this count short: no counter to maintain.
_COUNT_UNFINISHED_AS_SOURCE: Final = (
    "SELECT COUNT(*) FROM order_lists_entries"
    " WHERE tenant = ? AND role = ? AND state = ?"
)

_SELECT_OVERDUE: Final = (
    "SELECT id FROM order_lists_orders"
    " WHERE state = 'unfinished' AND COALESCE(warned_at, created_at) <= ?"
    " AND warning_count < ?"
    " ORDER BY COALESCE(warned_at, created_at) LIMIT ?"
)

_REQUESTED: Final = get_topic(Order.Requested)
_ACCEPTED: Final = get_topic(Order.Accepted)
_REJECTED: Final = get_topic(Order.Rejected)
_WARNING_RAISED: Final = get_topic(Order.WarningRaised)


@dataclass(frozen=True)
class OrderRow:
    """One order as the lists show it (times in seconds since the epoch, UTC)."""

    id: int
    snids: str
    resource_project: str
    dest_project: str
    user: str
    state: str
    warning_count: int
    warned_at: float | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class OrderPage:
    orders: list[OrderRow]
    total_count: int
    next_marker: int | None
    # The tenant's version when the page was read (None: no order ever).
    version: int | None = None


class OrderLists(TablesFromDdl):
    """Projects Order events into the per-tenant lists, and answers list queries."""

    name = NAME
    ddl = _DDL
    tables: tuple[str, ...] = (
        "order_lists_orders",
        "order_lists_entries",
        "order_lists_counts",
        "order_lists_versions",
    )
    topics = frozenset({_REQUESTED, _ACCEPTED, _REJECTED, _WARNING_RAISED})

    def apply_page(self, cursor: Cursor, db: ViewDatabase, events: Events) -> None:
        """Apply a page of events with one statement per kind of change.

        The page's events are folded first, in log order, into the final row of
        each order they touch: an order requested in the page is inserted as its
        last event left it; an order requested before gets one update. Counts are
        summed over the page. So each row is written once, as applying the events
        one by one would have left it.
        """
        new: dict[int, list[Any]] = {}  # orders requested in the page
        changed: dict[int, list[Any]] = {}  # orders requested before it
        counts: Counter[tuple[str, int]] = Counter()
        dest_counts: Counter[tuple[int, int]] = Counter()  # (list type, order)
        for event in events:
            match event:
                case Order.Requested():
                    at, number = event.at.timestamp(), event.number
                    source, dest = event.resource_project, event.dest_project
                    new[number] = [
                        number,
                        ",".join(event.snids),
                        source,
                        dest,
                        event.user,
                        workflow.UNFINISHED,
                        ",".join(event.mailto),
                        None,
                        0,
                        None,
                        at,
                        at,
                    ]
                    counts[source, 3] += 1
                    counts[source, 4] += 1
                    counts[dest, 0] += 1
                    counts[dest, 4] += 1
                case Order.WarningRaised():
                    at, number = event.at.timestamp(), event.number
                    if (row := new.get(number)) is not None:
                        row[_WARNING_COUNT], row[_WARNED_AT] = event.count, at
                        row[_UPDATED_AT] = at
                    else:
                        change = changed.setdefault(number, [None] * 5)
                        change[_C_WARNING_COUNT], change[_C_WARNED_AT] = event.count, at
                        change[_C_UPDATED_AT] = at
                case Order.Accepted() | Order.Rejected():
                    # A decision is always taken from unfinished (the workflow
                    # says so) and records the state it led to: no read needed.
                    after, number = event.state, event.number
                    at, into = event.at.timestamp(), _DEST_LIST_OF_STATE[after]
                    if (row := new.get(number)) is not None:
                        row[_STATE], row[_DECIDED_BY], row[_UPDATED_AT] = (
                            after,
                            event.by,
                            at,
                        )
                        counts[row[3], _UNFINISHED_LIST] -= 1
                        counts[row[3], into] += 1
                    else:
                        change = changed.setdefault(number, [None] * 5)
                        change[_C_STATE], change[_C_DECIDED_BY] = after, event.by
                        change[_C_UPDATED_AT] = at
                        dest_counts[_UNFINISHED_LIST, number] -= 1
                        dest_counts[into, number] += 1
        entries: list[tuple[Any, ...]] = []
        for row in new.values():
            entries.append((row[2], row[0], SOURCE, row[_STATE]))
            entries.append((row[3], row[0], DEST, row[_STATE]))
        db.apply_rows(cursor, _INSERT_ORDERS, list(new.values()))
        db.apply_rows(cursor, _INSERT_ENTRIES, entries)
        db.apply_rows(cursor, _ADD_TO_COUNTS, [(*k, n) for k, n in counts.items()])
        db.apply_rows(
            cursor, _CHANGE_ORDERS, [(*c, number) for number, c in changed.items()]
        )
        db.apply_rows(
            cursor,
            _SET_ENTRY_STATES,
            [(c[_C_STATE], n) for n, c in changed.items() if c[_C_STATE] is not None],
        )
        db.apply_rows(
            cursor,
            _ADD_TO_DEST_COUNTS,
            [(list_type, n, number) for (list_type, number), n in dest_counts.items()],
        )
        _stamp_versions(cursor, db, events)

    # -- queries ---------------------------------------------------------------

    @staticmethod
    def page(
        db: ViewDatabase, tenant: str, list_type: int, *, limit: int, marker: int | None
    ) -> OrderPage:
        """One page of `tenant`'s list `list_type`, newest first, after `marker`."""
        statement, params = OrderLists.page_query(
            tenant, list_type, limit=limit, marker=marker
        )
        return OrderLists.page_of(db.query(statement, params), limit)

    @staticmethod
    def page_query(
        tenant: str, list_type: int, *, limit: int, marker: int | None
    ) -> tuple[str, list[Any]]:
        """The one statement (with `?` marks) of a page, and its parameters."""
        role, state = LIST_TYPES[list_type]
        params: list[Any] = [tenant, list_type, tenant, tenant]
        if role is not None:
            params.append(role)
        if state is not None:
            params.append(state)
        params += [marker if marker is not None else 2**62, limit + 1]
        return _SELECT_PAGE[list_type], params

    @staticmethod
    def page_of(rows: Sequence[Any], limit: int) -> OrderPage:
        """The page that page_query's rows make."""
        count = rows[0][0] if rows else None
        version = rows[0][1] if rows else None
        orders = [OrderRow(*row[2:]) for row in rows[:limit] if row[2] is not None]
        more = len(rows) > limit
        return OrderPage(
            orders=orders,
            total_count=int(count or 0),
            next_marker=orders[-1].id if more else None,
            version=None if version is None else int(version),
        )

    @staticmethod
    def version_query(tenant: str) -> tuple[str, list[Any]]:
        """The statement (with `?` marks) of `tenant`'s version, and its parameters:
        one primary-key read; None (no row) until the tenant's first order."""
        return _SELECT_VERSION, [tenant]

    @staticmethod
    def versions_query(tenants: Sequence[str]) -> tuple[str, list[Any]]:
        """The statement of several tenants' versions: rows of (tenant, version)
        for those that have one."""
        marks = ", ".join("?" * len(tenants))
        return (
            f"SELECT tenant, n FROM order_lists_versions WHERE tenant IN ({marks})",
            list(tenants),
        )

    @staticmethod
    def version(db: ViewDatabase, tenant: str) -> int | None:
        rows = db.query(_SELECT_VERSION, [tenant])
        return int(rows[0][0]) if rows else None

    @staticmethod
    def unfinished_as_source(db: ViewDatabase, tenant: str) -> int:
        """How many unfinished orders `tenant` has asked for (it is their source)."""
        rows = db.query(
            _COUNT_UNFINISHED_AS_SOURCE, (tenant, SOURCE, workflow.UNFINISHED)
        )
        return int(rows[0][0])

    @staticmethod
    def overdue(
        db: ViewDatabase, waited_since: float, most: int, limit: int = 500
    ) -> list[int]:
        """Unfinished orders untouched by a warning since `waited_since`, oldest first.

        Only a proposal: the order itself decides whether a warning is due.
        """
        with db.reading() as cursor:
            cursor.execute(db.sql(_SELECT_OVERDUE), (waited_since, most, limit))
            return [int(row[0]) for row in cursor.fetchall()]


def _stamp_versions(cursor: Cursor, db: ViewDatabase, events: Events) -> None:
    """Add to each tenant's version the number of the page's events that touch its
    lists (both parties of each order): the readers' caches compare it."""
    parties: dict[int, tuple[str, str]] = {}
    of_tenant: Counter[str] = Counter()
    of_older_order: Counter[int] = Counter()
    for event in events:
        match event:
            case Order.Requested():
                number = event.number
                parties[number] = (event.resource_project, event.dest_project)
            case Order.Accepted() | Order.Rejected() | Order.WarningRaised():
                number = event.number
            case _:
                continue
        if number in parties:
            of_tenant.update(parties[number])
        else:
            of_older_order[number] += 1
    db.apply_rows(cursor, _ADD_TO_VERSIONS, list(of_tenant.items()))
    db.apply_rows(
        cursor,
        _ADD_TO_VERSIONS_OF_ORDERS,
        [(n, number) for number, n in of_older_order.items()],
    )
