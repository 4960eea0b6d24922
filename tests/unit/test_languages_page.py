"""The sample mails of docs/languages.md are what the mailer writes, in each
language."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import pytest

from language import Language
from mail.ledger import OutgoingMail
from mail.messages import compose

PAGE: Final = Path(__file__).resolve().parents[2] / "docs" / "languages.md"


@pytest.mark.parametrize(("code", "zone"), [("en", "UTC"), ("zh_CN", "Asia/Shanghai")])
def test_the_languages_page_shows_the_mail_each_language_writes(
    code: str, zone: str
) -> None:
    # given order 1 of the walk-through, requested by alice
    mail = OutgoingMail(
        message_id="<order-1.event-1@pm-order>",
        order_id=1,
        kind="requested",
        actor="alice",
        warning_count=0,
        happened_at=datetime(2026, 12, 4, 14, 47, 48, tzinfo=UTC).timestamp(),
        recipients=["bob@example.com"],
        state="pending",
        attempts=0,
        next_attempt_at=0.0,
        last_error=None,
        sent_at=None,
        snids=["SN-A-1"],
        source_project="proj-a",
        dest_project="proj-b",
        requested_by="alice",
    )
    # when
    message = compose(
        mail,
        sender="pm-order@example.com",
        zone=ZoneInfo(zone),
        language=Language.named(code),
    )
    # then
    shown = f"```\nSubject: {message['Subject']}\n\n{message.get_content()}```\n"
    assert shown in PAGE.read_text(encoding="utf-8")
