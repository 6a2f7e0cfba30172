"""Design-of-experiment campaigns: ask what to measure next, tell what the lab measured.

A campaign is an Optuna study in Optuna storage (see :mod:`surrogate.storage`),
so a crash loses nothing and several processes or hosts can work one campaign:

* its configuration (design space, objective, warm-start rows, seed) is the
  study's user attribute ``campaign`` (JSON, never pickle);
* each suggestion is a RUNNING trial carrying ``client_id`` and ``batch``; an
  observation completes it (value = the measured objective, the measured
  targets in the user attribute ``measured``); a failed or infeasible
  experiment is a FAIL trial with ``failure_reason``; an unsolicited
  observation is added as a new COMPLETE trial.

Suggestions come from :mod:`surrogate.suggester` (physics-informed Bayesian
optimisation over every buffer of the space). Suggesting holds a lock per
campaign (:func:`surrogate.storage.exclusive`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CAPACITY_RETENTION,
    CYCLES,
    PROTOCOL,
    RATE_RETENTION,
    REFERENCE_C_RATE,
    TEST_TEMP_C,
    DesignSpace,
)
from surrogate.errors import DataValidationError, InputError, Problem
from surrogate.objectives import Objective
from surrogate.suggester import MATCH_TOLERANCE_C, MIN_FADE_CYCLES, propose_batch, space_filling

CAMPAIGN_ATTR = "campaign"
"""Study user attribute holding the campaign's configuration (JSON)."""
CAMPAIGN_FORMAT = 1
TRIAL_COLUMN = "trial"
STATUS_COLUMN = "status"
REASON_COLUMN = "reason"
FAILED_STATUSES = ("failed", "infeasible")
TAG = "surrogate-campaign"


# ==================================================================== film conductivity (Gaussian process)


# ==================================================================== suggestions
@dataclass
class Suggestion:
    """One design to measure: the trial number identifies it when the result comes back."""

    trial: int
    design: dict[str, Any]
    client_id: str | None
    batch: str
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            **self.design,
            "client_id": self.client_id,
            "batch": self.batch,
            "method": self.method,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _distributions(space: DesignSpace, objective: Objective) -> dict[str, Any]:
    dists: dict[str, Any] = {
        BUFFER: CategoricalDistribution(list(space.buffers)),
        ANNEAL_TEMP_C: FloatDistribution(*space.effective_anneal_temp_c),
    }
    if objective.test_temp_c is None:
        dists[TEST_TEMP_C] = FloatDistribution(*space.effective_test_temp_c)
    return dists


def _open_storage(storage: str | optuna.storages.BaseStorage | None) -> optuna.storages.BaseStorage:
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    from surrogate.storage import get_storage

    return get_storage(storage)


def warm_start_rows(data: pd.DataFrame, objective: Objective, space: DesignSpace) -> pd.DataFrame:
    """Rows of a validated measurement frame that inform the objective's model, with their conditions.

    Retention objectives (the :class:`PhysicsModel` relates conditions through its laws): rate rows above
    0.1 C and capacity rows under the objective's protocol after at least :data:`MIN_FADE_CYCLES` cycles, at
    any test temperature. One cell is one sample of its scatter, not many: of a cell's rate test only the row
    at the C-rate nearest the objective's is kept, of its cycling curve the first, middle and last rows
    (a cell is a buffer, anneal, test temperature and ``sample_id`` when the data has one). Conductivity
    objectives: conductivity rows (at the objective's temperature when it fixes one). Rows outside the
    space are left out (they describe other designs).
    """
    columns = [BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES, PROTOCOL]
    keep = []
    for target in objective.targets:
        rows = data[data[target].notna()]
        cell = [c for c in (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, PROTOCOL, "sample_id") if c in rows]
        if target == RATE_RETENTION:
            rows = rows[rows[C_RATE].astype(float) > REFERENCE_C_RATE]
            distance = np.abs(np.log(rows[C_RATE].astype(float) / objective.c_rate))
            rows = rows.assign(_d=distance).sort_values("_d").groupby(cell, sort=False, dropna=False).head(1)
        elif target == CAPACITY_RETENTION:
            rows = rows[(rows[CYCLES].astype(float) >= MIN_FADE_CYCLES) & (rows[PROTOCOL] == objective.protocol)]
            picked = []
            for _, curve in rows.sort_values(CYCLES).groupby(cell, sort=False, dropna=False):
                picked.append(curve.iloc[sorted({0, len(curve) // 2, len(curve) - 1})])
            rows = pd.concat(picked) if picked else rows
        elif objective.test_temp_c is not None:
            rows = rows[np.isclose(rows[TEST_TEMP_C].astype(float), objective.test_temp_c)]
        records = rows[[BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C]].to_dict("records")
        inside = np.array([not space.violations(r) for r in records], dtype=bool)
        keep.append(rows[inside][[*columns, target]])
    return pd.concat(keep, ignore_index=True) if keep else pd.DataFrame()


class Campaign:
    """A design-of-experiment campaign stored as an Optuna study (see the module docstring)."""

    def __init__(self, study: optuna.Study, config: dict[str, Any], storage: optuna.storages.BaseStorage) -> None:
        self.study = study
        self.config = config
        self.storage = storage
        """The storage the study lives in (as opened by :func:`surrogate.storage.get_storage`)."""
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.space = DesignSpace.from_dict(config["space"])
        self.objective = Objective.from_dict(config["objective"])

    @property
    def name(self) -> str:
        return self.study.study_name

    # ---------------------------------------------------------------- create / load
    @classmethod
    def create(
        cls,
        name: str,
        objective: Objective,
        space: DesignSpace | None = None,
        storage: str | optuna.storages.BaseStorage | None = None,
        warm_start: pd.DataFrame | None = None,
        warm_start_source: str | None = None,
        seed: int = 0,
    ) -> Campaign:
        """Create campaign ``name`` (an :class:`InputError` if it exists); ``warm_start`` is a validated frame."""
        name = _check_name(name)
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seed: {seed!r} must be a whole number >= 0")
        space = space or DesignSpace()
        objective.check_space(space)
        rows = warm_start_rows(warm_start, objective, space) if warm_start is not None else pd.DataFrame()
        config = {
            "format": CAMPAIGN_FORMAT,
            "created": _now(),
            "space": space.to_dict(),
            "objective": objective.to_dict(),
            "seed": int(seed),
            "warm_start": {
                "source": warm_start_source,
                "rows": json.loads(rows.to_json(orient="records")) if not rows.empty else [],
            },
        }
        store = _open_storage(storage)
        try:
            study = optuna.create_study(study_name=name, storage=store, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:
            raise InputError(f"campaign {name!r} already exists; pick another name") from None
        study.set_user_attr(CAMPAIGN_ATTR, json.dumps(config))
        study.set_user_attr("kind", TAG)
        return cls(study, config, store)

    @classmethod
    def load(cls, name: str, storage: str | optuna.storages.BaseStorage | None = None) -> Campaign:
        """Open campaign ``name``; an :class:`InputError` naming the known campaigns if it does not exist."""
        store = _open_storage(storage)
        try:
            study = optuna.load_study(study_name=name, storage=store)
        except KeyError:
            known = [c["name"] for c in list_campaigns(store)]
            raise InputError(
                f"campaign {name!r} does not exist; known campaigns: {', '.join(known) or '(none)'}"
            ) from None
        raw = study.user_attrs.get(CAMPAIGN_ATTR)
        if raw is None:
            raise InputError(f"study {name!r} is not a campaign (no {CAMPAIGN_ATTR!r} attribute)")
        return cls(study, json.loads(raw), store)

    # ---------------------------------------------------------------- data
    def _trials(self, states: tuple[TrialState, ...]) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states)

    def _design_of(self, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        design = {
            BUFFER: trial.params[BUFFER],
            ANNEAL_TEMP_C: float(trial.params[ANNEAL_TEMP_C]),
            TEST_TEMP_C: float(trial.params.get(TEST_TEMP_C, self.objective.test_temp_c)),
        }
        return design | self.objective.conditions()

    def observations(self) -> pd.DataFrame:
        """Every completed observation plus the warm-start rows: designs and measured targets (contract units)."""
        rows = []
        for trial in self._trials((TrialState.COMPLETE,)):
            measured = json.loads(trial.user_attrs.get("measured", "{}"))
            rows.append(self._design_of(trial) | measured | {"trial": trial.number, "objective": trial.value})
        frame = pd.DataFrame(rows)
        warm = pd.DataFrame(self.config["warm_start"]["rows"])
        if not warm.empty:
            for key, value in self.objective.conditions().items():
                warm[key] = warm[key].fillna(value) if key in warm else value
            frame = pd.concat([frame, warm.assign(trial=np.nan)], ignore_index=True)
        for target in self.objective.targets:
            if target not in frame:
                frame[target] = np.nan
        return frame

    def pending(self, client_id: str | None = None) -> list[Suggestion]:
        """Suggestions handed out and not yet observed (all, or those of ``client_id``)."""
        out = []
        for trial in self._trials((TrialState.RUNNING,)):
            if client_id is not None and trial.user_attrs.get("client_id") != client_id:
                continue
            out.append(
                Suggestion(
                    trial.number,
                    self._design_of(trial),
                    trial.user_attrs.get("client_id"),
                    trial.user_attrs.get("batch", ""),
                    trial.user_attrs.get("method", ""),
                )
            )
        return out

    # ---------------------------------------------------------------- ask
    def suggest(self, n: int = 1, client_id: str | None = None) -> list[Suggestion]:
        """``n`` designs to measure next, stored as pending suggestions.

        With a ``client_id`` that already has pending suggestions, those are returned again and nothing
        new is created (a retried request gets the same batch); asking for another ``n`` then is an
        :class:`InputError`. Suggesting holds the campaign's lock
        (:func:`surrogate.storage.exclusive`), so simultaneous calls, from any process or host sharing the
        storage, run one after the other: two calls with the same new ``client_id`` create one batch, and
        each call sees the others' suggestions as pending.
        """
        from surrogate.storage import exclusive

        if not isinstance(n, int) or n < 1 or n > 100:
            raise InputError(f"n: {n!r} must be a whole number from 1 to 100")
        if client_id is not None:
            client_id = str(client_id).strip()
            if not client_id:
                raise InputError("client_id: must not be empty")
        with exclusive(self.storage, f"surrogate-campaign-suggest:{self.name}"):
            if client_id is not None:
                existing = self.pending(client_id)
                if existing and len(existing) != n:
                    trials = ", ".join(str(s.trial) for s in existing)
                    raise InputError(
                        f"client_id: {client_id!r} already has {len(existing)} pending suggestion(s) (trials "
                        f"{trials}); a retry must ask for the same n={len(existing)}. Observe them first, or use "
                        "another client_id for a new batch"
                    )
                if existing:
                    return existing
            return self._suggest_new(n, client_id)

    def _suggest_new(self, n: int, client_id: str | None) -> list[Suggestion]:
        observed = self.observations()
        pending = pd.DataFrame([s.design for s in self.pending()], columns=[BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C])
        failed = pd.DataFrame(
            [self._design_of(t) for t in self._trials((TrialState.FAIL,)) if BUFFER in t.params],
            columns=[BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C],
        )
        modelled = (
            all(t in observed and observed[t].notna().any() for t in self.objective.targets)
            if not observed.empty
            else False
        )
        n_designs = len(self.study.get_trials(deepcopy=False))
        seed = int(self.config.get("seed", 0))
        # Space-filling while nothing can be modelled yet; then the model (its priors cover untried buffers).
        n_fill = 0 if modelled else n
        designs = []
        if n_fill:
            designs.append(space_filling(self.space, self.objective, n_designs, n_fill, seed))
        if n > n_fill:
            held = pd.concat([pending, *designs], ignore_index=True)
            designs.append(
                propose_batch(self.space, self.objective, observed, n - n_fill, held, failed, seed=seed + n_designs)
            )
        frame = pd.concat(designs, ignore_index=True)
        methods = ["space-filling"] * n_fill + ["bayes-ei"] * (len(frame) - n_fill)
        return self._store_suggestions(frame, methods, client_id)

    def _store_suggestions(self, frame: pd.DataFrame, methods: list[str], client_id: str | None) -> list[Suggestion]:
        batch = uuid.uuid4().hex[:12]
        dists = _distributions(self.space, self.objective)
        out = []
        for design, method in zip(frame.to_dict("records"), methods, strict=True):
            params = {k: (design[k] if k == BUFFER else float(design[k])) for k in dists}
            attrs = {"batch": batch, "method": method, "suggested_at": _now()}
            if client_id is not None:
                attrs["client_id"] = client_id
            number = self._add_trial(
                optuna.trial.create_trial(
                    state=TrialState.RUNNING, params=params, distributions=dists, user_attrs=attrs
                )
            )
            out.append(Suggestion(number, self._design_of(self._frozen(number)), client_id, batch, method))
        return out

    def _add_trial(self, trial: optuna.trial.FrozenTrial) -> int:
        """Add a trial and return its number (safe when other processes add trials at the same time)."""
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=trial)
        return self.storage.get_trial_number_from_id(trial_id)

    def _frozen(self, number: int) -> optuna.trial.FrozenTrial:
        return self.storage.get_trial(self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number))

    # ---------------------------------------------------------------- tell
    def observe(self, data: pd.DataFrame, source: str = "observations") -> dict[str, Any]:
        """Record results: validated like any measurement file, matched to suggestions, all or nothing.

        ``data`` is a raw table (as read from CSV): design columns, the objective's targets at its
        conditions, and optionally ``trial`` (the suggestion's number), ``status`` (``ok``, ``failed``
        or ``infeasible``) and ``reason``. Every row is checked first; any problem raises
        :class:`InputError` (a :class:`DataValidationError` listing every problem) and nothing is
        written. Returns counts and the trial numbers written.
        """
        records, already = self._validate_observations(data, source)
        written = []
        for record in records:
            written.append(self._write(record))
        return {
            "campaign": self.name,
            "observed": sum(r["state"] == TrialState.COMPLETE for r in records),
            "failed": sum(r["state"] == TrialState.FAIL for r in records),
            "trials": written,
            "already_recorded": already,
        }

    def _recorded_before(
        self,
        given: int | None | str,
        design: dict[str, Any],
        values: dict[str, float],
        failed: bool,
        finished: dict[int, optuna.trial.FrozenTrial],
    ) -> int | None:
        """A row already in the campaign: its trial number (a retry, nothing to write), -1 if that trial
        holds another result, None if the row is new. Observing the same file twice is therefore safe."""
        candidates = [finished[given]] if isinstance(given, int) and given in finished else []
        if isinstance(given, int) and not candidates:
            return None
        if given is None:
            candidates = list(finished.values())
        for trial in candidates:
            same_design = self._design_of(trial)[BUFFER] == design[BUFFER] and all(
                abs(self._design_of(trial)[k] - design[k]) <= MATCH_TOLERANCE_C for k in (ANNEAL_TEMP_C, TEST_TEMP_C)
            )
            measured = json.loads(trial.user_attrs.get("measured", "{}"))
            same_result = (
                (trial.state == TrialState.FAIL) == failed
                and measured.keys() == values.keys()
                and all(np.isclose(measured[k], values[k], rtol=1e-12, atol=0.0) for k in values)
            )
            if same_design and same_result:
                return trial.number
        return -1 if candidates and isinstance(given, int) else None

    def _validate_observations(self, data: pd.DataFrame, source: str) -> tuple[list[dict[str, Any]], list[int]]:
        from surrogate.schema import check_frame

        if data is None or data.empty:
            raise InputError(f"{source}: no rows to observe")
        raw = data.reset_index(drop=True).copy()
        raw.columns = [str(c).strip().lower() for c in raw.columns]
        status = raw[STATUS_COLUMN].fillna("").astype(str).str.strip().str.lower() if STATUS_COLUMN in raw else None
        problems: list[Problem] = []
        if status is not None:
            for i, value in enumerate(status):
                if value not in ("", "ok", *FAILED_STATUSES):
                    problems.append(Problem(i + 1, STATUS_COLUMN, f"{value!r} is not ok, failed or infeasible"))
        failed = status.isin(FAILED_STATUSES).to_numpy() if status is not None else np.zeros(len(raw), dtype=bool)
        extra = [c for c in (TRIAL_COLUMN, STATUS_COLUMN, REASON_COLUMN) if c in raw]
        ok_index = np.flatnonzero(~failed)
        checked = None
        if len(ok_index):
            result = check_frame(raw.iloc[ok_index].drop(columns=extra).reset_index(drop=True), source)
            for p in result.problems:
                row = int(ok_index[p.row - 1]) + 1 if p.row is not None else None
                problems.append(Problem(row, p.column, p.reason))
            checked = result.frame
        pending = {t.number: t for t in self._trials((TrialState.RUNNING,))}
        finished = {t.number: t for t in self._trials((TrialState.COMPLETE, TrialState.FAIL))}
        claimed: set[int] = set()
        records = []
        already: list[int] = []
        for i in range(len(raw)):
            row_no = i + 1
            given = _trial_number(raw.iloc[i])
            if failed[i]:
                known = pending.get(given) or finished.get(given) if isinstance(given, int) else None
                if known is not None and _blank(raw.iloc[i].get(BUFFER)):
                    design, row_problems = self._design_of(known), []  # "trial N failed" needs no design
                else:
                    design, row_problems = self._design_from_raw(raw.iloc[i])
                values: dict[str, float] = {}
            else:
                j = int(np.searchsorted(ok_index, i))
                record = checked.iloc[j] if checked is not None else None
                design, row_problems = self._design_from_raw(record)
                values, more = self._measured(record)
                row_problems += more
            problems += [Problem(row_no, col, why) for col, why in row_problems]
            if row_problems:
                continue
            done = self._recorded_before(given, design, values, bool(failed[i]), finished)
            if done is not None:
                if done >= 0:
                    already.append(done)  # a retried observation: nothing to write
                else:
                    problems.append(
                        Problem(row_no, TRIAL_COLUMN, f"suggestion {given} was already observed with another result")
                    )
                continue
            trial_no = self._match(raw.iloc[i], design, pending, claimed, row_no, problems)
            if trial_no is not None:
                claimed.add(trial_no)
            reason = str(raw.iloc[i].get(REASON_COLUMN, "") or "").strip() if REASON_COLUMN in raw else ""
            records.append(
                {
                    "design": design,
                    "values": values,
                    "trial": trial_no,
                    "state": TrialState.FAIL if failed[i] else TrialState.COMPLETE,
                    "reason": reason or (status.iloc[i] if status is not None and failed[i] else ""),
                }
            )
        if problems:
            problems.sort(key=lambda p: (p.row is not None, p.row or 0))
            raise DataValidationError(problems, source)
        return records, sorted(set(already))

    def _design_from_raw(self, row: pd.Series | None) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
        """The design of one row, with problems: missing values, outside the space, wrong fixed temperature."""
        from surrogate.design import canonical_buffer

        problems: list[tuple[str | None, str]] = []
        design: dict[str, Any] = {}
        value = row.get(BUFFER) if row is not None else None
        if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
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
            except (TypeError, ValueError):
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

    def _measured(self, record: pd.Series) -> tuple[dict[str, float], list[tuple[str | None, str]]]:
        """The objective's targets of a validated row, checking they were measured at the objective's conditions."""
        values, problems = {}, []
        for target in self.objective.targets:
            value = record.get(target)
            if value is None or pd.isna(value):
                problems.append((target, "missing: the objective needs it (or give status=failed)"))
                continue
            values[target] = float(value)
            if target == "rate_retention" and not np.isclose(float(record[C_RATE]), self.objective.c_rate):
                problems.append((C_RATE, f"{record[C_RATE]:g} C but the objective asks {self.objective.c_rate:g} C"))
            if target == "capacity_retention":
                if int(record[CYCLES]) != self.objective.cycles:
                    problems.append(
                        (CYCLES, f"{int(record[CYCLES])} but the objective asks {self.objective.cycles} cycles")
                    )
                if record[PROTOCOL] != self.objective.protocol:
                    problems.append((PROTOCOL, f"{record[PROTOCOL]} but the objective asks {self.objective.protocol}"))
        return values, problems

    def _match(
        self,
        raw: pd.Series,
        design: dict[str, Any],
        pending: dict[int, optuna.trial.FrozenTrial],
        claimed: set[int],
        row_no: int,
        problems: list[Problem],
    ) -> int | None:
        """The pending suggestion a row answers: by its ``trial`` number, else by design; None if unsolicited."""
        given = raw.get(TRIAL_COLUMN) if TRIAL_COLUMN in raw.index else None
        if given is not None and not (isinstance(given, str) and not given.strip()) and not pd.isna(given):
            try:
                number = int(float(given))
            except (TypeError, ValueError):
                problems.append(Problem(row_no, TRIAL_COLUMN, f"{given!r} is not a trial number"))
                return None
            if number not in pending:
                problems.append(Problem(row_no, TRIAL_COLUMN, f"{number} is not a pending suggestion of this campaign"))
                return None
            if number in claimed:
                problems.append(Problem(row_no, TRIAL_COLUMN, f"suggestion {number} is answered twice"))
                return None
            suggested = self._design_of(pending[number])
            if suggested[BUFFER] != design[BUFFER] or any(
                abs(suggested[k] - design[k]) > MATCH_TOLERANCE_C for k in (ANNEAL_TEMP_C, TEST_TEMP_C)
            ):
                problems.append(Problem(row_no, TRIAL_COLUMN, f"the design differs from suggestion {number}'s"))
                return None
            return number
        for number, trial in pending.items():
            if number in claimed:
                continue
            suggested = self._design_of(trial)
            if suggested[BUFFER] == design[BUFFER] and all(
                abs(suggested[k] - design[k]) <= MATCH_TOLERANCE_C for k in (ANNEAL_TEMP_C, TEST_TEMP_C)
            ):
                return number
        return None

    def _write(self, record: dict[str, Any]) -> int:
        attrs = {"observed_at": _now()}
        if record["values"]:
            attrs["measured"] = json.dumps(record["values"])
        if record["state"] == TrialState.FAIL:
            attrs["failure_reason"] = record["reason"] or "failed"
        value = float(self.objective.value(record["values"])) if record["state"] == TrialState.COMPLETE else None
        if record["trial"] is not None:
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, record["trial"])
            for key, item in attrs.items():
                self.storage.set_trial_user_attr(trial_id, key, item)
            self.study.tell(record["trial"], value, state=record["state"])
            return record["trial"]
        dists = _distributions(self.space, self.objective)
        params = {k: (record["design"][k] if k == BUFFER else float(record["design"][k])) for k in dists}
        return self._add_trial(
            optuna.trial.create_trial(
                state=record["state"], value=value, params=params, distributions=dists, user_attrs=attrs
            )
        )

    # ---------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """Counts, the best observation so far and the pending suggestions (JSON-ready)."""
        trials = self.study.get_trials(deepcopy=False)
        counts = {
            s.name.lower(): sum(t.state == s for t in trials)
            for s in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)
        }
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = None
        if complete:
            top = max(complete, key=lambda t: t.value)
            best = {"trial": top.number, **self._design_of(top), "objective": top.value} | json.loads(
                top.user_attrs.get("measured", "{}")
            )
        return {
            "campaign": self.name,
            "objective": self.objective.to_dict() | {"name": self.objective.name, "unit": self.objective.unit},
            "space": self.space.to_dict(),
            "created": self.config.get("created"),
            "observed": counts["complete"],
            "failed": counts["fail"],
            "pending": counts["running"],
            "warm_start_rows": len(self.config["warm_start"]["rows"]),
            "warm_start_source": self.config["warm_start"]["source"],
            "best": best,
            "pending_suggestions": [s.to_dict() for s in self.pending()],
        }


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip()


def _trial_number(row: pd.Series) -> int | str | None:
    """The row's ``trial`` as an int; the raw text when it is not a number (reported by the matcher); None if blank."""
    given = row.get(TRIAL_COLUMN) if TRIAL_COLUMN in row.index else None
    if _blank(given):
        return None
    try:
        number = float(given)
    except (TypeError, ValueError):
        return str(given)
    return int(number) if number.is_integer() else str(given)


def _check_name(name: str) -> str:
    name = str(name or "").strip()
    if not name or len(name) > 200 or any(c in name for c in "\n\r\t"):
        raise InputError(f"campaign name: {name!r} must be 1-200 printable characters")
    return name


def list_campaigns(storage: str | optuna.storages.BaseStorage | None = None) -> list[dict[str, Any]]:
    """Every campaign in the storage: name, objective, counts of observations and pending suggestions."""
    store = _open_storage(storage)
    out = []
    for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
        raw = summary.user_attrs.get(CAMPAIGN_ATTR)
        if raw is None:
            continue
        config = json.loads(raw)
        out.append(
            {
                "name": summary.study_name,
                "objective": Objective.from_dict(config["objective"]).name,
                "created": config.get("created"),
                "trials": summary.n_trials,
            }
        )
    return out


def read_observations(path: str | Path) -> pd.DataFrame:
    """Read an observations file (CSV or Parquet) as a raw table for :meth:`Campaign.observe`."""
    from surrogate.schema import read_table

    raw, problems = read_table(path)
    if problems:
        raise DataValidationError(problems, Path(path).name)
    if raw.empty:
        raise InputError(f"{Path(path).name}: the file has no rows")
    return raw
