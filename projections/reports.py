"""The reporting read model: per project and day, what happened to orders.

(Being built: see issue 5.)
"""

from __future__ import annotations

from typing import Any, Final

from eventsourcing.domain import DomainEventProtocol

from projections.database import Cursor, ViewDatabase

NAME: Final = "reports"


class Reports:
    name = NAME
    tables: tuple[str, ...] = ()
    topics: frozenset[str] = frozenset()

    def create_tables(self, cursor: Cursor, db: ViewDatabase) -> None:
        return None

    def apply(
        self, cursor: Cursor, db: ViewDatabase, event: DomainEventProtocol[Any]
    ) -> None:
        return None
