"""Mail addresses are checked as the mail will carry them, and one message that
cannot be built never holds up another: the real app, the real SMTP server
(aiosmtpd), both stores, every sent message parsed with the strict policy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any, Final

import pytest

from api.app import create_app
from domain.service import OrderService
from mail import ledger
from mail.ledger import DeliveryLedger
from service.config import Config
from service.store import Store
from tests.conftest import INVENTORY, TOKENS, Api, FakeClock
from tests.integration.smtp_server import Mailbox, Received, SmtpServer
from tests.integration.test_mail import eventually, pm_order

SENDER: Final = "pm-order@example.com"
DOMAINS: Final = frozenset({"example.com", "xn--bcher-kva.example"})
# A user name with a line break, as an identity service may hold one.
FORGER: Final = "mallory\r\nReply-To: forged@evil.com\n\nOrder 99 was accepted"

# Each would reach a reader as other addresses than the one given, or none.
HOSTILE: Final = [
    "=?utf-8?b?eA0KUmVwbHktVG86IGFAZXZpbC5jb20NCg==?=@example.com",
    "=?utf-8?q?x=40evil.com=2C_y?=@example.com",
    "=?utf-8?b?YUBldmlsLmNvbQ==?=@example.com",
    "=?utf-8?q?a=0D=0ABcc:_x@evil.com?=@example.com",
    "=?iso-8859-1?q?a=0Ab?=@example.com",
    "=?us-ascii?q?a?=@example.com",
    "=?utf-8?b?4oCu?=@example.com",
    '"a@evil.com"@example.com',
    '"a\r\nb"@example.com',
    "a@example.com(x@evil.com)",
    "(x@evil.com)a@example.com",
    "Evil <a@evil.com>",
    "a@evil.com, b@example.com",
    "a@example.com\r\nBcc: x@evil.com",
    "a@example.com\nBcc: x@evil.com",
    "a\u2028b@example.com",
    "a@bücher.example",
    "a@[127.0.0.1]",
    "a@evil.com@example.com",
]
# Plain addresses, however odd: taken, and carried exactly as given.
PLAIN: Final = [
    "a%evil.com@example.com",
    "o'hara+x@example.com",
    "a@xn--bcher-kva.example",
    "{braces}=?@example.com",
]


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def smtp(mailbox: Mailbox) -> Iterator[SmtpServer]:
    server = SmtpServer(mailbox)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    forger = {
        "token": "tok-forger",
        "user_name": FORGER,
        "project_id": "proj-a",
        "roles": ["member"],
    }
    path.write_text(json.dumps({"tokens": [*TOKENS, forger]}))
    return path


@pytest.fixture
async def api(
    aiohttp_client: Any,
    store: Store,
    config: Config,
    clock: FakeClock,
    smtp: SmtpServer,
) -> AsyncIterator[Api]:
    """The real app mailing to the real SMTP server, only to DOMAINS."""
    service = OrderService(store.app, clock=clock)
    service.register_servers(INVENTORY)
    mailing = replace(
        config,
        smtp=smtp.settings,
        mail_from=SENDER,
        limits=replace(config.limits, mail_domains=DOMAINS),
    )
    client = await aiohttp_client(create_app(mailing, store=store, clock=clock))
    yield Api(client=client, store=store, service=service)
    await client.close()


def strictly_parsed(received: Received) -> list[str]:
    """The To header's addresses, as a reader strict about defects reads them."""
    message = message_from_bytes(received.raw, policy=policy.strict)
    return [str(a.addr_spec) for a in message["To"].addresses]


def transfer(snid: str, mailto: list[str]) -> dict[str, Any]:
    return {"snids": [snid], "dest_project": "proj-b", "mailto": mailto}


@pytest.mark.parametrize("address", HOSTILE)
async def test_an_address_a_mail_would_carry_otherwise_is_400_naming_it(
    api: Api, address: str
) -> None:
    # given
    head = api.head()
    # when
    status, answer = await api.request(
        "tok-alice", "proj-a", transfer("SN-A-001", ["ok@example.com", address])
    )
    # then nothing is written, and the answer names the entry
    assert status == 400, answer
    assert repr(address[:70])[1:-1] in answer["msg"]
    assert api.head() == head


async def test_plain_addresses_are_mailed_exactly_as_given_in_a_strict_header(
    api: Api, mailbox: Mailbox
) -> None:
    # when
    for number, address in enumerate(PLAIN, start=1):
        status, answer = await api.request(
            "tok-alice", "proj-a", transfer(f"SN-A-{number:03d}", [address])
        )
        assert status == 200, answer
    # then
    received = await mailbox.wait_for(len(PLAIN))
    assert sorted(strictly_parsed(r)[0] for r in received) == sorted(PLAIN)
    assert all(strictly_parsed(r) == r.rcpt_tos for r in received)


async def test_a_message_that_cannot_be_built_fails_with_its_reason_and_holds_up_none(
    api: Api, mailbox: Mailbox, store: Store, store_url: str
) -> None:
    # given an order an earlier release took (its address check let this through)
    hostile = HOSTILE[0]
    # as an earlier release wrote it, past the service's check
    api.service._transfers.submit(
        {
            "source_project": "proj-a",
            "user": "alice",
            "snids": ["SN-A-001"],
            "dest_project": "proj-b",
            "mailto": [hostile],
        }
    )
    # when later orders are made
    for snid in ("SN-A-002", "SN-A-003"):
        status, answer = await api.request(
            "tok-alice", "proj-a", transfer(snid, ["ops@example.com"])
        )
        assert status == 200, answer
    # then they are mailed, and the first is given up on with its reason
    received = await mailbox.wait_for(2)
    assert [strictly_parsed(r) for r in received] == [["ops@example.com"]] * 2

    def failed() -> list[ledger.OutgoingMail]:
        return DeliveryLedger.messages(store.views, ledger.FAILED)

    await eventually(lambda: len(failed()) == 1, "the unbuildable message failed")
    [message] = failed()
    assert message.recipients == [hostile]
    assert message.last_error is not None
    assert message.last_error.startswith("cannot be built: MessageUnbuildable")
    # and `mail retry` puts it back in line, to be tried (and given up on) again
    status, output = await pm_order(store_url, "mail", "retry", message.message_id)
    assert status == 0, output
    assert output.startswith("1 message"), output
    await eventually(
        lambda: [m.attempts for m in failed()] == [1], "the retried message tried"
    )
    assert len(mailbox.received) == 2


async def test_a_user_name_with_line_breaks_stays_on_its_line_of_the_body(
    api: Api, mailbox: Mailbox
) -> None:
    # when
    status, answer = await api.request(
        "tok-forger", "proj-a", transfer("SN-A-001", ["ops@example.com"])
    )
    # then
    assert status == 200, answer
    [received] = await mailbox.wait_for(1)
    body = received.body.splitlines()
    assert body[0].startswith(
        "Order 1 was requested by mallory\\u000d\\u000aReply-To: forged@evil.com"
        "\\u000a\\u000aOrder 99 was accepted at "
    )
    assert not any(line.startswith(("Reply-To", "Order 99")) for line in body)
    assert strictly_parsed(received) == ["ops@example.com"]
    assert received.message["Reply-To"] is None
