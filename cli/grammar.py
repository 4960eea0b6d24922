"""The command line's one grammar, applied to every command once all are declared.

- A subcommand's errors (an unknown option among them) print that subcommand's
  usage, not the top level's.
- The global options (--database-url, --log-format) are accepted after the
  subcommand too: `pm-order machines list --database-url URL`.
- Every command that writes output takes `-o/--output FILE` (written completely
  or not at all) and `--json`.
- Every --help has a description; a default is shown only when it says
  something ("(default: False)" does not).
- An old option name kept for operators' scripts (`--tenant`) still works and
  warns, naming the new one (`--project`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Final

from cli.terminal import paint
from service import logs

# Commands whose output is not data (logs; a shell script): no --output, no --json.
NO_OUTPUT: Final = frozenset({"serve", "worker", "completion"})


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands report their own unknown arguments,
    with their own usage."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default when there is one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
            or isinstance(default, list | tuple)
        ):
            return action.help
        return f"{text} (default: %(default)s)"


class RawDescriptionHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """As HelpFormatter, for a description laid out by hand."""


class DeprecatedAlias(argparse.Action):
    """An old name of an option: works as the new one, and says to use that."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        self.instead: str = kwargs.pop("instead")
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        warning = paint("warning:", "yellow", sys.stderr)
        print(
            f"pm-order: {warning} {option_string} is deprecated; use {self.instead}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def project_option(parser: argparse.ArgumentParser, help: str) -> None:
    """`--project PROJECT`, and `--tenant` (its former name) as an alias."""
    parser.add_argument("--project", metavar="PROJECT", help=help)
    parser.add_argument(
        "--tenant",
        dest="project",
        metavar="PROJECT",
        action=DeprecatedAlias,
        instead="--project",
    )


def global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--database-url and --log-format: on the top level (default None), and on
    each command (absent unless given, so as not to undo the top level's)."""
    default: Any = None if top else argparse.SUPPRESS
    options = parser.add_argument_group("global options") if not top else parser
    options.add_argument(
        "--database-url",
        metavar="URL",
        default=default,
        help="overrides PM_ORDER_DATABASE_URL (sqlite:///PATH or postgresql://...)",
    )
    options.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=default,
        help="log lines as JSON objects or text (for people); overrides "
        "PM_ORDER_LOG_FORMAT (json when neither is set)",
    )


def finish(root: argparse.ArgumentParser) -> None:
    """Apply the grammar to every command under `root`."""
    for path, parser, summary in walk(root):
        parser.formatter_class = (
            RawDescriptionHelpFormatter
            if parser.formatter_class is argparse.RawDescriptionHelpFormatter
            else HelpFormatter
        )
        if not parser.description and summary:
            parser.description = summary[0].upper() + summary[1:] + "."
        if parser is root or parser._subparsers is not None:
            continue
        parser.set_defaults(command_path=path)
        global_options(parser, top=False)
        if path[0] in NO_OUTPUT:
            continue
        options = {o for action in parser._actions for o in action.option_strings}
        if "--output" not in options:
            parser.add_argument(
                "-o",
                "--output",
                metavar="FILE",
                help="write to FILE (complete or not at all) instead of standard "
                "output",
            )
        elif "-o" not in options:
            _add_short_option(parser, "--output", "-o")
        if "--json" not in options:
            parser.add_argument("--json", action="store_true", help="JSON output")


def _add_short_option(parser: argparse.ArgumentParser, long: str, short: str) -> None:
    for action in parser._actions:
        if long in action.option_strings:
            action.option_strings = [short, *action.option_strings]
            parser._option_string_actions[short] = action


def walk(
    parser: argparse.ArgumentParser,
    path: tuple[str, ...] = (),
    summary: str | None = None,
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    """Every parser under `parser`, with its command words and its one-line help."""
    yield path, parser, summary
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                yield from walk(child, (*path, name), helps.get(name))
