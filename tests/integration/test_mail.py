"""Mail about orders, delivered to a real SMTP server (aiosmtpd on a loopback port).

Orders are made through the application service on the real store (both
backends); the outbox is filled by the real projectors and emptied by the real
mailer, here driven a round at a time, in `pm-order worker` processes, or by the
background work of a process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import pytest

from domain.service import OrderService
from language import ENGLISH, Language
from mail import ledger
from mail.ledger import DeliveryLedger, OutgoingMail
from mail.mailer import Backoff, Mailer
from projections import mail_outbox
from service.background import Background
from service.config import Config
from service.store import Store
from service.warning_scheduler import WarningScheduler
from tests.conftest import FakeClock
from tests.integration.processes import PmOrderProcess
from tests.integration.smtp_server import Certificate, Mailbox, Received, SmtpServer

ZONE: Final = ZoneInfo("Asia/Shanghai")
SENDER: Final = "pm-order@example.com"
MAILTO: Final = ["zhang.san@example.com", "li.si@example.com"]
REQUESTER: Final = "张三"
DECIDER: Final = "李四"
INVENTORY: Final = [
    *((f"SN-A-{n}", "proj-a") for n in range(1, 7)),
    *((f"SN-B-{n}", "proj-b") for n in range(1, 3)),
]
FAST: Final = Backoff(first=0.05, most=0.2, max_attempts=1000)
WAIT_SECONDS: Final = 20.0


# -- the parts: an SMTP server, the service, the mailer ------------------------------


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def smtp(mailbox: Mailbox) -> Iterator[SmtpServer]:
    """The SMTP server, not started: a test starts it when the server is up."""
    server = SmtpServer(mailbox)
    yield server
    server.stop()


@pytest.fixture
def smtp_up(smtp: SmtpServer) -> SmtpServer:
    smtp.start()
    return smtp


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(4, thread_name_prefix="test-mail")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def registered(service: OrderService) -> OrderService:
    service.register_servers(INVENTORY)
    return service


class LaterClock:
    """The real time, moved on by as much as a test says (no waiting)."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += seconds


def mailer(
    store: Store,
    smtp: SmtpServer,
    executor: ThreadPoolExecutor,
    backoff: Backoff = FAST,
    clock: Callable[[], float] = time.time,
    language: Language = ENGLISH,
) -> Mailer:
    return Mailer(
        store.views,
        smtp.settings,
        executor,
        sender=SENDER,
        zone=ZONE,
        language=language,
        backoff=backoff,
        clock=clock,
    )


async def deliver(store: Store, one: Mailer) -> int:
    """Project what the log holds into the outbox, then one round of the mailer."""
    await asyncio.get_running_loop().run_in_executor(one.executor, store.catch_up)
    return await one.deliver_due()


def order(
    service: OrderService,
    snids: tuple[str, ...] = ("SN-A-1", "SN-A-2"),
    mailto: list[str] = MAILTO,
) -> int:
    written = service.request_transfer(
        source_project="proj-a",
        user=REQUESTER,
        snids=list(snids),
        dest_project="proj-b",
        mailto=mailto,
    )
    assert written.order_id is not None
    return written.order_id


def outbox(store: Store, state: str | None = None) -> list[OutgoingMail]:
    return DeliveryLedger.messages(store.views, state)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (in a thread: it reads the store) until true, or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not await loop.run_in_executor(None, condition):
        if loop.time() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


# -- the four kinds of message --------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What makes one kind of message, and what it must say."""

    name: str
    act: Callable[[OrderService, Store, FakeClock, int], None]
    subject: str
    says: tuple[str, ...]


def warn(service: OrderService, store: Store, clock: FakeClock, number: int) -> None:
    clock.advance(hours=1)
    store.catch_up()
    WarningScheduler(service, store.views, every=timedelta(hours=1), most=3).run_once()


def decide(accept: bool) -> Callable[[OrderService, Store, FakeClock, int], None]:
    def act(service: OrderService, store: Store, clock: FakeClock, number: int) -> None:
        clock.advance(minutes=5)
        service.decide(
            project="proj-b",
            user=DECIDER,
            roles=frozenset({"member"}),
            order_ids=[number],
            accept=accept,
        )

    return act


def nothing(service: OrderService, store: Store, clock: FakeClock, number: int) -> None:
    """The request itself is the event."""


# The fake clock starts at 09:00 UTC: 17:00 in Shanghai.
KINDS: Final = [
    Kind(
        "requested",
        nothing,
        "[pm-order] Order 1 requested: 2 servers from proj-a to proj-b",
        (
            "Order 1 was requested by 张三 at 2026-11-27 17:00:00 (Asia/Shanghai).",
            "It waits for proj-b to accept or refuse it.",
        ),
    ),
    Kind(
        "warning",
        warn,
        "[pm-order] Order 1 still waiting (warning 1): 2 servers from proj-a to proj-b",
        (
            "Order 1 is still waiting for an answer: warning 1, "
            "raised at 2026-11-27 18:00:00 (Asia/Shanghai).",
            "It still waits for proj-b to accept or refuse it.",
        ),
    ),
    Kind(
        "accepted",
        decide(accept=True),
        "[pm-order] Order 1 accepted by proj-b: 2 servers moved from proj-a",
        (
            "Order 1 was accepted by 李四 at 2026-11-27 17:05:00 (Asia/Shanghai).",
            "The servers now belong to proj-b.",
        ),
    ),
    Kind(
        "refused",
        decide(accept=False),
        "[pm-order] Order 1 refused by proj-b: 2 servers stay with proj-a",
        (
            "Order 1 was refused by 李四 at 2026-11-27 17:05:00 (Asia/Shanghai).",
            "The servers stay with proj-a.",
        ),
    ),
]


ACCEPTED: Final = next(k for k in KINDS if k.name == "accepted")


@pytest.fixture(params=KINDS, ids=[k.name for k in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    kind: Kind = request.param
    return kind


async def message_of_kind(
    kind: Kind,
    registered: OrderService,
    store: Store,
    clock: FakeClock,
    smtp_up: SmtpServer,
    executor: ThreadPoolExecutor,
    language: Language = ENGLISH,
) -> Received:
    """Order 1 requested (and mailed), then `kind`'s event, mailed: its message."""
    one = mailer(store, smtp_up, executor, language=language)
    number = order(registered)
    assert await deliver(store, one) == 1
    kind.act(registered, store, clock, number)
    if kind.name != "requested":
        assert await deliver(store, one) == 1
    return smtp_up.mailbox.received[-1]


async def test_each_kind_of_message_goes_to_exactly_the_mailto_addresses(
    kind: Kind,
    registered: OrderService,
    store: Store,
    clock: FakeClock,
    smtp_up: SmtpServer,
    executor: ThreadPoolExecutor,
) -> None:
    # when
    received = await message_of_kind(kind, registered, store, clock, smtp_up, executor)
    # then
    assert received.rcpt_tos == MAILTO
    assert [a.addr_spec for a in received.message["To"].addresses] == MAILTO
    assert received.mail_from == SENDER


async def test_each_kind_of_message_says_which_order_what_happened_who_and_when(
    kind: Kind,
    registered: OrderService,
    store: Store,
    clock: FakeClock,
    smtp_up: SmtpServer,
    executor: ThreadPoolExecutor,
) -> None:
    # when
    received = await message_of_kind(kind, registered, store, clock, smtp_up, executor)
    # then
    assert received.subject == kind.subject
    body = received.body
    for line in (
        *kind.says,
        "  From project:  proj-a",
        "  To project:    proj-b",
        "  Servers:       SN-A-1, SN-A-2",
        "  Requested by:  张三",
    ):
        assert line in body.splitlines(), (line, body)


async def test_a_message_is_plain_utf8_text_with_chinese_names_intact(
    registered: OrderService,
    store: Store,
    clock: FakeClock,
    smtp_up: SmtpServer,
    executor: ThreadPoolExecutor,
) -> None:
    # when an order of 张三's is accepted by 李四
    await message_of_kind(ACCEPTED, registered, store, clock, smtp_up, executor)
    # then
    for received in smtp_up.mailbox.received:
        assert received.message.get_content_type() == "text/plain"
        assert received.message.get_content_charset() == "utf-8"
        assert not received.message.is_multipart()
    requested, accepted = smtp_up.mailbox.received
    assert "requested by 张三" in requested.body
    assert "accepted by 李四" in accepted.body
    assert "Requested by:  张三" in accepted.body


async def test_each_message_carries_a_message_id_made_of_its_order_and_event(
    registered: OrderService,
    store: Store,
    clock: FakeClock,
    smtp_up: SmtpServer,
    executor: ThreadPoolExecutor,
) -> None:
    # when order 1 is requested (its version 1), then accepted (its version 2)
    await message_of_kind(ACCEPTED, registered, store, clock, smtp_up, executor)
    # then
    assert [r.message_id for r in smtp_up.mailbox.received] == [
        "<order-1.event-1@pm-order>",
        "<order-1.event-2@pm-order>",
    ]


async def test_an_order_without_mailto_produces_no_message(
    registered: OrderService,
    store: Store,
    smtp_up: SmtpServer,
    executor: ThreadPoolExecutor,
) -> None:
    # given an order for nobody, then one for MAILTO
    order(registered, ("SN-A-1",), mailto=[])
    somebody = order(registered, ("SN-A-2",))
    # when the outbox has both orders' events and the mailer has had its round
    sent = await deliver(store, mailer(store, smtp_up, executor))
    # then only the second order made a message
    assert sent == 1
    assert [m.order_id for m in outbox(store)] == [somebody]
    assert [r.message_id for r in smtp_up.mailbox.received] == [
        mail_outbox.message_id(somebody, 1)
    ]


@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtps"])
async def test_mail_goes_over_tls_to_a_server_that_wants_a_user_and_password(
    scheme: str,
    registered: OrderService,
    store: Store,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a server that takes mail only over TLS and once logged in, its
    # certificate trusted as one from a real authority would be
    certificate = Certificate.self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    server = SmtpServer(
        Mailbox(), scheme=scheme, certificate=certificate, login=("mailer", "p@ss:w/rd")
    )
    server.start()
    try:
        # when an order is made and the mailer has had its round
        order(registered)
        sent = await deliver(store, mailer(store, server, executor))
    finally:
        server.stop()
    # then
    assert sent == 1
    [received] = server.mailbox.received
    assert (received.encrypted, received.authenticated) == (True, True)
    assert received.rcpt_tos == MAILTO


# -- delivery that fails, and what the mailer does about it -------------------------


async def test_every_message_arrives_after_the_smtp_server_was_down_for_a_while(
    registered: OrderService,
    store: Store,
    smtp: SmtpServer,
    executor: ThreadPoolExecutor,
) -> None:
    # given the background work of a process, its mail server down
    config = Config(smtp=smtp.settings, mail_from=SENDER, timezone=ZONE)
    work = Background(
        store, registered, config, executor, mail_backoff=FAST, mail_poll=0.05
    )
    await work.start()
    try:
        # when three orders are made, and every message failed twice before the
        # server comes up
        numbers = [order(registered, (f"SN-A-{n}",)) for n in (1, 2, 3)]
        work.following.wake()

        def each_failed_twice() -> bool:
            messages = outbox(store)
            return len(messages) == 3 and all(m.attempts >= 2 for m in messages)

        await eventually(each_failed_twice, "three messages failing twice each")
        assert all(m.last_error for m in outbox(store))
        smtp.start()
        received = await smtp.mailbox.wait_for(3)
        await eventually(
            lambda: len(outbox(store, ledger.SENT)) == 3, "three sent messages"
        )
    finally:
        await work.stop()
    # then every message arrived, once
    assert sorted(r.message_id for r in received) == sorted(
        mail_outbox.message_id(n, 1) for n in numbers
    )
    assert len(smtp.mailbox.received) == 3


async def pm_order(
    store_url: str, *args: str, settings: dict[str, str] | None = None
) -> tuple[int, str]:
    """`pm-order --database-url URL ARGS` as a user runs it: (status, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")}
    env.update(settings or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "--database-url",
        store_url,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.fixture
async def dead_letter(
    registered: OrderService,
    store: Store,
    smtp: SmtpServer,
    executor: ThreadPoolExecutor,
) -> str:
    """The requested message of order 1, given up on after two failed attempts."""
    clock = LaterClock()
    one = mailer(store, smtp, executor, Backoff(1.0, 1.0, max_attempts=2), clock)
    order(registered)
    for _ in range(2):
        assert await deliver(store, one) == 0
        clock.advance(60)
    [message] = outbox(store)
    assert (message.state, message.attempts) == (ledger.FAILED, 2)
    return message.message_id


async def test_a_message_failing_max_attempts_times_is_listed_by_mail_list_failed(
    dead_letter: str, store_url: str
) -> None:
    # when
    status, output = await pm_order(store_url, "mail", "list", "--failed", "--json")
    # then
    assert status == 0, output
    [line] = output.splitlines()
    listed = json.loads(line)
    assert listed["message_id"] == dead_letter
    assert (listed["state"], listed["attempts"]) == ("failed", 2)
    assert listed["recipients"] == MAILTO
    assert "Connect" in listed["last_error"]


async def test_mail_retry_delivers_a_dead_lettered_message(
    dead_letter: str,
    store: Store,
    store_url: str,
    smtp: SmtpServer,
    executor: ThreadPoolExecutor,
) -> None:
    # given the mail server back up
    smtp.start()
    one = mailer(store, smtp, executor)
    assert await one.deliver_due() == 0  # a dead letter stays where it is
    # when
    status, output = await pm_order(store_url, "mail", "retry", dead_letter)
    sent = await one.deliver_due()
    # then
    assert status == 0, output
    assert sent == 1
    assert [r.message_id for r in smtp.mailbox.received] == [dead_letter]
    assert [m.message_id for m in outbox(store, ledger.SENT)] == [dead_letter]


async def test_mail_list_and_retry_speak_chinese_with_pm_order_language_zh_cn(
    dead_letter: str, store_url: str
) -> None:
    # given
    chinese = {"PM_ORDER_LANGUAGE": "zh_CN"}
    # when
    listed = await pm_order(store_url, "mail", "list", settings=chinese)
    retried = await pm_order(store_url, "mail", "retry", settings=chinese)
    # then
    assert listed[0] == 0, listed[1]
    header, row = listed[1].splitlines()
    assert header.split() == ["邮件", "ID", "订单", "类型", "状态", "尝试", "最近错误"]
    assert row.split()[:5] == [dead_letter, "1", "requested", "failed", "2"]
    assert retried[0] == 0, retried[1]
    assert retried[1].startswith("1 封邮件已于 ")
    assert retried[1].rstrip().endswith(" 重新排队")


# -- killed, replayed, rebuilt: no mail lost, none sent twice -------------------------


def worker_env(store_url: str, smtp: SmtpServer, **more: str) -> dict[str, str]:
    """The settings of a `pm-order worker` mailing to `smtp`, and `more`."""
    return {
        "PM_ORDER_DATABASE_URL": store_url,
        "PM_ORDER_SMTP_URL": smtp.url,
        "PM_ORDER_MAIL_FROM": SENDER,
        # The order is dated by the tests' fixed clock, which the worker's real
        # clock may be hours past: no warnings, only the one message under test.
        "PM_ORDER_WARN_MAX": "0",
        **more,
    }


async def test_a_mailer_killed_between_sending_and_recording_resends_with_the_same_id(
    registered: OrderService,
    store: Store,
    store_url: str,
    smtp_up: SmtpServer,
    tmp_path: Path,
) -> None:
    # given a worker, and a mail server that kills it once it has a message, before
    # answering that it took it
    env = worker_env(store_url, smtp_up)
    first = PmOrderProcess(["worker"], env, tmp_path / "worker-1.log")
    workers = [first]
    smtp_up.mailbox.on_data = lambda _: first.kill()
    try:
        # when an order is made
        order(registered)
        [sent_first] = await smtp_up.mailbox.wait_for(1)
        smtp_up.mailbox.on_data = None
        # then the worker died before recording the message as sent
        assert first.process.returncode == -signal.SIGKILL
        [message] = outbox(store)
        assert (message.state, message.attempts) == (ledger.PENDING, 0)
        # and when another worker starts, it sends the message again, same Message-ID
        workers.append(PmOrderProcess(["worker"], env, tmp_path / "worker-2.log"))
        resent = (await smtp_up.mailbox.wait_for(2))[1]
        await eventually(
            lambda: [m.state for m in outbox(store)] == [ledger.SENT],
            "the resent message recorded as sent",
        )
    finally:
        for worker in workers:
            worker.stop()
    assert resent.message_id == sent_first.message_id == message.message_id
    assert resent.raw == sent_first.raw


def forget_outbox_position(store: Store) -> None:
    """Set the outbox's tracking back to the log's start: the next catch-up
    replays every event into it."""
    with store.views.writing() as cursor:
        cursor.execute(
            store.views.sql(
                "UPDATE projection_tracking SET position = 0 WHERE view = ?"
            ),
            (mail_outbox.NAME,),
        )


def drop_outbox(store: Store) -> None:
    """Drop the outbox view's tables and tracking, as a rebuild from scratch would."""
    with store.views.writing() as cursor:
        for table in store.mail_outbox.tables:
            cursor.execute(f"DROP TABLE {table}")
        cursor.execute(
            store.views.sql("DELETE FROM projection_tracking WHERE view = ?"),
            (mail_outbox.NAME,),
        )
    store.create_tables()


@pytest.mark.parametrize(
    "replay", [forget_outbox_position, drop_outbox], ids=["replayed", "rebuilt"]
)
async def test_projecting_the_log_into_the_outbox_again_sends_no_new_mail(
    registered: OrderService,
    store: Store,
    clock: FakeClock,
    smtp_up: SmtpServer,
    executor: ThreadPoolExecutor,
    replay: Callable[[Store], None],
) -> None:
    # given two orders' messages sent, one of them decided since
    one = mailer(store, smtp_up, executor)
    first = order(registered, ("SN-A-1",))
    order(registered, ("SN-A-2",))
    decide(accept=True)(registered, store, clock, first)
    assert await deliver(store, one) == 3
    before = outbox(store)
    # when every event is projected into the outbox again
    replay(store)
    store.catch_up()
    # then it holds the same messages, all sent, and nothing goes out
    assert outbox(store) == before
    assert outbox(store, ledger.PENDING) == []
    assert await one.deliver_due() == 0
    assert len(smtp_up.mailbox.received) == 3


async def test_without_an_smtp_url_messages_stay_in_the_outbox_and_a_log_says_so(
    registered: OrderService,
    store: Store,
    executor: ThreadPoolExecutor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given the background work of a process with no SMTP URL
    work = Background(store, registered, Config(smtp=None), executor)
    await work.start()
    try:
        # when an order is made and projected
        number = order(registered)
        work.following.wake()
        assert await work.following.caught_up(registered.head(), WAIT_SECONDS)
    finally:
        await work.stop()
    # then
    assert [(m.order_id, m.state, m.attempts) for m in outbox(store)] == [
        (number, ledger.PENDING, 0)
    ]
    assert "PM_ORDER_SMTP_URL is not set" in caplog.text


# -- in Chinese (PM_ORDER_LANGUAGE=zh_CN) ---------------------------------------------

CHINESE: Final = Language.named("zh_CN")
# Each kind's subject and what its body says, in Chinese: still the order number,
# both projects, the servers, who acted and when.
IN_CHINESE: Final = {
    "requested": (
        "[pm-order] 订单 1 已申请：2 台服务器从 proj-a 转至 proj-b",
        (
            "订单 1 由 张三 于 2026年11月27日 17:00:00 (Asia/Shanghai) 申请。",
            "正在等待 proj-b 接受或拒绝。",
        ),
    ),
    "warning": (
        "[pm-order] 订单 1 仍在等待（第 1 次警告）：2 台服务器从 proj-a 转至 proj-b",
        (
            "订单 1 仍在等待答复：第 1 次警告，"
            "发出于 2026年11月27日 18:00:00 (Asia/Shanghai)。",
            "仍在等待 proj-b 接受或拒绝。",
        ),
    ),
    "accepted": (
        "[pm-order] 订单 1 已被 proj-b 接受：2 台服务器已从 proj-a 转出",
        (
            "订单 1 已由 李四 于 2026年11月27日 17:05:00 (Asia/Shanghai) 接受。",
            "这些服务器现归 proj-b 所有。",
        ),
    ),
    "refused": (
        "[pm-order] 订单 1 已被 proj-b 拒绝：2 台服务器仍归 proj-a",
        (
            "订单 1 已由 李四 于 2026年11月27日 17:05:00 (Asia/Shanghai) 拒绝。",
            "这些服务器仍归 proj-a 所有。",
        ),
    ),
}


async def test_in_chinese_each_kind_of_message_says_order_projects_and_servers(
    kind: Kind,
    registered: OrderService,
    store: Store,
    clock: FakeClock,
    smtp_up: SmtpServer,
    executor: ThreadPoolExecutor,
) -> None:
    # when
    received = await message_of_kind(
        kind, registered, store, clock, smtp_up, executor, CHINESE
    )
    # then the subject travels as RFC 2047 words in short ASCII header lines ...
    headers = received.raw.partition(b"\r\n\r\n")[0]
    assert headers.isascii()
    assert max(len(line) for line in headers.split(b"\r\n")) <= 78
    assert b"\r\nSubject: =?utf-8?b?" in b"\r\n" + headers
    # ... which a mail client decodes to the Chinese subject, every space kept
    subject, says = IN_CHINESE[kind.name]
    assert received.subject == subject
    assert received.rcpt_tos == MAILTO
    # and the body is UTF-8 text
    assert received.message.get_content_charset() == "utf-8"
    body = received.body.splitlines()
    for line in (
        *says,
        "  源项目：    proj-a",
        "  目标项目：  proj-b",
        "  服务器：    SN-A-1, SN-A-2",
        "  申请人：    张三",
    ):
        assert line in body, (line, body)


async def test_names_in_any_script_pass_through_a_chinese_message_untouched(
    registered: OrderService,
    store: Store,
    smtp_up: SmtpServer,
    executor: ThreadPoolExecutor,
) -> None:
    # given an order requested by a user whose name mixes scripts
    name = "Анна Мария-مريم 김민준 🙂"
    registered.request_transfer(
        source_project="proj-a",
        user=name,
        snids=["SN-A-3"],
        dest_project="proj-b",
        mailto=MAILTO,
    )
    # when
    await deliver(store, mailer(store, smtp_up, executor, language=CHINESE))
    # then
    [received] = smtp_up.mailbox.received
    assert f"  申请人：    {name}" in received.body.splitlines()
    assert f"订单 1 由 {name} 于 " in received.body


async def test_a_worker_with_pm_order_language_zh_cn_sends_chinese_mail(
    registered: OrderService,
    store_url: str,
    smtp_up: SmtpServer,
    tmp_path: Path,
) -> None:
    # given a `pm-order worker` set to speak Chinese, in Shanghai's time
    env = worker_env(
        store_url,
        smtp_up,
        PM_ORDER_LANGUAGE="zh_CN",
        PM_ORDER_TIMEZONE="Asia/Shanghai",
    )
    worker = PmOrderProcess(["worker"], env, tmp_path / "worker.log")
    try:
        # when an order is made
        order(registered)
        [received] = await smtp_up.mailbox.wait_for(1)
    finally:
        worker.stop()
    # then the mail server got the Chinese message
    subject, says = IN_CHINESE["requested"]
    assert received.subject == subject
    assert says[0] in received.body.splitlines()
