"""PostgreSQL's text form of arrays: how a page's columns are sent, one array each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

_NUMBERS_OR_NONE: Final = frozenset({int, float, type(None)})


def array_literal(values: Sequence[Any]) -> str:
    """PostgreSQL's text form of an array of ints, floats, strings and None.

    Built here rather than by the driver, which adapts each element on its own and
    takes longer than the server takes to read the whole array. Floats are written
    as `repr` writes them: the shortest text that reads back as the same float.
    """
    kinds = set(map(type, values))
    if kinds == {str}:
        joined = '","'.join(values)
        if "\\" not in joined and joined.count('"') == 2 * (len(values) - 1):
            return '{"' + joined + '"}'  # nothing in the strings to escape
    elif kinds <= _NUMBERS_OR_NONE:  # repr(None) is "None"; no number's has it
        return "{" + ",".join(map(repr, values)).replace("None", "NULL") + "}"
    return "{" + ",".join(map(_element, values)) + "}"


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):  # an int to Python, not to PostgreSQL
        raise TypeError("booleans are not written as array elements")
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"{type(value).__name__} is not written as an array element")
