"""`pm-order orders refuse`: an operator refuses orders on behalf of a destination
that cannot answer (a project that does not exist, or no longer does).

The contract has no withdrawal: an order waits for its destination, and warns its
source, until the destination decides. When the destination never will, an
operator ends the order with the event the destination would have written
(`Order.Refused`): the servers go back to the source, the source is mailed, and
the event log says who did it and why (`pm-order orders history`), as the
operator, never as a user of the destination. No new kind of event is written:
every release reads it.
"""

from __future__ import annotations

import argparse
from typing import Any, Final

from eventsourcing.application import AggregateNotFoundError

from cli.arguments import action
from cli.store_path import composed
from domain.exceptions import DomainError, OrdersNotFound
from domain.order import Order, order_aggregate_id
from service.config import Config

MAX_REASON_LENGTH: Final = 200


def register(orders: Any) -> None:
    """Adds `refuse` to the `orders` group's actions."""
    refuse = action(orders, "refuse", refuse_command)
    refuse.add_argument("order_ids", type=_order_id, nargs="+", metavar="ID")
    refuse.add_argument(
        "--operator",
        required=True,
        metavar="NAME",
        help="who refuses (recorded in the order's history)",
    )
    refuse.add_argument(
        "--reason",
        required=True,
        metavar="TEXT",
        help="why the destination cannot answer (recorded in the order's history)",
    )


def refuse_command(config: Config, args: argparse.Namespace) -> int:
    """refuse unfinished orders on behalf of a destination that cannot answer

    For orders whose destination project does not exist (a typo such as
    proj-b.) or will never answer: each is refused as its destination would
    have, with the operator and the reason recorded as who decided. The servers
    go back to the source project, which is mailed. Orders already decided are
    left as they are (exit 1, nothing changed).
    """
    _ = config.language.gettext
    who = _operator(args.operator, args.reason)
    with composed(config) as composition:
        repository = composition.store.app.repository
        orders: dict[int, Order] = {}
        for number in args.order_ids:
            try:
                orders[number] = repository.get(order_aggregate_id(number))
            except AggregateNotFoundError:
                raise OrdersNotFound(
                    _("order {order} does not exist; nothing was changed", order=number)
                ) from None
        by_destination: dict[str, list[int]] = {}
        for number, order in orders.items():
            if not order.is_unfinished:
                raise DomainError(
                    _(
                        "order {order} is {state}: only unfinished orders can be "
                        "refused; nothing was changed",
                        order=number,
                        state=order.state,
                    )
                )
            by_destination.setdefault(order.dest_project, []).append(number)
        for destination, numbers in by_destination.items():
            composition.service.decide(
                project=destination,
                user=who,
                roles=config.approver_roles,
                order_ids=numbers,
                accept=False,
            )
            for number in numbers:
                print(
                    _(
                        "order {order} refused on behalf of {destination} by {who}",
                        order=number,
                        destination=destination,
                        who=who,
                    )
                )
    return 0


def _operator(name: str, reason: str) -> str:
    """Who decided, as the order's history shows it: the operator, marked as
    such, and the reason (one line, bounded)."""
    name, reason = " ".join(name.split()), " ".join(reason.split())
    if not name or not reason:
        raise DomainError("--operator and --reason must not be empty")
    return f"operator {name} ({reason[:MAX_REASON_LENGTH]})"


def _order_id(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) < 10**18):
        raise argparse.ArgumentTypeError(f"{text[:30]!r} is not an order number")
    return int(text)
