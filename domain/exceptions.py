"""Domain exceptions: each class is one kind of refusal, mapped to one HTTP status."""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses; nothing has been changed."""


class InvalidInput(DomainError):
    """A value is missing, malformed or out of range (400)."""


class ServersNotOwned(InvalidInput):
    """Some servers are not the caller's: unknown and foreign look the same (400)."""


class NotAllowed(DomainError):
    """The caller lacks a role that may take this decision (403)."""


class OrdersNotFound(DomainError):
    """Some orders do not exist for this project (404)."""


class Conflict(DomainError):
    """The request contradicts the current state of the store (409)."""


class ServersAlreadyOrdered(Conflict):
    """Some servers are held by another unfinished order (409)."""


class TooManyUnfinishedOrders(Conflict):
    """The source project has as many unfinished orders as it may have (409)."""


class AlreadyDecided(Conflict):
    """Some orders were already decided the other way (409)."""


class StoreUnavailable(DomainError):
    """The event store cannot be reached; nothing was changed (503)."""


class WriteUnconfirmed(StoreUnavailable):
    """The store took a write but did not confirm it durable in time (a
    synchronous standby is not answering): it may have been stored (503)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the database did not confirm this write within {seconds:g} s (its "
            "synchronous standby is not answering): it may have been stored. "
            "Before sending it again, list your project's orders (GET with "
            "type=3) and look for it"
        )
