"""`pm-order mail list|retry`: the outbox, and what the mailer gave up on."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from typing import Any

from cli.store_path import composed
from domain.exceptions import DomainError
from language import ljust, rjust
from mail import ledger
from mail.ledger import DeliveryLedger
from service.config import Config


class MessageUnknown(DomainError):
    """`mail retry` named a message that is not there, or not failed (exit 1)."""


def register(commands: Any) -> None:
    mail = commands.add_parser(
        "mail",
        help="the mail outbox",
        description="The mail outbox: the messages the mailer sends, their "
        "delivery state, and putting failed ones back in line.",
    )
    actions = mail.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="messages and their delivery state")
    states = listing.add_mutually_exclusive_group()
    states.add_argument(
        "--failed",
        action="store_const",
        const=ledger.FAILED,
        dest="state",
        help="only those given up on (dead letters)",
    )
    states.add_argument(
        "--pending",
        action="store_const",
        const=ledger.PENDING,
        dest="state",
        help="only those not sent yet",
    )
    listing.add_argument("--json", action="store_true", help="JSON lines")
    listing.set_defaults(command=list_mail)
    retry = actions.add_parser(
        "retry",
        help="put failed messages back in line (all, or the one named)",
        description="Put messages the mailer gave up on (state failed) back in "
        "line: every one, or the one named. Exit status 1 when the named message "
        "does not exist or has not failed.",
    )
    retry.add_argument(
        "message_id", nargs="?", help="one Message-ID (the <> may be left out)"
    )
    retry.set_defaults(command=retry_mail)


def list_mail(config: Config, args: argparse.Namespace) -> int:
    with composed(config) as root:
        root.store.catch_up()
        messages = DeliveryLedger.messages(root.store.views, args.state)
    if args.json:
        for m in messages:
            print(
                json.dumps(
                    {
                        "message_id": m.message_id,
                        "order_id": m.order_id,
                        "kind": m.kind,
                        "recipients": m.recipients,
                        "state": m.state,
                        "attempts": m.attempts,
                        "last_error": m.last_error,
                    },
                    ensure_ascii=False,
                )
            )
        return 0
    _ = config.language.gettext
    message_id, order, kind = _("MESSAGE-ID"), _("ORDER"), _("KIND")
    state, tries, last_error = _("STATE"), _("TRIES"), _("LAST ERROR")
    print(
        f"{ljust(message_id, 32)} {rjust(order, 6)} {ljust(kind, 10)} "
        f"{ljust(state, 8)} {rjust(tries, 5)}  {last_error}"
    )
    for m in messages:
        print(
            f"{m.message_id:<32} {m.order_id:>6} {m.kind:<10} {m.state:<8} "
            f"{m.attempts:>5}  {m.last_error or ''}"
        )
    return 0


def retry_mail(config: Config, args: argparse.Namespace) -> int:
    message = args.message_id
    if message is not None and not message.startswith("<"):
        message = f"<{message}>"
    with composed(config) as root:
        views = root.store.views
        if message is not None:
            root.store.catch_up()
            known = {m.message_id: m for m in DeliveryLedger.messages(views)}
            if message not in known:
                raise MessageUnknown(f"no such message: {message}")
            if known[message].state != ledger.FAILED:
                raise MessageUnknown(
                    f"{message} is {known[message].state}, not failed: nothing to retry"
                )
        count = DeliveryLedger.retry_failed(views, time.time(), message)
    if args.json:
        print(json.dumps({"retried": count}))
        return 0
    language = config.language
    print(
        language.ngettext(
            "{count} message back in line at {moment}",
            "{count} messages back in line at {moment}",
            count,
            moment=language.moment(datetime.now(config.timezone)),
        )
    )
    return 0
