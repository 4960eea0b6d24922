"""Where `pm-order serve` listens: checked before anything starts, and said in
one line (exit 2) when the port is out of range, the host unknown, the address
not this host's or already taken."""

from __future__ import annotations

import errno
import socket

from service.config import ConfigError

_HIGHEST_PORT = 65535


def check_port(port: int) -> None:
    """A TCP port is 1 to 65535."""
    if not 1 <= port <= _HIGHEST_PORT:
        raise ConfigError(f"--port {port}: must be 1 to {_HIGHEST_PORT}")


def check_listen_address(host: str, port: int) -> None:
    """Bind (and at once release) every address `host` names on `port`, as the
    server will: the server then starts only where it can listen."""
    check_port(port)
    try:
        addresses = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise ConfigError(f"--host {host}: unknown host ({error.strerror})") from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            # As asyncio's server does: a port left in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise ConfigError(bind_failure(host, port, error)) from None


def bind_failure(host: str, port: int, error: OSError) -> str:
    """One line for a failed bind: which address, and why in an operator's words."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(error, socket.gaierror):
        return f"--host {host}: unknown host ({error.strerror})"
    if error.errno == errno.EADDRINUSE:
        return f"{where}: the port is in use (another process listens on it)"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{where}: the address is not one of this host's (--host)"
    if error.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges)"
    return f"{where}: {error.strerror or error}"
