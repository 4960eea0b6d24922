"""The reporting read model: per project and day, what happened to orders.

Days are calendar days in UTC, whatever PM_ORDER_TIMEZONE says, so that a
report means the same everywhere. Each figure belongs to one project and day:

- `requested`, `finished`, `refused`, `unfinished`: the orders a project
  requested (as the source) that day, and the state they are in now (the
  workflow's: finished is accepted). So `requested = finished + refused +
  unfinished` on every row, and over a date range "unfinished" means the orders
  requested in the range that are still unfinished now. (The reports' outputs
  call finished orders "accepted": `DAY_COLUMNS` and `PROJECT_COLUMNS`.)
- `servers_in`, `servers_out`: servers moved by orders accepted that day; the
  destination counts them in, the source out.
- `warnings`: warnings raised that day about orders the project requested.
- Time to decision: seconds from an order's request to its acceptance or
  refusal, for the orders the project requested in the range that have been
  decided. The median and 95th percentile are interpolated linearly between
  the two nearest ranks (numpy's default, Excel's PERCENTILE.INC).

Counters per (project, day) live in `reports_days`; one row per order, with its
decision time once decided, in `reports_orders`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from operator import attrgetter
from typing import Any, Final, Generic, TypeVar

from domain import workflow
from domain.event_kinds import ORDER_TOPICS
from domain.order import Order
from projections.database import Cursor, ViewDatabase, array_literal
from projections.page_writer import Changes, Table
from projections.view import Events, ReadModel

NAME: Final = "reports"

Row = TypeVar("Row")

# Bounds standing in for an open end of a date range: days compare as text.
_EARLIEST: Final = "0001-01-01"
_LATEST: Final = "9999-12-31"
_DAY_FORMAT: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(slots=True)
class ReportedOrder:
    """An order as the reports need it: who asked, when, and what became of it."""

    order_id: int
    source_project: str
    dest_project: str
    servers: int
    requested_at: float
    requested_day: date
    # The state the workflow gave it.
    outcome: str
    decision_seconds: float | None


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of `moment`."""
    return moment.astimezone(UTC).date()


def parse_day(text: str) -> date:
    """A day written YYYY-MM-DD; ValueError saying so otherwise."""
    try:
        if _DAY_FORMAT.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ValueError(f"{text[:40]!r} is not a valid date (YYYY-MM-DD)")


def percentile(ordered: Sequence[float], percent: int) -> float | None:
    """The `percent` percentile of sorted values, interpolated linearly between
    the nearest ranks (None for no values)."""
    if not ordered:
        return None
    # Exact arithmetic: the 95th percentile of 1800 and 7800 is 7200, not 7199.99...
    position = Fraction(len(ordered) - 1) * percent / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    value = Fraction(ordered[low]) + (
        Fraction(ordered[high]) - Fraction(ordered[low])
    ) * (position - low)
    return float(value)


@dataclass(slots=True)
class DayFigures:
    """One project's figures for one UTC day: a row of `reports_days`."""

    project: str
    day: date
    requested: int = 0
    finished: int = 0
    refused: int = 0
    servers_in: int = 0
    servers_out: int = 0
    warnings: int = 0

    @property
    def unfinished(self) -> int:
        return self.requested - self.finished - self.refused

    def as_json(self) -> dict[str, Any]:
        return {c.key: c.data(self) for c in DAY_COLUMNS}


DAYS: Final = Table(
    "reports_days",
    DayFigures,
    key=["project", "day"],
    indexes=[
        # Reports over every project for a date range.
        "CREATE INDEX IF NOT EXISTS reports_days_by_day ON reports_days (day, project)",
    ],
)
ORDERS: Final = Table(
    "reports_orders",
    ReportedOrder,
    key=["order_id"],
    indexes=[
        "CREATE INDEX IF NOT EXISTS reports_orders_by_project_day"
        " ON reports_orders (source_project, requested_day)",
        "CREATE INDEX IF NOT EXISTS reports_orders_by_day"
        " ON reports_orders (requested_day, source_project)",
    ],
)

_SELECT_ORDERS: Final = (
    f"SELECT {ORDERS.selected} FROM reports_orders WHERE order_id IN ({{marks}})"
)
_SELECT_ORDERS_ARRAY: Final = (
    f"SELECT {ORDERS.selected} FROM reports_orders WHERE order_id = ANY(?::bigint[])"
)
# Ids a read of orders asks for at once (SQLite's limit on parameters is 999 in
# old builds).
_READ_AT_ONCE: Final = 500

_SELECT_DAYS: Final = (
    f"SELECT {DAYS.selected} FROM reports_days"
    " WHERE day >= ? AND day <= ? ORDER BY project, day"
)
_SELECT_DAYS_OF_PROJECT: Final = (
    f"SELECT {DAYS.selected} FROM reports_days"
    " WHERE project = ? AND day >= ? AND day <= ? ORDER BY day"
)
_SELECT_DURATIONS: Final = (
    "SELECT source_project, decision_seconds FROM reports_orders"
    " WHERE requested_day >= ? AND requested_day <= ?"
    " AND decision_seconds IS NOT NULL"
)
_SELECT_DURATIONS_OF_PROJECT: Final = (
    "SELECT source_project, decision_seconds FROM reports_orders"
    " WHERE source_project = ? AND requested_day >= ? AND requested_day <= ?"
    " AND decision_seconds IS NOT NULL"
)


@dataclass(frozen=True)
class ProjectSummary:
    """One project's totals over the range, with its times to decision."""

    project: str
    requested: int = 0
    finished: int = 0
    refused: int = 0
    servers_in: int = 0
    servers_out: int = 0
    warnings: int = 0
    decision_seconds: tuple[float, ...] = field(default=(), repr=False)

    @property
    def unfinished(self) -> int:
        return self.requested - self.finished - self.refused

    @property
    def decisions(self) -> int:
        return len(self.decision_seconds)

    @property
    def median_decision_seconds(self) -> float | None:
        return percentile(self.decision_seconds, 50)

    @property
    def p95_decision_seconds(self) -> float | None:
        return percentile(self.decision_seconds, 95)

    def as_json(self) -> dict[str, Any]:
        return {c.key: c.data(self) for c in PROJECT_COLUMNS}


@dataclass(frozen=True)
class Column(Generic[Row]):
    """One column of the reports, in every format: its key in JSON and CSV, its
    heading on the page and in the terminal, and its value."""

    key: str
    heading: str
    short: str
    value: Callable[[Row], Any]
    # A duration: seconds to the millisecond in JSON and CSV, readable for people.
    seconds: bool = False

    def data(self, row: Row) -> Any:
        value = self.value(row)
        return _to_the_millisecond(value) if self.seconds else value


def _counts(kind: type[Row]) -> list[Column[Row]]:
    """The counts every row has, from requested to warnings."""
    return [
        Column("requested", "Requested", "REQUESTED", attrgetter("requested")),
        Column("accepted", "Accepted", "ACCEPTED", attrgetter("finished")),
        Column("refused", "Refused", "REFUSED", attrgetter("refused")),
        Column("unfinished", "Unfinished", "UNFINISHED", attrgetter("unfinished")),
        Column("servers_in", "Servers in", "IN", attrgetter("servers_in")),
        Column("servers_out", "Servers out", "OUT", attrgetter("servers_out")),
        Column("warnings", "Warnings", "WARNINGS", attrgetter("warnings")),
    ]


DAY_COLUMNS: Final[list[Column[DayFigures]]] = [
    Column("project", "Project", "PROJECT", attrgetter("project")),
    Column("day", "Day (UTC)", "DAY (UTC)", lambda f: f.day.isoformat()),
    *_counts(DayFigures),
]
PROJECT_COLUMNS: Final[list[Column[ProjectSummary]]] = [
    Column("project", "Project", "PROJECT", attrgetter("project")),
    *_counts(ProjectSummary),
    Column("decisions", "Decided", "DECIDED", attrgetter("decisions")),
    Column(
        "median_decision_seconds",
        "Median time to decision",
        "MEDIAN",
        attrgetter("median_decision_seconds"),
        seconds=True,
    ),
    Column(
        "p95_decision_seconds",
        "95th percentile",
        "P95",
        attrgetter("p95_decision_seconds"),
        seconds=True,
    ),
]
# CSV holds both kinds of row in one table: every key once, in column order.
CSV_COLUMNS: Final = (
    "kind",
    *dict.fromkeys([c.key for c in DAY_COLUMNS] + [c.key for c in PROJECT_COLUMNS]),
)


@dataclass(frozen=True)
class Figures:
    """A report: rows per project per day, and a summary per project."""

    project: str | None
    since: date | None
    until: date | None
    days: list[DayFigures]
    summaries: list[ProjectSummary]

    @property
    def decision_seconds(self) -> list[float]:
        """Every time to decision in the report, sorted."""
        return sorted(s for p in self.summaries for s in p.decision_seconds)

    def summary_of(self, project: str) -> ProjectSummary:
        for summary in self.summaries:
            if summary.project == project:
                return summary
        return ProjectSummary(project)


class Reports(ReadModel):
    """Projects Order events into per-project, per-day figures; answers reports."""

    name = NAME
    layout = (DAYS, ORDERS)
    topics = ORDER_TOPICS

    def read_before(
        self, cursor: Cursor, db: ViewDatabase, events: Events, changes: Changes
    ) -> None:
        """The orders that `events` decide or warn about and that were requested
        before them (on a cursor of their own: the writes are pipelined)."""
        requested = {e.number for e in events if isinstance(e, Order.Requested)}
        wanted = sorted(
            {
                e.number
                for e in events
                if isinstance(e, Order.Accepted | Order.Rejected | Order.WarningRaised)
            }
            - requested
        )
        if not wanted:
            return
        rows: list[Any] = []
        with db.reader(cursor) as reader:
            if db.arrays:
                reader.execute(db.sql(_SELECT_ORDERS_ARRAY), (array_literal(wanted),))
                rows = reader.fetchall()
            else:
                for i in range(0, len(wanted), _READ_AT_ONCE):
                    ids = wanted[i : i + _READ_AT_ONCE]
                    marks = ", ".join("?" * len(ids))
                    reader.execute(db.sql(_SELECT_ORDERS.format(marks=marks)), ids)
                    rows += reader.fetchall()
        changes.found(ORDERS, map(ORDERS.row_of, rows))

    def fold(self, event: Any, changes: Changes) -> None:
        """An order requested in the page is inserted as its last event left it;
        the day counters are summed."""
        match event:
            case Order.Requested():
                day = utc_day(event.at)
                changes.insert(
                    ORDERS,
                    ReportedOrder(
                        order_id=event.number,
                        source_project=event.resource_project,
                        dest_project=event.dest_project,
                        servers=len(event.snids),
                        requested_at=event.at.timestamp(),
                        requested_day=day,
                        outcome=workflow.UNFINISHED,
                        decision_seconds=None,
                    ),
                )
                changes.add(DAYS, DayFigures(event.resource_project, day, requested=1))
            case Order.Accepted() | Order.Rejected():
                order = changes.known(ORDERS, event.number)
                assert order is not None, f"order {event.number} was never requested"
                outcome = event.state
                # Rounded to the microsecond `at` holds: no float noise.
                seconds = round(event.at.timestamp() - order.requested_at, 6)
                changes.update(
                    ORDERS,
                    {"order_id": event.number},
                    outcome=outcome,
                    decision_seconds=seconds,
                )
                source_project, requested_day = (
                    order.source_project,
                    order.requested_day,
                )
                if outcome != workflow.FINISHED:
                    changes.add(
                        DAYS, DayFigures(source_project, requested_day, refused=1)
                    )
                    return
                changes.add(DAYS, DayFigures(source_project, requested_day, finished=1))
                day, servers = utc_day(event.at), order.servers
                changes.add(
                    DAYS, DayFigures(order.dest_project, day, servers_in=servers)
                )
                changes.add(DAYS, DayFigures(source_project, day, servers_out=servers))
            case Order.WarningRaised():
                order = changes.known(ORDERS, event.number)
                assert order is not None, f"order {event.number} was never requested"
                changes.add(
                    DAYS,
                    DayFigures(order.source_project, utc_day(event.at), warnings=1),
                )

    # -- queries ---------------------------------------------------------------

    @staticmethod
    def figures(
        db: ViewDatabase, project: str | None, since: date | None, until: date | None
    ) -> Figures:
        """Every project's figures (or `project`'s alone) for the UTC days from
        `since` to `until`, both included; an open end reaches the first or last.
        """
        low = since.isoformat() if since else _EARLIEST
        high = until.isoformat() if until else _LATEST
        with db.reading() as cursor:
            if project is None:
                cursor.execute(db.sql(_SELECT_DAYS), (low, high))
                day_rows = cursor.fetchall()
                cursor.execute(db.sql(_SELECT_DURATIONS), (low, high))
            else:
                cursor.execute(db.sql(_SELECT_DAYS_OF_PROJECT), (project, low, high))
                day_rows = cursor.fetchall()
                cursor.execute(
                    db.sql(_SELECT_DURATIONS_OF_PROJECT), (project, low, high)
                )
            duration_rows = cursor.fetchall()
        days = [DAYS.row_of(row) for row in day_rows]
        days_of: dict[str, list[DayFigures]] = {}
        for figures in days:
            days_of.setdefault(figures.project, []).append(figures)
        durations: dict[str, list[float]] = {}
        for source_project, seconds in duration_rows:
            durations.setdefault(source_project, []).append(float(seconds))
        projects = sorted(days_of.keys() | durations.keys())
        if project is not None and not projects:
            projects = [project]
        return Figures(
            project=project,
            since=since,
            until=until,
            days=days,
            summaries=[
                _summary(p, days_of.get(p, []), durations.get(p, [])) for p in projects
            ],
        )


def _to_the_millisecond(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _summary(
    project: str, days: list[DayFigures], durations: list[float]
) -> ProjectSummary:
    return ProjectSummary(
        project=project,
        requested=sum(f.requested for f in days),
        finished=sum(f.finished for f in days),
        refused=sum(f.refused for f in days),
        servers_in=sum(f.servers_in for f in days),
        servers_out=sum(f.servers_out for f in days),
        warnings=sum(f.warnings for f in days),
        decision_seconds=tuple(sorted(durations)),
    )
