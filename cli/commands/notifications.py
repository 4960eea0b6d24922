"""`pm-order notifications replay`: announce a range of the event log again.

A new notification outbox announces what happens from then on; an operator who
wants the past announced (a consumer that lost its data, an outbox started on a
database with history) replays a range of log positions. The publisher's own
position does not move; consumers drop what they already had by `message_id`,
which is the same as the first time.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from notifications.publisher import Publisher
from service.bootstrap import composed
from service.config import Config, ConfigError


def register(commands: Any) -> None:
    notifications = commands.add_parser(
        "notifications", help="the announcements on the message bus"
    )
    actions = notifications.add_subparsers(required=True, metavar="ACTION")
    replay = actions.add_parser(
        "replay",
        help="announce the order events of a range of log positions again",
        description="Publish the order events stored at log positions FROM..TO "
        "(both included; `pm-order events` and `projections status` show "
        "positions) to PM_ORDER_TRANSPORT_URL again, in order, each confirmed "
        "by the broker. The publisher's position does not move.",
    )
    replay.add_argument("--from", dest="start", type=int, required=True)
    replay.add_argument("--to", dest="stop", type=int, required=True)
    replay.set_defaults(command=replay_notifications)


def replay_notifications(config: Config, args: argparse.Namespace) -> int:
    if config.notifications is None:
        raise ConfigError("set PM_ORDER_TRANSPORT_URL to replay notifications")
    if not 1 <= args.start <= args.stop:
        raise ConfigError("--from and --to must be positions with 1 <= FROM <= TO")
    with composed(config) as root:
        publisher = Publisher(root.store.app, root.store.views, config.notifications)
        count = asyncio.run(publisher.replay(args.start, args.stop))
    print(
        f"published {count} notifications of positions {args.start}..{args.stop} "
        f"to {config.notifications.shown_url}"
    )
    return 0
