"""The campaign as a domain object, without storage: its space, objective and recommender.

:class:`CampaignCore` answers what to measure next given the observations and the designs still pending,
and which design to recommend, from plain values (frames, design dicts, and
:class:`~surrogate.storage.StoredTrial` records when it reads the trials of a store): it needs no Optuna
storage, so it can be tested and used in memory. The recommender is :mod:`surrogate.suggester`
(:class:`Recommender` holds its functions, so a test can give its own). :class:`surrogate.campaign.Campaign`
keeps the state in Optuna storage (:mod:`surrogate.campaign_store`) and asks this core.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CAPACITY_RETENTION,
    CYCLES,
    MATERIAL,
    PROTOCOL,
    RATE_RETENTION,
    REFERENCE_C_RATE,
    TEST_TEMP_C,
    DesignSpace,
)
from surrogate.errors import InputError
from surrogate.materials import entries_in
from surrogate.objectives import Objective
from surrogate.observations import RECORDED_BY, SAMPLE_COLUMN
from surrogate.suggester import MIN_FADE_CYCLES, propose_batch, recommend, space_filling

if TYPE_CHECKING:  # a record type only: these modules read no storage
    from surrogate.storage import StoredTrial

MAX_SUGGEST_OBSERVATIONS = 400
"""Observation rows the suggester is given at most (:func:`capped_observations` above that): its cost grows
with the rows it gets (every measured design is in the baseline of its expected improvement) and stops here."""
REGION_BINS = 8
"""Bins per temperature axis of the design regions :func:`capped_observations` keeps one row of each."""
MAX_SUGGESTIONS_PER_CALL = 100
"""Designs one suggest call asks for at most."""
DESIGN_COLUMNS = [BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C]
CAMPAIGN_FORMAT = 1
CATALOGUE_KEY = "catalogue"
"""Key of the configuration holding the declared (non-default) buffers and material of the campaign's space, as
a materials document (:func:`surrogate.materials.entries_in`); absent in campaigns made before it existed."""


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


def check_n(n: Any) -> int:
    """The number of designs of a suggest call: a whole number from 1 to :data:`MAX_SUGGESTIONS_PER_CALL`."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > MAX_SUGGESTIONS_PER_CALL:
        raise InputError(f"n: {n!r} must be a whole number from 1 to {MAX_SUGGESTIONS_PER_CALL}")
    return n


def check_client_id(client_id: Any) -> str | None:
    """A suggest call's ``client_id``: None, else a non-empty text (stripped)."""
    if client_id is None:
        return None
    text = str(client_id).strip()
    if not text:
        raise InputError("client_id: must not be empty")
    return text


def check_seed(seed: Any) -> int:
    """A campaign's seed: a whole number >= 0 (not a bool); an :class:`InputError` otherwise."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed: {seed!r} must be a whole number >= 0")
    return int(seed)


def new_config(
    space: DesignSpace,
    objective: Objective,
    created: str,
    warm_start: pd.DataFrame | None = None,
    warm_start_source: str | None = None,
    seed: int = 0,
    lease_s: float | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The configuration of a new campaign (JSON-ready; what its study stores) and its warm-start rows.

    ``created``: the creation time (UTC, ISO 8601); ``warm_start``: a validated measurement frame, of which
    the rows that inform the objective are kept (:func:`warm_start_rows`); ``seed`` (:func:`check_seed`) and
    ``lease_s`` (seconds, None: the default when suggesting) are taken as checked. An :class:`InputError` if the
    objective cannot be served by the space.
    """
    objective.check_space(space)
    rows = warm_start_rows(warm_start, objective, space) if warm_start is not None else pd.DataFrame()
    config = {
        "format": CAMPAIGN_FORMAT,
        "created": created,
        "space": space.to_dict(),
        CATALOGUE_KEY: space_catalogue(space),
        "objective": objective.to_dict(),
        "seed": int(seed),
        "warm_start": {
            "source": warm_start_source,
            "rows": json.loads(rows.to_json(orient="records")) if not rows.empty else [],
        },
    }
    if lease_s is not None:
        config["lease_s"] = lease_s
    return config, rows


def distributions(space: DesignSpace, objective: Objective) -> dict[str, Any]:
    """The Optuna distributions of a campaign's trial parameters: buffer, anneal and (when free) test temperature."""
    dists: dict[str, Any] = {
        BUFFER: CategoricalDistribution(list(space.buffers)),
        ANNEAL_TEMP_C: FloatDistribution(*space.effective_anneal_temp_c),
    }
    if objective.test_temp_c is None:
        dists[TEST_TEMP_C] = FloatDistribution(*space.effective_test_temp_c)
    return dists


def space_catalogue(space: DesignSpace) -> dict[str, list[dict[str, Any]]]:
    """The catalogue entries of the space's buffers and material that are not packaged defaults (a materials
    document): what a campaign carries, so that any process opens it without the materials file."""
    return entries_in(pd.DataFrame({BUFFER: list(space.buffers), MATERIAL: space.material}))


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


@dataclass(frozen=True)
class Recommender:
    """The functions a campaign asks for designs (by default :mod:`surrogate.suggester`'s); their signatures
    are those of :func:`~surrogate.suggester.space_filling`, :func:`~surrogate.suggester.propose_batch`,
    :func:`~surrogate.suggester.recommend` and :func:`capped_observations`."""

    space_filling: Callable[..., pd.DataFrame] = space_filling
    propose_batch: Callable[..., pd.DataFrame] = propose_batch
    recommend: Callable[..., dict[str, Any]] = recommend
    subsample: Callable[..., pd.DataFrame] = capped_observations


@dataclass
class CampaignCore:
    """A campaign without storage: what to suggest given its observations and pending designs, what to recommend.

    ``warm_start`` holds the rows the campaign started from (records of :func:`warm_start_rows`, contract units);
    ``seed`` seeds every draw of the suggester.
    """

    space: DesignSpace
    objective: Objective
    seed: int = 0
    warm_start: list[dict[str, Any]] = field(default_factory=list)
    recommender: Recommender = field(default_factory=Recommender)

    def design_of(self, params: dict[str, Any]) -> dict[str, Any]:
        """The full design of a trial's parameters: buffer, temperatures (°C) and the objective's conditions."""
        design = {
            BUFFER: params[BUFFER],
            ANNEAL_TEMP_C: float(params[ANNEAL_TEMP_C]),
            TEST_TEMP_C: float(params.get(TEST_TEMP_C, self.objective.test_temp_c)),
        }
        return design | self.objective.conditions()

    def distributions(self) -> dict[str, Any]:
        """The Optuna distributions of the campaign's trial parameters (:func:`distributions`)."""
        return distributions(self.space, self.objective)

    def observation_frame(self, complete: Iterable[StoredTrial]) -> pd.DataFrame:
        """The campaign's observations from its COMPLETE trials plus the warm-start rows (contract units): one
        row each with the design, the measured targets, ``trial`` (NaN for warm-start rows), ``objective`` and
        ``recorded_by``."""
        rows = []
        for trial in complete:
            measured = json.loads(trial.user_attrs.get("measured", "{}"))
            rows.append(
                self.design_of(trial.params)
                | measured
                | {"trial": trial.number, "objective": trial.value, RECORDED_BY: trial.user_attrs.get(RECORDED_BY)}
            )
        frame = pd.DataFrame(rows)
        warm = pd.DataFrame(self.warm_start)
        if not warm.empty:
            for key, value in self.objective.conditions().items():
                warm[key] = warm[key].fillna(value) if key in warm else value
            frame = pd.concat([frame, warm.assign(trial=np.nan)], ignore_index=True)
        for target in self.objective.targets:
            if target not in frame:
                frame[target] = np.nan
        return frame

    def recorded(self, trials: Iterable[StoredTrial]) -> list[dict[str, Any]]:
        """The recorded experiments among COMPLETE and FAIL trials (JSON-ready; see :meth:`Campaign.recorded`):
        expired leases and trials without a design are left out."""
        out = []
        for trial in trials:
            attrs = trial.user_attrs
            failed = trial.state == TrialState.FAIL
            if failed and (attrs.get("lease_expired") or BUFFER not in trial.params):
                continue
            entry = {
                "trial": trial.number,
                "status": "failed" if failed else "observed",
                **self.design_of(trial.params),
                "objective": None if failed else trial.value,
                **json.loads(attrs.get("measured", "{}")),
                SAMPLE_COLUMN: attrs.get(SAMPLE_COLUMN) or None,
                RECORDED_BY: attrs.get(RECORDED_BY),
                "observed_at": attrs.get("observed_at"),
            }
            if failed:
                entry["reason"] = attrs.get("failure_reason", "")
            out.append(entry)
        return out

    def best(self, complete: list[StoredTrial]) -> dict[str, Any] | None:
        """The best noisy reading among COMPLETE trials (design, objective, measured targets); None if none."""
        if not complete:
            return None
        top = max(complete, key=lambda t: t.value)
        return (
            {"trial": top.number, **self.design_of(top.params), "objective": top.value}
            | json.loads(top.user_attrs.get("measured", "{}"))
            | {RECORDED_BY: top.user_attrs.get(RECORDED_BY)}
        )

    def modelled(self, observed: pd.DataFrame) -> bool:
        """Whether every target of the objective has an observation (else suggestions are space-filling)."""
        if observed.empty:
            return False
        return all(t in observed and observed[t].notna().any() for t in self.objective.targets)

    def next_designs(
        self,
        observed: pd.DataFrame,
        pending: list[dict[str, Any]],
        failed: list[dict[str, Any]],
        n_designs: int,
        n: int,
    ) -> pd.DataFrame:
        """``n`` designs to measure next, with ``method`` saying which model chose each.

        ``observed``: the observations (:meth:`observation_frame`); ``pending``: designs suggested and not yet
        answered (avoided by the batch); ``failed``: designs of failed experiments (avoided); ``n_designs``:
        the campaign's trials so far (the place in the space-filling sequence, and the seed's offset).
        Space-filling while nothing can be modelled yet; then the model (its priors cover untried buffers).
        """
        n = check_n(n)
        held = pd.DataFrame(pending, columns=DESIGN_COLUMNS)
        avoid = pd.DataFrame(failed, columns=DESIGN_COLUMNS)
        seed = self.seed + n_designs
        n_fill = 0 if self.modelled(observed) else n
        designs = []
        if n_fill:
            designs.append(self.recommender.space_filling(self.space, self.objective, n_designs, n_fill, self.seed))
        methods = ["space-filling"] * n_fill
        if n > n_fill:
            held = pd.concat([held, *designs], ignore_index=True)
            shown = self.recommender.subsample(observed, self.space, seed=seed)
            proposed = self.recommender.propose_batch(
                self.space, self.objective, shown, n - n_fill, held, avoid, seed=seed
            )
            designs.append(proposed)
            methods += list(proposed["method"])  # which model chose each (the physics-prior GP or the hedge)
        return pd.concat(designs, ignore_index=True).assign(method=methods)

    def recommendation(self, observed: pd.DataFrame, level: float = 0.9) -> dict[str, Any]:
        """The design the model believes best given ``observed``, with the objective's interval at ``level``
        (:func:`surrogate.suggester.recommend`); with no observation, the physics prior's flagged guess."""
        return self.recommender.recommend(self.space, self.objective, observed, seed=self.seed, level=level)
