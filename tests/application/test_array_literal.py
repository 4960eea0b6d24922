"""Columns of rows sent to PostgreSQL as arrays (`unnest`) read back as sent."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest

from projections.database import array_literal
from tests.conftest import POSTGRES_URL, need_postgres

pytestmark = pytest.mark.postgres

COLUMNS: list[tuple[str, list[Any]]] = [
    ("text", ["plain", "proj-a", "ops@a.example.com,ops@b.example.com"]),
    (
        "text",
        [
            'a "quoted" word',
            "back\\slash",
            '\\"',
            "",
            "NULL",
            "{braces}",
            "a,b",
            " spaced ",
            "ünïcødé ✓",
            "tab\there\nnewline",
        ],
    ),
    ("text", ["x", None, "NULL", None]),
    ("text", [None, None]),
    ("bigint", [1, 0, -1, 2**62, -(2**62)]),
    ("bigint", [None, 5, None]),
    ("integer", [0, 3]),
    (
        "double precision",
        [0.1, 1e-7, 1764233400.123456, 1 / 3, -0.0, 1e300, 2.5, 7, math.pi],
    ),
    ("double precision", [None, 1.5]),
]


@pytest.mark.parametrize(("kind", "values"), COLUMNS)
def test_an_array_literal_reads_back_as_the_values_it_was_made_of(
    kind: str, values: list[Any]
) -> None:
    need_postgres()
    with psycopg.connect(POSTGRES_URL) as connection:
        rows = connection.execute(
            f"SELECT * FROM unnest(%s::{kind}[]) WITH ORDINALITY",  # kind is ours
            (array_literal(values),),
        ).fetchall()
    assert [value for value, _ in rows] == values


def test_booleans_are_refused_rather_than_written_as_numbers() -> None:
    with pytest.raises(TypeError):
        array_literal([True, 1])
