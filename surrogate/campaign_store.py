"""Where a campaign lives: its Optuna study, its lock and the leases of its suggestions.

:class:`CampaignStore` owns everything Optuna about one campaign: creating and opening the study, reading
and writing its trials (through :func:`surrogate.storage.read_trials` and
:func:`surrogate.storage.write_trials`, one transaction each), the campaign's lock
(:func:`surrogate.storage.exclusive`) and the leases of pending suggestions (expiry, reclaiming, renewing,
and :meth:`CampaignStore.keep_alive`, a thread that renews). It knows nothing of designs or objectives:
:class:`surrogate.campaign.Campaign` gives it parameters, distributions and values.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
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
    PROTOCOL,
    RATE_RETENTION,
    TEST_TEMP_C,
    DesignSpace,
)
from surrogate.errors import ConflictError, InputError, NotFoundError
from surrogate.observations import RECORDED_BY, SAMPLE_COLUMN
from surrogate.storage import StoredTrial

CAMPAIGN_ATTR = "campaign"
"""Study user attribute holding the campaign's configuration (JSON)."""
TAG = "surrogate-campaign"
"""Value of the study user attribute ``kind`` that labels a study as a campaign."""
LOCK_PREFIX = "surrogate-campaign-suggest:"
"""Prefix of the campaign's lock name (:func:`surrogate.storage.exclusive`); kept from format 1 for compatibility."""
CAMPAIGN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Campaign names: 1-64 characters, letters, digits, '.', '_' and '-', starting with a letter or digit."""
_NAME_RE = re.compile(CAMPAIGN_NAME_PATTERN)

LEASE_ENV = "SURROGATE_LEASE_S"
"""Environment variable: lease of a suggestion in seconds, for campaigns created without their own."""
DEFAULT_LEASE_S = 24 * 3600.0
"""Lease of a suggestion when neither the campaign nor ``$SURROGATE_LEASE_S`` sets one: 24 h."""
MAX_LEASE_S = 366 * 24 * 3600.0

WARM_START_KIND = "surrogate-campaign-warm-start"
"""Value of the study user attribute ``kind`` of the studies showing a campaign's warm-start rows."""
WARM_START_TARGETS = (CONDUCTIVITY, RATE_RETENTION, CAPACITY_RETENTION)


def now_text() -> str:
    """The time now, UTC, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def iso(moment: datetime) -> str:
    """A time as UTC, ISO 8601 to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_time(text: Any) -> datetime | None:
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


def default_lease_s() -> float:
    """``$SURROGATE_LEASE_S`` when set, else :data:`DEFAULT_LEASE_S` (24 h)."""
    from surrogate.settings import get_settings

    lease = get_settings().lease_s
    return check_lease_s(lease, LEASE_ENV) if lease is not None else DEFAULT_LEASE_S


def check_name(name: Any) -> str:
    """The campaign name, checked against :data:`CAMPAIGN_NAME_PATTERN` before any storage access."""
    text = name if isinstance(name, str) else ""
    if not _NAME_RE.fullmatch(text):
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        raise InputError(
            f"campaign name: {shown} is not a valid name: 1-64 characters, letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return text


def check_trial_number(value: Any) -> int:
    """A trial number: a whole number >= 0 (not a bool); an :class:`InputError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"trial: {value!r} is not a trial number")
    return int(value)


def open_storage(storage: str | optuna.storages.BaseStorage | None) -> optuna.storages.BaseStorage:
    """``storage`` itself when it is an Optuna storage, else the one its URL names (:func:`get_storage`)."""
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    from surrogate.storage import get_storage

    return get_storage(storage)


def warm_start_study_name(campaign: str, target: str) -> str:
    """Name of the study showing ``campaign``'s warm-start rows of ``target`` (':' never occurs in campaign names)."""
    return f"{campaign}:warm-start:{target}"


class CampaignStore:
    """One campaign's Optuna study in its storage: trials, the campaign's lock and the suggestions' leases."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage, lease_s: float | None) -> None:
        self.study = study
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.own_lease_s = lease_s
        """The campaign's own lease in seconds (None: ``$SURROGATE_LEASE_S``, else 24 h)."""
        self.lock_wait_s: float | None = None
        """Seconds a change of state waits for the lock before :class:`~surrogate.errors.BusyError`
        (None: :data:`surrogate.storage.LOCK_WAIT_S`)."""

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def lease_s(self) -> float:
        """Seconds a suggestion stays pending without a result (the campaign's, else :func:`default_lease_s`)."""
        own = self.own_lease_s
        return check_lease_s(own, "campaign lease_s") if own is not None else default_lease_s()

    # ---------------------------------------------------------------- create / load
    @classmethod
    def create(
        cls,
        name: str,
        storage: str | optuna.storages.BaseStorage | None,
        metric: str,
        config: dict[str, Any],
        setup: Callable[[optuna.storages.BaseStorage], None] | None = None,
        leftovers: Sequence[str] = (),
    ) -> CampaignStore:
        """Create the study of campaign ``name`` (a :class:`ConflictError` if it exists), labelled a campaign,
        its metric named ``metric``, ``setup(storage)`` run, and ``config`` stored last (a study without it is
        not a campaign). On any failure the study and the studies named in ``leftovers`` are deleted."""
        store = open_storage(storage)
        try:
            study = optuna.create_study(study_name=name, storage=store, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:
            raise ConflictError(f"campaign {name!r} already exists; pick another name") from None
        try:
            study.set_user_attr("kind", TAG)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([metric])
            if setup is not None:
                setup(store)
            study.set_user_attr(CAMPAIGN_ATTR, json.dumps(config))  # last: a study without it is not a campaign
        except BaseException:  # leave no half-made campaign behind: the name stays free
            for leftover in (name, *leftovers):
                with suppress(KeyError):
                    optuna.delete_study(study_name=leftover, storage=store)
            raise
        return cls(study, store, config.get("lease_s"))

    @classmethod
    def load(cls, name: str, storage: str | optuna.storages.BaseStorage | None) -> tuple[CampaignStore, dict[str, Any]]:
        """Open campaign ``name``'s study and its configuration; a :class:`NotFoundError` if there is no such
        campaign (no store is created then)."""
        from surrogate.storage import store_exists

        missing = NotFoundError(
            f"campaign {name!r} does not exist (`surrogate campaign list` lists the campaigns of this storage)"
        )
        if not isinstance(storage, optuna.storages.BaseStorage) and not store_exists(storage):
            raise missing
        store = open_storage(storage)
        try:
            study = optuna.load_study(study_name=name, storage=store)
        except KeyError:
            raise missing from None
        raw = study.user_attrs.get(CAMPAIGN_ATTR)
        if raw is None:
            raise NotFoundError(f"study {name!r} is not a campaign (no {CAMPAIGN_ATTR!r} attribute)")
        config = json.loads(raw)
        return cls(study, store, config.get("lease_s")), config

    # ---------------------------------------------------------------- trials
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the campaign's lock (every process and host sharing the storage)."""
        from surrogate.storage import exclusive

        with exclusive(self.storage, LOCK_PREFIX + self.name, self.lock_wait_s, f"campaign {self.name!r}"):
            yield

    def trials(self, states: tuple[TrialState, ...], attr_keys: Sequence[str] | None = None) -> list[StoredTrial]:
        """The campaign's trials in ``states`` with the user attributes ``attr_keys`` (None: all), by number.

        Read with :func:`surrogate.storage.read_trials`, never Optuna's ``get_trials``: its cached storage reads
        every trial of the study on the first call, whatever states are asked for.
        """
        from surrogate.storage import read_trials

        return read_trials(self.storage, self.study_id, states, attr_keys)

    def count(self) -> int:
        """The number of the campaign's trials, in any state (one COUNT)."""
        from surrogate.storage import count_trials

        return count_trials(self.storage, [self.name])[self.name]

    def add_suggestions(
        self,
        params: list[dict[str, Any]],
        methods: list[str],
        client_id: str | None,
        dists: dict[str, Any],
        lease_s: float,
    ) -> tuple[list[int], str, str]:
        """Store suggestions as RUNNING trials of one new batch, each with a lease of ``lease_s`` seconds from now.

        Returns the trial numbers, the batch id and the lease's expiry (UTC, ISO 8601). Call under :meth:`locked`.
        """
        from surrogate.storage import write_trials

        batch = uuid.uuid4().hex[:12]
        now = datetime.now(UTC)
        expiry = iso(now + timedelta(seconds=lease_s))
        templates = []
        for values, method in zip(params, methods, strict=True):
            attrs = {"batch": batch, "method": method, "suggested_at": iso(now), "lease_expires_at": expiry}
            attrs["lease_s"] = lease_s
            if client_id is not None:
                attrs["client_id"] = client_id
            templates.append(
                optuna.trial.create_trial(
                    state=TrialState.RUNNING, params=values, distributions=dists, user_attrs=attrs
                )
            )
        return write_trials(self.storage, self.study_id, new=templates), batch, expiry

    def record(
        self,
        records: list[dict[str, Any]],
        dists: dict[str, Any],
        value_of: Callable[[dict[str, float]], float],
        recorded_by: str | None = None,
    ) -> list[int]:
        """Write resolved observation records (:meth:`surrogate.observations.ObservationMatcher.resolve`) in one
        transaction: a pending trial is finished, an unsolicited one added. ``value_of`` gives the objective of
        the measured targets. The trial number of each record, in order. Call under :meth:`locked`."""
        from surrogate.storage import Finish, write_trials

        finish, new, order = [], [], []
        stamp = now_text()
        for record in records:
            attrs: dict[str, Any] = {"observed_at": stamp, SAMPLE_COLUMN: record["sample_id"]}
            if recorded_by is not None:
                attrs[RECORDED_BY] = recorded_by
            if record["values"]:
                attrs["measured"] = json.dumps(record["values"])
            if record["state"] == TrialState.FAIL:
                attrs["failure_reason"] = record["reason"] or "failed"
            value = float(value_of(record["values"])) if record["state"] == TrialState.COMPLETE else None
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

    # ---------------------------------------------------------------- leases
    def lease_expiry(self, trial: StoredTrial) -> datetime:
        """When a pending trial's lease ends: its ``lease_expires_at``, else (format 1 suggestions) its
        suggestion time plus the campaign's lease."""
        expiry = parse_time(trial.user_attrs.get("lease_expires_at"))
        if expiry is not None:
            return expiry
        start = parse_time(trial.user_attrs.get("suggested_at"))
        if start is None:
            start = (trial.datetime_start or datetime.now()).astimezone(UTC)
        return start + timedelta(seconds=self.lease_s)

    def any_expired(self) -> bool:
        """Whether a pending suggestion is past its lease (read without the lock; reclaiming re-reads under it)."""
        now = datetime.now(UTC)
        return any(self.lease_expiry(t) <= now for t in self.trials((TrialState.RUNNING,)))

    def reclaim(self) -> list[int]:
        """Return suggestions past their lease to the pool (their trials FAIL, ``lease_expired``); the numbers of
        the trials reclaimed. Call under :meth:`locked`."""
        from surrogate.storage import Finish, write_trials

        now = datetime.now(UTC)
        finish = []
        for trial in self.trials((TrialState.RUNNING,)):
            expiry = self.lease_expiry(trial)
            if expiry <= now:
                reason = f"lease expired at {iso(expiry)}: no result or renewal in time (lease {self.lease_s:g} s)"
                finish.append(
                    Finish(trial.number, TrialState.FAIL, None, {"failure_reason": reason, "lease_expired": True})
                )
        if finish:
            write_trials(self.storage, self.study_id, finish=finish)
        return [f.number for f in finish]

    def renew(self, numbers: list[int] | None, client_id: str | None = None) -> tuple[list[StoredTrial], str]:
        """Extend the leases of pending trials by :attr:`lease_s` from now: ``numbers``, or all of ``client_id``.

        Takes the lock and reclaims expired leases first. A trial that is not pending (of ``client_id``, when
        given) raises :class:`ConflictError` naming it and no lease changes. Returns the trials renewed (their
        attributes as read before) and the new expiry (UTC, ISO 8601).
        """
        with self.locked():
            self.reclaim()
            mine = {
                t.number: t
                for t in self.trials((TrialState.RUNNING,))
                if client_id is None or t.user_attrs.get("client_id") == client_id
            }
            chosen = list(mine) if numbers is None else numbers
            for number in chosen:
                if number not in mine:
                    raise ConflictError(
                        f"trial {number}: not a pending suggestion{' of ' + repr(client_id) if client_id else ''} "
                        "(observed, failed, or its lease ran out and it went back to the pool)",
                        trial=number,
                    )
            expiry = iso(datetime.now(UTC) + timedelta(seconds=self.lease_s))
            for number in chosen:
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
                self.storage.set_trial_user_attr(trial_id, "lease_expires_at", expiry)
            return [mine[n] for n in chosen], expiry

    @contextmanager
    def keep_alive(self, numbers: Iterable[int], every_s: float | None = None) -> Iterator[threading.Event]:
        """Renew the leases of ``numbers`` every ``every_s`` seconds (default: a third of the lease) from a
        thread while the block runs; the event yielded is set when a renewal failed because a trial is no
        longer pending (the thread stops then). A passing error is logged and retried at the next beat.
        """
        chosen = [check_trial_number(t) for t in numbers]
        interval = float(every_s) if every_s is not None else self.lease_s / 3.0
        stop, lost = threading.Event(), threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.renew(chosen)
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


def store_warm_start_studies(
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
    for target in (t for t in WARM_START_TARGETS if t in rows):
        data = rows[rows[target].notna()]
        if data.empty:
            continue
        dists = _warm_start_distributions(data, target, space)
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
        trials = [
            optuna.trial.create_trial(
                value=float(record[target]),
                params={key: _param_value(dist, record[key]) for key, dist in dists.items()},
                distributions=dists,
                user_attrs={"source": "warm-start", "origin": source or ""},
            )
            for record in data.to_dict("records")
        ]
        write_trials(storage, storage.get_study_id_from_name(name), new=trials)


def _warm_start_distributions(data: pd.DataFrame, target: str, space: DesignSpace) -> dict[str, Any]:
    """The distributions of a warm-start study of ``target``: the space widened to the rows, and their conditions."""
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
    return dists


def _param_value(dist: Any, value: Any) -> Any:
    """A parameter's value in the type of its distribution (float, int, else text)."""
    if isinstance(dist, FloatDistribution):
        return float(value)
    if isinstance(dist, IntDistribution):
        return int(value)
    return str(value)
