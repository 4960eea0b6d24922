"""PM_ORDER_DATABASE_URL on PostgreSQL: libpq's own URL, with one host or several.

libpq reads the URL, so whatever it takes is taken: several `host:port` pairs
(`postgresql://postgres@127.0.0.1:5432,127.0.0.1:5433/pm`), `target_session_attrs`,
`sslmode`, the TCP keepalives. pm-order takes `schema` out for itself, checks
the values that libpq would only refuse when connecting (so that a bad URL is a
configuration error at start, not a traceback), and adds the defaults a
failover needs: every connection it opens goes to the host that takes writes,
and a host that vanishes is noticed within seconds, not hours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment, EnvType

from mail.settings import without_password
from projections.database import POOL_RECONNECT_SECONDS
from service.config import ConfigError

# The URL's query parameters that are pm-order's, not libpq's.
OWN_PARAMETERS: Final = frozenset({"schema"})

# pm-order writes on every connection it opens (events, views, NOTIFY, locks).
WRITABLE_SESSIONS: Final = frozenset({"read-write", "primary", "any"})
_CHOICES: Final = {
    "target_session_attrs": WRITABLE_SESSIONS
    | {"read-only", "standby", "prefer-standby"},
    "load_balance_hosts": frozenset({"disable", "random"}),
    "sslmode": frozenset(
        {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
    ),
    "gssencmode": frozenset({"disable", "prefer", "require"}),
    "channel_binding": frozenset({"disable", "prefer", "require"}),
}
_WHOLE_NUMBERS: Final = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)

# Each applies unless the URL says otherwise. A host that dies without closing
# its connections (power, network) leaves them open for hours by TCP's own
# timers: the keepalives find an idle one dead in about 11 s, and
# tcp_user_timeout fails a statement whose packets go unacknowledged for 10 s.
DEFAULTS: Final = {
    "connect_timeout": "2",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
# With several hosts, each connection must find the one that takes writes.
SEVERAL_HOSTS_DEFAULTS: Final = {"target_session_attrs": "read-write"}


def libpq_parameters(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """libpq's connection parameters in `url` (defaults added), and pm-order's
    own (`schema`); ConfigError for a URL that libpq would refuse."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    shown = without_password(url)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in OWN_PARAMETERS}
    theirs = urlencode([(k, v) for k, v in query if k not in OWN_PARAMETERS])
    try:
        parsed = conninfo_to_dict(urlunsplit(parts._replace(query=theirs)))
    except ProgrammingError as error:
        raise ConfigError(
            f"PM_ORDER_DATABASE_URL={shown!r} is not a URL libpq takes: {error}"
        ) from error
    schema = own.get("schema")
    if schema is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        raise ConfigError(
            f"PM_ORDER_DATABASE_URL: schema {schema!r} must be a plain identifier"
        )
    params = {k: str(v) for k, v in parsed.items() if v is not None}
    params.setdefault("host", "127.0.0.1")
    params.setdefault("user", "postgres")
    if not params.get("dbname"):
        raise ConfigError(f"PM_ORDER_DATABASE_URL={shown!r} names no database")
    hosts = params["host"].split(",")
    defaults = {**DEFAULTS, **(SEVERAL_HOSTS_DEFAULTS if len(hosts) > 1 else {})}
    params = {**defaults, **params}
    problem = _refused(params, len(hosts))
    if problem:
        raise ConfigError(f"PM_ORDER_DATABASE_URL={shown!r}: {problem}")
    return params, own


def _refused(params: Mapping[str, str], hosts: int) -> str | None:
    """Why libpq (or pm-order) would refuse `params`, if it would."""
    ports = params.get("port", "").split(",")
    if len(ports) not in (1, hosts):
        return f"{len(ports)} ports for {hosts} hosts (give one port, or one each)"
    for port in ports:
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            return f"port {port!r} is not a port number"
    for name in _WHOLE_NUMBERS:
        value = params.get(name)
        if value is not None and not value.lstrip("-").isdigit():
            return f"{name}={value!r} must be a whole number"
    for name, choices in _CHOICES.items():
        value = params.get(name)
        if value is not None and value not in choices:
            return f"{name}={value!r} must be one of {', '.join(sorted(choices))}"
    attrs = params.get("target_session_attrs", "any")
    if attrs not in WRITABLE_SESSIONS:
        return (
            f"target_session_attrs={attrs!r} would connect to a standby, and "
            "pm-order writes on every connection: use read-write"
        )
    return None


def hosts_of(params: Mapping[str, str]) -> list[tuple[str, str]]:
    """Each (host, port) that libpq may try, in its order."""
    hosts = params.get("host", "").split(",")
    ports = params.get("port", "").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    return [(host, port or "5432") for host, port in zip(hosts, ports, strict=True)]


class LibpqPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, whose pool connects with every libpq
    parameter of the URL.

    The library's datastore hands its pool only the host, port, user, password
    and database; several hosts need `target_session_attrs` too (or the pool
    would connect to a standby after a failover), and the defaults above matter
    as much here as on every other connection, and so does a bounded
    reconnection backoff (POOL_RECONNECT_SECONDS).
    """

    CONNINFO: Final = "PM_ORDER_POSTGRES_CONNINFO"

    def __init__(self, env: Environment | EnvType | None) -> None:
        from psycopg.conninfo import conninfo_to_dict

        super().__init__(env)
        conninfo = self.env.get(self.CONNINFO)
        kwargs: Any = self.datastore.pool.kwargs
        if conninfo:
            kwargs.update(conninfo_to_dict(conninfo))
        # Every statement of the event store is a short lookup by key: compiling
        # one (JIT) costs more than running it, and a plan made without statistics
        # (a restored or bulk-loaded store) can cost enough to trigger it. (Set
        # here, before anything opens the pool: its first connections are made
        # with the recorder.)
        kwargs["options"] = "-c jit=off"
        self.datastore.pool.reconnect_timeout = POOL_RECONNECT_SECONDS


async def hosts_report(params: Mapping[str, str], timeout: float = 1.0) -> str:
    """What each host of `params` is now, asked of each directly: for a
    readiness probe that must say why no connection finds a host to write to
    (one is down, the other not yet promoted: a failover under way)."""
    import asyncio

    said = await asyncio.gather(
        *(_host_role(params, host, port, timeout) for host, port in hosts_of(params))
    )
    if len(said) > 1 and not any(s.endswith("takes writes") for s in said):
        said.append("no host takes writes (a failover under way?)")
    return "; ".join(said)


async def _host_role(
    params: Mapping[str, str], host: str, port: str, timeout: float
) -> str:
    import asyncio

    import psycopg
    from psycopg.conninfo import make_conninfo

    alone = {
        **params,
        "host": host,
        "port": port,
        "target_session_attrs": "any",
        "connect_timeout": str(max(1, round(timeout))),
    }
    alone.pop("hostaddr", None)
    try:
        async with asyncio.timeout(timeout + 0.5):
            connection = await psycopg.AsyncConnection.connect(make_conninfo(**alone))
            async with connection:
                cursor = await connection.execute("SELECT pg_is_in_recovery()")
                row = await cursor.fetchone()
    except (psycopg.Error, OSError, TimeoutError) as error:
        first = str(error).strip().splitlines()[0] if str(error) else "no answer"
        return f"{host}:{port} does not answer ({first.rpartition('failed: ')[2]})"
    if row and row[0]:
        return f"{host}:{port} is a standby"
    return f"{host}:{port} takes writes"
