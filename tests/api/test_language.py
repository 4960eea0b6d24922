"""The REST contract's strings never change with PM_ORDER_LANGUAGE: clients match
on `add success`, `Order processing success`, the error messages and reasons."""

from __future__ import annotations

import pytest

from language import ENGLISH, Language
from tests.api.conftest import MakeApi

LANGUAGES = pytest.mark.parametrize(
    "language", [ENGLISH, Language.named("zh_CN")], ids=lambda x: x.code
)


@LANGUAGES
async def test_answers_say_the_contract_words_in_every_language(
    make_api: MakeApi, language: Language
) -> None:
    # given
    api = await make_api(language=language)
    # when
    added = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-A-001", "dest_project": "proj-b"}
    )
    decided = await api.decide("tok-bob", "proj-b", {"order_ids": [1], "accept": 1})
    unknown_server = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-X-001", "dest_project": "proj-b"}
    )
    no_such_order = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [99], "accept": 1}
    )
    bad_body = await api.request("tok-alice", "proj-a", {"snids": ""})
    # then the very answers of an English deployment
    assert added == (200, {"code": 200, "msg": "add success", "order_id": 1})
    assert decided == (200, {"code": 200, "msg": "Order processing success"})
    assert unknown_server == (
        400,
        {
            "code": 400,
            "msg": "servers not owned by project proj-a: SN-X-001",
            "reason": "Bad Request",
        },
    )
    assert no_such_order == (
        404,
        {
            "code": 404,
            "msg": "orders not found for project proj-b: 99",
            "reason": "Not Found",
        },
    )
    assert bad_body == (
        400,
        {"code": 400, "msg": "'dest_project' is required", "reason": "Bad Request"},
    )
