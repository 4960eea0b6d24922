"""`pm-order projections generations` and `pm-order db finish-upgrade`, run as
an operator would: the read models' generations listed, and the ones no process
uses any more dropped."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import psycopg
from psycopg.sql import SQL, Identifier

from projections.generations import generation_of, generation_schema
from service.release import VERSION
from service.store import (
    generation_path,
    postgres_settings,
    read_models,
    sqlite_path,
)
from tests.integration.processes import run_pm_order as pm_order

OLDER = "0ld0000a"  # the generation of a release that no process runs any more
LONG_AGO = time.time() - 86_400


def generations(database_url: str, cwd: Path) -> list[dict[str, object]]:
    result = pm_order(
        "--database-url",
        database_url,
        "projections",
        "generations",
        "--json",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def made(database_url: str, cwd: Path) -> None:
    """This release makes the store (`db upgrade`: a read-only command makes none)."""
    result = pm_order("--database-url", database_url, "db", "upgrade", cwd=cwd)
    assert result.returncode == 0, result.stderr


def servers(database_url: str, cwd: Path) -> list[str]:
    result = pm_order(
        "--database-url", database_url, "machines", "list", "--json", cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["snid"] for line in result.stdout.splitlines()]


def left_by_an_older_release(database_url: str, cwd: Path) -> Path | str:
    """Give the store an older generation, unseen for a day: its tables (a
    schema, a file) and its registration. Where they are."""
    if database_url.startswith("sqlite"):
        store = sqlite_path(database_url)
        if not store.is_absolute():
            store = cwd / store
        older: Path | str = generation_path(store, OLDER)
        assert isinstance(older, Path)
        with closing(sqlite3.connect(older)) as db, db:
            db.execute("CREATE TABLE order_lists_orders (id BIGINT PRIMARY KEY)")
        with closing(sqlite3.connect(store)) as db, db:
            db.execute(
                "INSERT INTO pm_order_generations VALUES (?, '0.1.9', ?, ?, ?)",
                (OLDER, LONG_AGO, LONG_AGO, LONG_AGO),
            )
        return older
    schema = str(postgres_settings(database_url).schema)
    older = generation_schema(schema, OLDER)
    with psycopg.connect(database_url.split("?")[0], autocommit=True) as db:
        db.execute(SQL("CREATE SCHEMA {}").format(Identifier(older)))
        db.execute(
            SQL("CREATE TABLE {}.order_lists_orders (id BIGINT PRIMARY KEY)").format(
                Identifier(older)
            )
        )
        db.execute(
            SQL(
                "INSERT INTO {}.pm_order_generations VALUES (%s, '0.1.9', %s, %s, %s)"
            ).format(Identifier(schema)),
            (OLDER, LONG_AGO, LONG_AGO, LONG_AGO),
        )
    return older


def still_there(database_url: str, older: Path | str) -> bool:
    if isinstance(older, Path):
        return older.exists()
    with psycopg.connect(database_url.split("?")[0]) as db:
        row = db.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (older,)
        ).fetchone()
    return bool(row and row[0])


def test_generations_lists_this_releases_read_models_as_caught_up(
    database_url: str, tmp_path: Path
) -> None:
    # given: a store this release made
    made(database_url, tmp_path)
    assert servers(database_url, tmp_path) == []
    # when
    (listed,) = generations(database_url, tmp_path)
    # then
    assert listed["generation"] == generation_of(read_models())
    assert listed["release"] == VERSION
    assert listed["this_release"] is True
    assert listed["caught_up_at"] is not None


def test_finishing_an_upgrade_drops_the_read_models_no_process_uses(
    database_url: str, tmp_path: Path
) -> None:
    # given: this release's store, with an older release's generation beside it
    made(database_url, tmp_path)
    assert servers(database_url, tmp_path) == []
    older = left_by_an_older_release(database_url, tmp_path)
    assert {g["generation"] for g in generations(database_url, tmp_path)} == {
        generation_of(read_models()),
        OLDER,
    }
    # when
    result = pm_order(
        "--database-url", database_url, "db", "finish-upgrade", cwd=tmp_path
    )
    # then: the older generation is gone, tables and registration; this one serves
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"dropped the read models of {OLDER}"]
    assert not still_there(database_url, older)
    assert [g["generation"] for g in generations(database_url, tmp_path)] == [
        generation_of(read_models())
    ]
    assert servers(database_url, tmp_path) == []
    # and a second run finds nothing more to drop
    again = pm_order(
        "--database-url", database_url, "db", "finish-upgrade", cwd=tmp_path
    )
    assert again.stdout.splitlines() == ["no older read models to drop"]


def test_finishing_an_upgrade_keeps_read_models_seen_lately(
    database_url: str, tmp_path: Path
) -> None:
    # given: an older generation whose processes were seen a day ago
    made(database_url, tmp_path)
    assert servers(database_url, tmp_path) == []
    older = left_by_an_older_release(database_url, tmp_path)
    # when: the operator says processes gone for two days are gone
    result = pm_order(
        "--database-url",
        database_url,
        "db",
        "finish-upgrade",
        "--idle",
        "48h",
        cwd=tmp_path,
    )
    # then: it is kept
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["no older read models to drop"]
    assert still_there(database_url, older)


def test_after_a_rollback_the_newer_releases_read_models_are_dropped_by_name(
    database_url: str, tmp_path: Path
) -> None:
    # given: this release's read models, no process of it running (rolled back;
    # none seen for longer than the operator's --idle)
    made(database_url, tmp_path)
    assert servers(database_url, tmp_path) == []
    own = generation_of(read_models())
    if database_url.startswith("sqlite"):
        where: Path | str = generation_path(sqlite_path(database_url), own)
    else:
        where = generation_schema(str(postgres_settings(database_url).schema), own)
    assert still_there(database_url, where)
    # when: the operator names them
    result = pm_order(
        "--database-url",
        database_url,
        "db",
        "finish-upgrade",
        "--generation",
        own,
        "--idle",
        "1ms",
        cwd=tmp_path,
    )
    # then: they are gone
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"dropped the read models of {own}"]
    assert not still_there(database_url, where)
