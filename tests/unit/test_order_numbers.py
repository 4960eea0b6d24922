"""Order numbers: searched in the store (one process) or counted by it (many)."""

from __future__ import annotations

from domain.order_numbers import (
    SEARCHES_AFTER_CONFLICT,
    CountedOrderNumbers,
    SearchedOrderNumbers,
    last_taken,
)


class Store:
    """Numbers taken so far (1..n, in sequence), and how often it was asked."""

    def __init__(self, taken: int = 0) -> None:
        self.last = taken
        self.asked = 0

    def taken(self, number: int) -> bool:
        self.asked += 1
        return number <= self.last


class Counter:
    """A store's counter (as a PostgreSQL sequence counts)."""

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def take_order_numbers(self, count: int) -> list[int]:
        first, self.last = self.last + 1, self.last + count
        return list(range(first, self.last + 1))

    def advance_order_numbers(self, last: int) -> None:
        self.last = max(self.last, last)


def test_the_last_taken_number_is_found_by_galloping_and_bisecting() -> None:
    for last in (0, 1, 2, 37, 1000):
        store = Store(taken=last)
        assert last_taken(store.taken) == last
        assert store.asked <= 2 * max(last, 1).bit_length() + 2


def test_the_first_number_is_searched_for_in_the_store() -> None:
    store = Store(taken=37)
    numbers = SearchedOrderNumbers(store.taken)
    assert numbers.take(2) == [38, 39]
    assert store.asked > 0


def test_after_its_own_save_the_next_number_is_known_without_asking() -> None:
    store = Store(taken=5)
    numbers = SearchedOrderNumbers(store.taken)
    assert numbers.take(3) == [6, 7, 8]
    store.last = 8  # this process stored 6..8
    numbers.stored([6, 7, 8])
    asked = store.asked
    assert numbers.take(1) == [9]
    assert store.asked == asked


def test_after_a_conflict_the_store_is_asked_again_for_a_while() -> None:
    store = Store(taken=3)
    numbers = SearchedOrderNumbers(store.taken)
    numbers.stored([3])
    store.last = 10  # another process stored 4..10
    assert numbers.take(1) == [4]  # a guess: saving it conflicts
    numbers.conflicted([4])
    for expected in range(11, 11 + SEARCHES_AFTER_CONFLICT):
        asked = store.asked
        assert numbers.take(1) == [expected]
        assert store.asked > asked
        store.last = expected
        numbers.stored([expected])
    asked = store.asked
    assert numbers.take(1) == [11 + SEARCHES_AFTER_CONFLICT]
    assert store.asked == asked


def test_counted_numbers_come_from_the_counter_without_asking_the_store() -> None:
    store, counter = Store(taken=0), Counter()
    numbers = CountedOrderNumbers(counter, store.taken)
    assert numbers.take(3) == [1, 2, 3]
    assert numbers.take(0) == []
    assert numbers.take(2) == [4, 5]
    assert store.asked == 0


def test_a_conflict_on_a_server_leaves_the_counter_as_it_is() -> None:
    store, counter = Store(taken=3), Counter(last=3)
    numbers = CountedOrderNumbers(counter, store.taken)
    tried = numbers.take(2)
    numbers.conflicted(tried)  # the numbers are free: the conflict was elsewhere
    assert numbers.take(1) == [6]  # 4 and 5 are gaps, as an auto-increment leaves


def test_a_counter_behind_the_store_moves_past_the_numbers_taken() -> None:
    # given orders 1..40 stored without the counter (an older version's writes)
    store, counter = Store(taken=40), Counter(last=3)
    numbers = CountedOrderNumbers(counter, store.taken)
    # when a save with the counter's numbers conflicts
    numbers.conflicted(numbers.take(2))
    # then the counter continues after the last number taken
    assert numbers.take(1) == [41]
