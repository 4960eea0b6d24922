"""PM_ORDER_IDLE_POLL_SECONDS: how often an idle projector looks for events it was
not told about, from the environment to the projector that runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from domain.service import OrderService
from service.background import Background
from service.config import Config, ConfigError
from service.store import Store


def test_the_idle_poll_defaults_to_one_second() -> None:
    assert Config.from_env({}).idle_poll_seconds == 1.0


def test_the_idle_poll_is_read_from_the_environment() -> None:
    env = {"PM_ORDER_IDLE_POLL_SECONDS": "30"}
    assert Config.from_env(env).idle_poll_seconds == 30.0
    env = {"PM_ORDER_IDLE_POLL_SECONDS": "0.25"}
    assert Config.from_env(env).idle_poll_seconds == 0.25


@pytest.mark.parametrize("text", ["0", "-1", "soon", "nan", "inf", "1e9"])
def test_an_idle_poll_that_is_not_a_sensible_number_of_seconds_is_refused(
    text: str,
) -> None:
    with pytest.raises(ConfigError, match="PM_ORDER_IDLE_POLL_SECONDS"):
        Config.from_env({"PM_ORDER_IDLE_POLL_SECONDS": text})


def test_the_background_projectors_poll_as_configured(store: Store) -> None:
    config = Config(idle_poll_seconds=30.0)
    with ThreadPoolExecutor(1) as executor:
        work = Background(store, OrderService(store.app), config, executor)
        assert work.following.idle_poll == 30.0
