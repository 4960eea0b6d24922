"""Order numbers: the next free one, asked of the store only when not known."""

from __future__ import annotations

from domain.order_numbers import SEARCHES_AFTER_CONFLICT, OrderNumbers


class Store:
    """Numbers taken so far (1..n, in sequence), and how often it was asked."""

    def __init__(self, taken: int = 0) -> None:
        self.last = taken
        self.asked = 0

    def taken(self, number: int) -> bool:
        self.asked += 1
        return number <= self.last


def test_the_first_number_is_searched_for_in_the_store() -> None:
    store = Store(taken=37)
    numbers = OrderNumbers(store.taken)
    assert numbers.next() == 38
    assert store.asked > 0


def test_after_its_own_save_the_next_number_is_known_without_asking() -> None:
    store = Store(taken=5)
    numbers = OrderNumbers(store.taken)
    assert numbers.next() == 6
    store.last = 8  # this process stored 6..8
    numbers.used_up_to(8)
    asked = store.asked
    assert numbers.next() == 9
    assert store.asked == asked


def test_after_a_conflict_the_store_is_asked_again_for_a_while() -> None:
    store = Store(taken=3)
    numbers = OrderNumbers(store.taken)
    numbers.used_up_to(3)
    store.last = 10  # another process stored 4..10
    assert numbers.next() == 4  # a guess: saving it conflicts
    numbers.forget()
    for expected in range(11, 11 + SEARCHES_AFTER_CONFLICT):
        asked = store.asked
        assert numbers.next() == expected
        assert store.asked > asked
        store.last = expected
        numbers.used_up_to(expected)
    asked = store.asked
    assert numbers.next() == 11 + SEARCHES_AFTER_CONFLICT
    assert store.asked == asked
