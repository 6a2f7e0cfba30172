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

How it is built: :class:`Campaign` is the facade. It composes a storage-free
:class:`~surrogate.campaign_core.CampaignCore` (space, objective, recommender:
what to suggest and recommend), a :class:`~surrogate.campaign_store.CampaignStore`
(the Optuna study, the lock, the leases) and the observation checks and matching
of :mod:`surrogate.observations`. The names other modules import from here are
re-exported from those modules.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from surrogate.campaign_core import (
    CAMPAIGN_FORMAT,
    CATALOGUE_KEY,
    MAX_SUGGEST_OBSERVATIONS,
    REGION_BINS,
    CampaignCore,
    Recommender,
    Suggestion,
    capped_observations,
    check_client_id,
    check_n,
    check_seed,
    new_config,
    space_catalogue,
    warm_start_rows,
)
from surrogate.campaign_core import distributions as _distributions  # noqa: F401 (tests and benchmarks import it)
from surrogate.campaign_store import (
    CAMPAIGN_ATTR,
    CAMPAIGN_NAME_PATTERN,
    DEFAULT_LEASE_S,
    LEASE_ENV,
    LOCK_PREFIX,
    MAX_LEASE_S,
    TAG,
    WARM_START_KIND,
    WARM_START_TARGETS,
    CampaignStore,
    check_lease_s,
    check_name,
    check_trial_number,
    default_lease_s,
    iso,
    now_text,
    open_storage,
    warm_start_study_name,
)
from surrogate.campaign_store import store_warm_start_studies as _store_warm_start_studies
from surrogate.design import BUFFER, CAPACITY_RETENTION, RATE_RETENTION, DesignSpace
from surrogate.errors import DataValidationError, InputError, Problem
from surrogate.materials import declare_carried
from surrogate.objectives import Objective
from surrogate.observations import (
    FAILED_STATUSES,
    MAX_CYCLES,
    MAX_OBSERVATIONS_PER_CALL,
    MAX_RECORDED_BY_CHARS,
    REASON_COLUMN,
    RECORDED_BY,
    SAMPLE_COLUMN,
    STATUS_COLUMN,
    TRIAL_COLUMN,
    ObservationChecker,
    ObservationMatcher,
    check_recorded_by,
)
from surrogate.storage import StoredTrial
from surrogate.suggester import propose_batch, space_filling

RETENTIONS = (RATE_RETENTION, CAPACITY_RETENTION)
OBSERVATION_ATTRS = ("measured", "lease_expired", "failure_reason", SAMPLE_COLUMN)
"""The user attributes of the trials that matching observations reads."""

__all__ = [
    "CAMPAIGN_ATTR",
    "CAMPAIGN_FORMAT",
    "CAMPAIGN_NAME_PATTERN",
    "CATALOGUE_KEY",
    "DEFAULT_LEASE_S",
    "FAILED_STATUSES",
    "LEASE_ENV",
    "LOCK_PREFIX",
    "MAX_CYCLES",
    "MAX_LEASE_S",
    "MAX_OBSERVATIONS_PER_CALL",
    "MAX_RECORDED_BY_CHARS",
    "MAX_SUGGEST_OBSERVATIONS",
    "REASON_COLUMN",
    "RECORDED_BY",
    "REGION_BINS",
    "RETENTIONS",
    "SAMPLE_COLUMN",
    "STATUS_COLUMN",
    "TAG",
    "TRIAL_COLUMN",
    "WARM_START_KIND",
    "Campaign",
    "Suggestion",
    "capped_observations",
    "check_lease_s",
    "check_recorded_by",
    "default_lease_s",
    "list_campaigns",
    "read_observations",
    "space_catalogue",
    "warm_start_rows",
    "warm_start_study_name",
]


class Campaign:
    """A design-of-experiment campaign stored as an Optuna study (see the module docstring)."""

    def __init__(self, study: optuna.Study, config: dict[str, Any], storage: optuna.storages.BaseStorage) -> None:
        self.study = study
        self.config = config
        self.storage = storage
        """The storage the study lives in (as opened by :func:`surrogate.storage.get_storage`)."""
        self._store = CampaignStore(study, storage, config.get("lease_s"))
        self.study_id = self._store.study_id
        declare_carried(config.get(CATALOGUE_KEY), f"campaign {study.study_name!r}'s catalogue")
        self.space = DesignSpace.from_dict(config["space"])
        self.objective = Objective.from_dict(config["objective"])
        self._core = CampaignCore(self.space, self.objective, int(config.get("seed", 0)), config["warm_start"]["rows"])
        self._checker = ObservationChecker(self.space, self.objective)
        self._matcher = ObservationMatcher(self._design_of)

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def lease_s(self) -> float:
        """Seconds a suggestion stays pending without a result: the campaign's ``lease_s``, else
        ``$SURROGATE_LEASE_S``, else 24 h."""
        return self._store.lease_s

    @property
    def lock_wait_s(self) -> float | None:
        """Seconds a change of state waits for the campaign's lock before :class:`~surrogate.errors.BusyError`
        (None: :data:`surrogate.storage.LOCK_WAIT_S`)."""
        return self._store.lock_wait_s

    @lock_wait_s.setter
    def lock_wait_s(self, value: float | None) -> None:
        self._store.lock_wait_s = value

    @property
    def core(self) -> CampaignCore:
        """The campaign without its storage (space, objective, seed, warm-start rows, recommender). Its recommender
        is this module's suggester functions as they are when asked, so replacing ``surrogate.campaign.propose_batch``
        (or ``space_filling``, ``capped_observations``) changes what the campaign calls, as tests and benchmarks do."""
        return replace(self._core, recommender=Recommender(space_filling, propose_batch, subsample=capped_observations))

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
        name, seed = check_name(name), check_seed(seed)
        lease = check_lease_s(lease_s) if lease_s is not None else None
        space = space or DesignSpace()
        config, rows = new_config(space, objective, now_text(), warm_start, warm_start_source, seed, lease)
        store = CampaignStore.create(
            name,
            storage,
            objective.name,
            config,
            setup=lambda opened: _store_warm_start_studies(opened, name, rows, space, warm_start_source),
            leftovers=[warm_start_study_name(name, t) for t in WARM_START_TARGETS],
        )
        return cls(store.study, config, store.storage)

    @classmethod
    def load(cls, name: str, storage: str | optuna.storages.BaseStorage | None = None) -> Campaign:
        """Open campaign ``name``; a :class:`NotFoundError` if it does not exist (no store is created then)."""
        store, config = CampaignStore.load(check_name(name), storage)
        return cls(store.study, config, store.storage)

    # ---------------------------------------------------------------- data
    def _trials(self, states: tuple[TrialState, ...]) -> list[StoredTrial]:
        """The campaign's trials in ``states`` with every user attribute, in order of number
        (:meth:`CampaignStore.trials`: :func:`surrogate.storage.read_trials`, never Optuna's ``get_trials``)."""
        return self._store.trials(states)

    def _design_of(self, trial: StoredTrial) -> dict[str, Any]:
        return self._core.design_of(trial.params)

    def observations(self) -> pd.DataFrame:
        """Every completed observation plus the warm-start rows: designs and measured targets (contract units)."""
        return self.core.observation_frame(self._trials((TrialState.COMPLETE,)))

    def recorded(self) -> list[dict[str, Any]]:
        """Every recorded experiment, in trial order (JSON-ready): observed (COMPLETE) and failed trials.

        Each entry: ``trial``, ``status`` (``observed`` or ``failed``), the design, ``objective`` (None when
        failed), the measured targets, ``sample_id``, ``recorded_by`` (None when the sender was not given),
        ``observed_at`` (UTC) and, for a failed experiment, ``reason``. Suggestions whose lease expired are no
        experiments and are left out; warm-start rows are not trials and are left out too.
        """
        return self.core.recorded(self._trials((TrialState.COMPLETE, TrialState.FAIL)))

    def pending(self, client_id: str | None = None) -> list[Suggestion]:
        """Suggestions handed out and not yet observed (all, or those of ``client_id``).

        A suggestion past its lease stays here until the next ``suggest`` or ``status`` reclaims it.
        """
        trials = self._trials((TrialState.RUNNING,))
        mine = [t for t in trials if client_id is None or t.user_attrs.get("client_id") == client_id]
        return [self._suggestion(t, iso(self._store.lease_expiry(t))) for t in mine]

    def _suggestion(self, trial: StoredTrial, lease_expires_at: str) -> Suggestion:
        attrs = trial.user_attrs
        design = self._design_of(trial)
        return Suggestion(
            trial.number,
            design,
            attrs.get("client_id"),
            attrs.get("batch", ""),
            attrs.get("method", ""),
            lease_expires_at,
        )

    # ---------------------------------------------------------------- leases
    def reclaim_expired(self) -> list[int]:
        """Return every suggestion past its lease to the pool now; the numbers of the trials reclaimed."""
        with self._store.locked():
            return self._store.reclaim()

    def renew(self, trials: Iterable[int] | None = None, client_id: str | None = None) -> list[Suggestion]:
        """Extend the lease of pending suggestions (a heartbeat): by trial number, or all of ``client_id``.

        A suggestion that is no longer pending (observed, failed, or its lease already ran out) raises
        :class:`ConflictError` naming the trial, and no lease is changed: its holder has lost it.
        """
        numbers = None if trials is None else [check_trial_number(t) for t in trials]
        if numbers is None and client_id is None:
            raise InputError("renew: give trial numbers or a client_id")
        renewed, expiry = self._store.renew(numbers, client_id)
        return [self._suggestion(t, expiry) for t in renewed]

    @contextmanager
    def keep_alive(self, trials: Iterable[int], every_s: float | None = None) -> Iterator[threading.Event]:
        """Renew the leases of ``trials`` every ``every_s`` seconds (default: a third of the lease) while the
        block runs: a worker that holds suggestions for longer than the lease runs its work inside this.

        If the process dies (even ``kill -9``) the renewals stop and the suggestions go back to the pool one
        lease later. The event yielded is set when a renewal failed because a trial is no longer pending.
        """
        with self._store.keep_alive(trials, every_s) as lost:
            yield lost

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
        n, client_id = check_n(n), check_client_id(client_id)
        lease = self.lease_s
        with self._store.locked():
            self._store.reclaim()
            existing = self.pending(client_id) if client_id is not None else []
            if existing and len(existing) != n:
                trials = ", ".join(str(s.trial) for s in existing)
                raise InputError(
                    f"client_id: {client_id!r} already has {len(existing)} pending suggestion(s) (trials "
                    f"{trials}); a retry must ask for the same n={len(existing)}. Observe them first, or use "
                    "another client_id for a new batch"
                )
            return existing or self._suggest_new(n, client_id, lease)

    def _suggest_new(self, n: int, client_id: str | None, lease_s: float) -> list[Suggestion]:
        """Ask the core for ``n`` new designs given the campaign's state and store them (call locked)."""
        core = self.core
        failed = [
            self._design_of(t)
            for t in self._trials((TrialState.FAIL,))
            if BUFFER in t.params and not t.user_attrs.get("lease_expired")  # an expired lease is no evidence
        ]
        pending = [s.design for s in self.pending()]
        frame = core.next_designs(self.observations(), pending, failed, self._store.count(), n)
        dists = core.distributions()
        params = [{k: (d[k] if k == BUFFER else float(d[k])) for k in dists} for d in frame.to_dict("records")]
        methods = list(frame["method"])
        numbers, batch, expiry = self._store.add_suggestions(params, methods, client_id, dists, lease_s)
        return [
            Suggestion(number, core.design_of(values), client_id, batch, method, expiry)
            for number, values, method in zip(numbers, params, methods, strict=True)
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
        rows, problems = self._checker.prepare(data, source)
        with self._store.locked():
            current = self._store.trials((TrialState.RUNNING, TrialState.COMPLETE, TrialState.FAIL), OBSERVATION_ATTRS)
            records, already = self._matcher.resolve(rows, problems, source, current, match=self._match)
            written = self._store.record(records, self.core.distributions(), self.objective.value, sender)
        return {
            "campaign": self.name,
            RECORDED_BY: sender,
            "observed": sum(r["state"] == TrialState.COMPLETE for r in records),
            "failed": sum(r["state"] == TrialState.FAIL for r in records),
            "trials": written,
            "already_recorded": already,
        }

    def _match(
        self,
        given: int | str | None,
        design: dict[str, Any],
        pending: dict[int, StoredTrial],
        claimed: set[int],
        row_no: int,
        problems: list[Problem],
    ) -> int | None:
        """The pending suggestion a row answers (:meth:`ObservationMatcher.match`), called for each row under the
        lock, after the trials were read and before anything is written (the race tests wait here)."""
        return self._matcher.match(given, design, pending, claimed, row_no, problems)

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
        if self._store.any_expired():  # the lock only when there is something to reclaim: a status waits for no one
            self.reclaim_expired()
        trials = self._trials((TrialState.COMPLETE, TrialState.FAIL))
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        expired = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("lease_expired")]
        pending = self.pending()
        return {
            "campaign": self.name,
            "objective": self.objective.to_dict() | {"name": self.objective.name, "unit": self.objective.unit},
            "space": self.space.to_dict(),
            "created": self.config.get("created"),
            "observed": len(complete),
            "failed": len(trials) - len(complete) - len(expired),
            "expired": len(expired),
            "pending": len(pending),
            "lease_s": self.lease_s,
            "warm_start_rows": len(self.config["warm_start"]["rows"]),
            "warm_start_source": self.config["warm_start"]["source"],
            "best": self.core.best(complete),
            "recommended": self.recommendation() if recommend else None,
            "pending_suggestions": [s.to_dict() for s in pending],
        }

    def recommendation(self, level: float = 0.9) -> dict[str, Any]:
        """The design the campaign's model believes best, with the objective's interval at ``level``.

        With no observation yet it is the physics prior's guess, flagged as an extrapolation.
        """
        return self.core.recommendation(self.observations(), level=level)


def list_campaigns(storage: str | optuna.storages.BaseStorage | None = None) -> list[dict[str, Any]]:
    """Every campaign in the storage: name, objective, creation time, number of trials.

    Reads the studies and their user attributes, and one count of trials per study
    (:func:`surrogate.storage.count_trials`): never the trials themselves, so listing costs the same with ten
    trials or a million. Creates no store: none, no campaigns.
    """
    from surrogate.storage import count_trials, store_exists

    if not isinstance(storage, optuna.storages.BaseStorage) and not store_exists(storage):
        return []
    store = open_storage(storage)
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
