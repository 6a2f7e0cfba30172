"""Errors the library raises for bad input, shared by the CLI (exit 2) and HTTP (4xx)."""

from __future__ import annotations

from dataclasses import dataclass


class InputError(ValueError):
    """Input that is wrong for a reason the user can fix; the message names the field."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data file: 1-based data row (None for the whole file), column, reason."""

    row: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where) or 'file'}: {self.reason}"

    def to_dict(self) -> dict[str, object]:
        return {"row": self.row, "column": self.column, "reason": self.reason}


class DataValidationError(InputError):
    """A data set with problems; ``problems`` lists every one of them, not just the first."""

    def __init__(self, problems: list[Problem], source: str = "data") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


class NotFoundError(InputError):
    """A named thing (campaign, model, trial) that does not exist: CLI exit 2, HTTP 404."""


class ConflictError(InputError):
    """A request that contradicts state already recorded (e.g. another result for an answered trial).

    CLI exit 2, HTTP 409. ``trial`` names the trial concerned when there is one.
    """

    def __init__(self, message: str, trial: int | None = None) -> None:
        super().__init__(message)
        self.trial = trial


class BusyError(InputError):
    """A shared resource (a campaign's lock) stayed taken longer than the caller waits: retry later.

    CLI exit 2 with the message; HTTP 503 with ``Retry-After: retry_after_s`` (seconds). Nothing was written.
    """

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreUnavailableError(BusyError):
    """The campaign store could not be reached or had no connection to spare (a database that refuses more clients,
    a pool that stayed empty): nothing was done, retry later. HTTP 503 with ``Retry-After``; CLI exit 2."""
