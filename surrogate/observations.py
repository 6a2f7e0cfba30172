"""A campaign's observations: checking the rows the lab sends, and matching them to the campaign's trials.

Neither step touches storage. :class:`ObservationChecker` checks each row on its own (the measurement schema,
the design space, the objective's conditions) and turns it into a prepared row; :class:`ObservationMatcher`
matches prepared rows to the trials the campaign holds (given as :class:`~surrogate.storage.StoredTrial`
records, read by the caller under the campaign's lock): to the pending suggestion each answers, to a result
already recorded (a retry, nothing to write), or to nothing (an unsolicited observation, a new trial). Any
problem in any row raises, so an observe call is all or nothing. :class:`surrogate.campaign.Campaign` reads
the trials and writes the records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from optuna.trial import TrialState

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CAPACITY_RETENTION,
    CYCLES,
    PROTOCOL,
    RATE_RETENTION,
    TEST_TEMP_C,
    DesignSpace,
)
from surrogate.errors import ConflictError, DataValidationError, InputError, Problem
from surrogate.objectives import Objective
from surrogate.parameters import CYCLES_PARAMETER
from surrogate.suggester import MATCH_TOLERANCE_C

if TYPE_CHECKING:  # a record type only: these modules read no storage
    from surrogate.storage import StoredTrial

TRIAL_COLUMN = "trial"
STATUS_COLUMN = "status"
REASON_COLUMN = "reason"
SAMPLE_COLUMN = "sample_id"
"""Optional column of an observation: the film / cell measured (stored as the trial's user attribute ``sample_id``)."""
RECORDED_BY = "recorded_by"
"""Who sent an observation (a person or a robot): the trial's user attribute, written with the observation."""
MAX_RECORDED_BY_CHARS = 128
FAILED_STATUSES = ("failed", "infeasible")
MAX_OBSERVATIONS_PER_CALL = 10_000
"""Rows one observe call accepts, from the CLI and over HTTP alike (``serving/`` imports this number)."""
MAX_CYCLES = int(CYCLES_PARAMETER.high)
"""Largest ``cycles`` an observation row may carry: the declared bound (checked before any conversion to int)."""

RowProblems = list[tuple[str | None, str]]
"""Problems of one row: (column or None, reason); the row number is added by the caller."""
DesignOf = Callable[["StoredTrial"], dict[str, Any]]
"""The full design of a trial (design variables and the objective's conditions)."""


def check_recorded_by(value: Any) -> str | None:
    """Who sent an observation: None (not said), else a non-empty text of at most :data:`MAX_RECORDED_BY_CHARS`
    printable characters, stripped; an :class:`InputError` naming ``recorded_by`` otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{RECORDED_BY}: {value!r} is not a name (give a text, e.g. a user or robot name)")
    text = value.strip()
    if not text:
        raise InputError(f"{RECORDED_BY}: must not be empty (leave it out to record no sender)")
    if len(text) > MAX_RECORDED_BY_CHARS:
        raise InputError(f"{RECORDED_BY}: {len(text)} characters; at most {MAX_RECORDED_BY_CHARS}")
    if not text.isprintable():
        raise InputError(f"{RECORDED_BY}: {text!r} contains control characters")
    return text


def same_design(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two designs are the same buffer with temperatures within :data:`MATCH_TOLERANCE_C` (°C)."""
    return a[BUFFER] == b[BUFFER] and all(abs(a[k] - b[k]) <= MATCH_TOLERANCE_C for k in (ANNEAL_TEMP_C, TEST_TEMP_C))


class ObservationChecker:
    """Row by row checks of an observations table that need no campaign state: schema, space, conditions."""

    def __init__(self, space: DesignSpace, objective: Objective) -> None:
        self.space = space
        self.objective = objective

    def prepare(self, data: pd.DataFrame, source: str) -> tuple[list[dict[str, Any]], list[Problem]]:
        """The prepared rows of a raw table and every problem found (one per cell).

        A prepared row has ``row`` (1-based), ``given`` (its ``trial``: an int, the raw text when not a
        number, or None), ``design`` (None for "trial N failed" without a design), ``values`` (the measured
        targets), ``failed``, ``reason`` and ``sample_id``. A row with a problem is not prepared.
        """
        from surrogate.schema import check_frame

        raw = _normalised(data, source)
        status = raw[STATUS_COLUMN].fillna("").astype(str).str.strip().str.lower() if STATUS_COLUMN in raw else None
        problems: list[Problem] = []
        if status is not None:
            for i, value in enumerate(status):
                if value not in ("", "ok", *FAILED_STATUSES):
                    problems.append(Problem(i + 1, STATUS_COLUMN, f"{value!r} is not ok, failed or infeasible"))
        failed = status.isin(FAILED_STATUSES).to_numpy() if status is not None else np.zeros(len(raw), dtype=bool)
        bad_cycles, cycle_problems = _cycles_problems(raw, failed)
        problems += cycle_problems
        extra = [c for c in (TRIAL_COLUMN, STATUS_COLUMN, REASON_COLUMN) if c in raw]
        ok_index = np.flatnonzero(~failed & ~bad_cycles)
        checked: dict[int, dict[str, Any]] = {}
        if len(ok_index):
            result = check_frame(raw.iloc[ok_index].drop(columns=extra).reset_index(drop=True), source)
            for p in result.problems:
                row = int(ok_index[p.row - 1]) + 1 if p.row is not None else None
                problems.append(Problem(row, p.column, p.reason))
            records = result.frame.to_dict("records") if result.frame is not None else []
            checked = {int(i): records[j] for j, i in enumerate(ok_index) if j < len(records)}
        rows = []
        for i, row in enumerate(raw.to_dict("records")):
            if bad_cycles[i]:
                continue
            label = status.iloc[i] if status is not None and failed[i] else ""
            prepared, row_problems = self._row(i + 1, row, checked.get(i), bool(failed[i]), label)
            problems += [Problem(i + 1, col, why) for col, why in row_problems]
            if prepared is not None:
                rows.append(prepared)
        return rows, _one_per_cell(problems)

    def _row(
        self, row_no: int, row: dict[str, Any], record: dict[str, Any] | None, failed: bool, label: str
    ) -> tuple[dict[str, Any] | None, RowProblems]:
        """One prepared row (None when it has problems): ``row`` as sent, ``record`` as the schema made it."""
        given = _trial_number(row)
        values: dict[str, float] = {}
        if failed and isinstance(given, int) and _blank(row.get(BUFFER)):
            design, problems = None, []  # "trial N failed" needs no design: taken from the trial
        elif failed:
            design, problems = self.design(row)
        else:
            design, problems = self.design(record)
            if record is not None:
                values, more = self.measured(record)
                problems += more
        if problems:
            return None, problems
        reason = str(row.get(REASON_COLUMN, "") or "").strip() if REASON_COLUMN in row else ""
        if _blank(reason):
            reason = ""
        sample = row.get(SAMPLE_COLUMN)
        prepared = {
            "row": row_no,
            "given": given,
            "design": design,
            "values": values,
            "failed": failed,
            "reason": reason or label,
            "sample_id": "" if _blank(sample) else str(sample).strip(),
        }
        return prepared, []

    def design(self, row: dict[str, Any] | None) -> tuple[dict[str, Any], RowProblems]:
        """The design of one row, with problems: missing values, outside the space, wrong fixed temperature."""
        from surrogate.design import canonical_buffer

        problems: RowProblems = []
        design: dict[str, Any] = {}
        row = row or {}
        value = row.get(BUFFER)
        if _blank(value):
            problems.append((BUFFER, "missing (required; or give the trial number of a suggestion)"))
        else:
            try:
                design[BUFFER] = canonical_buffer(value)
            except InputError as exc:
                problems.append((BUFFER, str(exc)))
        for name in (ANNEAL_TEMP_C, TEST_TEMP_C):
            try:
                value = float(row.get(name))
                if not np.isfinite(value):
                    raise ValueError
                design[name] = value
            except (TypeError, ValueError, OverflowError):
                problems.append((name, "a number in °C is required"))
        if problems:
            return design, problems
        for reason in self.space.violations(design):
            column, _, why = reason.partition(": ")
            problems.append((column, f"outside the campaign's design space: {why}"))
        fixed = self.objective.test_temp_c
        if fixed is not None and abs(design[TEST_TEMP_C] - fixed) > MATCH_TOLERANCE_C:
            problems.append((TEST_TEMP_C, f"{design[TEST_TEMP_C]:g} °C but the objective fixes {fixed:g} °C"))
        return design, problems

    def measured(self, record: dict[str, Any]) -> tuple[dict[str, float], RowProblems]:
        """The objective's targets of a validated row, checking they were measured at the objective's conditions."""
        values: dict[str, float] = {}
        problems: RowProblems = []
        for target in self.objective.targets:
            value = record.get(target)
            if value is None or pd.isna(value):
                problems.append((target, "missing: the objective needs it (or give status=failed)"))
                continue
            values[target] = float(value)
            if target == RATE_RETENTION:
                problems += self._rate_conditions(record)
            if target == CAPACITY_RETENTION:
                problems += self._capacity_conditions(record)
        return values, problems

    def _rate_conditions(self, record: dict[str, Any]) -> RowProblems:
        """Whether a rate-retention row was measured at the objective's C-rate."""
        asked = self.objective.c_rate
        c_rate = record.get(C_RATE)
        if c_rate is None or pd.isna(c_rate):
            return [(C_RATE, f"missing: the objective asks {asked:g} C")]
        if not math.isclose(float(c_rate), asked, rel_tol=1e-5, abs_tol=1e-8):
            return [(C_RATE, f"{float(c_rate):g} C but the objective asks {asked:g} C")]
        return []

    def _capacity_conditions(self, record: dict[str, Any]) -> RowProblems:
        """Whether a capacity-retention row was measured after the objective's cycles, under its protocol."""
        problems: RowProblems = []
        cycles = record.get(CYCLES)
        if cycles is None or pd.isna(cycles):
            problems.append((CYCLES, f"missing: the objective asks {self.objective.cycles} cycles"))
        elif _cycles_problem(cycles) is not None:
            problems.append((CYCLES, _cycles_problem(cycles)))
        elif int(cycles) != self.objective.cycles:
            problems.append((CYCLES, f"{int(cycles)} but the objective asks {self.objective.cycles} cycles"))
        protocol = record.get(PROTOCOL)
        if protocol != self.objective.protocol:
            problems.append((PROTOCOL, f"{protocol} but the objective asks {self.objective.protocol}"))
        return problems


Match = Callable[[int | str | None, dict[str, Any], dict[int, "StoredTrial"], set[int], int, list[Problem]], int | None]
"""The signature of :meth:`ObservationMatcher.match` (the hook :meth:`ObservationMatcher.resolve` calls per row)."""


class ObservationMatcher:
    """Prepared rows matched to a campaign's trials: pending suggestions, results already recorded, or none."""

    def __init__(self, design_of: DesignOf) -> None:
        self.design_of = design_of

    def resolve(
        self,
        rows: list[dict[str, Any]],
        problems: list[Problem],
        source: str,
        current: list[StoredTrial],
        match: Match | None = None,
    ) -> tuple[list[dict[str, Any]], list[int]]:
        """The records to write for ``rows`` given the campaign's ``current`` trials, and the trials already
        recorded; raise on any problem (``problems`` are those of :meth:`ObservationChecker.prepare`).

        ``current`` holds the RUNNING, COMPLETE and FAIL trials with the user attributes ``measured``,
        ``lease_expired``, ``failure_reason`` and ``sample_id``. A record has ``design``, ``values``,
        ``trial`` (the pending suggestion it answers; None for a new trial), ``state``, ``reason`` and
        ``sample_id``. Only contradictions with recorded results: :class:`ConflictError`; else any problem:
        :class:`DataValidationError`. ``match`` replaces :meth:`match` (the campaign passes its own hook).
        """
        match = match or self.match
        pending = {t.number: t for t in current if t.state == TrialState.RUNNING}
        finished = {t.number: t for t in current if t.state != TrialState.RUNNING}
        index = DesignIndex([(t, self.design_of(t)) for t in finished.values() if BUFFER in t.params])
        problems = list(problems)
        conflicts: list[tuple[int, str]] = []
        claimed: set[int] = set()
        records = []
        already: list[int] = []
        for row in rows:
            row_no, given, design = row["row"], row["given"], row["design"]
            if design is None:
                known = pending.get(given) or finished.get(given)
                if known is None:
                    problems.append(
                        Problem(row_no, TRIAL_COLUMN, f"{given} is not a suggestion of this campaign (give the design)")
                    )
                    continue
                design = self.design_of(known)
            done = self.recorded_before(given, design, row, finished, index)
            if done is not None:
                if done >= 0:
                    already.append(done)  # a retried observation: nothing to write
                else:
                    why = _conflict_reason(finished[given])
                    problems.append(Problem(row_no, TRIAL_COLUMN, why))
                    conflicts.append((given, why))
                continue
            trial_no = match(given, design, pending, claimed, row_no, problems)
            if trial_no is not None:
                claimed.add(trial_no)
            records.append(
                {
                    "design": design,
                    "values": row["values"],
                    "trial": trial_no,
                    "state": TrialState.FAIL if row["failed"] else TrialState.COMPLETE,
                    "reason": row["reason"],
                    "sample_id": row["sample_id"],
                }
            )
        _raise_problems(problems, conflicts, source)
        return records, sorted(set(already))

    def recorded_before(
        self,
        given: int | None | str,
        design: dict[str, Any],
        row: dict[str, Any],
        finished: dict[int, StoredTrial],
        index: DesignIndex,
    ) -> int | None:
        """A row already in the campaign: its trial number (a retry, nothing to write), -1 if that trial
        holds another result, None if the row is new. Observing the same file twice is therefore safe.

        The same result is the same state, measured values, ``sample_id`` and, for a failed experiment, the
        same reason: a replicate (another sample, or another failure at the same design) is a new row. Trials
        recorded before ``sample_id`` was stored carry no such attribute and match on the rest.
        """
        if isinstance(given, int):
            if given not in finished:
                return None
            candidates = [finished[given]]
        elif given is None:
            candidates = index.near(design)
        else:
            return None
        for trial in candidates:
            if same_design(self.design_of(trial), design) and _same_result(trial, row):
                return trial.number
        return -1 if isinstance(given, int) else None

    def match(
        self,
        given: int | str | None,
        design: dict[str, Any],
        pending: dict[int, StoredTrial],
        claimed: set[int],
        row_no: int,
        problems: list[Problem],
    ) -> int | None:
        """The pending suggestion a row answers: by its ``trial`` number, else by design; None if unsolicited.

        A problem (not a trial number, not pending, answered twice, another design) is appended to ``problems``.
        """
        if isinstance(given, str):
            problems.append(Problem(row_no, TRIAL_COLUMN, f"{given!r} is not a trial number"))
            return None
        if isinstance(given, int):
            if given not in pending:
                problems.append(Problem(row_no, TRIAL_COLUMN, f"{given} is not a pending suggestion of this campaign"))
                return None
            if given in claimed:
                problems.append(Problem(row_no, TRIAL_COLUMN, f"suggestion {given} is answered twice"))
                return None
            if not same_design(self.design_of(pending[given]), design):
                problems.append(Problem(row_no, TRIAL_COLUMN, f"the design differs from suggestion {given}'s"))
                return None
            return given
        for number, trial in pending.items():
            if number not in claimed and same_design(self.design_of(trial), design):
                return number
        return None


class DesignIndex:
    """Finished trials by design, to find those within :data:`MATCH_TOLERANCE_C` of a design quickly."""

    def __init__(self, trials: list[tuple[StoredTrial, dict[str, Any]]]) -> None:
        self._cells: dict[tuple[str, int, int], list[StoredTrial]] = {}
        for trial, design in trials:
            self._cells.setdefault(self._key(design), []).append(trial)

    @staticmethod
    def _key(design: dict[str, Any]) -> tuple[str, int, int]:
        return (
            str(design[BUFFER]),
            math.floor(design[ANNEAL_TEMP_C] / MATCH_TOLERANCE_C),
            math.floor(design[TEST_TEMP_C] / MATCH_TOLERANCE_C),
        )

    def near(self, design: dict[str, Any]) -> list[StoredTrial]:
        """The trials in the cells around ``design`` (a superset of those within the tolerance)."""
        buffer, a, t = self._key(design)
        out = []
        for da in (-1, 0, 1):
            for dt in (-1, 0, 1):
                out += self._cells.get((buffer, a + da, t + dt), [])
        return out


def _same_result(trial: StoredTrial, row: dict[str, Any]) -> bool:
    """Whether a finished trial holds the result of a prepared row (state, values, sample, failure reason)."""
    values, failed = row["values"], row["failed"]
    measured = json.loads(trial.user_attrs.get("measured", "{}"))
    return (
        (trial.state == TrialState.FAIL) == failed
        and not trial.user_attrs.get("lease_expired")
        and measured.keys() == values.keys()
        and all(math.isclose(measured[k], values[k], rel_tol=1e-12) for k in values)
        and trial.user_attrs.get(SAMPLE_COLUMN, row["sample_id"]) == row["sample_id"]
        and (not failed or trial.user_attrs.get("failure_reason") == (row["reason"] or "failed"))
    )


def _raise_problems(problems: list[Problem], conflicts: list[tuple[int, str]], source: str) -> None:
    """Raise :class:`ConflictError` when every problem is a conflict, else :class:`DataValidationError`."""
    if not problems:
        return
    if len(conflicts) == len(problems):
        detail = "; ".join(f"trial {trial}: {why}" for trial, why in conflicts)
        raise ConflictError(f"{source}: {detail}", trial=conflicts[0][0])
    problems.sort(key=lambda p: (p.row is not None, p.row or 0))
    raise DataValidationError(problems, source)


def _normalised(data: pd.DataFrame, source: str) -> pd.DataFrame:
    """A copy of ``data`` with a fresh index and stripped, lower-case column names; an error if empty or too long."""
    if data is None or data.empty:
        raise InputError(f"{source}: no rows to observe")
    if len(data) > MAX_OBSERVATIONS_PER_CALL:
        raise InputError(
            f"{source}: {len(data):,} rows; at most {MAX_OBSERVATIONS_PER_CALL:,} rows per observe call. Split "
            f"the file into parts of at most {MAX_OBSERVATIONS_PER_CALL:,} rows and observe each (each part is "
            "all or nothing; observing a part again is harmless)"
        )
    raw = data.reset_index(drop=True).copy()
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    return raw


def _cycles_problems(raw: pd.DataFrame, failed: np.ndarray) -> tuple[np.ndarray, list[Problem]]:
    """Rows whose ``cycles`` is out of bounds (failed rows excepted), checked before any int()."""
    bad = np.zeros(len(raw), dtype=bool)
    problems = []
    if CYCLES in raw:  # bounds before any int(): 1e20 or 10**30 must be a problem, not an OverflowError
        for i, value in enumerate(raw[CYCLES].tolist()):
            reason = _cycles_problem(value)
            if reason is not None and not failed[i]:
                problems.append(Problem(i + 1, CYCLES, reason))
                bad[i] = True
    return bad, problems


def _one_per_cell(problems: list[Problem]) -> list[Problem]:
    """The first problem of each cell (the schema's, when it already named the cell); whole-file ones all."""
    seen: set[tuple[int | None, str | None]] = set()
    unique = []
    for problem in problems:
        if problem.row is None or (problem.row, problem.column) not in seen:
            seen.add((problem.row, problem.column))
            unique.append(problem)
    return unique


def _conflict_reason(trial: StoredTrial) -> str:
    if trial.user_attrs.get("lease_expired"):
        return (
            f"suggestion {trial.number}'s lease expired ({trial.user_attrs.get('failure_reason', '')}); it went back "
            "to the pool. Send the row without 'trial' to record the result as a new observation"
        )
    return f"suggestion {trial.number} was already observed with another result"


def _cycles_problem(value: Any) -> str | None:
    """Why a ``cycles`` cell is out of bounds (None if blank or fine); never converts to int before checking."""
    if isinstance(value, bool):
        return f"{value!r} is not a number of cycles"
    if _blank(value) or (not isinstance(value, str) and pd.isna(value)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None  # not a number: the schema check names it
    except OverflowError:
        return f"{value} is more than {MAX_CYCLES:,} cycles"
    if not math.isfinite(number):
        return f"{value} is not a finite number of cycles"
    if number < 1:
        return f"{value} must be at least 1 cycle"
    if number > MAX_CYCLES:
        return f"{value} is more than {MAX_CYCLES:,} cycles"
    return None


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    if value is pd.NA or value is pd.NaT:
        return True
    return not str(value).strip()


def _trial_number(row: dict[str, Any]) -> int | str | None:
    """The row's ``trial`` as an int; the raw text when it is not a number (reported by the matcher); None if blank."""
    given = row.get(TRIAL_COLUMN)
    if _blank(given):
        return None
    if isinstance(given, bool):
        return str(given)
    try:
        number = float(given)
    except (TypeError, ValueError, OverflowError):
        return str(given)
    if not math.isfinite(number) or not number.is_integer() or number < 0 or number > 2**31:
        return str(given)
    return int(number)
