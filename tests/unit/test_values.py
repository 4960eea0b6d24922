"""Input shapes and their limits: serial numbers, projects, addresses, order ids."""

from __future__ import annotations

from typing import Any

import pytest

from domain import values
from domain.exceptions import InvalidInput

VALID_NAMES = ["a", "Z", "0", "SN-A-001", "a.b_c-d", "x" * 64]
INVALID_NAMES = [
    "",
    "x" * 65,
    "a b",
    " a",
    "a ",
    "a,b",
    "a/b",
    "a:b",
    "ä",
    "a\n",
    "a\x00",
    "a@b",
]


# -- serial numbers and projects -----------------------------------------------------


@pytest.mark.parametrize("snid", VALID_NAMES)
def test_a_snid_of_1_to_64_allowed_characters_is_accepted(snid: str) -> None:
    assert values.check_snid(snid) == snid


@pytest.mark.parametrize("snid", INVALID_NAMES)
def test_a_snid_that_is_empty_too_long_or_has_other_characters_is_refused(
    snid: str,
) -> None:
    with pytest.raises(InvalidInput, match="invalid snid"):
        values.check_snid(snid)


@pytest.mark.parametrize("project_id", VALID_NAMES)
def test_a_project_id_of_1_to_64_allowed_characters_is_accepted(
    project_id: str,
) -> None:
    assert values.check_project(project_id) == project_id


@pytest.mark.parametrize("project_id", INVALID_NAMES)
def test_an_invalid_project_id_is_refused_naming_the_field(project_id: str) -> None:
    with pytest.raises(InvalidInput, match="invalid dest_project"):
        values.check_project(project_id, "dest_project")


def test_a_long_invalid_value_is_cut_short_in_the_message() -> None:
    with pytest.raises(InvalidInput) as refused:
        values.check_snid("x" * 10_000 + " ")
    assert len(str(refused.value)) < 200
    assert "..." in str(refused.value)


# -- lists of serial numbers ----------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, values.MAX_SNIDS_PER_ORDER])
def test_up_to_200_distinct_snids_are_accepted_in_the_order_given(count: int) -> None:
    snids = [f"SN-{n:03d}" for n in reversed(range(count))]
    assert values.check_snids(snids) == snids


def test_more_than_200_snids_are_refused() -> None:
    snids = [f"SN-{n:03d}" for n in range(values.MAX_SNIDS_PER_ORDER + 1)]
    with pytest.raises(InvalidInput, match="201 servers: at most 200"):
        values.check_snids(snids)


@pytest.mark.parametrize("snids", [[], [""]])
def test_no_snid_at_all_is_refused(snids: list[str]) -> None:
    with pytest.raises(InvalidInput, match="at least one server"):
        values.check_snids(snids)


def test_repeated_snids_are_refused_naming_each_repeat_once() -> None:
    with pytest.raises(InvalidInput, match=r"'snids' repeats SN-1, SN-2$"):
        values.check_snids(["SN-1", "SN-2", "SN-1", "SN-2", "SN-1", "SN-3"])


def test_one_invalid_snid_among_valid_ones_is_refused() -> None:
    with pytest.raises(InvalidInput, match="invalid snid 'bad snid'"):
        values.check_snids(["SN-1", "bad snid"])


# -- mail addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["a@example.com", "first.last+tag@sub.example.co", "x_y-z@a-b.example", "1@2.cn"],
)
def test_a_valid_mail_address_is_accepted(address: str) -> None:
    assert values.check_mailto([address]) == [address]


@pytest.mark.parametrize(
    "address",
    [
        "plain",
        "@example.com",
        "a@",
        "a@example",
        "a b@example.com",
        "a@exa mple.com",
        "a@@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@example.com\n",
        "<a@example.com>",
        "a@example.com,b@example.com",
        "x" * 65 + "@example.com",
    ],
)
def test_an_invalid_mail_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidInput, match="invalid address"):
        values.check_mailto([address])


@pytest.mark.parametrize(
    "address", [".a@example.com", "a.@example.com", "a..b@example.com"]
)
def test_a_local_part_with_a_stray_dot_is_refused(address: str) -> None:
    with pytest.raises(InvalidInput, match="invalid address"):
        values.check_mailto([address])


def test_an_address_longer_than_254_characters_is_refused() -> None:
    address = "x" * 64 + "@" + ("a" * 63 + ".") * 3 + "com"
    assert len(address) > 254
    with pytest.raises(InvalidInput, match="invalid address"):
        values.check_mailto([address])


@pytest.mark.parametrize("addresses", [[], [""], ["", ""]])
def test_no_mail_address_means_nobody(addresses: list[str]) -> None:
    assert values.check_mailto(addresses) == []


def test_up_to_20_mail_addresses_are_accepted() -> None:
    addresses = [f"u{n}@example.com" for n in range(values.MAX_MAILTO)]
    assert values.check_mailto(addresses) == addresses


def test_more_than_20_mail_addresses_are_refused() -> None:
    addresses = [f"u{n}@example.com" for n in range(values.MAX_MAILTO + 1)]
    with pytest.raises(InvalidInput, match="21 addresses: at most 20"):
        values.check_mailto(addresses)


def test_repeated_mail_addresses_are_dropped_keeping_the_first_order() -> None:
    given = ["b@example.com", "a@example.com", "b@example.com"]
    assert values.check_mailto(given) == ["b@example.com", "a@example.com"]


# -- order ids -------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, values.MAX_ORDERS_PER_DECISION])
def test_up_to_200_distinct_positive_order_ids_are_accepted(count: int) -> None:
    order_ids = list(range(count, 0, -1))
    assert values.check_order_ids(order_ids) == order_ids


def test_more_than_200_order_ids_are_refused() -> None:
    with pytest.raises(InvalidInput, match="201 orders: at most 200"):
        values.check_order_ids(list(range(1, values.MAX_ORDERS_PER_DECISION + 2)))


def test_no_order_id_at_all_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one order"):
        values.check_order_ids([])


@pytest.mark.parametrize("order_ids", [[0], [-1], [3, 0]])
def test_an_order_id_below_one_is_refused(order_ids: list[int]) -> None:
    with pytest.raises(InvalidInput, match="positive integers"):
        values.check_order_ids(order_ids)


def test_repeated_order_ids_are_refused_naming_the_repeats() -> None:
    with pytest.raises(InvalidInput, match=r"'order_ids' repeats 2$"):
        values.check_order_ids([1, 2, 3, 2])


# -- splitting list fields -------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "parts"),
    [
        ("a,b,c", ["a", "b", "c"]),
        (" a , b ,c ", ["a", "b", "c"]),
        ("a", ["a"]),
        ("", []),
        ("   ", []),
        ("a,,b", ["a", "", "b"]),
        (["a", " b "], ["a", "b"]),
        ([], []),
    ],
)
def test_a_comma_separated_string_or_an_array_splits_into_trimmed_parts(
    given: str | list[object], parts: list[str]
) -> None:
    assert values.split_list(given, "snids") == parts


@pytest.mark.parametrize("given", [5, None, {"a": 1}, 1.5, True])
def test_a_list_field_that_is_neither_string_nor_array_is_refused(given: Any) -> None:
    with pytest.raises(InvalidInput, match="'snids' must be a comma-separated string"):
        values.split_list(given, "snids")


@pytest.mark.parametrize("given", [[1], ["a", None], [["a"]]])
def test_an_array_with_other_than_strings_is_refused(given: list[object]) -> None:
    with pytest.raises(InvalidInput, match="'snids' must hold strings only"):
        values.split_list(given, "snids")
