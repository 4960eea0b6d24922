"""The words of each message: what happened to which order, for a person."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from domain.time_format import show_time
from mail.ledger import OutgoingMail
from projections import mail_outbox


def compose(mail: OutgoingMail, *, sender: str, zone: ZoneInfo) -> EmailMessage:
    """The message for `mail`, plain UTF-8 text, with its stable Message-ID."""
    when = datetime.fromtimestamp(mail.happened_at, zone)
    message = EmailMessage()
    message["Subject"] = subject(mail)
    message["From"] = sender
    message["To"] = ", ".join(mail.recipients)
    message["Date"] = format_datetime(when)
    message["Message-ID"] = mail.message_id
    message.set_content(body(mail, when, zone), charset="utf-8")
    return message


def subject(mail: OutgoingMail) -> str:
    count = _servers(mail.snids)
    route = f"{count} from {mail.resource_project} to {mail.dest_project}"
    return {
        mail_outbox.REQUESTED: f"[pm-order] Order {mail.order_id} requested: {route}",
        mail_outbox.WARNED: (
            f"[pm-order] Order {mail.order_id} still waiting "
            f"(warning {mail.warning_count}): {route}"
        ),
        mail_outbox.ACCEPTED: (
            f"[pm-order] Order {mail.order_id} accepted by {mail.dest_project}: "
            f"{count} moved from {mail.resource_project}"
        ),
        mail_outbox.REFUSED: (
            f"[pm-order] Order {mail.order_id} refused by {mail.dest_project}: "
            f"{count} stay with {mail.resource_project}"
        ),
    }[mail.kind]


def body(mail: OutgoingMail, when: datetime, zone: ZoneInfo) -> str:
    moment = f"{show_time(when)} ({zone.key})"
    happened = {
        mail_outbox.REQUESTED: f"was requested by {mail.actor} at {moment}.",
        mail_outbox.WARNED: (
            f"is still waiting for an answer: warning {mail.warning_count}, "
            f"raised at {moment}."
        ),
        mail_outbox.ACCEPTED: f"was accepted by {mail.actor} at {moment}.",
        mail_outbox.REFUSED: f"was refused by {mail.actor} at {moment}.",
    }[mail.kind]
    decide = f"{mail.dest_project} to accept or refuse it."
    outcome = {
        mail_outbox.REQUESTED: f"It waits for {decide}",
        mail_outbox.WARNED: f"It still waits for {decide}",
        mail_outbox.ACCEPTED: f"The servers now belong to {mail.dest_project}.",
        mail_outbox.REFUSED: f"The servers stay with {mail.resource_project}.",
    }[mail.kind]
    return "\n".join(
        [
            f"Order {mail.order_id} {happened}",
            "",
            f"  From project:  {mail.resource_project}",
            f"  To project:    {mail.dest_project}",
            f"  Servers:       {', '.join(mail.snids)}",
            f"  Requested by:  {mail.requested_by}",
            "",
            outcome,
            "",
            "-- pm-order",
            "",
        ]
    )


def _servers(snids: list[str]) -> str:
    return "1 server" if len(snids) == 1 else f"{len(snids)} servers"
