"""Transfer requests arriving together are saved together, each judged alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from domain.exceptions import (
    DomainError,
    InvalidInput,
    ServersAlreadyOrdered,
    ServersNotOwned,
    StoreUnavailable,
)
from domain.group_commit import MAX_BATCH
from domain.service import OrderService, Written
from projections.database import SQLiteViews
from service.store import Store
from tests.conftest import INVENTORY


def queued_together(
    service: OrderService, requests: list[dict[str, Any]]
) -> list[Written | DomainError]:
    """Run `requests` in threads that all queue before any batch is taken."""
    outcomes: list[Written | DomainError | None] = [None] * len(requests)

    def run(i: int) -> None:
        try:
            outcomes[i] = service.request_transfer(**requests[i])
        except DomainError as error:
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    with service._transfers.held():  # no batch is taken while every request queues
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while service._transfers.queued() < len(requests):
            assert time.monotonic() < deadline, "the requests never all queued"
            time.sleep(0.001)
    for thread in threads:
        thread.join(10)
    assert all(o is not None for o in outcomes)
    return outcomes  # type: ignore[return-value]


def counting_saves(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the application's real saves (each is one transaction)."""
    saves: list[int] = []
    real_save: Callable[..., Any] = store.app.save

    def save(*args: Any, **kwargs: Any) -> Any:
        saves.append(len(args))
        return real_save(*args, **kwargs)

    monkeypatch.setattr(store.app, "save", save)
    return saves


def request(snid: str, source_project: str = "proj-a") -> dict[str, Any]:
    return {
        "source_project": source_project,
        "user": "u",
        "snids": [snid],
        "dest_project": "proj-c",
        "mailto": [],
    }


def test_requests_queued_together_are_saved_in_one_transaction(
    store: Store, service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.register_servers(INVENTORY)
    saves = counting_saves(store, monkeypatch)
    outcomes = queued_together(service, [request(f"SN-A-{n:03d}") for n in range(1, 9)])
    assert len(saves) == 1
    assert sorted(o.order_id for o in outcomes if isinstance(o, Written)) == list(
        range(1, 9)
    )


def test_one_refused_request_does_not_sink_its_batch(
    store: Store, service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.register_servers(INVENTORY)
    outcomes = queued_together(
        service,
        [request("SN-A-001"), request("SN-B-001"), request("SN-A-002")],
    )
    refused = [o for o in outcomes if isinstance(o, DomainError)]
    assert len(refused) == 1
    assert isinstance(refused[0], ServersNotOwned)
    assert sorted(o.order_id for o in outcomes if isinstance(o, Written)) == [1, 2]


def test_the_same_server_asked_twice_in_one_batch_goes_to_one_order(
    store: Store, service: OrderService
) -> None:
    service.register_servers(INVENTORY)
    outcomes = queued_together(service, [request("SN-A-001") for _ in range(5)])
    won = [o for o in outcomes if isinstance(o, Written)]
    lost = [o for o in outcomes if isinstance(o, DomainError)]
    assert [w.order_id for w in won] == [1]
    assert len(lost) == 4
    assert all(isinstance(e, ServersAlreadyOrdered) for e in lost)
    assert all("SN-A-001 (order 1)" in str(e) for e in lost)
    assert service.head() == len(INVENTORY) + 2  # one Requested, one Reserved


# -- requests queued without a waiting thread (the API's way) -------------------------


def queued_later(
    service: OrderService, requests: list[dict[str, Any]]
) -> list[Written | DomainError]:
    """Queue `requests` for the committer thread, all before any batch is taken."""
    with service._transfers.held():  # no batch is taken while every request queues
        futures = [service.request_transfer_later(**r) for r in requests]
    outcomes: list[Written | DomainError] = []
    for future in futures:
        error = future.exception(timeout=10)
        if error is None:
            outcomes.append(future.result())
        else:
            assert isinstance(error, DomainError)
            outcomes.append(error)
    return outcomes


def test_requests_queued_for_the_committer_are_saved_in_one_transaction(
    store: Store, service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.register_servers(INVENTORY)
    saves = counting_saves(store, monkeypatch)
    outcomes = queued_later(
        service,
        [request("SN-A-001"), request("SN-B-001"), request("SN-A-002")],
    )
    assert len(saves) == 1
    assert isinstance(outcomes[1], ServersNotOwned)
    assert [o.order_id for o in outcomes if isinstance(o, Written)] == [1, 2]


def test_more_requests_than_a_batch_holds_all_get_their_outcome(
    store: Store, service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [(f"SN-{n:03d}", "proj-a") for n in range(MAX_BATCH + 6)]
    service.register_servers(rows)
    saves = counting_saves(store, monkeypatch)
    outcomes = queued_later(service, [request(snid) for snid, _ in rows])
    assert len(saves) == 2
    assert [o.order_id for o in outcomes if isinstance(o, Written)] == list(
        range(1, len(rows) + 1)
    )


def test_a_request_checked_invalid_is_refused_before_it_queues(
    service: OrderService,
) -> None:
    with pytest.raises(InvalidInput):
        service.request_transfer_later(**{**request("SN-A-001"), "dest_project": ""})
    assert service._transfers.queued() == 0


def test_a_store_failure_fails_every_request_of_the_batch(
    store: Store, service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.register_servers(INVENTORY)

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("the database went away")

    monkeypatch.setattr(store.app, "save", unavailable)
    outcomes = queued_later(service, [request("SN-A-001"), request("SN-A-002")])
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    # and the committer carries on with the next requests
    monkeypatch.undo()
    [written] = queued_later(service, [request("SN-A-001")])
    assert isinstance(written, Written)
    assert service.order(written.order_id or 0).snids == ["SN-A-001"]
    # searched numbers start again at 1; counted ones skip those the failed
    # batch took (a gap, as an auto-increment leaves)
    assert written.order_id == (1 if isinstance(store.views, SQLiteViews) else 3)


def test_synchronous_and_queued_requests_share_the_numbers(
    service: OrderService,
) -> None:
    service.register_servers(INVENTORY)
    first = service.request_transfer(**request("SN-A-001"))
    second = service.request_transfer_later(**request("SN-A-002")).result(timeout=10)
    third = service.request_transfer(**request("SN-A-003"))
    assert [first.order_id, second.order_id, third.order_id] == [1, 2, 3]
