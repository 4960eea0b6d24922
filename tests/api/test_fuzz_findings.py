"""What schemathesis found, kept fixed: the document and the app agree on each case.

The document's patterns for the string forms of `snids`, `order_ids` and `mailto`
must accept exactly what the app accepts (schemathesis sends what a pattern
allows and expects it accepted, and what it forbids and expects it refused).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import pytest

from api.handlers import OPENAPI_PATH
from domain import values
from domain.exceptions import InvalidInput
from tests.api.conftest import ONE_BACKEND
from tests.api.given import listed, ordered, state_of
from tests.conftest import Api

DOCUMENT: Final = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
SCHEMAS: Final = DOCUMENT["components"]["schemas"]


def string_pattern(schema: str, field: str) -> str:
    (text,) = [
        form
        for form in SCHEMAS[schema]["properties"][field]["oneOf"]
        if form.get("type") == "string"
    ]
    return str(text["pattern"])


def app_accepts(check: Any, value: str, field: str) -> bool:
    try:
        check(values.split_list(value, field))
    except InvalidInput:
        return False
    return True


def order_ids_accepted(value: str) -> bool:
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
        return False
    try:
        values.check_order_ids([int(p) for p in parts])
    except InvalidInput:
        return False
    return True


@pytest.mark.parametrize(
    "snids",
    [
        "A",
        " A , B ",
        "AB,A",
        "A,AB",
        "A,A",
        "A, B ,A",
        "X,A,B,A",
        "\nA\n,B,\nA",
        "A,,B",
    ],
)
def test_the_documents_snids_pattern_accepts_what_the_app_accepts(snids: str) -> None:
    pattern = string_pattern("TransferRequest", "snids")

    assert bool(re.search(pattern, snids)) == app_accepts(
        values.check_snids, snids, "snids"
    )


@pytest.mark.parametrize(
    "order_ids", ["1", "1,2", "12,1", "0", "00", "007", " 010,10 ", "1,1", "3,1,2,1"]
)
def test_the_documents_order_ids_pattern_accepts_what_the_app_accepts(
    order_ids: str,
) -> None:
    pattern = string_pattern("Decision", "order_ids")

    assert bool(re.search(pattern, order_ids)) == order_ids_accepted(order_ids)


@pytest.mark.parametrize(
    "mailto",
    [
        "",
        " ",
        "a@example.com",
        "a@example.com, b.c@example.org",
        "a@example.com,,b@example.org",
        "w",
        "a@b",
        ".a@example.com",
        "a..b@example.com",
        "a@-example.com",
        "\u00fb@example.com",
        f"{'a' * 65}@example.com",
        ",".join(f"a{n}@example.com" for n in range(20)),
        ",".join(f"a{n}@example.com" for n in range(21)),
    ],
)
def test_the_documents_mailto_pattern_accepts_what_the_app_accepts(mailto: str) -> None:
    pattern = string_pattern("TransferRequest", "mailto")

    assert bool(re.search(pattern, mailto)) == app_accepts(
        values.check_mailto, mailto, "mailto"
    )


@ONE_BACKEND
async def test_order_ids_may_be_integral_json_numbers(api: Api) -> None:
    order_id = await ordered(api, ["SN-A-001"])

    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [float(order_id)], "accept": 1}
    )

    assert status == 200, body
    assert state_of(await listed(api, "tok-bob", "proj-b"), order_id) == "finished"


@ONE_BACKEND
async def test_order_ids_that_are_fractions_are_refused_and_change_nothing(
    api: Api,
) -> None:
    order_id = await ordered(api, ["SN-A-001"])
    head = api.head()

    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [order_id + 0.5], "accept": 1}
    )

    assert status == 400, body
    assert api.head() == head
    assert state_of(await listed(api, "tok-bob", "proj-b"), order_id) == "unfinished"
