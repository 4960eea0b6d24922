"""A command group's actions, declared through cli/arguments.py: each action's
help is its function's docstring."""

from __future__ import annotations

import argparse
from typing import Any

from cli.arguments import action, command_group
from service.config import Config


def greet(config: Config, args: argparse.Namespace) -> int:
    """say hello

    Say hello to the
    world, in one paragraph.
    """
    return 0


def quiet(config: Config, args: argparse.Namespace) -> int:
    """say nothing"""
    return 0


def words(commands: Any) -> Any:
    return command_group(commands, "words", help="some words", description="Words.")


def flat(text: str) -> str:
    return " ".join(text.split())


def test_an_actions_first_paragraph_is_its_line_in_the_groups_list() -> None:
    # given a group with an action
    commands = argparse.ArgumentParser(prog="pm-order").add_subparsers()
    action(words(commands), "greet", greet)
    # when the group's help is printed
    listing = flat(commands.choices["words"].format_help())
    # then the action is listed with its docstring's first paragraph, alone
    assert "greet say hello" in listing
    assert "in one paragraph" not in listing
    assert "Words." in listing


def test_the_rest_of_the_docstring_is_the_actions_own_description() -> None:
    # given an action whose docstring has a second paragraph over two lines
    commands = argparse.ArgumentParser(prog="pm-order").add_subparsers()
    parser = action(words(commands), "greet", greet)
    # when its help is printed
    # then the paragraph is its description, refilled as argparse does
    assert "Say hello to the world, in one paragraph." in flat(parser.format_help())


def test_an_action_runs_its_function_and_may_have_no_description() -> None:
    # given an action whose docstring is one line
    commands = argparse.ArgumentParser(prog="pm-order").add_subparsers()
    parser = action(words(commands), "quiet", quiet)
    # then it runs its function, and its help has no description
    assert parser.get_default("command") is quiet
    assert parser.description is None
