"""`pm-order completion bash|zsh|tcsh`: the shell's completion script, made by
shtab from the very parser the command uses (so it cannot drift)."""

from __future__ import annotations

import argparse
from typing import Any, Final

from service.config import Config

SHELLS: Final = ("bash", "zsh", "tcsh")


def register(commands: Any, root: argparse.ArgumentParser) -> None:
    completion = commands.add_parser(
        "completion",
        help="print the shell completion script (bash, zsh or tcsh)",
        description="Print the completion script of pm-order's commands and options "
        "for a shell. bash: `pm-order completion bash > "
        "/etc/bash_completion.d/pm-order` (or `source <(pm-order completion bash)` "
        "in ~/.bashrc); zsh: `pm-order completion zsh > "
        '"${fpath[1]}/_pm-order"`.',
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell")
    completion.set_defaults(command=completion_command, parser=root, needs_config=False)


def completion_command(config: Config | None, args: argparse.Namespace) -> int:
    """Needs no configuration (`needs_config=False`): it runs without one."""
    import shtab

    print(shtab.complete(args.parser, shell=args.shell), end="")
    return 0
