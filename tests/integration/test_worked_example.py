"""The docs' worked example (docs/read-models.md: a field added to the lists),
followed on a copy of the code and started on an existing database of each kind:
it serves the new field with no SQL written by hand."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final

from domain.service import OrderService
from service.store import open_store
from tests.integration.processes import ApiServer, wait_until

ROOT: Final = Path(__file__).resolve().parents[2]
EXAMPLE: Final = ROOT / "docs" / "read-models.md"
PACKAGES: Final = ("domain", "projections", "api", "service", "mail", "cli", "language")
# The example's three steps: (file, the line it follows, the lines it adds).
STEPS: Final = (
    (
        "projections/order_lists.py",
        "    snids: str\n",
        "    server_count: Int32\n",
    ),
    (
        "projections/order_lists.py",
        '                    snids=",".join(event.snids),\n',
        "                    server_count=len(event.snids),\n",
    ),
    (
        "api/responses.py",
        '        "warning_count": order.warning_count,\n',
        '        "server_count": order.server_count,\n',
    ),
)


def followed(tree: Path) -> Path:
    """A copy of the code with the example's steps made."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tree / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    for file, after, added in STEPS:
        path = tree / file
        text = path.read_text(encoding="utf-8")
        assert text.count(after) == 1, f"{file} no longer has {after!r} once"
        path.write_text(text.replace(after, after + added), encoding="utf-8")
    return tree


def listed(server: ApiServer, token: str, project: str) -> list[dict[str, object]]:
    request = urllib.request.Request(
        f"{server.base_url}/mana_api/pm_order/{project}?type=3",
        headers={"X-Auth-Token": token, "Sp-Agent": "scloudm"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return list(json.loads(response.read())["orders"])


def ready(server: ApiServer) -> bool:
    try:
        with urllib.request.urlopen(f"{server.base_url}/readyz", timeout=2):
            return True
    except urllib.error.HTTPError:
        return False


def test_the_docs_show_each_step_of_the_worked_example() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for _file, _after, added in STEPS:
        assert added.strip() in text


def test_the_worked_example_serves_its_field_from_an_existing_database(
    database_url: str, tokens_path: Path, tmp_path: Path
) -> None:
    # Given: a database this release made and used (an order of two servers)
    store = open_store(database_url)
    try:
        service = OrderService(store.app)
        service.register_servers([("SN-1", "proj-a"), ("SN-2", "proj-a")])
        service.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=["SN-1", "SN-2"],
            dest_project="proj-b",
            mailto=[],
        )
        store.catch_up()
    finally:
        store.close()
    # When: the example's code, and nothing else, starts on it
    tree = followed(tmp_path / "tree")
    env = {
        "PYTHONPATH": str(tree),
        "PM_ORDER_DATABASE_URL": database_url,
        "PM_ORDER_TOKENS_FILE": str(tokens_path),
    }
    # (run from the copy: a module run with -m finds its working directory first)
    server = ApiServer(env, tmp_path / "serve.log", api_only=False, cwd=tree)
    try:
        wait_until(lambda: ready(server), "the new read models caught up", 60)
        # Then: the lists answer with the new field, filled from the log
        (order,) = listed(server, "tok-alice", "proj-a")
        assert order["server_count"] == 2
        assert order["snids"] == "SN-1,SN-2"
    finally:
        server.stop()
