"""PM_ORDER_DATABASE_URL on PostgreSQL: libpq's URL, one host or several."""

from __future__ import annotations

import pytest

from service.config import ConfigError
from service.postgres_url import hosts_of, libpq_parameters
from service.store import postgres_settings

MULTI_HOST = (
    "postgresql://postgres@127.0.0.1:5432,127.0.0.1:5433/pm"
    "?target_session_attrs=read-write&schema=orders"
)


def test_several_hosts_are_handed_to_libpq_with_their_ports() -> None:
    settings = postgres_settings(MULTI_HOST)
    assert (settings.host, settings.port) == ("127.0.0.1,127.0.0.1", "5432,5433")
    assert settings.schema == "orders"
    assert "host=127.0.0.1,127.0.0.1 port=5432,5433" in settings.conninfo
    assert "target_session_attrs=read-write" in settings.conninfo
    assert "schema" not in settings.conninfo


def test_several_hosts_connect_to_the_writable_one_unless_told() -> None:
    params, _ = libpq_parameters("postgresql://postgres@127.0.0.1:1,127.0.0.1:2/pm")
    assert params["target_session_attrs"] == "read-write"
    one, _ = libpq_parameters("postgresql://postgres@127.0.0.1:1/pm")
    assert "target_session_attrs" not in one


def test_the_event_stores_pool_gets_every_libpq_parameter() -> None:
    env = postgres_settings(MULTI_HOST).env(create_tables=False)
    assert env["POSTGRES_HOST"] == "127.0.0.1,127.0.0.1"
    assert env["POSTGRES_PORT"] == "5432,5433"
    assert "target_session_attrs=read-write" in env["PM_ORDER_POSTGRES_CONNINFO"]
    assert env["PERSISTENCE_MODULE"].endswith(":LibpqPostgresFactory")


def test_a_host_that_vanishes_is_noticed_within_seconds_by_default() -> None:
    params, _ = libpq_parameters("postgresql://postgres@127.0.0.1/pm")
    assert params["keepalives"] == "1"
    assert int(params["tcp_user_timeout"]) <= 10_000
    assert params["connect_timeout"] == "2"


def test_the_urls_own_libpq_settings_win_over_the_defaults() -> None:
    params, _ = libpq_parameters(
        "postgresql://postgres@127.0.0.1/pm?connect_timeout=7&tcp_user_timeout=0"
        "&sslmode=require&application_name=pm-order-api"
    )
    assert params["connect_timeout"] == "7"
    assert params["tcp_user_timeout"] == "0"
    assert params["sslmode"] == "require"
    assert params["application_name"] == "pm-order-api"


def test_user_password_and_database_are_decoded_as_libpq_does() -> None:
    settings = postgres_settings("postgresql://app:p%40ss@127.0.0.1:6543/pm%2Dorder")
    assert (settings.user, settings.password, settings.dbname) == (
        "app",
        "p@ss",
        "pm-order",
    )
    assert settings.port == "6543"


def test_hosts_are_listed_with_their_ports_in_libpqs_order() -> None:
    params, _ = libpq_parameters("postgresql://postgres@127.0.0.1:6000,localhost/pm")
    assert hosts_of(params) == [("127.0.0.1", "6000"), ("localhost", "5432")]
    params, _ = libpq_parameters("postgresql://postgres@127.0.0.1,localhost/pm?port=7")
    assert hosts_of(params) == [("127.0.0.1", "7"), ("localhost", "7")]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://postgres@127.0.0.1:5432,127.0.0.1:x/pm", "'x' is not a port"),
        ("postgresql://postgres@127.0.0.1:99999/pm", "not a port number"),
        ("postgresql://postgres@127.0.0.1/pm?nonsense=1", "not a URL libpq takes"),
        (
            "postgresql://postgres@127.0.0.1:1,127.0.0.1:2/pm?target_session_attrs=rw",
            "target_session_attrs='rw' must be one of",
        ),
        (
            "postgresql://postgres@127.0.0.1:1,127.0.0.1:2/pm"
            "?target_session_attrs=standby",
            "pm-order writes on every connection",
        ),
        ("postgresql://postgres@127.0.0.1/pm?connect_timeout=soon", "whole number"),
        ("postgresql://postgres@127.0.0.1/pm?sslmode=maybe", "sslmode='maybe'"),
        ("postgresql://postgres@127.0.0.1/?schema=x", "names no database"),
        ("postgresql://postgres@127.0.0.1/pm?schema=a-b", "plain identifier"),
    ],
)
def test_a_url_libpq_would_refuse_is_a_configuration_error(url: str, said: str) -> None:
    with pytest.raises(ConfigError, match="PM_ORDER_DATABASE_URL") as raised:
        postgres_settings(url)
    assert said in str(raised.value)


def test_the_configuration_error_does_not_show_the_password() -> None:
    with pytest.raises(ConfigError) as raised:
        postgres_settings("postgresql://app:secret@127.0.0.1:1,127.0.0.1:x/pm")
    assert "secret" not in str(raised.value)
    assert "app:***@" in str(raised.value)
