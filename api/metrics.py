"""The app's metrics: a registry of its own (never the global one), with the
instruments the API updates as it runs; api/scrape.py adds what is read at
scrape time. Names follow Prometheus practice: `pm_order_` prefix, base units.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from service.release import COMMIT, VERSION

PREFIX: Final = "pm_order_"
# From a quick read (1 ms) to the read-your-writes bound (10 s).
_SECONDS_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """The instruments of one app and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_duration = Histogram(
            PREFIX + "http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        # Counted in a plain int, read at scrape time: no lock per request.
        self.in_flight = 0
        Gauge(
            PREFIX + "http_requests_in_flight",
            "HTTP requests being answered now.",
            registry=self.registry,
        ).set_function(lambda: self.in_flight)
        self._durations: dict[tuple[str, str, str], Any] = {}
        self.read_your_writes_wait = Histogram(
            PREFIX + "read_your_writes_wait_seconds",
            "Time a write's answer waited for the views to show it.",
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.read_your_writes_timeouts = Counter(
            PREFIX + "read_your_writes_timeouts",
            "Writes answered before the views showed them (the wait's bound passed).",
            registry=self.registry,
        )
        Info(
            PREFIX + "build",
            "The running version of pm-order and of what it runs on.",
            registry=self.registry,
        ).info(
            {
                "version": VERSION,
                "commit": COMMIT,
                "python": platform.python_version(),
                "eventsourcing": _version("eventsourcing"),
                "aiohttp": _version("aiohttp"),
            }
        )

    def observe_request(
        self, method: str, route: str, status: str, seconds: float
    ) -> None:
        """request_duration.labels(method, route, status).observe(seconds), with
        each labelled child looked up once."""
        key = (method, route, status)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = self.request_duration.labels(*key)
        child.observe(seconds)
