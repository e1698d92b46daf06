"""The errors a user may see: each carries its own one-sentence message and the exit code the
command line returns for it.

Exit codes: 2 bad usage or input, 3 refused by a business rule, 4 environment (database, keyring).
Exit code 1 means "findings" (verification, reconciliation); it is returned, never raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class BillingError(Exception):
    """Base of every user-facing error; `str(err)` is the message shown as is."""

    exit_code: ClassVar[int] = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self)


class BadInput(BillingError):
    """Bad usage or bad input: the user can fix it by typing something else."""

    exit_code: ClassVar[int] = 2


class Refused(BillingError):
    """The input is well formed, but a business rule forbids the operation."""

    exit_code: ClassVar[int] = 3


class PermissionDenied(Refused):
    """The acting user's role does not allow the operation."""


class DoubleBilling(Refused):
    """Billing would put a trip on a second invoice; `taken_trips` names those already billed."""

    def __init__(self, message: str, taken_trips: Sequence[str] = ()) -> None:
        if isinstance(taken_trips, str):
            raise TypeError("taken_trips is a sequence of trip ids, not one string")
        super().__init__(message)
        self.taken_trips: tuple[str, ...] = tuple(taken_trips)


class IllegalTransition(Refused):
    """A record may not move from its current state to the wanted one."""

    def __init__(self, entity: str, current: str, target: str) -> None:
        super().__init__(f"Cannot move {entity} from {current} to {target}.")
        self.entity = entity
        self.current = current
        self.target = target

    def __reduce__(self) -> tuple[type[IllegalTransition], tuple[str, str, str]]:
        # The constructor takes the parts, not the message, so pickling must rebuild from them.
        return (type(self), (self.entity, self.current, self.target))


class EnvironmentFault(BillingError):
    """The environment failed us (database unreachable or locked, keyring missing);
    `retryable` says whether trying again later may succeed."""

    exit_code: ClassVar[int] = 4

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
