"""What the service logs never holds a token, valid or not."""

from __future__ import annotations

import logging

import pytest

from service.config import Limits
from tests.api.conftest import ONE_BACKEND, MakeApi

pytestmark = ONE_BACKEND

UNKNOWN_TOKEN = "tok-unknown-9f2c41"


async def test_no_token_is_ever_logged(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = await make_api(limits=Limits(rate_per_second=1 / 3600, rate_burst=2))
    order = {"snids": "SN-A-001", "dest_project": "proj-b"}
    # Every kind of answer a token can meet: success, 401, 400 (tenant), 404,
    # 409 and 429.
    carol = {"snids": "SN-C-001", "dest_project": "proj-a"}
    calls = [
        ("POST", "proj-a", "tok-alice", order),
        ("GET", "proj-a", UNKNOWN_TOKEN, None),
        ("GET", "proj-a", "tok-bob", None),
        ("PUT", "proj-b", "tok-bob", {"order_ids": "99", "accept": 1}),
        ("POST", "proj-c", "tok-carol", carol),
        ("POST", "proj-c", "tok-carol", carol),
        ("POST", "proj-c", "tok-carol", carol),
        ("GET", "proj-a", "tok-alice", None),
    ]
    statuses = []
    for method, tenant, token, body in calls:
        response = await api.client.request(
            method, api.url(tenant), headers=api.headers(token), json=body
        )
        statuses.append(response.status)
    assert statuses == [200, 401, 400, 404, 200, 409, 429, 200]
    assert caplog.records  # the access log, at least
    logged = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for record in caplog.records
    )
    for token in ("tok-alice", "tok-bob", "tok-carol", UNKNOWN_TOKEN):
        assert token not in logged
