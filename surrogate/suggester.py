"""What to measure next, and what the campaign recommends: the suggester's model, acquisition and recommendation.

Model: per target of the objective, the model family ``physics_gp``
(:class:`~surrogate.models.physics_gp.PhysicsPriorGP`, the same code and the same fit and predict that
cross-validation selects and ``/predict`` serves), fitted on the campaign's own observations plus any
warm-start rows: the physics law as a prior mean with uncertain parameters plus a GP discrepancy over
buffer, anneal temperature, test temperature and the condition (C-rate, cycles, protocol), so the
data can override a wrong law. When the observations carry film conductivity (at least
:data:`MIN_FILM_ROWS` readings at two or more temperatures), the rate model follows a conductivity model
fitted on them (:class:`~surrogate.models.physics_gp.FilmCoupling`), so σ(T) informs rate(T). Nothing is
fitted at import time and nothing is read from packaged data.
The objective (a product of targets, :mod:`surrogate.objectives`) is sampled from the targets' joint
posteriors (Monte Carlo; targets independent given the data).

Acquisition (:func:`propose_batch`): BoTorch's ``qLogNoisyExpectedImprovement`` over a candidate set (scrambled Sobol
points for every buffer of the space plus local points around the best designs), greedy within a
batch: pending suggestions and earlier picks are part of the baseline (incremental qLogNEI, the
pending designs integrated over as fantasies), never two picks of one buffer closer than
:data:`MIN_SEPARATION`, nothing near a failed experiment. Hedge: one pick per batch (for one-at-a-time
suggestions, every :data:`HEDGE_EVERY`-th) comes from a model-free GP (the same family with a constant
mean), so a wrong physics prior cannot keep the campaign away from a region forever.

Recommendation (:func:`recommend`): the design with the best posterior mean of the objective (not the
best noisy reading), with its central interval and whether it is an extrapolation.

State (what was suggested and observed) lives in :mod:`surrogate.campaign`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import qmc
from threadpoolctl import threadpool_limits

from surrogate.design import ANNEAL_TEMP_C, BUFFER, TEST_TEMP_C, DesignSpace
from surrogate.errors import InputError
from surrogate.laws import coupled_source, law_of
from surrogate.models.base import TARGET_SPACES
from surrogate.models.physics_gp import FilmCoupling, PhysicsPriorGP, model_to_contract
from surrogate.objectives import Objective
from surrogate.targets import get_target

MATCH_TOLERANCE_C = 0.5
"""An observed design matches a pending suggestion when its temperatures are within this many °C."""
MIN_SEPARATION = 0.03
"""Smallest distance between two suggestions of the same buffer, in units of the scaled (0-1) space."""
MIN_FADE_CYCLES = 80
"""Rows of a target whose law forecasts along a horizon (fade: cycles) are left out below this point of it
(warm-start capacity rows at fewer than 80 cycles; the campaign's objective asks for later cycles)."""
N_CANDIDATES = 128
"""Sobol candidates per buffer for the acquisition (plus local candidates around the best designs)."""
N_LOCAL = 24
"""Local candidates around each of the best designs."""
N_MC_SAMPLES = 128
"""Quasi-Monte-Carlo samples of the joint posterior in the acquisition function."""
N_RECOMMEND_SAMPLES = 1024
"""Monte-Carlo samples per design for :func:`recommend`'s mean and interval."""
N_SCREEN_SAMPLES = 64
"""Monte-Carlo samples per candidate for the screening expected improvement."""
N_SCREENED = 48
"""Candidates (plus two per pick) that pass the screen to qLogNEI."""
MAX_BASELINE = 12
"""Baseline designs (measured, pending) kept for qLogNEI: those most likely to be the best."""
N_PRUNE_SAMPLES = 512
"""Quasi-Monte-Carlo samples (seeded) for choosing those baseline designs."""
HEDGE_EVERY = 4
"""For one-at-a-time suggestions, every HEDGE_EVERY-th campaign design comes from the model-free GP."""
MIN_FILM_ROWS = 6
"""Film (conductivity) readings, at two or more test temperatures, before a rate model follows the film's model."""
MAX_MODEL_ROWS = 300
"""Rows a target model is fitted on at most (the family's stratified subsample above that)."""
_DESIGN = [BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C]
METHODS = {"physics": "qlognei-physics-gp", "model-free": "qlognei-model-free-gp"}
"""The ``method`` of a suggestion: qLogNEI under the physics-prior model, or the model-free hedge."""


# ==================================================================== the objective's posterior
def _target_rows(observed: pd.DataFrame, target: str, objective: Objective) -> pd.DataFrame:
    """Rows of ``observed`` that measured ``target`` (a law with a horizon, fade: from :data:`MIN_FADE_CYCLES`
    cycles, or the objective's cycles when fewer)."""
    if observed.empty or target not in observed:
        return observed.iloc[:0]
    rows = observed[observed[target].notna()]
    horizon = law_of(target).horizon
    if horizon is not None and horizon in rows:
        rows = rows[rows[horizon].astype(float) >= min(MIN_FADE_CYCLES, objective.conditions()[horizon])]
    return rows


def _film_coupling(observed: pd.DataFrame, target: str) -> FilmCoupling | None:
    """The film model ``target``'s law follows (rate → conductivity), fitted on the observed films, or None.

    Only when the observations carry at least :data:`MIN_FILM_ROWS` readings of the source target at two or
    more test temperatures (a lab measures its films by EIS anyway); otherwise the law's own priors.
    """
    source = coupled_source(target)
    if source is None or observed.empty or source not in observed:
        return None
    rows = observed[observed[source].notna()]
    if len(rows) < MIN_FILM_ROWS or rows[TEST_TEMP_C].astype(float).nunique() < 2:
        return None
    columns = list(get_target(source).inputs)
    values = TARGET_SPACES[source].forward(rows[source].to_numpy(float))
    model = PhysicsPriorGP(target=source, max_points=MAX_MODEL_ROWS)
    return FilmCoupling(model.fit(rows[columns].reset_index(drop=True), values))


@dataclass
class ObjectivePosterior:
    """Fitted ``physics_gp`` models of an objective's targets and the objective's posterior at designs."""

    objective: Objective
    models: dict[str, PhysicsPriorGP]

    @classmethod
    def fit(
        cls, objective: Objective, observed: pd.DataFrame, space: DesignSpace, mean: str = "physics"
    ) -> ObjectivePosterior:
        """Fit one model per target on ``observed`` (designs, conditions and measured targets, contract units).

        ``mean="constant"`` fits the model-free GP (the hedge). A target with no measurement yet is the
        prior alone.
        """
        buffers = list(space.buffers)
        if not observed.empty and BUFFER in observed:
            buffers += sorted(set(observed[BUFFER].dropna().astype(str)) - set(buffers))
        models = {}
        for target in objective.targets:
            rows = _target_rows(observed, target, objective)
            columns = list(get_target(target).inputs)
            frame = objective.full_designs(pd.DataFrame(columns=_DESIGN)) if rows.empty else rows
            film = _film_coupling(observed, target) if mean == "physics" else None
            model = PhysicsPriorGP(
                target=target, mean=mean, max_points=MAX_MODEL_ROWS, categories={BUFFER: buffers}, film=film
            )
            values = TARGET_SPACES[target].forward(rows[target].to_numpy(float)) if not rows.empty else np.zeros(0)
            models[target] = model.fit(frame[columns].reset_index(drop=True), values)
        return cls(objective, models)

    def joint(self, designs: pd.DataFrame) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Latent means and covariances (natural space), one per target, at designs (buffer, anneal, test)."""
        full = self.objective.full_designs(designs[_DESIGN])
        means, covs = [], []
        for model in self.models.values():
            mean, cov = model.posterior(full[list(model.feature_names_in_)], full_cov=True)
            means.append(mean)
            covs.append(cov)
        return means, covs

    def marginal_samples(self, designs: pd.DataFrame, n_samples: int, seed: int) -> np.ndarray:
        """Objective samples (designs × n_samples), contract units, drawn per design from the marginal posteriors."""
        full = self.objective.full_designs(designs[_DESIGN])
        rng = np.random.default_rng(seed)
        values = {}
        for target, model in self.models.items():
            mean, variance = model.posterior(full[list(model.feature_names_in_)], full_cov=False)
            z = rng.standard_normal((len(full), n_samples))
            values[target] = model_to_contract(target, mean[:, None] + np.sqrt(variance)[:, None] * z)
        return self.objective.value(values)


# ==================================================================== BoTorch view of the posterior
def _botorch_model(means: list[np.ndarray], covs: list[np.ndarray]) -> Any:
    """A BoTorch ``Model`` whose input X[..., 0] is a row of a design table with known joint posterior.

    ``posterior(X)`` gathers the table's mean and covariance at those rows (independent targets: a
    multitask normal of independent outputs), which is what qLogNEI samples.
    """
    import torch
    from botorch.models.model import Model
    from botorch.posteriors.gpytorch import GPyTorchPosterior
    from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal

    class DesignTableModel(Model):
        _supports_cache_root = False

        def __init__(self) -> None:
            super().__init__()
            self.table_means = [torch.as_tensor(m, dtype=torch.float64) for m in means]
            self.table_covs = [torch.as_tensor(c, dtype=torch.float64) for c in covs]

        @property
        def num_outputs(self) -> int:
            return len(self.table_means)

        @property
        def batch_shape(self) -> torch.Size:
            return torch.Size([])

        def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
            rows = X[..., 0].round().long()
            eye = torch.eye(rows.shape[-1], dtype=torch.float64)
            normals = [
                MultivariateNormal(m[rows], c[rows.unsqueeze(-1), rows.unsqueeze(-2)] + 1e-8 * eye)
                for m, c in zip(self.table_means, self.table_covs, strict=True)
            ]
            if len(normals) == 1:
                posterior = GPyTorchPosterior(normals[0])
            else:
                posterior = GPyTorchPosterior(MultitaskMultivariateNormal.from_independent_mvns(normals))
            return posterior_transform(posterior) if posterior_transform is not None else posterior

    return DesignTableModel()


class _Acquisition:
    """Greedy qLogNEI over the rows of a design table whose joint posterior is computed once.

    The table holds the candidates first, then the baseline designs (measured and pending). The
    baseline is pruned once to the designs with some probability of being the best
    (:func:`botorch.acquisition.utils.prune_inferior_points`, at most :data:`MAX_BASELINE` of them);
    each pick joins it for the next (incremental qLogNEI).
    """

    def __init__(self, posterior: ObjectivePosterior, table: pd.DataFrame, baseline: list[int], seed: int) -> None:
        import torch
        from botorch.acquisition.utils import prune_inferior_points
        from botorch.sampling.normal import SobolQMCNormalSampler

        means, covs = posterior.joint(table)
        self.model = _botorch_model(means, covs)
        self.objective = posterior.objective.to_botorch()
        self.seed = seed
        rows = torch.as_tensor(baseline, dtype=torch.float64)[:, None]
        if len(baseline) > 1:
            frac = min(1.0, MAX_BASELINE / len(baseline))
            with torch.no_grad():
                # A seeded sampler: BoTorch's default draws its seed at random, so the same campaign state gave
                # different pruned baselines, hence different suggestions, in different processes.
                sampler = SobolQMCNormalSampler(torch.Size([N_PRUNE_SAMPLES]), seed=seed)
                rows = prune_inferior_points(self.model, rows, objective=self.objective, sampler=sampler, max_frac=frac)
        self.baseline = rows

    def best(self, candidates: np.ndarray, picks: list[int], slot: int) -> int:
        """The candidate row with the highest qLogNEI over the baseline plus ``picks``."""
        import torch
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.sampling.normal import SobolQMCNormalSampler

        baseline = torch.cat([self.baseline, torch.as_tensor(picks, dtype=torch.float64).reshape(-1, 1)])
        acquisition = qLogNoisyExpectedImprovement(
            self.model,
            X_baseline=baseline,
            sampler=SobolQMCNormalSampler(torch.Size([N_MC_SAMPLES]), seed=self.seed + slot),
            objective=self.objective,
            prune_baseline=False,
            cache_root=False,
        )
        with torch.no_grad():
            values = acquisition(torch.as_tensor(candidates, dtype=torch.float64)[:, None, None]).numpy()
        return int(candidates[int(np.argmax(values))])


# ==================================================================== candidates and spacing
def _scaled(frame: pd.DataFrame, space: DesignSpace) -> np.ndarray:
    """Continuous design variables scaled to [0, 1] over the space's effective ranges."""
    columns = []
    for name, (low, high) in (
        (ANNEAL_TEMP_C, space.effective_anneal_temp_c),
        (TEST_TEMP_C, space.effective_test_temp_c),
    ):
        columns.append((frame[name].to_numpy(float) - low) / max(high - low, 1e-9))
    return np.column_stack(columns)


def _too_close(candidates: pd.DataFrame, taken: pd.DataFrame, space: DesignSpace, by_buffer: bool = True) -> np.ndarray:
    """True for candidates within :data:`MIN_SEPARATION` of a taken design of the same buffer (of any buffer
    when ``by_buffer`` is False: a film's conductivity does not depend on the cell's buffer)."""
    if taken.empty:
        return np.zeros(len(candidates), dtype=bool)
    a, b = _scaled(candidates, space), _scaled(taken, space)
    close = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)) < MIN_SEPARATION
    if by_buffer:
        close &= candidates[BUFFER].to_numpy()[:, None] == taken[BUFFER].to_numpy()[None, :]
    return close.any(axis=1)


def space_filling(space: DesignSpace, objective: Objective, start: int, n: int, seed: int) -> pd.DataFrame:
    """Designs ``start`` … ``start + n - 1`` of the campaign's space-filling sequence.

    Scrambled Sobol points over the continuous variables (anneal and, when free, test temperature),
    buffers cycled evenly in the space's order.
    """
    dims = 2 if objective.test_temp_c is None else 1
    sampler = qmc.Sobol(d=dims, scramble=True, seed=seed)
    points = sampler.random_base2(int(np.ceil(np.log2(max(start + n, 2)))))[start : start + n]
    a_low, a_high = space.effective_anneal_temp_c
    t_low, t_high = space.effective_test_temp_c
    rows = []
    for i, point in enumerate(points):
        rows.append(
            {
                BUFFER: space.buffers[(start + i) % len(space.buffers)],
                ANNEAL_TEMP_C: float(a_low + point[0] * (a_high - a_low)),
                TEST_TEMP_C: float(t_low + point[1] * (t_high - t_low)) if dims == 2 else objective.test_temp_c,
            }
        )
    return pd.DataFrame(rows)


def candidate_designs(
    space: DesignSpace, objective: Objective, rng: np.random.Generator, around: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Acquisition candidates: :data:`N_CANDIDATES` Sobol points per buffer plus local points around ``around``."""
    dims = 2 if objective.test_temp_c is None else 1
    a_low, a_high = space.effective_anneal_temp_c
    t_low, t_high = space.effective_test_temp_c
    base = qmc.Sobol(d=2, scramble=True, seed=rng).random_base2(int(np.log2(N_CANDIDATES)))
    frames = []
    for buffer in space.buffers:
        frames.append(
            pd.DataFrame(
                {
                    BUFFER: buffer,
                    ANNEAL_TEMP_C: a_low + base[:, 0] * (a_high - a_low),
                    TEST_TEMP_C: t_low + base[:, 1] * (t_high - t_low) if dims == 2 else objective.test_temp_c,
                }
            )
        )
    if around is not None:
        for _, row in around.iterrows():
            local = rng.normal(0.0, 0.04, size=(N_LOCAL, 2))
            frames.append(
                pd.DataFrame(
                    {
                        BUFFER: row[BUFFER],
                        ANNEAL_TEMP_C: np.clip(row[ANNEAL_TEMP_C] + local[:, 0] * (a_high - a_low), a_low, a_high),
                        TEST_TEMP_C: np.clip(row[TEST_TEMP_C] + local[:, 1] * (t_high - t_low), t_low, t_high)
                        if dims == 2
                        else objective.test_temp_c,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _at_conditions(observed: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """Rows measured at the objective's conditions with every target of it present."""
    return objective.measured_at_conditions(observed, MATCH_TOLERANCE_C)


def _designs(frame: pd.DataFrame | None) -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame(columns=_DESIGN)
    return frame[_DESIGN].reset_index(drop=True)


def _campaign_designs(observed: pd.DataFrame, pending: pd.DataFrame, avoid: pd.DataFrame) -> int:
    """How many designs the campaign has handed out or recorded (warm-start rows, without a trial, excluded)."""
    done = int(observed["trial"].notna().sum()) if "trial" in observed else len(observed)
    return done + len(pending) + len(avoid)


# ==================================================================== propose
@contextmanager
def _single_threaded() -> Iterator[None]:
    """One thread for BLAS, OpenMP and torch while suggesting: the matrices are small, and on shared cores
    extra threads only contend (8 suggestions at 50 observations: 0.6 s single-threaded, 3 s with threads
    on a loaded 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


def propose_batch(
    space: DesignSpace,
    objective: Objective,
    observed: pd.DataFrame,
    n: int,
    pending: pd.DataFrame | None = None,
    avoid: pd.DataFrame | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """``n`` designs by greedy qLogNEI under the campaign's ``physics_gp`` models, one hedged.

    Returns the designs (buffer, anneal_temp_c, test_temp_c) and ``method``: which model chose each
    (:data:`METHODS`).

    ``observed`` holds designs (buffer, anneal_temp_c, test_temp_c), their conditions (c_rate, cycles,
    protocol) and a column per measured target (contract units; NaN where not measured). ``pending``
    designs and each pick are in the baseline of the next pick (integrated over as fantasies); no pick
    lies within :data:`MIN_SEPARATION` of another pick, a pending design or an ``avoid`` design (failed
    experiments) of the same buffer. The last pick of a batch of two or more, and every
    :data:`HEDGE_EVERY`-th design of one-at-a-time suggestions, comes from the model-free GP.
    """
    with _single_threaded():
        return _propose(space, objective, observed, n, _designs(pending), _designs(avoid), seed)


def _propose(
    space: DesignSpace,
    objective: Objective,
    observed: pd.DataFrame,
    n: int,
    pending: pd.DataFrame,
    avoid: pd.DataFrame,
    seed: int,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    physics = ObjectivePosterior.fit(objective, observed, space)
    measured = _designs(_at_conditions(observed, objective))
    base = candidate_designs(space, objective, rng)
    base_draws = physics.marginal_samples(base, N_SCREEN_SAMPLES, seed)
    around = base.iloc[np.argsort(base_draws.mean(axis=1))[::-1][:3]]
    incumbent = float(base_draws.mean(axis=1).max())
    if not measured.empty:
        observed_means = physics.marginal_samples(measured, N_SCREEN_SAMPLES, seed).mean(axis=1)
        around = pd.concat([around, measured.iloc[np.argsort(observed_means)[::-1][:3]]], ignore_index=True)
        incumbent = float(observed_means.max())
    local = candidate_designs(space, objective, rng, around).iloc[len(base) :]
    candidates = pd.concat([base, local], ignore_index=True)
    by_buffer = any(BUFFER in get_target(t).inputs for t in objective.targets)
    excluded = _too_close(candidates, pending, space, by_buffer) | _too_close(candidates, avoid, space, by_buffer)
    if n >= 2:
        hedge_slot = n - 1
    else:
        hedge_slot = 0 if _campaign_designs(observed, pending, avoid) % HEDGE_EVERY == HEDGE_EVERY - 1 else -1
    models = {"physics": physics}
    if hedge_slot >= 0:
        models["model-free"] = ObjectivePosterior.fit(objective, observed, space, mean="constant")
    acquisitions = {}
    for name, posterior in models.items():
        # Screen: the candidates with the highest marginal expected improvement, then qLogNEI on those.
        draws = posterior.marginal_samples(candidates, N_SCREEN_SAMPLES, seed)
        ei = np.maximum(draws - incumbent, 0.0).mean(axis=1) + 1e-12 * draws.mean(axis=1)
        ei[excluded] = -np.inf
        screened = candidates.iloc[np.argsort(ei)[::-1][: N_SCREENED + 2 * n]]
        screened = screened[np.isfinite(np.sort(ei)[::-1][: len(screened)])]
        table = pd.concat([screened, measured, pending], ignore_index=True)
        baseline = list(range(len(screened), len(table))) or [0]
        acquisitions[name] = (_Acquisition(posterior, table, baseline, seed), table, len(screened))
    picks: list[pd.DataFrame] = []
    rows: dict[str, list[int]] = {name: [] for name in acquisitions}
    for slot in range(n):
        name = "model-free" if slot == hedge_slot else "physics"
        acquisition, table, n_screened = acquisitions[name]
        taken = pd.concat(picks, ignore_index=True) if picks else pd.DataFrame(columns=_DESIGN)
        allowed = np.flatnonzero(~_too_close(table.iloc[:n_screened], taken, space, by_buffer))
        if not len(allowed):
            break
        row = acquisition.best(allowed, rows[name], slot)
        rows[name].append(row)
        picks.append(table.iloc[[row]][_DESIGN].assign(method=METHODS[name]))
    out = pd.concat(picks, ignore_index=True) if picks else candidates.iloc[:0].assign(method=pd.Series(dtype=str))
    return out.astype({BUFFER: str, ANNEAL_TEMP_C: float, TEST_TEMP_C: float})


# ==================================================================== recommend
def recommend(
    space: DesignSpace, objective: Objective, observed: pd.DataFrame, seed: int = 0, level: float = 0.9
) -> dict[str, Any]:
    """The design the campaign's model believes best: the highest posterior mean of the objective.

    Not the best noisy reading: when the noise is larger than the differences near the optimum, the best
    reading is often a lucky one. Candidates are Sobol points for every buffer of the space, local
    points around the best ones and every design measured at the objective's conditions. Returns the
    design (with the objective's conditions), ``mean``, ``lower`` and ``upper`` of the objective's
    central ``level`` interval (contract units; the model's uncertainty about the design's true value,
    not about a single noisy reading), ``level``, ``extrapolation`` (True when the design lies outside
    what the campaign measured at the objective's conditions: an unmeasured buffer, or outside the
    anneal or test-temperature range measured for that buffer) with ``extrapolation_reasons``, and the
    number of rows the model saw.
    """
    if not 0.5 <= level <= 0.999:
        raise InputError(f"level: {level} must be from 0.5 to 0.999 (e.g. 0.9 for a 90% interval)")
    with _single_threaded():
        rng = np.random.default_rng(seed)
        posterior = ObjectivePosterior.fit(objective, observed, space)
        measured_rows = _at_conditions(observed, objective)
        measured = _designs(measured_rows)
        inside = [not space.violations(d) for d in measured.to_dict("records")]
        measured = measured[np.array(inside, dtype=bool)] if len(measured) else measured
        base = pd.concat([candidate_designs(space, objective, rng), measured], ignore_index=True)
        means = posterior.marginal_samples(base, 256, seed).mean(axis=1)
        around = base.iloc[np.argsort(means)[::-1][:5]]
        local = candidate_designs(space, objective, rng, around).iloc[len(space.buffers) * N_CANDIDATES :]
        candidates = pd.concat([base, local], ignore_index=True)
        samples = posterior.marginal_samples(candidates, N_RECOMMEND_SAMPLES, seed)
    best = int(np.argmax(samples.mean(axis=1)))
    design = candidates.iloc[best].to_dict()
    design = {
        BUFFER: str(design[BUFFER]),
        ANNEAL_TEMP_C: float(design[ANNEAL_TEMP_C]),
        TEST_TEMP_C: float(design[TEST_TEMP_C]),
    }
    tail = (1.0 - level) / 2.0
    lower, upper = np.quantile(samples[best], [tail, 1.0 - tail])
    reasons = _extrapolation_reasons(design, measured_rows)
    return {
        "design": design | objective.conditions(),
        "mean": float(samples[best].mean()),
        "lower": float(lower),
        "upper": float(upper),
        "level": float(level),
        "extrapolation": bool(reasons),
        "extrapolation_reasons": reasons,
        "observations": int(len(measured_rows)),
        "model_rows": {t: int(m.n_train_) for t, m in posterior.models.items()},
    }


def _extrapolation_reasons(design: dict[str, Any], measured: pd.DataFrame) -> list[str]:
    """Why ``design`` lies outside what was measured at the objective's conditions (empty: inside)."""
    if measured.empty:
        return ["nothing measured at the objective's conditions yet: the recommendation is the physics prior"]
    same = measured[measured[BUFFER].astype(str) == design[BUFFER]]
    if same.empty:
        return [f"{BUFFER}={design[BUFFER]}: never measured at the objective's conditions"]
    reasons = []
    for column in (ANNEAL_TEMP_C, TEST_TEMP_C):
        low, high = same[column].astype(float).min(), same[column].astype(float).max()
        if not low - MATCH_TOLERANCE_C <= design[column] <= high + MATCH_TOLERANCE_C:
            reasons.append(
                f"{column}={design[column]:g} outside the range measured for {design[BUFFER]} [{low:g}, {high:g}]"
            )
    return reasons
