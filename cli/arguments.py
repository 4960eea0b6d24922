"""How a command group declares its actions: `pm-order GROUP ACTION`.

An action's help is its function's docstring, written once where the action runs:
the first paragraph is its line in the group's list, the rest the description its
own --help prints (argparse refills both, so the docstring's line breaks do not
show).
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

from service.config import Config

Command = Callable[[Config, argparse.Namespace], int]


def command_group(commands: Any, name: str, *, help: str, description: str) -> Any:
    """The group `name` of `commands`; its actions are added to what it returns."""
    group = commands.add_parser(name, help=help, description=description)
    return group.add_subparsers(required=True, metavar="ACTION")


def action(actions: Any, name: str, command: Command) -> argparse.ArgumentParser:
    """The action `name`, which runs `command`, helped by its docstring."""
    summary, _, description = (inspect.getdoc(command) or "").partition("\n\n")
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=summary, description=description or None
    )
    parser.set_defaults(command=command)
    return parser
