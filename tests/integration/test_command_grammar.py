"""The command line's one grammar (cli/grammar.py), walked over every command,
and what a terminal gets that a pipe does not: progress and colour (tested under
a pseudo-terminal, through the installed `pm-order` script)."""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
from pathlib import Path

import pytest

from cli.grammar import NO_OUTPUT, walk
from cli.main import parser
from service.release import VERSION
from tests.integration.processes import PM_ORDER_SCRIPT
from tests.integration.processes import run_installed_pm_order as pm_order

EVERY_COMMAND = [(path, command) for path, command, _ in walk(parser()) if path]
LEAVES = [
    (path, command) for path, command in EVERY_COMMAND if command._subparsers is None
]


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path, _ in EVERY_COMMAND}
    assert {
        "serve",
        "worker",
        "db upgrade",
        "machines import",
        "machines list",
        "machines history",
        "orders show",
        "orders history",
        "projections status",
        "projections rebuild",
        "projections verify",
        "events export",
        "events import",
        "mail list",
        "mail retry",
        "report",
        "completion",
    } <= names


@pytest.mark.parametrize(
    ("path", "command"),
    EVERY_COMMAND,
    ids=lambda p: " ".join(p) if isinstance(p, tuple) else "",
)
def test_every_command_s_help_has_a_description_and_no_empty_default(
    path: tuple[str, ...], command: argparse.ArgumentParser
) -> None:
    text = command.format_help()
    assert command.description, f"pm-order {' '.join(path)} --help has no description"
    assert "(default: False)" not in text
    assert "(default: None)" not in text
    assert text.startswith(f"usage: pm-order {' '.join(path)}")


@pytest.mark.parametrize(
    ("path", "command"),
    LEAVES,
    ids=lambda p: " ".join(p) if isinstance(p, tuple) else "",
)
def test_every_command_takes_the_shared_options(
    path: tuple[str, ...], command: argparse.ArgumentParser
) -> None:
    text = " ".join(command.format_help().split())
    assert "--database-url URL" in text
    assert "--log-format {json,text}" in text
    if path[0] in NO_OUTPUT:
        return
    assert "-o FILE, --output FILE" in text
    assert "--json" in text
    assert "--tenant" not in text  # the old name works, and is not offered


def test_the_project_option_is_one_word_everywhere() -> None:
    for path, command in LEAVES:
        options = {o for action in command._actions for o in action.option_strings}
        if options & {"--project", "--tenant"}:
            assert {"--project", "--tenant"} <= options, path


def test_version_says_the_release(tmp_path: Path) -> None:
    result = pm_order("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"pm-order {VERSION}"


def test_an_unknown_option_shows_the_subcommand_s_usage(tmp_path: Path) -> None:
    result = pm_order("machines", "list", "--no-such-option", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: pm-order machines list ")
    assert (
        "pm-order machines list: error: unrecognized arguments: --no-such-option"
        in (result.stderr)
    )


def test_global_options_are_taken_after_the_subcommand_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    inventory = tmp_path / "in.csv"
    inventory.write_text("snid,project_id\nSN-1,p1\nSN-2,p2\n")
    imported = pm_order(
        "machines", "import", str(inventory), "--database-url", url, cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    listed = pm_order(
        "machines",
        "list",
        "--json",
        "--database-url",
        url,
        "--log-format",
        "text",
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("SN-") == 2
    # the top level's value stands when the subcommand gives none
    before = pm_order("--database-url", url, "machines", "list", "--json", cwd=tmp_path)
    assert before.stdout == listed.stdout


def test_tenant_still_works_and_warns_naming_project(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    (tmp_path / "in.csv").write_text("snid,project_id\nSN-1,p1\nSN-2,p2\n")
    assert (
        pm_order(
            "--database-url", url, "machines", "import", "in.csv", cwd=tmp_path
        ).returncode
        == 0
    )
    old = pm_order(
        "--database-url", url, "machines", "list", "--tenant", "p2", cwd=tmp_path
    )
    new = pm_order(
        "--database-url", url, "machines", "list", "--project", "p2", cwd=tmp_path
    )
    assert old.returncode == new.returncode == 0
    assert old.stdout == new.stdout
    assert "SN-2" in new.stdout
    assert "SN-1" not in new.stdout
    assert old.stderr == "pm-order: warning: --tenant is deprecated; use --project\n"
    assert new.stderr == ""


def test_output_goes_to_the_file_named_by_o(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    (tmp_path / "in.csv").write_text("snid,project_id\nSN-1,p1\n")
    assert (
        pm_order(
            "--database-url", url, "machines", "import", "in.csv", cwd=tmp_path
        ).returncode
        == 0
    )
    to_file = pm_order(
        "--database-url",
        url,
        "projections",
        "status",
        "--json",
        "-o",
        "status.jsonl",
        cwd=tmp_path,
    )
    to_stdout = pm_order(
        "--database-url", url, "projections", "status", "--json", cwd=tmp_path
    )
    assert to_file.returncode == 0, to_file.stderr
    assert to_file.stdout == ""
    written = (tmp_path / "status.jsonl").read_text()
    assert written.count("\n") == to_stdout.stdout.count("\n") > 0


def test_report_json_is_format_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    assert (
        pm_order("--database-url", url, "db", "upgrade", cwd=tmp_path).returncode == 0
    )
    flag = pm_order("--database-url", url, "report", "--json", cwd=tmp_path)
    formatted = pm_order(
        "--database-url", url, "report", "--format", "json", cwd=tmp_path
    )
    assert flag.returncode == 0, flag.stderr
    assert flag.stdout == formatted.stdout
    assert flag.stdout.startswith("{")


def test_a_re_import_says_nothing_was_new(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    (tmp_path / "in.csv").write_text("snid,project_id\nSN-1,p1\nSN-2,p1\nSN-3,p2\n")
    first = pm_order(
        "--database-url", url, "machines", "import", "in.csv", cwd=tmp_path
    )
    again = pm_order(
        "--database-url", url, "machines", "import", "in.csv", cwd=tmp_path
    )
    assert "3 new servers registered, 0 known already" in first.stdout
    assert "0 new servers registered, 3 known already" in again.stdout
    as_json = pm_order(
        "--database-url", url, "machines", "import", "in.csv", "--json", cwd=tmp_path
    )
    assert '"new": 0, "known": 3' in as_json.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_know_the_commands(tmp_path: Path, shell: str) -> None:
    result = pm_order("completion", shell, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in ("machines", "projections", "--database-url", "--project"):
        assert word in result.stdout
    if shell == "bash":
        checked = subprocess.run(
            ["bash", "-n"], input=result.stdout, text=True, check=False
        )
        assert checked.returncode == 0


# -- a terminal, and a pipe ----------------------------------------------------------


def on_a_terminal(*args: str, cwd: Path, **env: str) -> tuple[int, str]:
    """Run `pm-order ARGS` with a pseudo-terminal as its stdin, stdout and
    stderr; what it wrote there, and its exit status."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")}
    clean.pop("NO_COLOR", None)
    main, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(PM_ORDER_SCRIPT), *args],
        cwd=cwd,
        env={**clean, "TERM": "xterm", **env},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child's side is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    return process.wait(60), shown.decode(errors="replace")


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """An event log of 600 servers' registrations, exported to a file."""
    url = f"sqlite:///{tmp_path}/source.sqlite3"
    rows = "".join(f"SN-{n:05d},p{n % 3}\n" for n in range(600))
    (tmp_path / "in.csv").write_text("snid,project_id\n" + rows)
    made = pm_order("--database-url", url, "machines", "import", "in.csv", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    export = pm_order(
        "--database-url", url, "events", "export", "-o", "events.jsonl", cwd=tmp_path
    )
    assert export.returncode == 0, export.stderr
    return tmp_path / "events.jsonl"


def test_imports_and_exports_show_progress_on_a_terminal(
    tmp_path: Path, exported: Path
) -> None:
    target = f"sqlite:///{tmp_path}/target.sqlite3"
    status, shown = on_a_terminal(
        "--database-url", target, "events", "import", str(exported), cwd=tmp_path
    )
    assert status == 0, shown
    assert "\rwriting" in shown.replace("\x1b[1m", "").replace("\x1b[0m", "")
    assert "100% 600/600 events" in shown
    assert "600 events of 600 orders and servers imported" in shown

    status, shown = on_a_terminal(
        "--database-url", target, "events", "export", "-o", "again.jsonl", cwd=tmp_path
    )
    assert status == 0, shown
    assert "600/600 events" in shown

    (tmp_path / "more.csv").write_text("snid,project_id\nSN-NEW,p1\n")
    status, shown = on_a_terminal(
        "--database-url", target, "machines", "import", "more.csv", cwd=tmp_path
    )
    assert status == 0, shown
    plain = shown.replace("\x1b[1m", "").replace("\x1b[2m", "").replace("\x1b[0m", "")
    assert "registering 1 servers: " in plain
    assert "updating the views: " in plain
    assert "1 new servers registered, 0 known already" in plain


def test_a_pipe_gets_no_progress_and_no_colour(tmp_path: Path, exported: Path) -> None:
    target = f"sqlite:///{tmp_path}/target.sqlite3"
    result = pm_order(
        "--database-url", target, "events", "import", str(exported), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "\r" not in result.stdout
    assert "\x1b" not in result.stdout
    assert result.stdout.startswith("600 events of 600 orders and servers imported")
    (tmp_path / "more.csv").write_text("snid,project_id\nSN-NEW,p1\n")
    imported = pm_order(
        "--database-url", target, "machines", "import", "more.csv", cwd=tmp_path
    )
    assert imported.stderr == ""
    assert "\x1b" not in imported.stdout


def test_colour_on_a_terminal_only_and_never_with_no_color(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/none.sqlite3"
    status, coloured = on_a_terminal(
        "--database-url", missing, "machines", "list", cwd=tmp_path
    )
    assert status == 2
    assert "\x1b[31mpm-order:\x1b[0m --database-url: no store at" in coloured
    status, plain = on_a_terminal(
        "--database-url", missing, "machines", "list", cwd=tmp_path, NO_COLOR="1"
    )
    assert status == 2
    assert "\x1b" not in plain
    piped = pm_order("--database-url", missing, "machines", "list", cwd=tmp_path)
    assert piped.stderr.startswith("pm-order: --database-url: no store at")
