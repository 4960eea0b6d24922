"""GET /metrics: the Prometheus text format, from the app's own registry.

What other layers count as plain attributes (events appended, conflicts, mail
attempts, leadership) and what the database says (views' positions and lag, the
outbox by state) is read at scrape time; the database through a sample at most
about a second old, taken off the event loop before the registry is read.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from api.context import BACKGROUND, METRICS, SERVICE, STATUS, STORE
from api.metrics import PREFIX
from service.observed_application import CountedOrderApplication
from service.write_confirmation import confirmation_of


def watch(app: web.Application) -> None:
    """Read `app`'s store and background work at each scrape of its registry."""
    app[METRICS].registry.register(_AppCollector(app))


class _AppCollector(Collector):
    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._counted()
        yield from self._leadership()
        yield from self._sampled()
        yield from self._confirmation()

    def _confirmation(self) -> Iterator[Metric]:
        store = self.app.get(STORE)
        confirmation = confirmation_of(store.app.recorder) if store else None
        if confirmation is not None:
            yield GaugeMetricFamily(
                PREFIX + "writes_unconfirmed",
                "1 while this process's writes are not being confirmed durable "
                "(PostgreSQL waits for a synchronous standby that does not "
                "answer): they are answered 503, and may have been stored.",
                value=int(confirmation.unconfirmed_since is not None),
            )

    def _counted(self) -> Iterator[Metric]:
        store = self.app.get(STORE)
        if store is not None and isinstance(store.app, CountedOrderApplication):
            appended, conflicts = store.app.counts()
            events = CounterMetricFamily(
                PREFIX + "events_appended",
                "Events this process stored, by type.",
                labels=["type"],
            )
            for kind, count in sorted(appended.items()):
                events.add_metric([kind], count)
            yield events
            yield CounterMetricFamily(
                PREFIX + "conflicts_retried",
                "Version conflicts met saving, each re-read and retried inside the "
                "service (clients do not see them).",
                value=conflicts,
            )
        service = self.app.get(SERVICE)
        if service is not None:
            yield CounterMetricFamily(
                PREFIX + "conflicts_given_up",
                "Requests answered 409 'busy with competing changes' after the last "
                "retry (a 409 for servers really taken is not one of them).",
                value=service.conflicts_given_up,
            )
        background = self.app.get(BACKGROUND)
        if background is not None and background.mailer is not None:
            attempts = CounterMetricFamily(
                PREFIX + "mail_send_attempts",
                "Attempts of this process to send a message, by result.",
                labels=["result"],
            )
            for result in ("sent", "failed", "gave_up"):
                attempts.add_metric([result], background.mailer.attempts[result])
            yield attempts
        if background is not None and background.notifier is not None:
            state = background.notifier.state
            yield CounterMetricFamily(
                PREFIX + "notifications_published",
                "Notifications this process published and the broker confirmed.",
                value=state.published,
            )
            yield CounterMetricFamily(
                PREFIX + "notifications_publish_failures",
                "Pages this process failed to publish (each retried).",
                value=state.failures,
            )

    def _leadership(self) -> Iterator[Metric]:
        background = self.app.get(BACKGROUND)
        if background is None:
            return
        leader = GaugeMetricFamily(
            PREFIX + "leader",
            "1 where this process runs the background role, else 0.",
            labels=["role"],
        )
        for role, leading in sorted(background.leading.items()):
            leader.add_metric([role], 1.0 if leading else 0.0)
        yield leader
        alive = background.following.listener_alive()
        if alive is not None:
            yield GaugeMetricFamily(
                PREFIX + "notification_listener_up",
                "1 while the PostgreSQL LISTEN connection is up and hearing.",
                value=1.0 if alive else 0.0,
            )

    def _sampled(self) -> Iterator[Metric]:
        status = self.app.get(STATUS)
        sample = status.latest if status is not None else None
        if sample is None:
            return
        yield GaugeMetricFamily(
            PREFIX + "store_up",
            "1 when the store answered the latest sample, else 0.",
            value=0.0 if sample.error else 1.0,
        )
        if sample.error:
            return
        yield GaugeMetricFamily(
            PREFIX + "event_log_head",
            "Notification id of the latest event stored.",
            value=sample.head,
        )
        families = {
            "position": GaugeMetricFamily(
                PREFIX + "view_position",
                "Notification id up to which the view has applied the log.",
                labels=["view"],
            ),
            "lag_events": GaugeMetricFamily(
                PREFIX + "view_lag_events",
                "Events stored that the view has not applied yet.",
                labels=["view"],
            ),
            "lag_seconds": GaugeMetricFamily(
                PREFIX + "view_lag_seconds",
                "Age of the oldest event the view has not applied (0 when none).",
                labels=["view"],
            ),
            "moved": GaugeMetricFamily(
                PREFIX + "view_last_moved_timestamp_seconds",
                "Unix time at which the view's position last moved.",
                labels=["view"],
            ),
        }
        for view in sample.views:
            families["position"].add_metric([view.name], view.position)
            families["lag_events"].add_metric([view.name], view.lag_events)
            families["lag_seconds"].add_metric([view.name], view.lag_seconds)
            if view.moved_at is not None:
                families["moved"].add_metric([view.name], view.moved_at)
        yield from families.values()
        outbox = GaugeMetricFamily(
            PREFIX + "mail_outbox_messages",
            "Messages in the mail outbox, by delivery state.",
            labels=["state"],
        )
        for state, count in sorted(sample.outbox.items()):
            outbox.add_metric([state], count)
        yield outbox
        if (backlog := sample.notifications) is not None:
            yield GaugeMetricFamily(
                PREFIX + "notifications_position",
                "Notification id up to which events were announced on the bus.",
                value=backlog.position,
            )
            yield GaugeMetricFamily(
                PREFIX + "notifications_backlog_events",
                "Events stored and not announced on the bus yet (the broker down "
                "or full makes it grow).",
                value=backlog.lag_events,
            )
            yield GaugeMetricFamily(
                PREFIX + "notifications_backlog_seconds",
                "Age of the oldest event not announced yet (0 when none).",
                value=backlog.lag_seconds,
            )


async def metrics(request: web.Request) -> web.StreamResponse:
    """The Prometheus scrape (no token needed)."""
    status = request.app.get(STATUS)
    if status is not None:
        # Off the event loop, and at most about once a second.
        await status.sample()
    handler = make_aiohttp_handler(request.app[METRICS].registry)
    return await handler(request)
