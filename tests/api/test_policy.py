"""The policy (api/policy.py): OpenStack's personas by default, a policy file that
overrides them while the service runs, the generated sample kept current, and the
admin routes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Final

import pytest
from oslo_policy import generator

from api.policy import Policy
from service.config import Config, ConfigError
from tests.api.conftest import ONE_BACKEND, MakeApi
from tests.api.given import decided, ordered
from tests.conftest import TOKENS, Api

ROOT: Final = Path(__file__).resolve().parents[2]
SAMPLE: Final = ROOT / "examples" / "policy.yaml.sample"

PERSONA_TOKENS: Final = [
    *TOKENS,
    {
        "token": "tok-rita",
        "user_name": "rita",
        "project_id": "proj-b",
        "roles": ["reader"],
    },
    {"token": "tok-roleless", "user_name": "old", "project_id": "proj-b"},
    {"token": "tok-none", "user_name": "none", "project_id": "proj-b", "roles": []},
    {
        "token": "tok-ada",
        "user_name": "ada",
        "project_id": "proj-c",
        "roles": ["admin"],
    },
]


@pytest.fixture
def persona_tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": PERSONA_TOKENS}))
    return path


async def get(api: Api, token: str, path: str, **params: str) -> tuple[int, Any]:
    response = await api.client.get(
        f"{api.prefix}{path}", headers=api.headers(token), params=params
    )
    return response.status, await response.json()


def test_the_sample_policy_in_the_repository_is_the_generated_one(
    tmp_path: Path,
) -> None:
    # given: what oslopolicy-sample-generator writes through the entry point
    written = tmp_path / "policy.yaml.sample"
    # when
    generator.generate_sample(
        ["--namespace", "pm-order", "--output-file", str(written)]
    )
    # then
    assert SAMPLE.read_text() == written.read_text(), (
        "run: .venv/bin/oslopolicy-sample-generator --namespace pm-order "
        "--output-file examples/policy.yaml.sample"
    )


@ONE_BACKEND
async def test_a_reader_reads_and_a_member_orders_and_decides(
    make_api: MakeApi, persona_tokens: Path
) -> None:
    # given: the default policy, no approver roles
    api = await make_api(tokens_file=persona_tokens)
    order = await ordered(api, "SN-A-001")
    head = api.head()
    # when a reader of the destination tries to decide, then lists
    status, body = await api.decide(
        "tok-rita", "proj-b", {"order_ids": [order], "accept": 1}
    )
    listed, _ = await api.list("tok-rita", "proj-b", type=0)
    # then
    assert status == 403
    assert body["reason"] == "Forbidden"
    assert "pm_order:order:decide" in body["msg"]
    assert listed == 200
    assert api.head() == head
    # and a member of the destination decides
    await decided(api, [order], accept=True, token="tok-bill")


@ONE_BACKEND
async def test_a_token_listed_without_roles_is_a_member_and_one_with_none_is_nothing(
    make_api: MakeApi, persona_tokens: Path
) -> None:
    api = await make_api(tokens_file=persona_tokens)
    order = await ordered(api, "SN-A-001")
    head = api.head()
    refused, _ = await api.decide(
        "tok-none", "proj-b", {"order_ids": [order], "accept": 1}
    )
    not_listed, _ = await api.list("tok-none", "proj-b")
    assert (refused, not_listed) == (403, 403)
    assert api.head() == head
    await decided(api, [order], accept=False, token="tok-roleless")


@ONE_BACKEND
async def test_a_changed_policy_file_changes_the_answer_without_a_restart(
    make_api: MakeApi, persona_tokens: Path, tmp_path: Path
) -> None:
    # given: a policy file that changes nothing yet
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("{}\n")
    api = await make_api(tokens_file=persona_tokens, policy_file=policy_file)
    body = {"snids": "SN-B-001", "dest_project": "proj-a"}
    status, _ = await api.request("tok-rita", "proj-b", body)
    assert status == 403
    # when: the operator lets readers order (a newer mtime: the file is re-read)
    policy_file.write_text('"pm_order:order:request": "rule:project_reader"\n')
    later = time.time() + 5
    os.utime(policy_file, (later, later))
    status, answer = await api.request("tok-rita", "proj-b", body)
    # then
    assert status == 200, answer


def test_a_policy_file_that_does_not_exist_stops_the_service_at_start() -> None:
    with pytest.raises(ConfigError, match="PM_ORDER_POLICY_FILE"):
        Config.from_env({"PM_ORDER_POLICY_FILE": "/nonexistent/policy.yaml"})


def test_a_policy_file_that_is_not_yaml_stops_the_service_at_start(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "policy.yaml"
    broken.write_text('"pm_order:order:list": [unclosed\n')
    with pytest.raises(ConfigError, match="is not a policy file"):
        Policy(broken)


@ONE_BACKEND
async def test_an_administrator_lists_every_projects_unfinished_orders_oldest_first(
    make_api: MakeApi, persona_tokens: Path
) -> None:
    # given: unfinished orders of two projects, and a decided one
    api = await make_api(tokens_file=persona_tokens)
    first = await ordered(api, "SN-A-001")
    decided_one = await ordered(api, "SN-A-002")
    second = await ordered(
        api, "SN-B-001", dest="proj-a", token="tok-bob", tenant="proj-b"
    )
    third = await ordered(api, "SN-A-003", dest="proj-c")
    await decided(api, [decided_one], accept=True)
    # when
    status, body = await get(
        api, "tok-ada", "/pm_order_admin/unfinished_orders", limit="2"
    )
    status_rest, rest = await get(
        api,
        "tok-ada",
        "/pm_order_admin/unfinished_orders",
        marker=str(body["next_marker"]),
    )
    # then
    assert (status, status_rest) == (200, 200)
    assert [o["id"] for o in body["orders"]] == [first, second]
    assert [o["id"] for o in rest["orders"]] == [third]
    assert body["total_count"] == 3
    assert "next_marker" not in rest


@ONE_BACKEND
async def test_an_administrator_reads_a_servers_owner_and_history(
    make_api: MakeApi, persona_tokens: Path
) -> None:
    # given
    api = await make_api(tokens_file=persona_tokens)
    order = await ordered(api, "SN-A-001")
    await decided(api, [order], accept=True)
    # when
    status, body = await get(api, "tok-ada", "/pm_order_admin/servers/SN-A-001")
    missing, _ = await get(api, "tok-ada", "/pm_order_admin/servers/SN-NONE")
    invalid, _ = await get(api, "tok-ada", "/pm_order_admin/servers/bad%20snid")
    refused, _ = await get(api, "tok-alice", "/pm_order_admin/servers/SN-A-001")
    # then
    assert status == 200
    assert (body["project"], body["order_id"]) == ("proj-b", None)
    assert [s["event"] for s in body["history"]] == [
        "registered",
        "reserved",
        "transferred",
    ]
    assert body["history"][-1]["from_project"] == "proj-a"
    assert (missing, invalid, refused) == (404, 400, 403)
