"""Design-of-experiment campaigns: ask what to measure next, tell what the lab measured.

A campaign is an Optuna study in Optuna storage (see :mod:`surrogate.storage`),
so a crash loses nothing and several processes or hosts can work one campaign:

* its configuration (design space, objective, warm-start rows, seed, lease) is
  the study's user attribute ``campaign`` (JSON, never pickle); the study is
  labelled ``kind`` = ``surrogate-campaign`` and its metric is named after the
  objective (what optuna-dashboard shows);
* each suggestion is a RUNNING trial carrying ``client_id``, ``batch`` and a
  lease (``lease_expires_at``, UTC); an observation completes it (value = the
  measured objective, the measured targets in the user attribute
  ``measured``); a failed or infeasible experiment is a FAIL trial with
  ``failure_reason``; an unsolicited observation is added as a new COMPLETE
  trial; a suggestion whose lease ran out goes back to the pool as a FAIL trial
  with ``lease_expired`` = true and a ``failure_reason`` saying so.

Every change of state (suggest, observe, renew, reclaiming expired leases)
holds the campaign's lock (:func:`surrogate.storage.exclusive`: a PostgreSQL
advisory lock, a file lock next to an SQLite file), re-reads the trials under
it and writes with :func:`surrogate.storage.write_trials` (one transaction, all
or nothing). What this guarantees, and the tests that prove it, is in
docs/reliability.md.

Suggestions come from :mod:`surrogate.suggester` (physics-informed Bayesian
optimisation over every buffer of the space).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import uuid
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    MATERIAL,
    PROTOCOL,
    RATE_RETENTION,
    REFERENCE_C_RATE,
    TEST_TEMP_C,
    DesignSpace,
)
from surrogate.errors import ConflictError, DataValidationError, InputError, NotFoundError, Problem
from surrogate.materials import declare_carried, entries_in
from surrogate.objectives import Objective
from surrogate.parameters import CYCLES_PARAMETER
from surrogate.storage import StoredTrial
from surrogate.suggester import MATCH_TOLERANCE_C, MIN_FADE_CYCLES, propose_batch, space_filling

CAMPAIGN_ATTR = "campaign"
"""Study user attribute holding the campaign's configuration (JSON)."""
CAMPAIGN_FORMAT = 1
CATALOGUE_KEY = "catalogue"
"""Key of the configuration holding the declared (non-default) buffers and material of the campaign's space, as
a materials document (:func:`surrogate.materials.entries_in`); absent in campaigns made before it existed."""
TRIAL_COLUMN = "trial"
STATUS_COLUMN = "status"
REASON_COLUMN = "reason"
SAMPLE_COLUMN = "sample_id"
"""Optional column of an observation: the film / cell measured (stored as the trial's user attribute ``sample_id``)."""
RECORDED_BY = "recorded_by"
"""Who sent an observation (a person or a robot): the trial's user attribute, written with the observation."""
MAX_RECORDED_BY_CHARS = 128
FAILED_STATUSES = ("failed", "infeasible")
TAG = "surrogate-campaign"
"""Value of the study user attribute ``kind`` that labels a study as a campaign."""
LOCK_PREFIX = "surrogate-campaign-suggest:"
"""Prefix of the campaign's lock name (:func:`surrogate.storage.exclusive`); kept from format 1 for compatibility."""

MAX_OBSERVATIONS_PER_CALL = 10_000
"""Rows one observe call accepts, from the CLI and over HTTP alike (``serving/`` imports this number)."""
MAX_CYCLES = int(CYCLES_PARAMETER.high)
"""Largest ``cycles`` an observation row may carry: the declared bound (checked before any conversion to int)."""
CAMPAIGN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Campaign names: 1-64 characters, letters, digits, '.', '_' and '-', starting with a letter or digit."""
_NAME_RE = re.compile(CAMPAIGN_NAME_PATTERN)

LEASE_ENV = "SURROGATE_LEASE_S"
"""Environment variable: lease of a suggestion in seconds, for campaigns created without their own."""
DEFAULT_LEASE_S = 24 * 3600.0
"""Lease of a suggestion when neither the campaign nor ``$SURROGATE_LEASE_S`` sets one: 24 h."""
MAX_LEASE_S = 366 * 24 * 3600.0

MAX_SUGGEST_OBSERVATIONS = 400
"""Observation rows the suggester is given at most (:func:`capped_observations` above that): its cost grows
with the rows it gets (every measured design is in the baseline of its expected improvement) and stops here."""
REGION_BINS = 8
"""Bins per temperature axis of the design regions :func:`capped_observations` keeps one row of each."""


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
    lease_expires_at: str | None = None
    """UTC time (ISO 8601) after which an unanswered suggestion goes back to the pool; renew to keep it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            **self.design,
            "client_id": self.client_id,
            "batch": self.batch,
            "method": self.method,
            "lease_expires_at": self.lease_expires_at,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _parse_time(text: Any) -> datetime | None:
    """An ISO 8601 time as aware UTC (naive times are taken as UTC); None if absent or unreadable."""
    try:
        moment = datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_lease_s(value: Any, field: str = "lease_s") -> float:
    """A lease in seconds: a finite number > 0 and at most a year; an :class:`InputError` naming ``field`` otherwise."""
    try:
        lease = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{field}: {value!r} is not a number of seconds") from None
    if isinstance(value, bool) or not math.isfinite(lease) or lease <= 0 or lease > MAX_LEASE_S:
        raise InputError(f"{field}: {value!r} must be a number of seconds > 0 and at most {MAX_LEASE_S:.0f} (a year)")
    return lease


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


def default_lease_s() -> float:
    """``$SURROGATE_LEASE_S`` when set, else :data:`DEFAULT_LEASE_S` (24 h)."""
    from surrogate.settings import get_settings

    lease = get_settings().lease_s
    return check_lease_s(lease, LEASE_ENV) if lease is not None else DEFAULT_LEASE_S


def space_catalogue(space: DesignSpace) -> dict[str, list[dict[str, Any]]]:
    """The catalogue entries of the space's buffers and material that are not packaged defaults (a materials
    document): what a campaign carries, so that any process opens it without the materials file."""
    return entries_in(pd.DataFrame({BUFFER: list(space.buffers), MATERIAL: space.material}))


def _distributions(space: DesignSpace, objective: Objective) -> dict[str, Any]:
    dists: dict[str, Any] = {
        BUFFER: CategoricalDistribution(list(space.buffers)),
        ANNEAL_TEMP_C: FloatDistribution(*space.effective_anneal_temp_c),
    }
    if objective.test_temp_c is None:
        dists[TEST_TEMP_C] = FloatDistribution(*space.effective_test_temp_c)
    return dists


def capped_observations(
    observed: pd.DataFrame, space: DesignSpace, cap: int = MAX_SUGGEST_OBSERVATIONS, seed: int = 0
) -> pd.DataFrame:
    """At most ``cap`` rows of a campaign's observations (:meth:`Campaign.observations`), as the suggester sees them.

    All rows when there are no more than ``cap``. Else a stratified subsample: the best fifth by objective,
    then the best row of every design region not yet covered (buffer x :data:`REGION_BINS` anneal x
    :data:`REGION_BINS` test-temperature bins of the space), then a seeded random draw of the rest. The number
    of campaign rows (with a ``trial``) keeps its remainder modulo the suggester's ``HEDGE_EVERY``, so the
    one-in-four hedged suggestion comes when it would with every row.
    """
    from surrogate.suggester import HEDGE_EVERY

    if len(observed) <= cap:
        return observed
    rows = observed.reset_index(drop=True)
    score = rows["objective"].astype(float).fillna(-np.inf) if "objective" in rows else pd.Series(-np.inf, rows.index)
    by_score = list(score.sort_values(ascending=False, kind="stable").index)
    chosen = dict.fromkeys(by_score[: cap // 5])
    cells = [rows[BUFFER].astype(str)]
    for name, (low, high) in (
        (ANNEAL_TEMP_C, space.effective_anneal_temp_c),
        (TEST_TEMP_C, space.effective_test_temp_c),
    ):
        scaled = (rows[name].astype(float) - low) / max(high - low, 1e-9)
        cells.append(np.clip(np.floor(scaled * REGION_BINS), 0, REGION_BINS - 1).astype(int).astype(str))
    cell = cells[0] + "|" + cells[1] + "|" + cells[2]
    covered = set(cell[list(chosen)])
    rng = np.random.default_rng(seed)
    firsts = []  # the best row of each region the best fifth does not cover
    for i in by_score:
        if cell[i] not in covered:
            covered.add(cell[i])
            firsts.append(i)
    for i in rng.permutation(firsts)[: max(cap - len(chosen), 0)]:
        chosen[int(i)] = None
    rest = [i for i in range(len(rows)) if i not in chosen]
    for i in rng.permutation(rest)[: max(cap - len(chosen), 0)]:
        chosen[int(i)] = None
    trial_rows = rows["trial"].notna() if "trial" in rows else pd.Series(False, rows.index)
    surplus = (int(trial_rows[list(chosen)].sum()) - int(trial_rows.sum())) % HEDGE_EVERY
    for i in [i for i in reversed(chosen) if trial_rows[i]][:surplus]:  # the last added: the random draw
        del chosen[i]
    return rows.loc[sorted(chosen)].reset_index(drop=True)


def _open_storage(storage: str | optuna.storages.BaseStorage | None) -> optuna.storages.BaseStorage:
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    from surrogate.storage import get_storage

    return get_storage(storage)


def warm_start_rows(data: pd.DataFrame, objective: Objective, space: DesignSpace) -> pd.DataFrame:
    """Rows of a validated measurement frame that inform the objective's model, with their conditions.

    Retention objectives (the campaign's physics-prior model relates conditions through its laws): rate rows above
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
        declare_carried(config.get(CATALOGUE_KEY), f"campaign {study.study_name!r}'s catalogue")
        self.space = DesignSpace.from_dict(config["space"])
        self.objective = Objective.from_dict(config["objective"])
        self.lock_wait_s: float | None = None
        """Seconds a change of state waits for the campaign's lock before :class:`~surrogate.errors.BusyError`
        (None: :data:`surrogate.storage.LOCK_WAIT_S`)."""

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def lease_s(self) -> float:
        """Seconds a suggestion stays pending without a result: the campaign's ``lease_s``, else
        ``$SURROGATE_LEASE_S``, else 24 h."""
        own = self.config.get("lease_s")
        return check_lease_s(own, "campaign lease_s") if own is not None else default_lease_s()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the campaign's lock (every process and host sharing the storage)."""
        from surrogate.storage import exclusive

        with exclusive(self.storage, LOCK_PREFIX + self.name, self.lock_wait_s, f"campaign {self.name!r}"):
            yield

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
        lease_s: float | None = None,
    ) -> Campaign:
        """Create campaign ``name`` (a :class:`ConflictError` if it exists); ``warm_start`` is a validated frame.

        ``lease_s``: seconds a suggestion stays pending without a result before it goes back to the pool
        (default: ``$SURROGATE_LEASE_S``, else 24 h, read when suggesting).
        """
        name = _check_name(name)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise InputError(f"seed: {seed!r} must be a whole number >= 0")
        lease = check_lease_s(lease_s) if lease_s is not None else None
        space = space or DesignSpace()
        objective.check_space(space)
        rows = warm_start_rows(warm_start, objective, space) if warm_start is not None else pd.DataFrame()
        config = {
            "format": CAMPAIGN_FORMAT,
            "created": _now(),
            "space": space.to_dict(),
            CATALOGUE_KEY: space_catalogue(space),
            "objective": objective.to_dict(),
            "seed": int(seed),
            "warm_start": {
                "source": warm_start_source,
                "rows": json.loads(rows.to_json(orient="records")) if not rows.empty else [],
            },
        }
        if lease is not None:
            config["lease_s"] = lease
        store = _open_storage(storage)
        try:
            study = optuna.create_study(study_name=name, storage=store, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:
            raise ConflictError(f"campaign {name!r} already exists; pick another name") from None
        try:
            study.set_user_attr("kind", TAG)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([objective.name])
            _store_warm_start_studies(store, name, rows, space, warm_start_source)
            study.set_user_attr(CAMPAIGN_ATTR, json.dumps(config))  # last: a study without it is not a campaign
        except BaseException:  # leave no half-made campaign behind: the name stays free
            for leftover in (name, *(warm_start_study_name(name, t) for t in (CONDUCTIVITY, *RETENTIONS))):
                with suppress(KeyError):
                    optuna.delete_study(study_name=leftover, storage=store)
            raise
        return cls(study, config, store)

    @classmethod
    def load(cls, name: str, storage: str | optuna.storages.BaseStorage | None = None) -> Campaign:
        """Open campaign ``name``; a :class:`NotFoundError` if it does not exist (no store is created then)."""
        from surrogate.storage import store_exists

        name = _check_name(name)
        missing = NotFoundError(
            f"campaign {name!r} does not exist (`surrogate campaign list` lists the campaigns of this storage)"
        )
        if not isinstance(storage, optuna.storages.BaseStorage) and not store_exists(storage):
            raise missing
        store = _open_storage(storage)
        try:
            study = optuna.load_study(study_name=name, storage=store)
        except KeyError:
            raise missing from None
        raw = study.user_attrs.get(CAMPAIGN_ATTR)
        if raw is None:
            raise NotFoundError(f"study {name!r} is not a campaign (no {CAMPAIGN_ATTR!r} attribute)")
        return cls(study, json.loads(raw), store)

    # ---------------------------------------------------------------- data
    def _trials(self, states: tuple[TrialState, ...]) -> list[StoredTrial]:
        """The campaign's trials in ``states`` with every user attribute, in order of number.

        Read with :func:`surrogate.storage.read_trials`, never Optuna's ``get_trials``: its cached storage reads
        every trial of the study on the first call, whatever states are asked for.
        """
        from surrogate.storage import read_trials

        return read_trials(self.storage, self.study_id, states, None)

    def _design_of(self, trial: StoredTrial) -> dict[str, Any]:
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
            rows.append(
                self._design_of(trial)
                | measured
                | {"trial": trial.number, "objective": trial.value, RECORDED_BY: trial.user_attrs.get(RECORDED_BY)}
            )
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

    def recorded(self) -> list[dict[str, Any]]:
        """Every recorded experiment, in trial order (JSON-ready): observed (COMPLETE) and failed trials.

        Each entry: ``trial``, ``status`` (``observed`` or ``failed``), the design, ``objective`` (None when
        failed), the measured targets, ``sample_id``, ``recorded_by`` (None when the sender was not given),
        ``observed_at`` (UTC) and, for a failed experiment, ``reason``. Suggestions whose lease expired are no
        experiments and are left out; warm-start rows are not trials and are left out too.
        """
        out = []
        for trial in self._trials((TrialState.COMPLETE, TrialState.FAIL)):
            attrs = trial.user_attrs
            if trial.state == TrialState.FAIL and (attrs.get("lease_expired") or BUFFER not in trial.params):
                continue
            entry = {
                "trial": trial.number,
                "status": "observed" if trial.state == TrialState.COMPLETE else "failed",
                **self._design_of(trial),
                "objective": trial.value if trial.state == TrialState.COMPLETE else None,
                **json.loads(attrs.get("measured", "{}")),
                SAMPLE_COLUMN: attrs.get(SAMPLE_COLUMN) or None,
                RECORDED_BY: attrs.get(RECORDED_BY),
                "observed_at": attrs.get("observed_at"),
            }
            if trial.state == TrialState.FAIL:
                entry["reason"] = attrs.get("failure_reason", "")
            out.append(entry)
        return out

    def pending(self, client_id: str | None = None) -> list[Suggestion]:
        """Suggestions handed out and not yet observed (all, or those of ``client_id``).

        A suggestion past its lease stays here until the next ``suggest`` or ``status`` reclaims it.
        """
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
                    _iso(self._lease_expiry(trial)),
                )
            )
        return out

    # ---------------------------------------------------------------- leases
    def _lease_expiry(self, trial: StoredTrial) -> datetime:
        """When a pending trial's lease ends: its ``lease_expires_at``, else (format 1 suggestions) its
        suggestion time plus the campaign's lease."""
        expiry = _parse_time(trial.user_attrs.get("lease_expires_at"))
        if expiry is not None:
            return expiry
        start = _parse_time(trial.user_attrs.get("suggested_at"))
        if start is None:
            start = (trial.datetime_start or datetime.now()).astimezone(UTC)
        return start + timedelta(seconds=self.lease_s)

    def _any_expired(self) -> bool:
        """Whether a pending suggestion is past its lease (read without the lock; reclaiming re-reads under it)."""
        now = datetime.now(UTC)
        return any(self._lease_expiry(t) <= now for t in self._trials((TrialState.RUNNING,)))

    def _reclaim_expired(self) -> list[int]:
        """Return suggestions past their lease to the pool (their trials FAIL, ``lease_expired``); call locked."""
        from surrogate.storage import Finish, write_trials

        now = datetime.now(UTC)
        finish = []
        for trial in self._trials((TrialState.RUNNING,)):
            expiry = self._lease_expiry(trial)
            if expiry <= now:
                reason = f"lease expired at {_iso(expiry)}: no result or renewal in time (lease {self.lease_s:g} s)"
                finish.append(
                    Finish(trial.number, TrialState.FAIL, None, {"failure_reason": reason, "lease_expired": True})
                )
        if finish:
            write_trials(self.storage, self.study_id, finish=finish)
        return [f.number for f in finish]

    def reclaim_expired(self) -> list[int]:
        """Return every suggestion past its lease to the pool now; the numbers of the trials reclaimed."""
        with self._locked():
            return self._reclaim_expired()

    def renew(self, trials: Iterable[int] | None = None, client_id: str | None = None) -> list[Suggestion]:
        """Extend the lease of pending suggestions (a heartbeat): by trial number, or all of ``client_id``.

        A suggestion that is no longer pending (observed, failed, or its lease already ran out) raises
        :class:`ConflictError` naming the trial, and no lease is changed: its holder has lost it.
        """
        numbers = None if trials is None else [_check_trial_number(t) for t in trials]
        if numbers is None and client_id is None:
            raise InputError("renew: give trial numbers or a client_id")
        with self._locked():
            self._reclaim_expired()
            mine = {s.trial: s for s in self.pending(client_id)}
            chosen = list(mine) if numbers is None else numbers
            for number in chosen:
                if number not in mine:
                    raise ConflictError(
                        f"trial {number}: not a pending suggestion{' of ' + repr(client_id) if client_id else ''} "
                        "(observed, failed, or its lease ran out and it went back to the pool)",
                        trial=number,
                    )
            expiry = _iso(datetime.now(UTC) + timedelta(seconds=self.lease_s))
            for number in chosen:
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
                self.storage.set_trial_user_attr(trial_id, "lease_expires_at", expiry)
                mine[number].lease_expires_at = expiry
            return [mine[n] for n in chosen]

    @contextmanager
    def keep_alive(self, trials: Iterable[int], every_s: float | None = None) -> Iterator[threading.Event]:
        """Renew the leases of ``trials`` every ``every_s`` seconds (default: a third of the lease) while the
        block runs: a worker that holds suggestions for longer than the lease runs its work inside this.

        If the process dies (even ``kill -9``) the renewals stop and the suggestions go back to the pool one
        lease later. The event yielded is set when a renewal failed because a trial is no longer pending.
        """
        numbers = [_check_trial_number(t) for t in trials]
        interval = float(every_s) if every_s is not None else self.lease_s / 3.0
        stop, lost = threading.Event(), threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.renew(numbers)
                except ConflictError:
                    lost.set()
                    return
                except Exception as exc:  # a passing database error: say so and try again next time
                    logging.getLogger(__name__).warning("campaign %s: lease renewal failed (%s)", self.name, exc)

        thread = threading.Thread(target=beat, name=f"lease-renewal-{self.name}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()

    # ---------------------------------------------------------------- ask
    def suggest(self, n: int = 1, client_id: str | None = None) -> list[Suggestion]:
        """``n`` designs to measure next, stored as pending suggestions with a lease (:attr:`lease_s`).

        With a ``client_id`` that already has pending suggestions, those are returned again and nothing
        new is created (a retried request gets the same batch); asking for another ``n`` then is an
        :class:`InputError`. Suggesting holds the campaign's lock, so simultaneous calls, from any process
        or host sharing the storage, run one after the other: two calls with the same new ``client_id``
        create one batch, and each call sees the others' live suggestions as pending. Suggestions past
        their lease are reclaimed first.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 100:
            raise InputError(f"n: {n!r} must be a whole number from 1 to 100")
        if client_id is not None:
            client_id = str(client_id).strip()
            if not client_id:
                raise InputError("client_id: must not be empty")
        lease = self.lease_s
        with self._locked():
            self._reclaim_expired()
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
            return self._suggest_new(n, client_id, lease)

    def _suggest_new(self, n: int, client_id: str | None, lease_s: float) -> list[Suggestion]:
        from surrogate.storage import count_trials

        observed = self.observations()
        pending = pd.DataFrame([s.design for s in self.pending()], columns=[BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C])
        failed = pd.DataFrame(
            [
                self._design_of(t)
                for t in self._trials((TrialState.FAIL,))
                if BUFFER in t.params and not t.user_attrs.get("lease_expired")  # an expired lease is no evidence
            ],
            columns=[BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C],
        )
        modelled = (
            all(t in observed and observed[t].notna().any() for t in self.objective.targets)
            if not observed.empty
            else False
        )
        n_designs = count_trials(self.storage, [self.name])[self.name]
        seed = int(self.config.get("seed", 0))
        # Space-filling while nothing can be modelled yet; then the model (its priors cover untried buffers).
        n_fill = 0 if modelled else n
        designs = []
        if n_fill:
            designs.append(space_filling(self.space, self.objective, n_designs, n_fill, seed))
        if n > n_fill:
            held = pd.concat([pending, *designs], ignore_index=True)
            shown = capped_observations(observed, self.space, seed=seed + n_designs)
            designs.append(
                propose_batch(self.space, self.objective, shown, n - n_fill, held, failed, seed=seed + n_designs)
            )
        frame = pd.concat(designs, ignore_index=True)
        # propose_batch says which model chose each design (the physics-prior GP or the model-free hedge).
        methods = ["space-filling"] * n_fill + (list(designs[-1]["method"]) if n > n_fill else [])
        return self._store_suggestions(frame, methods, client_id, lease_s)

    def _store_suggestions(
        self, frame: pd.DataFrame, methods: list[str], client_id: str | None, lease_s: float
    ) -> list[Suggestion]:
        from surrogate.storage import write_trials

        batch = uuid.uuid4().hex[:12]
        dists = _distributions(self.space, self.objective)
        now = datetime.now(UTC)
        expiry = _iso(now + timedelta(seconds=lease_s))
        templates = []
        for design, method in zip(frame.to_dict("records"), methods, strict=True):
            params = {k: (design[k] if k == BUFFER else float(design[k])) for k in dists}
            attrs = {
                "batch": batch,
                "method": method,
                "suggested_at": _iso(now),
                "lease_expires_at": expiry,
                "lease_s": lease_s,
            }
            if client_id is not None:
                attrs["client_id"] = client_id
            templates.append(
                optuna.trial.create_trial(
                    state=TrialState.RUNNING, params=params, distributions=dists, user_attrs=attrs
                )
            )
        numbers = write_trials(self.storage, self.study_id, new=templates)
        return [
            Suggestion(number, self._design_of(template), client_id, batch, method, expiry)
            for number, template, method in zip(numbers, templates, methods, strict=True)
        ]

    # ---------------------------------------------------------------- tell
    def observe(
        self, data: pd.DataFrame, source: str = "observations", recorded_by: str | None = None
    ) -> dict[str, Any]:
        """Record results: validated like any measurement file, matched to suggestions, all or nothing.

        ``data`` is a raw table (as read from CSV), at most :data:`MAX_OBSERVATIONS_PER_CALL` rows: design
        columns, the objective's targets at its conditions, and optionally ``trial`` (the suggestion's
        number), ``status`` (``ok``, ``failed`` or ``infeasible``) and ``reason``. Every row is checked
        first; any problem raises :class:`InputError` (a :class:`DataValidationError` listing every problem)
        and nothing is written. A row that contradicts a result already recorded for its trial (for example
        the loser of two simultaneous calls answering one suggestion differently) raises
        :class:`ConflictError` naming the trial when it is the only kind of problem; a row identical to one
        already recorded is reported in ``already_recorded`` and not written again.

        Matching to the pending suggestions and writing happen under the campaign's lock, in one
        transaction (:func:`surrogate.storage.write_trials`). Returns counts and the trial numbers written.

        ``recorded_by`` names who sent the rows (a person or robot; :func:`check_recorded_by`); it is stored
        with each trial written, in the same transaction. It is not part of a result: a row resent by
        someone else is still ``already_recorded``, and the trial keeps its first sender.
        """
        sender = check_recorded_by(recorded_by)
        rows, problems = self._prepare_observations(data, source)
        with self._locked():
            records, already = self._resolve_observations(rows, problems, source)
            written = self._write(records, sender)
        return {
            "campaign": self.name,
            RECORDED_BY: sender,
            "observed": sum(r["state"] == TrialState.COMPLETE for r in records),
            "failed": sum(r["state"] == TrialState.FAIL for r in records),
            "trials": written,
            "already_recorded": already,
        }

    def _prepare_observations(self, data: pd.DataFrame, source: str) -> tuple[list[dict[str, Any]], list[Problem]]:
        """Row by row checks that need no campaign state: schema, design space, objective conditions."""
        from surrogate.schema import check_frame

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
        status = raw[STATUS_COLUMN].fillna("").astype(str).str.strip().str.lower() if STATUS_COLUMN in raw else None
        problems: list[Problem] = []
        if status is not None:
            for i, value in enumerate(status):
                if value not in ("", "ok", *FAILED_STATUSES):
                    problems.append(Problem(i + 1, STATUS_COLUMN, f"{value!r} is not ok, failed or infeasible"))
        failed = status.isin(FAILED_STATUSES).to_numpy() if status is not None else np.zeros(len(raw), dtype=bool)
        bad_cycles = np.zeros(len(raw), dtype=bool)
        if CYCLES in raw:  # bounds before any int(): 1e20 or 10**30 must be a problem, not an OverflowError
            for i, value in enumerate(raw[CYCLES].tolist()):
                reason = _cycles_problem(value)
                if reason is not None and not failed[i]:
                    problems.append(Problem(i + 1, CYCLES, reason))
                    bad_cycles[i] = True
        extra = [c for c in (TRIAL_COLUMN, STATUS_COLUMN, REASON_COLUMN) if c in raw]
        ok_index = np.flatnonzero(~failed & ~bad_cycles)
        checked_rows: list[dict[str, Any]] = []
        if len(ok_index):
            result = check_frame(raw.iloc[ok_index].drop(columns=extra).reset_index(drop=True), source)
            for p in result.problems:
                row = int(ok_index[p.row - 1]) + 1 if p.row is not None else None
                problems.append(Problem(row, p.column, p.reason))
            checked_rows = result.frame.to_dict("records") if result.frame is not None else []
        raw_rows = raw.to_dict("records")
        position = {int(i): j for j, i in enumerate(ok_index)}
        rows = []
        for i, row in enumerate(raw_rows):
            if bad_cycles[i]:
                continue
            row_no = i + 1
            given = _trial_number(row)
            if failed[i]:
                if isinstance(given, int) and _blank(row.get(BUFFER)):
                    design, row_problems = None, []  # "trial N failed" needs no design: taken from the trial
                else:
                    design, row_problems = self._design_from_raw(row)
                values: dict[str, float] = {}
            else:
                j = position.get(i)
                record = checked_rows[j] if j is not None and j < len(checked_rows) else None
                design, row_problems = self._design_from_raw(record)
                values, more = self._measured(record) if record is not None else ({}, [])
                row_problems += more
            problems += [Problem(row_no, col, why) for col, why in row_problems]
            if row_problems:
                continue
            reason = str(row.get(REASON_COLUMN, "") or "").strip() if REASON_COLUMN in row else ""
            if _blank(reason):
                reason = ""
            sample = row.get(SAMPLE_COLUMN)
            rows.append(
                {
                    "row": row_no,
                    "given": given,
                    "design": design,
                    "values": values,
                    "failed": bool(failed[i]),
                    "reason": reason or (status.iloc[i] if status is not None and failed[i] else ""),
                    "sample_id": "" if _blank(sample) else str(sample).strip(),
                }
            )
        seen: set[tuple[int | None, str | None]] = set()
        unique = []
        for problem in problems:  # one problem per cell: the schema's, when it already named the cell
            if problem.row is None or (problem.row, problem.column) not in seen:
                seen.add((problem.row, problem.column))
                unique.append(problem)
        return rows, unique

    def _resolve_observations(
        self, rows: list[dict[str, Any]], problems: list[Problem], source: str
    ) -> tuple[list[dict[str, Any]], list[int]]:
        """Match prepared rows to the campaign's current trials (call under the lock); raise on any problem."""
        from surrogate.storage import read_trials

        current = read_trials(
            self.storage,
            self.study_id,
            (TrialState.RUNNING, TrialState.COMPLETE, TrialState.FAIL),
            ("measured", "lease_expired", "failure_reason", SAMPLE_COLUMN),
        )
        pending = {t.number: t for t in current if t.state == TrialState.RUNNING}
        finished = {t.number: t for t in current if t.state != TrialState.RUNNING}
        index = _DesignIndex([(t, self._design_of(t)) for t in finished.values() if BUFFER in t.params])
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
                design = self._design_of(known)
            done = self._recorded_before(given, design, row, finished, index)
            if done is not None:
                if done >= 0:
                    already.append(done)  # a retried observation: nothing to write
                else:
                    why = _conflict_reason(finished[given])
                    problems.append(Problem(row_no, TRIAL_COLUMN, why))
                    conflicts.append((given, why))
                continue
            trial_no = self._match(given, design, pending, claimed, row_no, problems)
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
        if problems:
            if len(conflicts) == len(problems):
                detail = "; ".join(f"trial {trial}: {why}" for trial, why in conflicts)
                raise ConflictError(f"{source}: {detail}", trial=conflicts[0][0])
            problems.sort(key=lambda p: (p.row is not None, p.row or 0))
            raise DataValidationError(problems, source)
        return records, sorted(set(already))

    def _recorded_before(
        self,
        given: int | None | str,
        design: dict[str, Any],
        row: dict[str, Any],
        finished: dict[int, StoredTrial],
        index: _DesignIndex,
    ) -> int | None:
        """A row already in the campaign: its trial number (a retry, nothing to write), -1 if that trial
        holds another result, None if the row is new. Observing the same file twice is therefore safe.

        The same result is the same state, measured values, ``sample_id`` and, for a failed experiment, the
        same reason: a replicate (another sample, or another failure at the same design) is a new row. Trials
        recorded before ``sample_id`` was stored carry no such attribute and match on the rest.
        """
        values, failed = row["values"], row["failed"]
        if isinstance(given, int):
            if given not in finished:
                return None
            candidates = [finished[given]]
        elif given is None:
            candidates = index.near(design)
        else:
            return None
        for trial in candidates:
            suggested = self._design_of(trial)
            same_design = suggested[BUFFER] == design[BUFFER] and all(
                abs(suggested[k] - design[k]) <= MATCH_TOLERANCE_C for k in (ANNEAL_TEMP_C, TEST_TEMP_C)
            )
            measured = json.loads(trial.user_attrs.get("measured", "{}"))
            same_result = (
                (trial.state == TrialState.FAIL) == failed
                and not trial.user_attrs.get("lease_expired")
                and measured.keys() == values.keys()
                and all(math.isclose(measured[k], values[k], rel_tol=1e-12) for k in values)
                and trial.user_attrs.get(SAMPLE_COLUMN, row["sample_id"]) == row["sample_id"]
                and (not failed or trial.user_attrs.get("failure_reason") == (row["reason"] or "failed"))
            )
            if same_design and same_result:
                return trial.number
        return -1 if isinstance(given, int) else None

    def _design_from_raw(self, row: dict[str, Any] | None) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
        """The design of one row, with problems: missing values, outside the space, wrong fixed temperature."""
        from surrogate.design import canonical_buffer

        problems: list[tuple[str | None, str]] = []
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

    def _measured(self, record: dict[str, Any]) -> tuple[dict[str, float], list[tuple[str | None, str]]]:
        """The objective's targets of a validated row, checking they were measured at the objective's conditions."""
        values, problems = {}, []
        for target in self.objective.targets:
            value = record.get(target)
            if value is None or pd.isna(value):
                problems.append((target, "missing: the objective needs it (or give status=failed)"))
                continue
            values[target] = float(value)
            if target == RATE_RETENTION:
                c_rate = record.get(C_RATE)
                if c_rate is None or pd.isna(c_rate):
                    problems.append((C_RATE, f"missing: the objective asks {self.objective.c_rate:g} C"))
                elif not math.isclose(float(c_rate), self.objective.c_rate, rel_tol=1e-5, abs_tol=1e-8):
                    problems.append((C_RATE, f"{float(c_rate):g} C but the objective asks {self.objective.c_rate:g} C"))
            if target == CAPACITY_RETENTION:
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
        return values, problems

    def _match(
        self,
        given: int | str | None,
        design: dict[str, Any],
        pending: dict[int, StoredTrial],
        claimed: set[int],
        row_no: int,
        problems: list[Problem],
    ) -> int | None:
        """The pending suggestion a row answers: by its ``trial`` number, else by design; None if unsolicited."""
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
            suggested = self._design_of(pending[given])
            if suggested[BUFFER] != design[BUFFER] or any(
                abs(suggested[k] - design[k]) > MATCH_TOLERANCE_C for k in (ANNEAL_TEMP_C, TEST_TEMP_C)
            ):
                problems.append(Problem(row_no, TRIAL_COLUMN, f"the design differs from suggestion {given}'s"))
                return None
            return given
        for number, trial in pending.items():
            if number in claimed:
                continue
            suggested = self._design_of(trial)
            if suggested[BUFFER] == design[BUFFER] and all(
                abs(suggested[k] - design[k]) <= MATCH_TOLERANCE_C for k in (ANNEAL_TEMP_C, TEST_TEMP_C)
            ):
                return number
        return None

    def _write(self, records: list[dict[str, Any]], recorded_by: str | None = None) -> list[int]:
        """Write resolved records in one transaction; the trial number of each record, in order."""
        from surrogate.storage import Finish, write_trials

        finish, new, order = [], [], []
        dists = _distributions(self.space, self.objective)
        stamp = _now()
        for record in records:
            attrs: dict[str, Any] = {"observed_at": stamp, SAMPLE_COLUMN: record["sample_id"]}
            if recorded_by is not None:
                attrs[RECORDED_BY] = recorded_by
            if record["values"]:
                attrs["measured"] = json.dumps(record["values"])
            if record["state"] == TrialState.FAIL:
                attrs["failure_reason"] = record["reason"] or "failed"
            value = float(self.objective.value(record["values"])) if record["state"] == TrialState.COMPLETE else None
            if record["trial"] is not None:
                finish.append(Finish(record["trial"], record["state"], value, attrs))
                order.append(("pending", record["trial"]))
                continue
            params = {k: (record["design"][k] if k == BUFFER else float(record["design"][k])) for k in dists}
            new.append(
                optuna.trial.create_trial(
                    state=record["state"], value=value, params=params, distributions=dists, user_attrs=attrs
                )
            )
            order.append(("new", len(new) - 1))
        if not records:
            return []
        numbers = write_trials(self.storage, self.study_id, new=new, finish=finish)
        return [item if kind == "pending" else numbers[item] for kind, item in order]

    # ---------------------------------------------------------------- status
    def status(self, recommend: bool = True) -> dict[str, Any]:
        """Counts, the best observation so far, the recommended design and the pending suggestions (JSON-ready).

        Reclaims suggestions past their lease first. ``failed`` counts failed or infeasible experiments;
        ``expired`` counts suggestions that went back to the pool unanswered. ``best`` is the best noisy
        reading; ``recommended`` is the design the campaign's model believes best (highest posterior mean of
        the objective, with its 90% interval; see :func:`surrogate.suggester.recommend`): when the noise is
        larger than the differences near the optimum, the two differ, and the recommendation is the better
        bet. ``recommend=False`` skips fitting the model (a quick status).
        """
        if self._any_expired():  # the lock only when there is something to reclaim: a status waits for no one
            with self._locked():
                self._reclaim_expired()
        trials = self._trials((TrialState.COMPLETE, TrialState.FAIL))
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        expired = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("lease_expired")]
        best = None
        if complete:
            top = max(complete, key=lambda t: t.value)
            best = (
                {"trial": top.number, **self._design_of(top), "objective": top.value}
                | json.loads(top.user_attrs.get("measured", "{}"))
                | {RECORDED_BY: top.user_attrs.get(RECORDED_BY)}
            )
        pending = self.pending()
        return {
            "campaign": self.name,
            "objective": self.objective.to_dict() | {"name": self.objective.name, "unit": self.objective.unit},
            "space": self.space.to_dict(),
            "created": self.config.get("created"),
            "observed": len(complete),
            "failed": sum(t.state == TrialState.FAIL for t in trials) - len(expired),
            "expired": len(expired),
            "pending": len(pending),
            "lease_s": self.lease_s,
            "warm_start_rows": len(self.config["warm_start"]["rows"]),
            "warm_start_source": self.config["warm_start"]["source"],
            "best": best,
            "recommended": self.recommendation() if recommend else None,
            "pending_suggestions": [s.to_dict() for s in pending],
        }

    def recommendation(self, level: float = 0.9) -> dict[str, Any]:
        """The design the campaign's model believes best, with the objective's interval at ``level``.

        With no observation yet it is the physics prior's guess, flagged as an extrapolation.
        """
        from surrogate.suggester import recommend

        return recommend(
            self.space, self.objective, self.observations(), seed=int(self.config.get("seed", 0)), level=level
        )


RETENTIONS = (RATE_RETENTION, CAPACITY_RETENTION)
WARM_START_KIND = "surrogate-campaign-warm-start"
"""Value of the study user attribute ``kind`` of the studies showing a campaign's warm-start rows."""


def warm_start_study_name(campaign: str, target: str) -> str:
    """Name of the study showing ``campaign``'s warm-start rows of ``target`` (':' never occurs in campaign names)."""
    return f"{campaign}:warm-start:{target}"


def _store_warm_start_studies(
    storage: optuna.storages.BaseStorage,
    campaign: str,
    rows: pd.DataFrame,
    space: DesignSpace,
    source: str | None,
) -> None:
    """Show the warm-start rows as COMPLETE trials, one study per target (``<campaign>:warm-start:<target>``).

    Each row measures one target at its own conditions (a rate test at some C-rate, a capacity after some
    cycles), not the campaign's objective, so the rows live in their own studies: value = the measured target,
    params = the design and its conditions, user attributes ``source`` = ``warm-start`` and ``origin``. The
    campaign's study, its counts and its best-so-far hold only the campaign's own observations. The campaign
    keeps reading the rows from its configuration (as in format 1); these studies are for people and the
    dashboard.
    """
    from surrogate.storage import write_trials

    if rows.empty:
        return
    for target in (t for t in (CONDUCTIVITY, RATE_RETENTION, CAPACITY_RETENTION) if t in rows):
        data = rows[rows[target].notna()]
        if data.empty:
            continue
        dists: dict[str, Any] = {
            BUFFER: CategoricalDistribution(list(space.buffers)),
            ANNEAL_TEMP_C: FloatDistribution(
                min(space.anneal_temp_c[0], float(data[ANNEAL_TEMP_C].min())),
                max(space.anneal_temp_c[1], float(data[ANNEAL_TEMP_C].max())),
            ),
            TEST_TEMP_C: FloatDistribution(
                min(space.test_temp_c[0], float(data[TEST_TEMP_C].min())),
                max(space.test_temp_c[1], float(data[TEST_TEMP_C].max())),
            ),
        }
        if target == RATE_RETENTION:
            dists[C_RATE] = FloatDistribution(float(data[C_RATE].min()), float(data[C_RATE].max()))
        if target == CAPACITY_RETENTION:
            dists[CYCLES] = IntDistribution(int(data[CYCLES].min()), int(data[CYCLES].max()))
            dists[PROTOCOL] = CategoricalDistribution(sorted(data[PROTOCOL].astype(str).unique()))
        name = warm_start_study_name(campaign, target)
        try:
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:  # left by a creation of this campaign that did not finish
            optuna.delete_study(study_name=name, storage=storage)
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        study.set_user_attr("kind", WARM_START_KIND)
        study.set_user_attr("warm_start_of", campaign)  # not "campaign": that key marks a campaign
        study.set_user_attr("note", "measurements the campaign started from, not campaign observations")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([target])
        trials = []
        for record in data.to_dict("records"):
            params = {}
            for key, dist in dists.items():
                value = record[key]
                if isinstance(dist, FloatDistribution):
                    value = float(value)
                elif isinstance(dist, IntDistribution):
                    value = int(value)
                else:
                    value = str(value)
                params[key] = value
            trials.append(
                optuna.trial.create_trial(
                    value=float(record[target]),
                    params=params,
                    distributions=dists,
                    user_attrs={"source": "warm-start", "origin": source or ""},
                )
            )
        write_trials(storage, storage.get_study_id_from_name(name), new=trials)


class _DesignIndex:
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
        buffer, a, t = self._key(design)
        out = []
        for da in (-1, 0, 1):
            for dt in (-1, 0, 1):
                out += self._cells.get((buffer, a + da, t + dt), [])
        return out


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


def _check_trial_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"trial: {value!r} is not a trial number")
    return int(value)


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


def _check_name(name: Any) -> str:
    """The campaign name, checked against :data:`CAMPAIGN_NAME_PATTERN` before any storage access."""
    text = name if isinstance(name, str) else ""
    if not _NAME_RE.fullmatch(text):
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        raise InputError(
            f"campaign name: {shown} is not a valid name: 1-64 characters, letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return text


def list_campaigns(storage: str | optuna.storages.BaseStorage | None = None) -> list[dict[str, Any]]:
    """Every campaign in the storage: name, objective, creation time, number of trials.

    Reads the studies and their user attributes, and one count of trials per study
    (:func:`surrogate.storage.count_trials`): never the trials themselves, so listing costs the same with ten
    trials or a million. Creates no store: none, no campaigns.
    """
    from surrogate.storage import count_trials, store_exists

    if not isinstance(storage, optuna.storages.BaseStorage) and not store_exists(storage):
        return []
    store = _open_storage(storage)
    found = []
    for study in store.get_all_studies():
        try:
            config = json.loads(study.user_attrs.get(CAMPAIGN_ATTR))
            objective = Objective.from_dict(config["objective"]).name
        except Exception:  # not a campaign (another study, or another tool's "campaign" attribute)
            continue
        found.append((study.study_name, objective, config.get("created")))
    counts = count_trials(store, [name for name, _, _ in found])
    return [
        {"name": name, "objective": objective, "created": created, "trials": counts.get(name, 0)}
        for name, objective, created in found
    ]


def read_observations(path: str | Path) -> pd.DataFrame:
    """Read an observations file (CSV or Parquet) as a raw table for :meth:`Campaign.observe`."""
    from surrogate.schema import read_table

    raw, problems = read_table(path)
    if problems:
        raise DataValidationError(problems, Path(path).name)
    if raw.empty:
        raise InputError(f"{Path(path).name}: the file has no rows")
    return raw
