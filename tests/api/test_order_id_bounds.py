"""An order id has the same bounds in both forms of 'order_ids' (1 to 18 digits),
and an error echoes at most a bounded excerpt of the request (issue 26, finding
7). The real app on both stores: nothing is written by a refused decision."""

from __future__ import annotations

from typing import Any, Final

import pytest

from api.errors import MAX_MESSAGE_CHARS
from domain.values import MAX_ORDER_ID, ORDER_IDS_OUT_OF_RANGE
from tests.conftest import Api

BOUNDS: Final = ORDER_IDS_OUT_OF_RANGE


async def decided(api: Api, order_ids: Any) -> tuple[int, dict[str, Any], int]:
    """(status, answer, size of the answer's body) of proj-b deciding `order_ids`."""
    response = await api.client.put(
        api.url("proj-b"),
        headers=api.headers("tok-bob"),
        json={"order_ids": order_ids, "accept": 1},
    )
    raw = await response.read()
    return response.status, await response.json(), len(raw)


@pytest.mark.parametrize(
    "order_ids",
    [
        [MAX_ORDER_ID + 1],
        [10**4000 - 1],
        [10**4000 - 1, *range(2, 201)],
        [1e300],
    ],
    ids=["19 digits", "4000 digits", "4000 digits among 200", "1e300"],
)
async def test_an_order_id_past_18_digits_is_400_in_the_array_form(
    api: Api, order_ids: list[Any]
) -> None:
    # given
    head = api.head()
    # when
    status, answer, size = await decided(api, order_ids)
    # then
    assert status == 400, answer
    assert answer["msg"] == BOUNDS
    assert size < 2 * MAX_MESSAGE_CHARS
    assert api.head() == head


@pytest.mark.parametrize(
    ("largest", "status"), [(MAX_ORDER_ID, 404), (MAX_ORDER_ID + 1, 400)]
)
async def test_both_forms_of_order_ids_have_the_same_bounds(
    api: Api, largest: int, status: int
) -> None:
    # when
    as_array = await decided(api, [largest])
    as_string = await decided(api, str(largest))
    # then
    assert (as_array[0], as_string[0]) == (status, status), (as_array, as_string)


async def test_an_error_echoes_at_most_a_bounded_excerpt_of_the_request(
    api: Api,
) -> None:
    # given 200 ids of 18 digits, none of them an order
    order_ids = [MAX_ORDER_ID - n for n in range(200)]
    head = api.head()
    # when
    status, answer, size = await decided(api, order_ids)
    # then
    assert status == 404, answer
    assert answer["msg"].startswith("orders not found for project proj-b: ")
    assert answer["msg"].endswith("more characters)")
    assert len(answer["msg"]) < MAX_MESSAGE_CHARS + 50
    assert size < 2 * MAX_MESSAGE_CHARS
    assert api.head() == head
