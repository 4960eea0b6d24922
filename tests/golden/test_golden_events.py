"""HEAD reads every event every release wrote, and still writes what its own
release's golden file holds (tests/golden/make_golden.py says how each was made).

During a rolling upgrade the event log is shared: a release reads everything the
previous one wrote, and the previous one (still serving, or started again by a
rollback) reads what this one writes. A change of the stored format fails
`test_head_writes_its_golden_file_byte_for_byte` until it is made on purpose.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from api.app import create_app
from domain.event_kinds import ORDER_EVENTS, SERVER_EVENTS
from domain.order import Order
from domain.server import Server
from projections.server_ownership import ServerOwnership
from service.config import Config
from service.release import VERSION
from service.store import Store
from tests.conftest import FakeClock
from tests.golden.make_golden import golden_path, stored_events

GOLDEN: Final = Path(__file__).resolve().parent
FILES: Final = sorted(GOLDEN.glob("*.json"))
# The releases that must have a golden file: every one users ran, and this one.
RELEASES: Final = ("0.1.0", VERSION)


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 12, 1, hour, minute, tzinfo=UTC)


# The scenario's events as HEAD's domain sees them, whichever release wrote them:
# (event class, attributes that must be decoded so), in the log's order.
EXPECTED: Final[list[tuple[type[Any], dict[str, Any]]]] = [
    *(
        (Server.Registered, {"snid": snid, "project_id": project, "at": at(9, 0)})
        for snid, project in [
            *((f"SN-A-{n}", "proj-a") for n in range(1, 5)),
            *((f"SN-B-{n}", "proj-b") for n in range(1, 3)),
            ("SN-C-1", "proj-c"),
        ]
    ),
    (
        Order.Requested,
        {
            "number": 1,
            "snids": ["SN-A-1", "SN-A-2"],
            "resource_project": "proj-a",
            "dest_project": "proj-b",
            "user": "alice",
            "mailto": ["ops@example.com", "jurgen@example.com"],
            "at": at(9, 1),
        },
    ),
    (Server.Reserved, {"snid": "SN-A-1", "order_id": 1, "at": at(9, 1)}),
    (Server.Reserved, {"snid": "SN-A-2", "order_id": 1, "at": at(9, 1)}),
    (
        Order.Requested,
        {
            "number": 2,
            "snids": ["SN-A-3"],
            "resource_project": "proj-a",
            "dest_project": "proj-c",
            "user": "alice",
            "mailto": [],
            "at": at(9, 2),
        },
    ),
    (Server.Reserved, {"snid": "SN-A-3", "order_id": 2, "at": at(9, 2)}),
    (
        Order.Requested,
        {
            "number": 3,
            "snids": ["SN-B-1"],
            "resource_project": "proj-b",
            "dest_project": "proj-a",
            "user": "zoë",
            "mailto": ["b-team@example.com"],
            "at": at(9, 3),
        },
    ),
    (Server.Reserved, {"snid": "SN-B-1", "order_id": 3, "at": at(9, 3)}),
    (
        Order.Requested,
        {
            "number": 4,
            "snids": ["SN-A-4"],
            "resource_project": "proj-a",
            "dest_project": "proj-b",
            "user": "alice",
            "mailto": [],
            "at": at(9, 4),
        },
    ),
    (Server.Reserved, {"snid": "SN-A-4", "order_id": 4, "at": at(9, 4)}),
    (
        Order.Accepted,
        {"number": 1, "by": "bob", "at": at(9, 14), "state": "finished"},
    ),
    *(
        (
            Server.Transferred,
            {
                "snid": snid,
                "order_id": 1,
                "from_project": "proj-a",
                "to_project": "proj-b",
                "at": at(9, 14),
            },
        )
        for snid in ("SN-A-1", "SN-A-2")
    ),
    (
        Order.Rejected,
        {"number": 2, "by": "carol", "at": at(9, 15), "state": "refused"},
    ),
    (Server.Released, {"snid": "SN-A-3", "order_id": 2, "at": at(9, 15)}),
    (Order.WarningRaised, {"number": 3, "count": 1, "at": at(10, 15)}),
    (Order.WarningRaised, {"number": 3, "count": 2, "at": at(11, 15)}),
]


def golden(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def records(path: Path) -> list[StoredEvent]:
    """A golden file's events as the store keeps them."""
    return [
        StoredEvent(
            originator_id=UUID(e["originator_id"]),
            originator_version=e["originator_version"],
            topic=e["topic"],
            state=e["state"].encode("utf-8"),
        )
        for e in golden(path)["events"]
    ]


def test_every_release_has_its_golden_file() -> None:
    missing = [r for r in RELEASES if not golden_path(r).exists()]
    assert not missing, (
        f"no golden events for {', '.join(missing)}: make them with "
        "`.venv/bin/python tests/golden/make_golden.py --release COMMIT` (the "
        "release's commit; HEAD for this one) and commit the file"
    )
    assert {golden(p)["release"] for p in FILES} >= set(RELEASES)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_head_decodes_every_event_of_every_release(store: Store, path: Path) -> None:
    # When: HEAD's mapper reads each event as that release stored it
    decoded = [store.app.mapper.to_domain_event(r) for r in records(path)]
    # Then: each is the event the scenario wrote, with its attributes
    assert [type(e) for e in decoded] == [kind for kind, _ in EXPECTED]
    for event, (_, attributes) in zip(decoded, EXPECTED, strict=True):
        assert {k: getattr(event, k) for k in attributes} == attributes, event


def test_the_newest_golden_file_has_every_kind_of_event_head_writes() -> None:
    kinds = {r.topic for r in records(golden_path(VERSION))}
    every = {
        f"{k.__module__}:{k.__qualname__}" for k in (*ORDER_EVENTS, *SERVER_EVENTS)
    }
    assert kinds == every, (
        f"kinds of event that {VERSION}'s golden file lacks: {every - kinds}: add "
        "them to make_golden.py's scenario (and to EXPECTED here), then make the "
        "file again"
    )


def test_head_writes_its_golden_file_byte_for_byte(tmp_path: Path) -> None:
    # When: HEAD's code runs the golden scenario
    written = stored_events(tmp_path)
    # Then: it stores what this release's golden file says, byte for byte
    expected = golden(golden_path(VERSION))["events"]
    assert written == expected, (
        f"HEAD no longer stores events as tests/golden/{VERSION}.json says: the "
        "stored format changed. Events outlive releases and are shared by two "
        "releases during a rolling upgrade, so: (1) the previous release must "
        "read what this one writes (or write the new format only once switched "
        "on after the whole cluster runs this release); (2) HEAD must read every "
        "older golden file (an upcaster where a field changed); (3) if this "
        f"release is unreleased, make {VERSION}.json again with `.venv/bin/python "
        "tests/golden/make_golden.py --release HEAD`; if it was released, raise "
        "the version in setup.cfg first, so that its file is kept. Say it in "
        "CHANGELOG.md."
    )


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_head_projects_every_release_s_events(
    aiohttp_client: Any, store: Store, config: Config, path: Path
) -> None:
    # Given: the release's events in a fresh store, projected by HEAD
    store.app.recorder.insert_events(records(path))
    store.catch_up()
    # When: the projects list their orders over HTTP, as clients do
    client = await aiohttp_client(create_app(config, store=store, clock=FakeClock()))
    try:
        # (it serves once it has found its read models caught up: /readyz says)
        deadline = time.monotonic() + 10
        while (await client.get("/readyz")).status != 200:
            assert time.monotonic() < deadline, await (
                await client.get("/readyz")
            ).text()
            await asyncio.sleep(0.05)

        async def listed(token: str, project: str, kind: int) -> list[Any]:
            response = await client.get(
                f"/mana_api/pm_order/{project}",
                params={"type": str(kind)},
                headers={"Sp-Agent": "scloudm", "X-Auth-Token": token},
            )
            assert response.status == 200
            body = await response.json()
            return [
                (o["id"], o["state"], o["snids"], o["user"]) for o in body["orders"]
            ]

        # Then: each order is in its lists, in its state
        assert await listed("tok-alice", "proj-a", 3) == [
            (4, "unfinished", "SN-A-4", "alice"),
            (2, "refused", "SN-A-3", "alice"),
            (1, "finished", "SN-A-1,SN-A-2", "alice"),
        ]
        assert await listed("tok-alice", "proj-a", 0) == [
            (3, "unfinished", "SN-B-1", "zoë")
        ]
        assert await listed("tok-bob", "proj-b", 0) == [
            (4, "unfinished", "SN-A-4", "alice")
        ]
        assert await listed("tok-bob", "proj-b", 1) == [
            (1, "finished", "SN-A-1,SN-A-2", "alice")
        ]
        assert await listed("tok-carol", "proj-c", 2) == [
            (2, "refused", "SN-A-3", "alice")
        ]
    finally:
        await client.close()
    # and each server is its owner's, held by the order that holds it
    owners = {
        s.snid: (s.project, s.order_id) for s in ServerOwnership.servers(store.views)
    }
    assert owners == {
        "SN-A-1": ("proj-b", None),
        "SN-A-2": ("proj-b", None),
        "SN-A-3": ("proj-a", None),
        "SN-A-4": ("proj-a", 4),
        "SN-B-1": ("proj-b", 3),
        "SN-B-2": ("proj-b", None),
        "SN-C-1": ("proj-c", None),
    }
