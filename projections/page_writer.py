"""The read models' tables, each described once by its row, and the one writer
that turns a page's changes into statements for either database.

A read model's fold says what each event changes: a row to insert, counts to add,
columns to update, or (for rows written before the page) a change whose columns
the database finds in another table's row. The writer sends each kind of change
to a table as one statement per page: PostgreSQL gets each column as one array
(`unnest`), one statement to plan and run whatever the number of rows; SQLite
runs the same statement once per row (`executemany`). Statements are built from
the table's description, never written twice.
"""

from __future__ import annotations

import types
from collections import defaultdict
from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from collections.abc import (
    Set as AbstractSet,
)
from dataclasses import dataclass, fields
from datetime import date
from functools import cache
from operator import attrgetter, itemgetter
from typing import (
    Annotated,
    Any,
    Final,
    Generic,
    NamedTuple,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from projections.database import Cursor, ViewDatabase, array_literal

R = TypeVar("R")

# A column stored as a 32-bit INTEGER (the default for `int` is BIGINT).
Int32 = Annotated[int, "INTEGER"]

_SQL_TYPES: Final = {int: "BIGINT", str: "TEXT", float: "DOUBLE PRECISION"}
# Python types held as another type's text (text compares as they do).
_AS_TEXT: Final[dict[Any, tuple[Callable[[Any], Any], Callable[[Any], Any]]]] = {
    date: (date.isoformat, date.fromisoformat),
}


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Column:
    field: str  # of the row
    name: str  # in the database
    sql_type: str
    nullable: bool
    # The value as the database holds it, and back (a day is TEXT, YYYY-MM-DD).
    stored: Callable[[Any], Any] = _same
    loaded: Callable[[Any], Any] = _same

    @property
    def array(self) -> str:
        """The cast of a parameter holding this column's values as one array."""
        return f"?::{self.sql_type.lower()}[]"


def _column(field: str, name: str, hint: Any) -> Column:
    nullable = False
    if get_origin(hint) in (Union, types.UnionType):
        kinds = [k for k in get_args(hint) if k is not type(None)]
        nullable, [hint] = len(kinds) < len(get_args(hint)), kinds
    if get_origin(hint) is Annotated:
        _, sql_type = get_args(hint)
        return Column(field, name, sql_type, nullable)
    if hint in _AS_TEXT:
        stored, loaded = _AS_TEXT[hint]
        if nullable:
            stored, loaded = _or_none(stored), _or_none(loaded)
        return Column(field, name, "TEXT", nullable, stored, loaded)
    return Column(field, name, _SQL_TYPES[hint], nullable)


def _or_none(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


class Table(Generic[R]):
    """A table described by its row (a dataclass, a field a column, in order):
    its name, its key, its indexes, and the statements that write it."""

    def __init__(
        self,
        name: str,
        row: type[R],
        *,
        key: Sequence[str],
        indexes: Sequence[str] = (),
        keep_first: bool = False,
        stored_as: Mapping[str, str] | None = None,
    ) -> None:
        hints = get_type_hints(row, include_extras=True)
        self.name = name
        self.row = row
        # A column per field, named as the field unless `stored_as` says otherwise
        # (a word the database reserves).
        self.columns = tuple(
            _column(f.name, (stored_as or {}).get(f.name, f.name), hints[f.name])
            for f in fields(row)  # type: ignore[arg-type]
        )
        self.fields = tuple(c.field for c in self.columns)
        self.names = tuple(c.name for c in self.columns)
        self.key = tuple(key)
        # The fields that `add` sums: every one outside the key.
        self.counted = tuple(n for n in self.fields if n not in self.key)
        self.indexes = tuple(indexes)
        # A row inserted again (a replayed event) is left as it was.
        self.keep_first = keep_first
        self._fields_of: Callable[[R], tuple[Any, ...]] = attrgetter(*self.fields)
        # Whether some column holds its value in another form (a day as text).
        self.converted = any(c.stored is not _same for c in self.columns)
        self.getters = [attrgetter(f) for f in self.fields]
        # A row's values as the database holds them, in column order.
        self.values: Callable[[R], tuple[Any, ...]] = (
            self._stored_values if self.converted else self._fields_of
        )
        self.key_of: Callable[[R], Any] = attrgetter(*self.key)
        self._by_field = {c.field: c for c in self.columns}
        self._in_order: dict[tuple[str, ...], tuple[str, ...]] = {}
        # Adds the counts of one row to another's (`add`): compiled once.
        self.sum_into: Callable[[R, R], None] = _summing(self.counted)
        # A table of one count after its key (a counter): its count, for `add`
        # to sum by key without keeping rows.
        self.count_of: Callable[[R], int] | None = None
        if len(self.counted) == 1 and self.fields == (*self.key, *self.counted):
            (count,) = self.counted
            self.count_of = attrgetter(count)

    def __repr__(self) -> str:
        return f"Table({self.name!r})"

    def column(self, field: str) -> Column:
        """The column of the row's `field`."""
        try:
            return self._by_field[field]
        except KeyError:
            raise ValueError(f"{self.name} has no column for {field!r}") from None

    def check(self, named: AbstractSet[str]) -> None:
        """ValueError unless every field `named` is one of the row's."""
        if not self._by_field.keys() >= named:
            for field in named:
                self.column(field)

    def in_order(self, named: tuple[str, ...]) -> tuple[str, ...]:
        """The fields `named`, in the row's order; ValueError if one is not the
        row's. (Checked once for each set of names: a page's changes repeat a few.)"""
        if (ordered := self._in_order.get(named)) is None:
            self.check(set(named))
            ordered = tuple(f for f in self.fields if f in named)
            self._in_order[named] = ordered
        return ordered

    def stored(self, named: Sequence[str], values: Sequence[Any]) -> Sequence[Any]:
        """The `values` of the fields `named`, as the database holds them."""
        if not self.converted:
            return values
        return [self.column(f).stored(v) for f, v in zip(named, values, strict=True)]

    def sql(self, fields: Iterable[str], prefix: str = "") -> list[str]:
        """The column names of `fields`, each after `prefix`."""
        return [prefix + self.column(f).name for f in fields]

    def ddl(self) -> Iterator[str]:
        """The statements that create the table and its indexes (idempotent)."""
        columns = ", ".join(
            f"{c.name} {c.sql_type}{'' if c.nullable else ' NOT NULL'}"
            for c in self.columns
        )
        yield (
            f"CREATE TABLE IF NOT EXISTS {self.name} ({columns},"
            f" PRIMARY KEY ({', '.join(self.key)}))"
        )
        yield from self.indexes

    @property
    def selected(self) -> str:
        """Every column, in the row's order, for a SELECT."""
        return ", ".join(self.names)

    def row_of(self, values: Sequence[Any]) -> R:
        """The row that a SELECT of `selected` read."""
        if self.converted:
            return self.row(
                *(c.loaded(v) for c, v in zip(self.columns, values, strict=True))
            )
        return self.row(*values)

    def _stored_values(self, row: R) -> tuple[Any, ...]:
        return tuple(self.stored(self.fields, self._fields_of(row)))


# Compared by identity: each is a module constant, used as a key on every change.
@dataclass(frozen=True, eq=False)
class Lookup:
    """Columns of a change that the database finds in another table's row, by
    that row's `by` column: for changes about rows written before the page, which
    the fold has not seen. Only the rows that meet `where` (a condition on the
    other row, `o`) make a change."""

    table: Table[Any]
    by: str
    # This table's column -> the other table's.
    columns: tuple[tuple[str, str], ...]
    where: str = ""
    # `where` of a row inserted in the same page (the writer looks it up there).
    keeps: Callable[[Any], bool] | None = None

    def found_in(self, changes: Changes, key: Any) -> dict[str, Any] | None:
        """The columns this lookup gives, from the row with `key` inserted in
        the page (None: not inserted in the page: the database looks it up);
        empty when that row does not meet `where`."""
        row = changes.inserted(self.table, key)
        if row is None:
            return None
        if self.keeps is not None and not self.keeps(row):
            return {}
        return {mine: getattr(row, theirs) for mine, theirs in self.columns}


class Changes:
    """What a page's events change, folded in log order: each row once."""

    def __init__(self) -> None:
        # Per table, by key: the rows to insert, the rows read for the fold, the
        # columns to set, the counts to add; per kind, table and lookup, the
        # changes that look up another table's row.
        self._inserts: defaultdict[Table[Any], dict[Any, Any]] = defaultdict(dict)
        self._found: defaultdict[Table[Any], dict[Any, Any]] = defaultdict(dict)
        self._updates: defaultdict[Table[Any], dict[Any, dict[str, Any]]] = defaultdict(
            dict
        )
        self._deletes: defaultdict[Table[Any], set[Any]] = defaultdict(set)
        self._adds: defaultdict[Table[Any], dict[Any, Any]] = defaultdict(dict)
        self._counts: defaultdict[Table[Any], dict[Any, int]] = defaultdict(dict)
        self._looked_up: defaultdict[
            tuple[str, Table[Any], Lookup], dict[tuple[Any, ...], dict[str, Any]]
        ] = defaultdict(dict)

    def insert(self, table: Table[R], row: R) -> None:
        """Insert `row` (the fold may change it until the page is written)."""
        self._inserts[table][table.key_of(row)] = row

    def delete(self, table: Table[Any], key: Any) -> None:
        """Delete the row with `key`: one this page inserts is not written at
        all, one written before the page is deleted (before the page's rows are
        inserted, so that a row deleted and then inserted again stays)."""
        if self._inserts[table].pop(key, None) is None:
            self._deletes[table].add(key)

    def inserted(self, table: Table[R], key: Any) -> R | None:
        """The row with `key` that this page inserts, if it does."""
        found: R | None = self._inserts[table].get(key)
        return found

    def found(self, table: Table[R], rows: Iterable[R]) -> None:
        """Rows written before the page, read for the fold (not written again)."""
        self._found[table].update((table.key_of(r), r) for r in rows)

    def known(self, table: Table[R], key: Any) -> R | None:
        """The row with `key` that this page inserts, or that was `found`."""
        if (row := self.inserted(table, key)) is not None:
            return row
        found: R | None = self._found[table].get(key)
        return found

    def add(self, table: Table[R], row: R) -> None:
        """Add the counts of `row` to those of the row with its key (inserted
        with them if there is none)."""
        if table.count_of is not None:  # one count, after the key: summed apart
            counts, key = self._counts[table], table.key_of(row)
            # (not a Counter: its missing keys cost a Python call each)
            counts[key] = counts.get(key, 0) + table.count_of(row)
            return
        rows = self._adds[table]
        key = table.key_of(row)
        if (summed := rows.get(key)) is None:
            rows[key] = row
        else:
            table.sum_into(summed, row)

    def update(
        self, table: Table[Any], where: Mapping[str, Any], **values: Any
    ) -> None:
        """Set `values` on the rows that match `where`: merged into the row, when
        `where` is its key and the page inserts it; else on the rows written
        before the page."""
        if tuple(where) == table.key:
            key = (
                next(iter(where.values())) if len(where) == 1 else tuple(where.values())
            )
            if (row := self._inserts[table].get(key)) is not None:
                for name, value in values.items():
                    setattr(row, name, value)
                return
        rows = self._updates[table]
        key = (tuple(where), tuple(where.values()))
        if (merged := rows.get(key)) is None:
            rows[key] = values
        else:
            merged.update(values)

    def add_through(
        self, table: Table[Any], lookup: Lookup, key: Any, **values: Any
    ) -> None:
        """`add`, with the columns of `lookup` taken from the other table's row
        whose `lookup.by` is `key` (merged here when the page inserts it)."""
        if (found := lookup.found_in(self, key)) is not None:
            if found:
                self.add(table, table.row(**found, **values))
            return
        rows = self._looked_up["add", table, lookup]
        given = (key, *map(values.get, table.key))
        if (summed := rows.get(given)) is None:
            rows[given] = values
            return
        for name in table.counted:
            if name in values:
                summed[name] += values[name]

    def insert_through(
        self, table: Table[Any], lookup: Lookup, key: Any, **values: Any
    ) -> None:
        """`insert`, with the columns of `lookup` taken from the other table's row
        whose `lookup.by` is `key` (nothing when there is no such row; merged
        here when the page inserts it)."""
        if (found := lookup.found_in(self, key)) is not None:
            if found:
                self.insert(table, table.row(**found, **values))
            return
        given = (key, *map(values.get, table.key))
        self._looked_up["insert", table, lookup][given] = values

    def delete_through(
        self, table: Table[Any], lookup: Lookup, key: Any, **values: Any
    ) -> None:
        """`delete` of a row written before the page, the columns of `lookup`
        of its key taken from the other table's row whose `lookup.by` is `key`
        (`values` give the rest of its key; merged here when the page inserts
        that row)."""
        if (found := lookup.found_in(self, key)) is not None:
            if found:
                named = {**found, **values}
                keys = tuple(named[name] for name in table.key)
                self.delete(table, keys[0] if len(keys) == 1 else keys)
            return
        given = (key, *map(values.get, table.key))
        self._looked_up["delete", table, lookup][given] = values

    def write(self, cursor: Cursor, db: ViewDatabase) -> None:
        """Write the page's changes through `cursor` (see `statements`)."""
        run(cursor, self.statements(db))

    def statements(self, db: ViewDatabase) -> list[Statement]:
        """One statement per kind of change to each table: rows first, then the
        updates and counts, then the changes that look up rows already written.
        Built apart from their running, so that a page can be folded and its
        statements built while the page before is being written. A change
        naming a field its table lacks is refused here (ValueError), before
        anything is written."""
        out: list[Statement] = []
        for table, keys in self._deletes.items():
            one_key = len(table.key) == 1
            deleted = [
                tuple(table.stored(table.key, (key,) if one_key else key))
                for key in keys
            ]
            out += _each(db, _delete(table, db.arrays), deleted)
        for table, rows in self._inserts.items():
            out += _rows(db, _insert(table, db.arrays), table, rows.values())
        for table, changed in self._updates.items():
            # Rows that set the same columns share a statement.
            shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Any]] = {}
            in_order: dict[tuple[str, ...], tuple[tuple[str, ...], _Values]] = {}
            for (where, keys), values in changed.items():
                names = tuple(values)
                if (known := in_order.get(names)) is None:
                    setting = table.in_order(names)
                    known = in_order[names] = (setting, _values_of(table, setting))
                setting, values_of = known
                params = values_of(values) + tuple(table.stored(where, keys))
                shapes.setdefault((setting, where), []).append(params)
            for (setting, where), params_of_rows in shapes.items():
                statement = _update(table, setting, where, db.arrays)
                out += _each(db, statement, params_of_rows)
        for table, summed in self._adds.items():
            out += _rows(db, _add(table, db.arrays), table, summed.values())
        for table, counts in self._counts.items():
            one_key = len(table.key) == 1
            counted = [
                (*table.stored(table.key, (key,) if one_key else key), n)
                for key, n in counts.items()
            ]
            out += _each(db, _add(table, db.arrays), counted)
        for (kind, table, lookup), changes in self._looked_up.items():
            found = {name for name, _ in lookup.columns}
            # A delete is given the rest of the row's key; the others, the rest
            # of its fields.
            of = table.key if kind == "delete" else table.fields
            given = tuple(n for n in of if n not in found)
            statement = _through(kind, table, lookup, given, db.arrays)
            looked_up: list[tuple[Any, ...]] = []
            values_of, right = _values_of(table, given), {given}
            for (key, *_), values in changes.items():
                if (names := tuple(values)) not in right:
                    if table.in_order(names) != given:
                        raise ValueError(
                            f"{table.name}: a change through {lookup.table.name}"
                            f" gives {', '.join(values)}, not {', '.join(given)}"
                        )
                    right.add(names)
                looked_up.append((*values_of(values), key))
            out += _each(db, statement, looked_up)
        return out


class Statement(NamedTuple):
    """A statement of a page, ready to run: with its parameters, or (`many`)
    once for each row of parameters."""

    sql: str
    params: Sequence[Any]
    many: bool = False


def run(cursor: Cursor, statements: Iterable[Statement]) -> None:
    """Run a page's `statements` through `cursor`, in order."""
    for statement in statements:
        if statement.many:
            cursor.executemany(statement.sql, statement.params)
        else:
            cursor.execute(statement.sql, statement.params)


_Values = Callable[[Mapping[str, Any]], tuple[Any, ...]]


def _values_of(table: Table[Any], named: tuple[str, ...]) -> _Values:
    """Reads the fields `named` from a change's values, as the database holds them."""
    if table.converted:
        return lambda values: tuple(table.stored(named, [values[n] for n in named]))
    if len(named) == 1:
        (name,) = named
        return lambda values: (values[name],)
    return itemgetter(*named)


def _summing(counted: tuple[str, ...]) -> Callable[[Any, Any], None]:
    if len(counted) == 1:
        (name,) = counted
        get = attrgetter(name)

        def sum_one(summed: Any, row: Any) -> None:
            setattr(summed, name, get(summed) + get(row))

        return sum_one

    def sum_each(summed: Any, row: Any) -> None:
        for name in counted:
            setattr(summed, name, getattr(summed, name) + getattr(row, name))

    return sum_each


def _rows(
    db: ViewDatabase, statement: str, table: Table[R], rows: Iterable[R]
) -> list[Statement]:
    """`statement` over whole rows of `table`."""
    if not db.arrays or table.converted:
        return _each(db, statement, map(table.values, rows))
    if not (rows := list(rows)):
        return []
    # Read column by column: no tuple per row to take apart again.
    columns = [list(map(get, rows)) for get in table.getters]
    return [Statement(db.sql(statement), list(map(array_literal, columns)))]


def _each(
    db: ViewDatabase, statement: str, rows: Iterable[tuple[Any, ...]]
) -> list[Statement]:
    """`statement` for each of `rows`: on PostgreSQL once, each column one array."""
    rows = list(rows)
    if not rows:
        return []
    if db.arrays:
        columns = zip(*rows, strict=True)
        return [Statement(db.sql(statement), [array_literal(c) for c in columns])]
    return [Statement(db.sql(statement), rows, many=True)]


def _on_conflict(table: Table[Any], add: bool) -> str:
    key = ", ".join(table.sql(table.key))
    if not add:
        return f" ON CONFLICT ({key}) DO NOTHING" if table.keep_first else ""
    sums = ", ".join(
        f"{n} = {table.name}.{n} + excluded.{n}" for n in table.sql(table.counted)
    )
    return f" ON CONFLICT ({key}) DO UPDATE SET {sums}"


def _values(columns: Sequence[Column], arrays: bool) -> str:
    if arrays:
        return f"SELECT * FROM unnest({', '.join(c.array for c in columns)})"
    return f"VALUES ({', '.join('?' * len(columns))})"


@cache
def _insert(table: Table[Any], arrays: bool) -> str:
    return (
        f"INSERT INTO {table.name} ({table.selected})"
        f" {_values(table.columns, arrays)}{_on_conflict(table, add=False)}"
    )


@cache
def _add(table: Table[Any], arrays: bool) -> str:
    # Each key once per statement: the page's counts are summed beforehand.
    return (
        f"INSERT INTO {table.name} ({table.selected})"
        f" {_values(table.columns, arrays)}{_on_conflict(table, add=True)}"
    )


@cache
def _delete(table: Table[Any], arrays: bool) -> str:
    keys = table.sql(table.key)
    if not arrays:
        return (
            f"DELETE FROM {table.name} WHERE {' AND '.join(f'{n} = ?' for n in keys)}"
        )
    columns = [table.column(f) for f in table.key]
    return (
        f"DELETE FROM {table.name} USING unnest({', '.join(c.array for c in columns)})"
        f" AS c ({', '.join(keys)})"
        f" WHERE {' AND '.join(f'{table.name}.{n} = c.{n}' for n in keys)}"
    )


@cache
def _update(
    table: Table[Any], setting: tuple[str, ...], where: tuple[str, ...], arrays: bool
) -> str:
    """The update of the fields `setting` of the rows matching `where` (the
    values in that order, per row)."""
    setting_sql, where_sql = table.sql(setting), table.sql(where)
    if not arrays:
        return (
            f"UPDATE {table.name} SET {', '.join(f'{n} = ?' for n in setting_sql)}"
            f" WHERE {' AND '.join(f'{n} = ?' for n in where_sql)}"
        )
    columns = [table.column(f) for f in (*setting, *where)]
    return (
        f"UPDATE {table.name} SET {', '.join(f'{n} = c.{n}' for n in setting_sql)}"
        f" FROM unnest({', '.join(c.array for c in columns)})"
        f" AS c ({', '.join(c.name for c in columns)})"
        f" WHERE {' AND '.join(f'{table.name}.{n} = c.{n}' for n in where_sql)}"
    )


@cache
def _through(
    kind: str, table: Table[Any], lookup: Lookup, given: tuple[str, ...], arrays: bool
) -> str:
    """The statement of `insert_through`, `add_through` or `delete_through`
    (`kind`): the given fields, then the other row's key, per change."""
    if kind == "delete":
        return _delete_through(table, lookup, given, arrays)
    add = kind == "add"
    other = lookup.table
    into = ", ".join(table.sql([*(f for f, _ in lookup.columns), *given]))
    found = other.sql((f for _, f in lookup.columns), prefix="o.")
    by = f"o.{other.column(lookup.by).name}"
    if not arrays:
        where = f" AND {lookup.where}" if lookup.where else ""
        return (
            f"INSERT INTO {table.name} ({into})"
            f" SELECT {', '.join([*found, *('?' * len(given))])}"
            f" FROM {other.name} o WHERE {by} = ?{where}{_on_conflict(table, add)}"
        )
    columns = [table.column(f) for f in given]

    def given_value(column: Column) -> str:
        # Summed, when counts of several changes land on one row (a row may be
        # changed only once per statement).
        if add and column.field in table.counted:
            return f"SUM(c.{column.name})::{column.sql_type.lower()}"
        return f"c.{column.name}"

    arrays_of = [*(c.array for c in columns), other.column(lookup.by).array]
    names = [*(c.name for c in columns), "looked_up_by"]
    grouped = ""
    if add:
        keys = [*found, *(f"c.{c.name}" for c in columns if c.field in table.key)]
        grouped = f" GROUP BY {', '.join(keys)}"
    return (
        f"INSERT INTO {table.name} ({into})"
        f" SELECT {', '.join([*found, *map(given_value, columns)])}"
        f" FROM unnest({', '.join(arrays_of)}) AS c ({', '.join(names)})"
        f" JOIN {other.name} o ON {by} = c.looked_up_by"
        f"{' WHERE ' + lookup.where if lookup.where else ''}{grouped}"
        f"{_on_conflict(table, add)}"
    )


def _delete_through(
    table: Table[Any], lookup: Lookup, given: tuple[str, ...], arrays: bool
) -> str:
    """The statement of `delete_through`: the given key fields, then the other
    row's key, per change."""
    other = lookup.table
    by = f"o.{other.column(lookup.by).name}"
    where = f" AND {lookup.where}" if lookup.where else ""
    if not arrays:
        # The looked-up columns as a row value, so the key's index finds the row.
        matched = [f"{n} = ?" for n in table.sql(given)]
        mine = table.sql(f for f, _ in lookup.columns)
        theirs = other.sql((f for _, f in lookup.columns), prefix="o.")
        return (
            f"DELETE FROM {table.name} WHERE {' AND '.join(matched)}"
            f" AND ({', '.join(mine)}) IN (SELECT {', '.join(theirs)}"
            f" FROM {other.name} o WHERE {by} = ?{where})"
        )
    found = [
        f"{table.name}.{table.column(f).name} = o.{other.column(o_f).name}"
        for f, o_f in lookup.columns
    ]
    columns = [table.column(f) for f in given]
    arrays_of = [*(c.array for c in columns), other.column(lookup.by).array]
    names = [*(c.name for c in columns), "looked_up_by"]
    matched = [f"{table.name}.{c.name} = c.{c.name}" for c in columns]
    return (
        f"DELETE FROM {table.name}"
        f" USING unnest({', '.join(arrays_of)}) AS c ({', '.join(names)})"
        f" JOIN {other.name} o ON {by} = c.looked_up_by"
        f" WHERE {' AND '.join([*matched, *found])}{where}"
    )
