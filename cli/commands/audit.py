"""`pm-order orders history|show` and `pm-order machines history`: the audit trail,
read from the event store itself."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Final, Generic, TypeAlias, TypeVar

from cli import audit
from cli.arguments import action, command_group
from cli.audit import OrderAsOf, OrderHistory, OrderStep, ServerHistory, ServerStep
from cli.commands import operator_refusal
from cli.store_path import composed
from domain.service import OrderApplication
from domain.time_format import show_time
from language import ENGLISH, N_, Language, ljust, width
from service.config import Config


def register(commands: Any, server_actions: Any) -> None:
    """Adds `orders`, and `history` to the `machines` group's actions."""
    orders = command_group(
        commands,
        "orders",
        help="one order's timeline, or the order as it stood at a moment",
        description="Orders, read from the event store (the views are not used).",
    )
    history = action(orders, "history", order_history_command)
    history.add_argument("order_id", type=_order_id, metavar="ID")
    history.add_argument("--json", action="store_true", help="one JSON document")
    show = action(orders, "show", order_show_command)
    show.add_argument("order_id", type=_order_id, metavar="ID")
    show.add_argument(
        "--as-of",
        type=_moment,
        metavar="TIME",
        help='"YYYY-MM-DD HH:MM:SS" in PM_ORDER_TIMEZONE, or ISO-8601 with an '
        "offset (2026-11-27T10:00:00+08:00); events at exactly that time count",
    )
    show.add_argument("--json", action="store_true", help="one JSON document")
    operator_refusal.register(orders)
    server = action(server_actions, "history", server_history_command)
    server.add_argument("snid", metavar="SNID")
    server.add_argument("--json", action="store_true", help="one JSON document")


# -- orders history and machines history ---------------------------------------------

S = TypeVar("S", bound=OrderStep | ServerStep)

# A history's own columns, between each step's event and its change: the heading
# (translated where shown) and the cell of a step.
_Columns: TypeAlias = tuple[tuple[str, Callable[[S], str]], ...]

_ORDER_COLUMNS: Final[_Columns[OrderStep]] = (
    (N_("USER"), lambda step: step.user),
    (N_("PROJECT"), lambda step: step.project or "-"),
    (N_("STATE"), lambda step: f"{step.state_before or '-'} -> {step.state_after}"),
)
_SERVER_COLUMNS: Final[_Columns[ServerStep]] = (
    (N_("OWNER"), lambda step: step.owner),
    (N_("ORDER"), lambda step: "-" if step.order_id is None else str(step.order_id)),
    (N_("USER"), lambda step: step.user or "-"),
)


@dataclass(frozen=True)
class _Timeline(Generic[S]):
    """A history as the commands print it: the JSON document's first keys, the
    lines above the table, and the steps with their own columns."""

    head: dict[str, Any]
    title: tuple[str, ...]
    steps: tuple[S, ...]
    columns: _Columns[S]


def order_history_command(config: Config, args: argparse.Namespace) -> int:
    """every event of an order: when, who, and what changed

    Every event of the order with its time (in PM_ORDER_TIMEZONE), the user and
    project that acted, the state before and after, and what changed for its
    servers.
    """
    return _history_command(config, args, _order_timeline)


def server_history_command(config: Config, args: argparse.Namespace) -> int:
    """every project that owned a server and the orders that moved it

    Every event of the server: registration, reservations, transfers and
    releases, in order, with times in PM_ORDER_TIMEZONE.
    """
    return _history_command(config, args, _server_timeline)


def _order_timeline(
    app: OrderApplication, args: argparse.Namespace, language: Language, zone: tzinfo
) -> _Timeline[OrderStep]:
    history = audit.order_history(app, args.order_id, language)
    return _Timeline(
        head=_json_fields(history),
        title=(
            language.gettext(
                "order {order}: {source} -> {destination} (times in {zone})",
                order=history.number,
                source=history.resource_project,
                destination=history.dest_project,
                zone=zone,
            ),
        ),
        steps=history.steps,
        columns=_ORDER_COLUMNS,
    )


def _server_timeline(
    app: OrderApplication, args: argparse.Namespace, language: Language, zone: tzinfo
) -> _Timeline[ServerStep]:
    history = audit.server_history(app, args.snid, language)
    _ = language.gettext
    moved_by = ", ".join(_("order {order}", order=n) for n in history.moved_by)
    return _Timeline(
        head=_json_fields(history),
        title=(
            _("server {snid} (times in {zone})", snid=history.snid, zone=zone),
            _("owners:   {owners}", owners=" -> ".join(history.owners)),
            _("moved by: {orders}", orders=moved_by or "-"),
        ),
        steps=history.steps,
        columns=_SERVER_COLUMNS,
    )


def _history_command(
    config: Config,
    args: argparse.Namespace,
    timeline_of: Callable[
        [OrderApplication, argparse.Namespace, Language, tzinfo], _Timeline[S]
    ],
) -> int:
    """A history read from the store: one JSON document, or its title and a table."""
    language = _language(config, args)
    zone = config.timezone
    with composed(config) as root:
        timeline = timeline_of(root.store.app, args, language, zone)
    if args.json:
        events = [_step_json(step, zone) for step in timeline.steps]
        _print_json({**timeline.head, "timezone": str(zone), "events": events})
        return 0
    print(*timeline.title, sep="\n")
    _print_steps(timeline, zone, language)
    return 0


def _print_steps(timeline: _Timeline[S], zone: tzinfo, language: Language) -> None:
    """A table of the steps: version, time, event, the history's own columns, and
    the change."""
    _ = language.gettext
    own = timeline.columns
    _print_table(
        (
            _("VERSION"),
            _("TIME"),
            _("EVENT"),
            *(_(heading) for heading, _cell in own),
            _("CHANGE"),
        ),
        [
            (
                str(step.version),
                show_time(step.at, zone),
                step.event,
                *(cell(step) for _heading, cell in own),
                step.change,
            )
            for step in timeline.steps
        ],
    )


def _step_json(step: OrderStep | ServerStep, zone: tzinfo) -> dict[str, Any]:
    """A step's fields, its moment in `zone`."""
    return {**_json_fields(step), "time": _iso(step.at, zone)}


# The JSON's word for a field, where it is not the field's name.
_JSON_NAMES: Final = {"number": "order_id", "at": "time"}


def _json_fields(
    record: OrderHistory | ServerHistory | OrderStep | ServerStep,
) -> dict[str, Any]:
    """A history's or a step's fields in their order, by their JSON names; a
    history's steps are left to the caller."""
    return {
        _JSON_NAMES.get(name, name): value
        for name, value in vars(record).items()
        if name != "steps"
    }


# -- orders show ----------------------------------------------------------------------


def order_show_command(config: Config, args: argparse.Namespace) -> int:
    """an order as it stands now, or as it stood at a moment

    The order at its last event at or before --as-of (all of it when omitted),
    read from the aggregate at that version.
    """
    zone = config.timezone
    as_of: datetime | None = args.as_of
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=zone)
    with composed(config) as root:
        try:
            order = audit.order_as_of(root.store.app, args.order_id, as_of)
        except audit.OrderNotYetRequested as error:
            print(f"pm-order: {error.describe(zone)}", file=sys.stderr)
            return 1
    if args.json:
        _print_json(_order_json(order, zone))
        return 0
    _ = config.language.gettext
    rows = [
        ("order", str(order.number)),
        (
            _("as of"),
            _("now")
            if order.as_of is None
            else f"{show_time(order.as_of, zone)} ({zone})",
        ),
        (
            _("version"),
            _(
                "{version} of {latest}",
                version=order.version,
                latest=order.latest_version,
            ),
        ),
        ("state", order.state),
        ("snids", ",".join(order.snids)),
        ("resource_project", order.resource_project),
        ("dest_project", order.dest_project),
        ("user", order.user),
        ("mailto", ",".join(order.mailto) or "-"),
        ("requested_at", show_time(order.requested_at, zone)),
        ("decided_by", order.decided_by or "-"),
        ("decided_at", _shown(order.decided_at, zone)),
        ("warning_count", str(order.warning_count)),
        ("warned_at", _shown(order.warned_at, zone)),
        ("updated_at", show_time(order.updated_at, zone)),
    ]
    widest = max(width(name) for name, _value in rows)
    for name, value in rows:
        print(f"{ljust(name, widest)}  {value}")
    return 0


def _order_json(order: OrderAsOf, zone: tzinfo) -> dict[str, Any]:
    return {
        "id": order.number,
        "as_of": None if order.as_of is None else _iso(order.as_of, zone),
        "version": order.version,
        "latest_version": order.latest_version,
        "state": order.state,
        "snids": list(order.snids),
        "resource_project": order.resource_project,
        "dest_project": order.dest_project,
        "user": order.user,
        "mailto": list(order.mailto),
        "requested_at": _iso(order.requested_at, zone),
        "decided_by": order.decided_by,
        "decided_at": _iso(order.decided_at, zone),
        "warning_count": order.warning_count,
        "warned_at": _iso(order.warned_at, zone),
        "updated_at": _iso(order.updated_at, zone),
    }


# -- shared ---------------------------------------------------------------------------


def _language(config: Config, args: argparse.Namespace) -> Language:
    """The deployment's language for people; English in JSON, for programs."""
    return ENGLISH if args.json else config.language


def _order_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an order id (1 or more)")
    return int(text)


def _moment(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a time: use "YYYY-MM-DD HH:MM:SS" or ISO-8601 '
            "with an offset"
        ) from None


def _iso(moment: datetime | None, zone: tzinfo) -> str | None:
    """ISO-8601 with the offset of `zone`: unambiguous for tools."""
    return None if moment is None else moment.astimezone(zone).isoformat()


def _shown(moment: datetime | None, zone: tzinfo) -> str:
    return "-" if moment is None else show_time(moment, zone)


def _print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, ensure_ascii=False))


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """_Columns as wide as their widest cell; the last one is left ragged."""
    lines = [headers, *rows]
    widths = [max(width(line[i]) for line in lines) for i in range(len(headers) - 1)]
    for line in lines:
        cells = [
            ljust(cell, columns) for cell, columns in zip(line, widths, strict=False)
        ]
        print("  ".join([*cells, line[-1]]).rstrip())
