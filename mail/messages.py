"""The words of each message: what happened to which order, for a person, in
the deployment's language (PM_ORDER_LANGUAGE)."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from domain.values import carried_address
from language import ENGLISH, Language, ljust, width
from mail.ledger import OutgoingMail
from projections import mail_outbox


def compose(
    mail: OutgoingMail,
    *,
    sender: str,
    zone: ZoneInfo,
    language: Language = ENGLISH,
) -> EmailMessage:
    """The message for `mail`, plain UTF-8 text, with its stable Message-ID;
    MessageUnbuildable when a header would carry other addresses than given."""
    for address in (sender, *mail.recipients):
        carried = carried_address(address)
        if carried != address:
            raise MessageUnbuildable(
                f"the address {address!r} would reach a reader as "
                f"{carried or 'no address'!r}"
            )
    when = datetime.fromtimestamp(mail.happened_at, zone)
    message = EmailMessage()
    _set_subject(message, subject(mail, language))
    message["From"] = sender
    message["To"] = ", ".join(mail.recipients)
    message["Date"] = format_datetime(when)
    message["Message-ID"] = mail.message_id
    message.set_content(body(mail, when, zone, language), charset="utf-8")
    return message


class MessageUnbuildable(ValueError):
    """A message of the outbox that cannot be written as a mail: the reason says why."""


def _set_subject(message: EmailMessage, text: str) -> None:
    """An ASCII subject as is; any other as RFC 2047 encoded words, folded here.

    The email package's own folding (3.11, 3.12) puts the space before a fold
    outside the encoded words, and a reader drops the whitespace between encoded
    words: "2 台服务器" would arrive as "2台服务器". Header cuts the text inside
    words instead, and lines that short are sent as they are.
    """
    if text.isascii():
        message["Subject"] = text
        return
    encoded = Header(text, "utf-8", header_name="Subject").encode(linesep="\n")
    message.set_raw("Subject", encoded)


def subject(mail: OutgoingMail, language: Language = ENGLISH) -> str:
    _ = language.gettext
    names = {
        "order": mail.order_id,
        "servers": _servers(mail.snids, language),
        "source": mail.source_project,
        "destination": mail.dest_project,
        "warning": language.number(mail.warning_count),
    }
    template = {
        mail_outbox.REQUESTED: _(
            "[pm-order] Order {order} requested: {servers} from {source} "
            "to {destination}",
            **names,
        ),
        mail_outbox.WARNED: _(
            "[pm-order] Order {order} still waiting (warning {warning}): "
            "{servers} from {source} to {destination}",
            **names,
        ),
        mail_outbox.ACCEPTED: _(
            "[pm-order] Order {order} accepted by {destination}: "
            "{servers} moved from {source}",
            **names,
        ),
        mail_outbox.REFUSED: _(
            "[pm-order] Order {order} refused by {destination}: "
            "{servers} stay with {source}",
            **names,
        ),
    }
    return template[mail.kind]


def body(
    mail: OutgoingMail, when: datetime, zone: ZoneInfo, language: Language = ENGLISH
) -> str:
    _ = language.gettext
    names = {
        "order": mail.order_id,
        "actor": one_line(mail.actor),
        "moment": f"{language.moment(when)} ({zone.key})",
        "warning": language.number(mail.warning_count),
        "source": mail.source_project,
        "destination": mail.dest_project,
    }
    happened = {
        mail_outbox.REQUESTED: _(
            "Order {order} was requested by {actor} at {moment}.", **names
        ),
        mail_outbox.WARNED: _(
            "Order {order} is still waiting for an answer: warning {warning}, "
            "raised at {moment}.",
            **names,
        ),
        mail_outbox.ACCEPTED: _(
            "Order {order} was accepted by {actor} at {moment}.", **names
        ),
        mail_outbox.REFUSED: _(
            "Order {order} was refused by {actor} at {moment}.", **names
        ),
    }[mail.kind]
    outcome = {
        mail_outbox.REQUESTED: _(
            "It waits for {destination} to accept or refuse it.", **names
        ),
        mail_outbox.WARNED: _(
            "It still waits for {destination} to accept or refuse it.", **names
        ),
        mail_outbox.ACCEPTED: _("The servers now belong to {destination}.", **names),
        mail_outbox.REFUSED: _("The servers stay with {source}.", **names),
    }[mail.kind]
    facts = [
        (_("From project:"), mail.source_project),
        (_("To project:"), mail.dest_project),
        (_("Servers:"), ", ".join(mail.snids)),
        (_("Requested by:"), one_line(mail.requested_by)),
    ]
    # Values line up after the widest label, two columns on (CJK counts two).
    column = max(width(label) for label, _value in facts) + 2
    return "\n".join(
        [
            happened,
            "",
            *(f"  {ljust(label, column)}{value}" for label, value in facts),
            "",
            outcome,
            "",
            "-- pm-order",
            "",
        ]
    )


def _servers(snids: list[str], language: Language) -> str:
    return language.ngettext("{count} server", "{count} servers", len(snids))


# Characters that break or reorder a line: controls (CR, LF, ...), formats
# (bidirectional overrides), and the line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def one_line(name: str) -> str:
    """A name from an identity (a user name from Keystone) as one line of a body:
    every character that could break or reorder the line is shown escaped."""
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in _UNSAFE_CATEGORIES else c
        for c in name
    )
