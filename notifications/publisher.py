"""The publisher: follows the event log and announces each order's events on
RabbitMQ, in log order, at least once.

It reads the log after its own position (notifications/position.py), turns a
page of order events into notifications, publishes them on one channel in log
order (so each order's events arrive in their order), waits for the broker's
confirms of all of them, and only then moves its position. A crash or a broker
failure between the publish and the move means the page is published again:
consumers drop repeats by `message_id`, which is the same each time. While the
broker is down or refuses (full: its memory or disk alarm blocks publishers),
the events wait in the log: the backlog grows, shows in /readyz, /metrics and
`pm-order projections status`, and drains by itself once the broker takes them.

The client is aiormq (the AMQP core of aio-pika), on the event loop: publishes
are pipelined and confirmed asynchronously. oslo.messaging's notifier is
synchronous, swallows send errors (it logs them), does not wait for publisher
confirms, and brings its own configuration: it cannot tell us that a message
is safe, which moving the position needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote
from uuid import UUID

import aiormq
from aiormq.abc import ConfirmationFrameType
from eventsourcing.utils import get_topic
from pamqp import commands as spec

from domain.order import Order
from domain.service import OrderApplication
from notifications.envelope import Requested, envelope, message_id, notification
from notifications.position import NotificationPositions
from notifications.settings import EXCHANGE, NotificationSettings
from projections.database import ViewDatabase
from projections.executor import in_pool

log = logging.getLogger(__name__)

PAGE_SIZE: Final = 500
# A publish not confirmed within this is a failure (a blocked or dead broker).
CONFIRM_TIMEOUT_SECONDS: Final = 10.0
CONNECT_TIMEOUT_SECONDS: Final = 5.0
# One round of work at most this long, so that leadership is asked again.
ROUND_SECONDS: Final = 1.0
# Every event class of the Order aggregate, those of later releases included.
ORDER_TOPIC_PREFIX: Final = get_topic(Order) + "."
# Requests remembered between pages (for the orders' later events).
_REMEMBERED: Final = 10_000

WaitForEvents = Callable[[int, float], Awaitable[bool]]


class PublishFailed(Exception):
    """The broker did not confirm every message of a page."""


@dataclass
class _Page:
    messages: list[tuple[str, bytes]]
    end: int


@dataclass
class PublisherState:
    """What this process's publisher did lately (for /metrics and /readyz)."""

    published: int = 0
    failures: int = 0
    last_error: str | None = None
    connected: bool = False
    # When the broker last confirmed a page.
    confirmed_at: float | None = None


class Publisher:
    """Announces the log's order events on the broker, from its position on."""

    def __init__(
        self,
        app: OrderApplication,
        views: ViewDatabase,
        settings: NotificationSettings,
        *,
        wait_for_events: WaitForEvents | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.app = app
        self.views = views
        self.settings = settings
        # Reads of the log in a thread of their own: never queued behind the
        # requests' calls in the shared pool (at 200 orders/s on a busy machine
        # they waited there for seconds).
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="pm-order-notifier")
        self.page_size = page_size
        self._wait_for_events = wait_for_events
        self.state = PublisherState()
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._requests: dict[UUID, Requested] = {}
        self._started = False

    # -- the leader's round -----------------------------------------------------

    async def publish_due(self) -> None:
        """Publish pages until the log's end (or for about a second), then wait
        up to the rest of the second for new events."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROUND_SECONDS
        await self.start()
        position = await in_pool(self.executor, self._position)
        while (left := deadline - loop.time()) > 0:
            page = await in_pool(self.executor, self._page, position, None)
            if page is None:
                await self._idle(position, left)
                if (await in_pool(self.executor, self._head)) <= position:
                    return
                continue
            await self._publish(page.messages)
            await in_pool(
                self.executor, NotificationPositions.move, self.views, page.end
            )
            position = page.end

    async def start(self) -> None:
        """Make the position (at the log's head, for a new outbox) if there is
        none: called as the process starts, so that what it stores from then on
        is announced; again by each round until it succeeds."""
        if not self._started:
            await in_pool(self.executor, self._start)
            self._started = True

    async def replay(self, start: int, stop: int) -> int:
        """Publish the order events at log positions `start`..`stop` again
        (the position does not move); returns how many were published."""
        count = 0
        position = start - 1
        try:
            while position < stop:
                page = await in_pool(self.executor, self._page, position, stop)
                if page is None:
                    break
                await self._publish(page.messages)
                count += len(page.messages)
                position = page.end
        finally:
            await self.close()
        return count

    async def close(self) -> None:
        await self._disconnect()
        self.executor.shutdown(wait=False)

    # -- the log ----------------------------------------------------------------

    def _start(self) -> None:
        """A position at the log's head for a new outbox (its table is one of
        the shared ones: service/store.py)."""
        NotificationPositions.start(self.views, self._head())

    def _position(self) -> int:
        found = NotificationPositions.read(self.views)
        assert found is not None  # made by _start
        return found.position

    def _head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def _page(self, after: int, stop: int | None) -> _Page | None:
        """The notifications of the order events after `after` (to `stop`), or
        None when the log has nothing newer."""
        app = self.app
        found = app.recorder.select_notifications(
            start=after, limit=self.page_size, stop=stop, inclusive_of_start=False
        )
        if not found:
            return None
        events = [
            (n.id, app.mapper.to_domain_event(n))
            for n in found
            if n.topic.startswith(ORDER_TOPIC_PREFIX)
        ]
        for _, event in events:
            if isinstance(event, Order.Requested):
                self._remember(event.originator_id, Requested.of(event))
        self._read_requests({e.originator_id for _, e in events})
        publisher_id = self.settings.publisher_id
        messages = [
            (
                message_id(event),
                envelope(
                    notification(
                        event, self._requests[event.originator_id], id_, publisher_id
                    )
                ),
            )
            for id_, event in events
        ]
        return _Page(messages, found[-1].id)

    def _read_requests(self, orders: set[UUID]) -> None:
        """Remember the requests of `orders` not remembered yet, in one read."""
        missing = [o for o in orders if o not in self._requests]
        if not missing:
            return
        recorder: Any = self.app.recorder
        for stored in recorder.select_events_of(missing):
            if stored.originator_version == 1:
                event = self.app.mapper.to_domain_event(stored)
                if isinstance(event, Order.Requested):
                    self._remember(event.originator_id, Requested.of(event))

    def _remember(self, order: UUID, requested: Requested) -> None:
        if len(self._requests) >= _REMEMBERED:
            # Oldest first (dicts keep insertion order): later events of recent
            # orders are the likely ones.
            del self._requests[next(iter(self._requests))]
        self._requests[order] = requested

    async def _idle(self, position: int, seconds: float) -> None:
        """Wait for events after `position`, at most `seconds`."""
        if self._wait_for_events is not None:
            await self._wait_for_events(position + 1, seconds)
        else:
            await asyncio.sleep(min(seconds, 0.05))

    # -- the broker -------------------------------------------------------------

    async def _publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish `messages` in their order and wait for every confirm;
        PublishFailed (or the client's error) when any is not confirmed."""
        if not messages:
            return
        try:
            channel = await self._connected()
            persistent = 2 if self.settings.durable else 1
            # Started in order: each takes the channel's lock (first come, first
            # served) before its frames are written, so they go out in order.
            confirms = [
                asyncio.ensure_future(
                    channel.basic_publish(
                        body,
                        exchange=EXCHANGE,
                        routing_key=self.settings.routing_key,
                        properties=spec.Basic.Properties(
                            content_type="application/json",
                            content_encoding="utf-8",
                            delivery_mode=persistent,
                            message_id=identifier,
                        ),
                        # Unroutable (the queue deleted meanwhile): an error,
                        # not a message confirmed into nowhere.
                        mandatory=True,
                        timeout=CONFIRM_TIMEOUT_SECONDS,
                    )
                )
                for identifier, body in messages
            ]
            results = await asyncio.gather(*confirms, return_exceptions=True)
            for result in results:
                _check_confirmed(result)
        except Exception as error:
            self.state.failures += 1
            self.state.last_error = _described(error, self.settings.password)
            await self._disconnect()
            raise
        self.state.published += len(messages)
        self.state.last_error = None
        self.state.confirmed_at = time.time()

    async def _connected(self) -> aiormq.abc.AbstractChannel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        await self._disconnect()
        settings = self.settings
        url = (
            f"amqp://{quote(settings.username, safe='')}:"
            f"{quote(settings.password, safe='')}@{settings.host}:{settings.port}/"
            f"{quote(settings.virtual_host, safe='')}"
        )
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            self._connection = await aiormq.connect(url)
            channel = await self._connection.channel(publisher_confirms=True)
            # Declared as oslo.messaging's notifier declares them, so that a
            # listener finds its queue with the messages sent before it came.
            await channel.exchange_declare(
                EXCHANGE, exchange_type="topic", durable=settings.durable
            )
            await channel.queue_declare(settings.routing_key, durable=settings.durable)
            await channel.queue_bind(
                settings.routing_key, EXCHANGE, routing_key=settings.routing_key
            )
        self._channel = channel
        self.state.connected = True
        log.info("publishing notifications to %s", settings.shown_url)
        return channel

    async def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self.state.connected = False
        if connection is not None:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    await connection.close()
            except Exception:
                log.debug("closing the broker connection failed", exc_info=True)


def _check_confirmed(result: ConfirmationFrameType | BaseException | None) -> None:
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, spec.Basic.Ack):
        raise PublishFailed(f"the broker did not take a message: {result!r}")


def _described(error: BaseException, password: str) -> str:
    """The error for status, never with the broker's password in it."""
    text = f"{type(error).__name__}: {error}"
    return (text.replace(password, "***") if password else text)[:300]
