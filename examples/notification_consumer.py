"""Print each pm-order notification once, as a line of JSON.

A consumer of the announcements with oslo.messaging's own notification listener,
as any OpenStack service reads notifications. pm-order publishes at least once:
after a crash or a broker failure a notification may come again, with the same
`message_id`, so a consumer drops repeats (this one remembers the ids it saw in
memory; a real one keeps them as long as a repeat may come, e.g. with the
changes it made, in one transaction).

    PM_ORDER_TRANSPORT_URL=rabbit://guest:guest@127.0.0.1:5672/ \
        .venv/bin/python examples/notification_consumer.py

PM_ORDER_NOTIFICATION_TOPIC names the topic (default: notifications). Stop it
with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from typing import Any

with warnings.catch_warnings():
    # eventlet, which oslo.messaging imports, warns of its own deprecation.
    warnings.simplefilter("ignore")
    import oslo_messaging
    from oslo_config import cfg


def main() -> None:
    url = os.environ["PM_ORDER_TRANSPORT_URL"]
    topic = os.environ.get("PM_ORDER_NOTIFICATION_TOPIC") or "notifications"
    conf = cfg.ConfigOpts()
    conf([], project="pm-order-consumer", default_config_files=[])
    transport = oslo_messaging.get_notification_transport(conf, url=url)
    # pm-order's queue and exchange are durable (PM_ORDER_NOTIFICATION_DURABLE).
    conf.set_override("amqp_durable_queues", True, group="oslo_messaging_rabbit")
    seen: set[str] = set()

    class Endpoint:
        filter_rule = oslo_messaging.NotificationFilter(event_type=r"^pm_order\.")

        def info(
            self,
            ctxt: dict[str, Any],
            publisher_id: str,
            event_type: str,
            payload: dict[str, Any],
            metadata: dict[str, Any],
        ) -> Any:
            if metadata["message_id"] in seen:
                print(f"repeat {metadata['message_id']}", file=sys.stderr, flush=True)
                return oslo_messaging.NotificationResult.HANDLED
            seen.add(metadata["message_id"])
            data = payload["pm_order_object.data"]
            line = {
                "message_id": metadata["message_id"],
                "timestamp": metadata["timestamp"],
                "publisher_id": publisher_id,
                "event_type": event_type,
                "payload_version": payload["pm_order_object.version"],
                **data,
            }
            print(json.dumps(line), flush=True)
            return oslo_messaging.NotificationResult.HANDLED

    listener = oslo_messaging.get_notification_listener(
        transport,
        [oslo_messaging.Target(topic=topic)],
        [Endpoint()],
        executor="threading",
    )
    # One thread handles them: in the order they come, each order's in its order.
    conf.set_override("executor_thread_pool_size", 1)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    listener.start()
    print("listening", file=sys.stderr, flush=True)
    stopping.wait()
    listener.stop()
    listener.wait()
    transport.cleanup()


if __name__ == "__main__":
    main()
