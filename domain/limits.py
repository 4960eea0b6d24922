"""What one project may ask for: servers per order, mail recipients, and how many
orders it may keep waiting.

A project could otherwise hold all its servers hostage in thousands of
unfinished orders, or use the service to mail anyone: these are domain rules,
checked by the service before anything is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from domain.exceptions import TooManyUnfinishedOrders
from domain.values import MAX_MAILTO, MAX_SNIDS_PER_ORDER

DEFAULT_MAX_UNFINISHED_ORDERS: Final = 1000

# How many unfinished orders a project has as their source, as the read model says.
UnfinishedCount = Callable[[str], int]


@dataclass(frozen=True)
class OrderLimits:
    """The limits a request is judged by; the contract's bounds are the most."""

    max_unfinished_orders: int = DEFAULT_MAX_UNFINISHED_ORDERS
    max_servers_per_order: int = MAX_SNIDS_PER_ORDER
    max_mailto: int = MAX_MAILTO
    # Lower-case domains mail may go to; empty: any.
    mail_domains: frozenset[str] = frozenset()


@dataclass
class UnfinishedTally:
    """The unfinished orders of each source project while a batch is judged: the
    read model's count, read once per project, plus the batch's own orders."""

    count_of: UnfinishedCount
    most: int
    _counts: Counter[str] = field(default_factory=Counter)
    _read: set[str] = field(default_factory=set)

    def check(self, project: str) -> None:
        """TooManyUnfinishedOrders if one more order would exceed the limit."""
        if project not in self._read:
            self._counts[project] += self.count_of(project)
            self._read.add(project)
        if self._counts[project] >= self.most:
            raise TooManyUnfinishedOrders(
                f"project {project} has {self._counts[project]} unfinished orders "
                f"and may have at most {self.most} waiting for a decision: wait "
                "until some are accepted or refused"
            )

    def add(self, project: str) -> None:
        self._counts[project] += 1


DEFAULT_ORDER_LIMITS: Final = OrderLimits()
