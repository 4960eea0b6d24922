"""The notification of an event: oslo.messaging's envelope, the event type, the
versioned payload; and the transport URL's password never shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from domain.order import Order
from notifications.envelope import (
    Requested,
    action_of,
    envelope,
    message_id,
    notification,
)
from notifications.settings import NotificationSettings, TransportUrlInvalid
from service.config import Config, ConfigError

AT = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
REQUEST = Requested(["SN-1", "SN-2"], "proj-a", "proj-b", "alice", AT)


def accepted(version: int = 2) -> Order.Accepted:
    return Order.Accepted(
        originator_id=uuid4(),
        originator_version=version,
        timestamp=AT,
        number=7,
        by="bob",
        at=AT,
        state="finished",
    )


def test_an_event_is_an_oslo_messaging_2_0_envelope_around_its_notification() -> None:
    # given
    event = accepted()
    # when
    body = json.loads(envelope(notification(event, REQUEST, 42, "pm-order.host1")))
    # then
    assert body["oslo.version"] == "2.0"
    message = json.loads(body["oslo.message"])
    assert message["event_type"] == "pm_order.order.accepted"
    assert message["priority"] == "INFO"
    assert message["publisher_id"] == "pm-order.host1"
    assert message["message_id"] == message_id(event)
    assert message["timestamp"] == "2026-12-07 09:30:00.000000"
    payload = message["payload"]
    assert payload["pm_order_object.name"] == "OrderPayload"
    assert payload["pm_order_object.version"] == "1.0"
    data = payload["pm_order_object.data"]
    assert data["order_id"] == 7
    assert data["state"] == "finished"
    assert data["actor"] == "bob"
    assert data["snids"] == ["SN-1", "SN-2"]
    assert data["log_position"] == 42


def test_the_message_id_is_the_same_each_time_an_event_is_announced() -> None:
    event = accepted()
    assert message_id(event) == message_id(event)
    assert message_id(event) != message_id(accepted())


def test_a_later_kind_of_event_is_named_after_its_class() -> None:
    class WarningCleared(Order.Event):
        pass

    assert action_of(WarningCleared.__new__(WarningCleared)) == "warning_cleared"


def test_the_transport_url_gives_the_broker_and_never_shows_its_password() -> None:
    settings = NotificationSettings.from_url(
        "rabbit://pm:s3cret-pw@mq.example:5673/cloud"
    )
    assert (settings.host, settings.port, settings.virtual_host) == (
        "mq.example",
        5673,
        "cloud",
    )
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in settings.shown_url
    assert settings.routing_key == "notifications.info"


@pytest.mark.parametrize(
    "url", ["amqp://pm:s3cret-pw@mq:5672/", "rabbit://pm:s3cret-pw@:5672/"]
)
def test_a_bad_transport_url_is_refused_without_showing_its_password(url: str) -> None:
    with pytest.raises(TransportUrlInvalid) as refused:
        NotificationSettings.from_url(url)
    assert "s3cret-pw" not in str(refused.value)
    with pytest.raises(ConfigError, match="PM_ORDER_TRANSPORT_URL") as config_error:
        Config.from_env({"PM_ORDER_TRANSPORT_URL": url})
    assert "s3cret-pw" not in str(config_error.value)


def test_notifications_are_off_without_a_transport_url() -> None:
    assert Config.from_env({}).notifications is None
    topic = Config.from_env(
        {
            "PM_ORDER_TRANSPORT_URL": "rabbit://u:p@h:5672/",
            "PM_ORDER_NOTIFICATION_TOPIC": "billing",
        }
    ).notifications
    assert topic is not None
    assert topic.routing_key == "billing.info"


def test_the_documented_consumer_is_the_example_the_tests_run() -> None:
    root = Path(__file__).resolve().parents[2]
    docs = (root / "docs" / "notifications.md").read_text()
    example = (root / "examples" / "notification_consumer.py").read_text()
    assert f"```python\n{example}```" in docs
