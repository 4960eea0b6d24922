"""The systemd samples in examples/systemd/ say what pm-order takes: their
settings pass its configuration checks and their commands its argument parser."""

from __future__ import annotations

import shlex
from pathlib import Path
from string import Template
from typing import Final

import pytest

from cli.main import parser
from service.config import Config
from service.store import postgres_settings

SAMPLES: Final = Path(__file__).resolve().parents[2] / "examples" / "systemd"


def environment() -> dict[str, str]:
    found = {}
    for line in (SAMPLES / "pm-order.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            found[name] = value
    return found


def test_the_sample_environment_is_a_valid_configuration() -> None:
    env = environment()
    config = Config.from_env(env)
    settings = postgres_settings(config.database_url)
    assert len(settings.host.split(",")) == 2
    assert dict(settings.options)["target_session_attrs"] == "read-write"


@pytest.mark.parametrize("unit", ["pm-order-api.service", "pm-order-worker.service"])
def test_the_sample_units_run_commands_pm_order_takes(unit: str) -> None:
    text = (SAMPLES / unit).read_text().replace("\\\n", " ")
    command = next(
        line.partition("=")[2]
        for line in text.splitlines()
        if line.startswith("ExecStart=")
    )
    words = shlex.split(Template(command).substitute(environment()))
    assert words[0].endswith("/pm-order")
    args = parser().parse_args(words[1:])
    assert callable(args.command)
