"""The shapes of the values orders are made of, and their limits."""

from __future__ import annotations

import functools
import re
from email import policy
from typing import Final

from domain.exceptions import InvalidInput

MAX_SNIDS_PER_ORDER: Final = 200
MAX_ORDERS_PER_DECISION: Final = 200
MAX_MAILTO: Final = 20
MAX_NAME_LENGTH: Final = 64
# The largest order id, in either form of 'order_ids': 18 digits, as the string
# form has always allowed (an id is a number, never a megabyte of digits).
MAX_ORDER_ID: Final = 10**18 - 1
ORDER_IDS_OUT_OF_RANGE: Final = (
    "'order_ids' must hold positive integers of at most 18 digits"
)

_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A practical address check: one @, a dotted domain, no spaces or control characters.
_ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# RFC 5322 dot-atom local part (no leading, trailing or doubled dot), at most 64
# characters; a dotted domain; 254 characters in all (RFC 5321 path limit).
_EMAIL: Final = re.compile(
    rf"(?=.{{1,254}}$)(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@"
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)


def split_list(value: str | list[object], field: str) -> list[str]:
    """A comma-separated string or a JSON array as a list of trimmed strings."""
    if isinstance(value, str):
        items: list[object] = [] if not value.strip() else list(value.split(","))
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidInput(f"'{field}' must be a comma-separated string or an array")
    parts: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput(f"'{field}' must hold strings only")
        parts.append(item.strip())
    return parts


def check_snid(snid: str) -> str:
    """A server serial number: 1..64 of A-Z a-z 0-9 . _ -."""
    if not _NAME.fullmatch(snid):
        raise InvalidInput(
            f"invalid snid {_quote(snid)}: use 1 to {MAX_NAME_LENGTH} of "
            "A-Z a-z 0-9 . _ -"
        )
    return snid


def check_project(project: str, field: str = "project id") -> str:
    """A project id: 1..64 of A-Z a-z 0-9 . _ -."""
    if not _NAME.fullmatch(project):
        raise InvalidInput(
            f"invalid {field} {_quote(project)}: use 1 to {MAX_NAME_LENGTH} of "
            "A-Z a-z 0-9 . _ -"
        )
    return project


def check_snids(snids: list[str], most: int = MAX_SNIDS_PER_ORDER) -> list[str]:
    """1..`most` (at most 200) distinct valid serial numbers, in the order given."""
    if not snids or snids == [""]:
        raise InvalidInput("'snids' must name at least one server")
    if len(snids) > most:
        raise InvalidInput(
            f"'snids' names {len(snids)} servers: at most {most} per order"
        )
    for snid in snids:
        check_snid(snid)
    repeated = _repeated(snids)
    if repeated:
        raise InvalidInput(f"'snids' repeats {', '.join(repeated)}")
    return snids


def check_mailto(
    addresses: list[str],
    most: int = MAX_MAILTO,
    domains: frozenset[str] = frozenset(),
) -> list[str]:
    """0..`most` (at most 20) distinct valid e-mail addresses, each in one of
    `domains` (lower case) when any are given; repeats are dropped, order is kept.
    """
    addresses = list(dict.fromkeys(a for a in addresses if a))
    if len(addresses) > most:
        raise InvalidInput(
            f"'mailto' has {len(addresses)} addresses: at most {most}"
            if most
            else "'mailto' must be empty: this service sends no mail to anyone"
        )
    for address in addresses:
        if not _EMAIL.fullmatch(address):
            raise InvalidInput(f"'mailto' has an invalid address {_quote(address)}")
        carried = carried_address(address)
        if carried != address:
            raise InvalidInput(
                f"'mailto' has {_quote(address)}, which a mail header would read as "
                f"{_quote(carried or 'no address')}: give one plain address "
                "(name@example.com) per entry"
            )
        if domains and address.rpartition("@")[2].lower() not in domains:
            raise InvalidInput(
                f"'mailto' has {_quote(address)}, outside the mail domains this "
                "service may send to"
            )
    return addresses


# The email package's parse of a header is most of a request's CPU; the same
# addresses come again and again (a team's list on each of its orders).
@functools.lru_cache(maxsize=4096)
def carried_address(address: str) -> str | None:
    """What a mail's To header carries when given `address`, as its reader sees it
    (encoded words decoded, quoting and comments resolved), the addresses
    separated by ", "; None when it cannot be written at all.

    An address is checked on this, not on the text given: the email package
    decodes RFC 2047 words even inside an address, so that
    `=?utf-8?q?x=40evil.com=2C_y?=@example.com` would reach a reader as other
    addresses than the one whose domain was checked. A header the strict parser
    finds defects in carries nothing.
    """
    try:
        header = policy.strict.header_factory("To", address)
        found = [str(a.addr_spec) for a in header.addresses]
    except (ValueError, IndexError, TypeError):
        return None
    reading = ", ".join(found)
    return reading if not header.defects else f"{reading} (malformed)"


def check_order_ids(order_ids: list[int]) -> list[int]:
    """1..200 distinct order ids, each from 1 to MAX_ORDER_ID."""
    if not order_ids:
        raise InvalidInput("'order_ids' must name at least one order")
    if len(order_ids) > MAX_ORDERS_PER_DECISION:
        raise InvalidInput(
            f"'order_ids' names {len(order_ids)} orders: at most "
            f"{MAX_ORDERS_PER_DECISION} at once"
        )
    if any(not 1 <= i <= MAX_ORDER_ID for i in order_ids):
        raise InvalidInput(ORDER_IDS_OUT_OF_RANGE)
    repeated = _repeated([str(i) for i in order_ids])
    if repeated:
        raise InvalidInput(f"'order_ids' repeats {', '.join(repeated)}")
    return order_ids


def _repeated(items: list[str]) -> list[str]:
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for item in items:
        if item in seen:
            repeated[item] = None
        seen.add(item)
    return list(repeated)


def _quote(value: str, limit: int = 70) -> str:
    """A value for an error message: repr-escaped and cut short."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)
