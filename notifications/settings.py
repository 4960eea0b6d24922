"""Where notifications go: PM_ORDER_TRANSPORT_URL (oslo.messaging's form) and the
topic; off when the URL is unset."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

from mail.settings import without_password

DEFAULT_TOPIC: Final = "notifications"
# oslo.messaging's default control exchange: a listener with default settings
# binds its notifications queue to it.
EXCHANGE: Final = "openstack"


class TransportUrlInvalid(ValueError):
    """The transport URL is not rabbit://USER:PASS@HOST:PORT/VHOST."""


@dataclass(frozen=True)
class NotificationSettings:
    """The broker, the topic, and how this host names itself as publisher."""

    host: str
    port: int
    username: str
    # Never shown: not in repr, not in logs or status (see `shown_url`).
    password: str = field(repr=False)
    virtual_host: str = "/"
    topic: str = DEFAULT_TOPIC
    # Durable exchange and queue, persistent messages: nothing announced is lost
    # when the broker restarts. A consumer declares them alike (oslo.messaging:
    # [oslo_messaging_rabbit] amqp_durable_queues = true).
    durable: bool = True
    publisher_host: str = field(default_factory=socket.gethostname)

    @classmethod
    def from_url(cls, url: str, **rest: object) -> NotificationSettings:
        """From oslo.messaging's transport URL (the first host of a list)."""
        parts = urlsplit(url)
        if parts.scheme != "rabbit":
            raise TransportUrlInvalid(
                f"{without_password(url)!r} must be rabbit://USER:PASS@HOST:PORT/"
            )
        first = parts.netloc.split(",")[0]
        credentials, _, address = first.rpartition("@")
        user, _, password = credentials.partition(":")
        hostname, _, port_text = address.partition(":")
        if not hostname:
            raise TransportUrlInvalid(f"{without_password(url)!r} names no host")
        if port_text and not port_text.isdigit():
            raise TransportUrlInvalid(
                f"{without_password(url)!r}: the port is not a number"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            host=hostname,
            port=int(port_text or 5672),
            username=unquote(user) or "guest",
            password=unquote(password) or "guest",
            virtual_host=unquote(path) or "/",
            **rest,  # type: ignore[arg-type]
        )

    @property
    def publisher_id(self) -> str:
        return f"pm-order.{self.publisher_host}"

    @property
    def routing_key(self) -> str:
        """oslo.messaging's: the topic, then the priority."""
        return f"{self.topic}.info"

    @property
    def shown_url(self) -> str:
        """The broker's URL without the password, for logs and status."""
        vhost = "" if self.virtual_host == "/" else self.virtual_host
        return f"rabbit://{self.username}:***@{self.host}:{self.port}/{vhost}"
