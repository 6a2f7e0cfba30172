"""Accuracy benchmark of the trained surrogate against the paper-calibrated virtual lab.

Trains the champion on the embedded data set (no tuning, every family) in a
temporary MLflow store, then measures it on held-out designs drawn at random
within the paper's ranges, against the noise-free lab (accuracy) and against
fresh noisy lab measurements (interval coverage); checks every paper fact with
the champion's means; and repeats the accuracy measures on clearly
extrapolated designs, reported separately (no target applies there).

Held-out designs (``--n`` per group, seeded):

* conductivity: anneal temperature at the paper's states {25, 300, 400} °C
  (half) or uniform in [25, 400] °C (half), test temperature uniform in
  [25, 120] °C;
* rate retention: every buffer, cells at the trained conditions (anneal 300 °C,
  25 °C), C-rate log-uniform in [1, 30] C (between the measured rates);
* capacity retention: every buffer under the standard protocol, cycles
  uniform in 2..100; SiO2 under the long protocol, cycles uniform in 2..1000.

Targets (issue 3): log10 σ RMSE ≤ 0.05 decades, retention RMSE ≤ 0.03
(fraction), 90 % intervals covering 85-95 % of fresh noisy measurements,
every fact reproduced, training without tuning ≤ 60 s on 2 cores.

World family (issue 8 §6): the same families (the fast ones by default:
physics, gp, trees) are trained on each world's version of the paper's
experiments (:func:`surrogate.worlds.paper_dataset`, ``--worlds`` worlds of
:func:`surrogate.worlds.world_family`) and scored on in-range plus
extrapolated designs plus cells anywhere in the campaigns' space (every buffer,
anneal 25-500 °C, 25-120 °C, 10 or 30 C, 100 or 300 cycles), split by the
model's own extrapolation flag: RMSE and
90 % coverage of fresh measurements inside the data and at flagged designs,
separately (issue 8 goal: ≥ 80 % coverage at flagged designs).

Narrow features (issue 15 §3, ``--narrow-n N``; ``--narrow-only`` runs this section alone): the two
worlds of :data:`surrogate.worlds.NARROW_FEATURE_WORLDS` (a 40 °C anneal window; a side reaction that
cuts rate above 70 °C) and the paper's world as a control, each measured on a campaign-like scan
(:func:`scan_dataset`), fitted by ``physics_gp`` with ``features="smooth"`` (the model before issue 15
§3, the baseline) and ``features="narrow"`` (an anneal-only short-length discrepancy and the learned
crystallisation step) in the same run, scored per region with interval score, CRPS, coverage and width.

Run: ``python benchmarks/surrogate_accuracy.py`` (writes
``benchmarks/results/surrogate_accuracy.json`` and ``.md``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from surrogate.design import (  # noqa: E402
    ANNEAL_TEMP_C,
    BUFFER,
    BUFFERS,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    PROTOCOL,
    RATE_RETENTION,
    TARGETS,
    TEST_TEMP_C,
)

RESULTS = Path(__file__).parent / "results"
COMMAND = "python benchmarks/surrogate_accuracy.py"
LEVEL = 0.9
GOALS = {
    "log10_sigma_rmse_max": 0.05,
    "retention_rmse_max": 0.03,
    "coverage_range": [0.85, 0.95],
    "train_time_s_max": 60.0,
}


# ---------------------------------------------------------------------- designs
def _frame(n: int, **columns: Any) -> pd.DataFrame:
    base = {BUFFER: "none", ANNEAL_TEMP_C: 300.0, TEST_TEMP_C: 25.0, C_RATE: 30.0, CYCLES: 100.0, PROTOCOL: "standard"}
    base.update(columns)
    return pd.DataFrame({k: np.broadcast_to(np.asarray(v, dtype=object), n) for k, v in base.items()}).astype(
        {ANNEAL_TEMP_C: float, TEST_TEMP_C: float, C_RATE: float, CYCLES: float}
    )


def held_out_designs(n: int, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """Designs within the paper's ranges, per target (see the module docstring)."""
    half = n // 2
    anneal = np.concatenate([rng.choice([25.0, 300.0, 400.0], half), rng.uniform(25.0, 400.0, n - half)])
    conductivity = _frame(n, **{ANNEAL_TEMP_C: anneal, TEST_TEMP_C: rng.uniform(25.0, 120.0, n)})
    conductivity["group"] = np.where(np.arange(n) < half, "paper anneal states", "anneal between states")
    rate = _frame(n, **{BUFFER: rng.choice(BUFFERS, n), C_RATE: np.exp(rng.uniform(np.log(1.0), np.log(30.0), n))})
    rate["group"] = "trained cells, C-rate 1-30 C"
    standard = _frame(half, **{BUFFER: rng.choice(BUFFERS, half), CYCLES: rng.integers(2, 101, half).astype(float)})
    standard["group"] = "standard protocol, cycles 2-100"
    long = _frame(n - half, **{BUFFER: "sio2", PROTOCOL: "long", CYCLES: rng.integers(2, 1001, n - half).astype(float)})
    long["group"] = "SiO2 long protocol, cycles 2-1000"
    return {CONDUCTIVITY: conductivity, RATE_RETENTION: rate, CAPACITY_RETENTION: pd.concat([standard, long])}


def extrapolated_designs(n: int, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """Designs outside the training data (each target's own kind of extrapolation)."""
    third = n // 3
    conductivity = pd.concat(
        [
            _frame(
                third, **{ANNEAL_TEMP_C: rng.uniform(420.0, 500.0, third), TEST_TEMP_C: rng.uniform(25, 120, third)}
            ).assign(group="anneal 420-500 °C"),
            _frame(
                n - third,
                **{
                    ANNEAL_TEMP_C: rng.choice([25.0, 300.0, 400.0], n - third),
                    TEST_TEMP_C: rng.uniform(-20.0, 10.0, n - third),
                },
            ).assign(group="test temperature -20 to 10 °C"),
        ]
    )
    rate = pd.concat(
        [
            _frame(
                third,
                **{
                    BUFFER: rng.choice(BUFFERS, third),
                    TEST_TEMP_C: rng.uniform(40.0, 80.0, third),
                    C_RATE: np.exp(rng.uniform(0.0, np.log(30.0), third)),
                },
            ).assign(group="cells at 40-80 °C"),
            _frame(
                n - third, **{BUFFER: rng.choice(BUFFERS, n - third), C_RATE: rng.uniform(35.0, 60.0, n - third)}
            ).assign(group="C-rate 35-60 C"),
        ]
    )
    capacity = pd.concat(
        [
            _frame(
                third, **{BUFFER: rng.choice(BUFFERS, third), CYCLES: rng.integers(150, 500, third).astype(float)}
            ).assign(group="standard protocol, cycles 150-500"),
            _frame(
                n - third,
                **{
                    BUFFER: rng.choice(["none", "llto_ncm", "lipon"], n - third),
                    PROTOCOL: "long",
                    CYCLES: rng.integers(2, 1001, n - third).astype(float),
                },
            ).assign(group="long protocol, buffers never cycled so"),
        ]
    )
    return {CONDUCTIVITY: conductivity, RATE_RETENTION: rate, CAPACITY_RETENTION: capacity}


def campaign_space_designs(n: int, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """Cells anywhere in the campaigns' design space: every buffer, anneal 25-500 °C, test 25-120 °C.

    Rate retention at 10 or 30 C, capacity retention after 100 or 300 cycles (the world benchmark's
    objectives), conductivity at the same anneals and temperatures. Most lie outside the paper's data
    (cells only at 300 °C anneal and 25 °C), which is where a campaign needs its model.
    """

    def cells(**columns: Any) -> pd.DataFrame:
        return _frame(
            n,
            **{
                BUFFER: rng.choice(BUFFERS, n),
                ANNEAL_TEMP_C: rng.uniform(25.0, 500.0, n),
                TEST_TEMP_C: rng.uniform(25.0, 120.0, n),
                **columns,
            },
        ).assign(group="campaign space")

    return {
        CONDUCTIVITY: cells(),
        RATE_RETENTION: cells(**{C_RATE: rng.choice([10.0, 30.0], n)}),
        CAPACITY_RETENTION: cells(**{CYCLES: rng.choice([100.0, 300.0], n)}),
    }


# ---------------------------------------------------------------------- measures
def _scores(target: str, truth: np.ndarray, noisy: np.ndarray, predicted: pd.DataFrame) -> dict[str, float]:
    mean = predicted[f"{target}_mean"].to_numpy(float)
    lower = predicted[f"{target}_lower"].to_numpy(float)
    upper = predicted[f"{target}_upper"].to_numpy(float)
    if target == CONDUCTIVITY:
        error = np.log10(mean) - np.log10(truth)
        width = np.log10(upper) - np.log10(lower)
        name = "log10_sigma_rmse"
    else:
        error = mean - truth
        width = upper - lower
        name = "rmse"
    return {
        "n": int(len(truth)),
        name: float(np.sqrt(np.mean(error**2))),
        "max_abs_error": float(np.max(np.abs(error))),
        "mean_interval_width": float(np.mean(width)),
        "coverage_of_fresh_measurements": float(np.mean((noisy >= lower) & (noisy <= upper))),
        "coverage_of_truth": float(np.mean((truth >= lower) & (truth <= upper))),
        "extrapolation_flagged": float(
            np.mean(
                [any(r.startswith(f"{target}:") for r in reasons) for reasons in predicted["extrapolation_reasons"]]
            )
        ),
    }


def evaluate(surrogate: Any, designs: dict[str, pd.DataFrame], seed: int, world: Any = None) -> dict[str, Any]:
    """Per target and group: error vs the noise-free lab, coverage of fresh noisy measurements, extrapolation share.

    ``world`` (a :class:`surrogate.worlds.World`, default the paper's lab) emulates the measurements.
    """
    from surrogate.worlds import paper_world

    world = world or paper_world()
    out: dict[str, Any] = {}
    noise = np.random.default_rng(seed)
    for target, frame in designs.items():
        frame = frame.reset_index(drop=True)
        design = frame.drop(columns="group")
        truth = world.measure_frame(design, None)[target].to_numpy(float)
        noisy = world.measure_frame(design, noise)[target].to_numpy(float)
        predicted = surrogate.predict(design, level=LEVEL)
        entry = {"all": _scores(target, truth, noisy, predicted), "groups": {}}
        for group in frame["group"].unique():
            mask = (frame["group"] == group).to_numpy()
            entry["groups"][group] = _scores(target, truth[mask], noisy[mask], predicted[mask].reset_index(drop=True))
        out[target] = entry
    return out


def _flagged(predicted: pd.DataFrame, target: str) -> np.ndarray:
    """Designs whose prediction of ``target`` is marked extrapolation."""
    return np.array(
        [any(r.startswith(f"{target}:") for r in reasons) for reasons in predicted["extrapolation_reasons"]]
    )


def evaluate_inside_outside(surrogate: Any, designs: dict[str, pd.DataFrame], seed: int, world: Any) -> dict[str, Any]:
    """Per target: scores at designs the model treats as inside its data and at those it flags as extrapolation."""
    out: dict[str, Any] = {}
    noise = np.random.default_rng(seed)
    for target, frame in designs.items():
        if target not in surrogate.info["families"]:
            continue
        design = frame.reset_index(drop=True).drop(columns="group")
        truth = world.measure_frame(design, None)[target].to_numpy(float)
        noisy = world.measure_frame(design, noise)[target].to_numpy(float)
        predicted = surrogate.predict(design, level=LEVEL)
        flagged = _flagged(predicted, target)
        out[target] = {}
        for label, mask in (("inside", ~flagged), ("flagged_extrapolation", flagged)):
            if mask.any():
                out[target][label] = _scores(target, truth[mask], noisy[mask], predicted[mask].reset_index(drop=True))
    return out


def _score_space(target: str, values: np.ndarray) -> np.ndarray:
    """Values in the units a target is scored in: decades for a log10-modelled target, contract units otherwise."""
    from surrogate.targets import SPACES

    return np.log10(values) if SPACES[target].name == "log10" else values


def proper_scores_by_region(
    surrogate: Any, data: pd.DataFrame, designs: dict[str, pd.DataFrame], seed: int, world: Any
) -> dict[str, Any]:
    """Per target and region (inside / between / outside the data): RMSE, bias, coverage, median width,
    interval score and CRPS (:func:`surrogate.scoring.summary`), in the target's score space.

    Regions: :func:`surrogate.scoring.design_regions` on the target's training features of ``data``, with
    ``outside`` the model's own extrapolation flag.
    """
    from surrogate.evaluation import training_xy
    from surrogate.scoring import QUANTILE_LEVELS, REGIONS, design_regions, summary

    out: dict[str, Any] = {}
    noise = np.random.default_rng(seed)
    for target, frame in designs.items():
        if target not in surrogate.targets:
            continue
        design = frame.reset_index(drop=True).drop(columns="group")
        truth = _score_space(target, world.measure_frame(design, None)[target].to_numpy(float))
        fresh = _score_space(target, world.measure_frame(design, noise)[target].to_numpy(float))
        predicted = surrogate.predict(design, level=LEVEL)
        quantiles = _score_space(target, surrogate.predict_quantiles(target, design, QUANTILE_LEVELS))
        mean, lower, upper = (
            _score_space(target, predicted[f"{target}_{k}"].to_numpy(float)) for k in ("mean", "lower", "upper")
        )
        trained, _, _ = training_xy(data, target)
        regions = design_regions(trained, design[list(trained.columns)], _flagged(predicted, target))
        out[target] = {}
        for region in REGIONS:
            mask = regions == region
            if mask.any():
                out[target][region] = summary(
                    truth[mask], fresh[mask], mean[mask], lower[mask], upper[mask], quantiles[mask], LEVEL
                )
    return out


def forecast_scores(report: dict[str, Any]) -> dict[str, Any] | None:
    """Fade forecasts of a selection report (forward chaining): per family, pooled and per protocol, in fractions."""
    entry = report["targets"].get(CAPACITY_RETENTION, {})
    forecast = entry.get("forecast")
    if not forecast:
        return None
    keep = ("n", "rmse_units", "coverage")
    return {
        "champion": entry.get("champion"),
        "best_family": forecast["best_family"],
        "families": {
            family: {
                "pooled": {k: overall.get(k) for k in keep},
                **{p: {k: v.get(k) for k in keep} for p, v in forecast["by_protocol"].get(family, {}).items()},
            }
            for family, overall in forecast["families"].items()
        },
    }


def world_family_section(n_worlds: int, family_seed: int, n: int, seed: int, families: list[str]) -> dict[str, Any]:
    """Train ``families`` on each world's version of the paper's experiments; score inside vs outside the data."""
    from surrogate.dataset import DEFAULT_SEED
    from surrogate.evaluation import select_champions
    from surrogate.schema import validate_frame
    from surrogate.worlds import paper_dataset, world_family

    worlds = world_family(n_worlds, family_seed)
    rows: dict[str, Any] = {}
    pooled: dict[str, list[tuple[int, float]]] = {"inside": [], "flagged_extrapolation": []}
    for world in worlds:
        data = validate_frame(paper_dataset(world, DEFAULT_SEED), source=world.name)
        started = time.perf_counter()
        selection = select_champions(data, families, LEVEL, progress=False)
        fit_s = time.perf_counter() - started
        rng = np.random.default_rng(seed)
        sets = (held_out_designs(n, rng), extrapolated_designs(n, rng), campaign_space_designs(n, rng))
        designs = {t: pd.concat([s[t] for s in sets], ignore_index=True) for t in sets[0]}
        scores = evaluate_inside_outside(selection.surrogate, designs, seed + 1, world)
        proper = proper_scores_by_region(selection.surrogate, data, designs, seed + 1, world)
        rows[world.name] = {
            "proper_scores": proper,
            "laws": world.describe(),
            "champions": dict(selection.surrogate.info["families"]),
            "forecast": forecast_scores(selection.report),
            "select_seconds": round(fit_s, 2),
            "targets": scores,
        }
        for entry in scores.values():
            for label, score in entry.items():
                pooled[label].append((score["n"], score["coverage_of_fresh_measurements"]))
    coverage = {
        label: sum(k * c for k, c in items) / max(sum(k for k, _ in items), 1) for label, items in pooled.items()
    }
    return {
        "command_note": f"world_family({n_worlds}, seed={family_seed}); families {families}; {3 * n} designs per "
        "target per world (the in-range, the extrapolated and the campaign-space sets pooled, then split by the "
        "model's own extrapolation flag)",
        "families": families,
        "worlds": rows,
        "coverage_pooled": coverage,
        "goal_flagged_coverage_min": 0.80,
    }


POOLING_VARIANTS: dict[str, dict[str, Any] | None] = {
    "today": None,
    "physics_gp unpooled": {"pooling": "fixed"},
    "physics_gp pooled": {"pooling": "partial"},
}
"""The models the pooling section scores side by side: today's champion selection (the baseline), ``physics_gp``
without partial pooling (``pooling="fixed"``, the campaign model before issue 15 §1's pooling) and with it."""


def _physics_gp_surrogate(data: pd.DataFrame, domains: dict[str, Any], params: dict[str, Any]) -> Any:
    """A :class:`~surrogate.models.base.Surrogate` of ``physics_gp`` (with ``params``) for every target, fitted on
    all of ``data`` through the fresh-sample wrapper (as a champion refit is), with the selection's domains."""
    from surrogate.evaluation import training_xy
    from surrogate.models.base import Surrogate
    from surrogate.models.registry import make_model

    models = {}
    for target in domains:
        X, y, meta = training_xy(data, target)
        ids = meta.get("sample_id")
        models[target] = make_model("physics_gp", target, **params).fit(X, y, sample_ids=ids)
    return Surrogate(models, dict(domains), {"families": {t: "physics_gp" for t in models}})


def pooling_section(n_worlds: int, family_seed: int, n: int, seed: int, families: list[str]) -> dict[str, Any]:
    """Issue 15 §1 and §4: per world, today's champion selection, ``physics_gp`` unpooled and pooled, each scored
    per region with proper scores (same designs, same fresh measurements), and the issue-15 accuracy checks."""
    from surrogate.dataset import DEFAULT_SEED
    from surrogate.evaluation import select_champions
    from surrogate.schema import validate_frame
    from surrogate.worlds import paper_dataset, world_family

    rows: dict[str, Any] = {}
    for world in world_family(n_worlds, family_seed):
        data = validate_frame(paper_dataset(world, DEFAULT_SEED), source=world.name)
        selection = select_champions(data, families, LEVEL, progress=False)
        rng = np.random.default_rng(seed)
        sets = (held_out_designs(n, rng), extrapolated_designs(n, rng), campaign_space_designs(n, rng))
        designs = {t: pd.concat([s[t] for s in sets], ignore_index=True) for t in sets[0]}
        entry: dict[str, Any] = {"laws": world.describe(), "champions": dict(selection.surrogate.info["families"])}
        for name, params in POOLING_VARIANTS.items():
            started = time.perf_counter()
            if params is None:
                surrogate = selection.surrogate
            else:
                surrogate = _physics_gp_surrogate(data, selection.surrogate.domains, params)
            fit_s = time.perf_counter() - started
            entry[name] = {
                "proper_scores": proper_scores_by_region(surrogate, data, designs, seed + 1, world),
                "fit_seconds": round(fit_s, 2),
            }
        rows[world.name] = entry
        print(f"pooling section: {world.name} done", file=sys.stderr, flush=True)
    checks = {
        name: issue15_checks({"worlds": {w: {"proper_scores": e[name]["proper_scores"]} for w, e in rows.items()}})
        for name in POOLING_VARIANTS
    }
    interval = {}
    for name in POOLING_VARIANTS:
        interval[name] = {w: _outside_interval_score(e[name]["proper_scores"]) for w, e in rows.items()}
    better = {
        name: sum(interval[name][w] < interval["today"][w] for w in rows)
        for name in POOLING_VARIANTS
        if name != "today"
    }
    return {
        "command_note": f"world_family({n_worlds}, seed={family_seed}); today's selection over {families}; {3 * n} "
        "designs per target per world (in-range, extrapolated and campaign-space sets pooled), regions from "
        "surrogate.scoring.design_regions with `outside` each model's own extrapolation flag",
        "variants": {k: v for k, v in POOLING_VARIANTS.items()},
        "worlds": rows,
        "checks": checks,
        "outside_interval_score": interval,
        "worlds_better_than_today": better,
    }


def _outside_interval_score(proper: dict[str, Any]) -> float:
    """The 90% interval score outside the data, rate and capacity retention pooled (n-weighted; fraction units)."""
    parts = [proper[t]["outside"] for t in (RATE_RETENTION, CAPACITY_RETENTION) if "outside" in proper.get(t, {})]
    n = sum(p["n"] for p in parts)
    return sum(p["n"] * p["interval_score"] for p in parts) / max(n, 1)


def pooling_markdown(section: dict[str, Any] | None) -> list[str]:
    """The pooling section: the issue-15 checks per world and variant, and the outside interval scores."""
    if not section:
        return []
    yes = {True: "yes", False: "**NO**"}
    lines = [
        "## Partial pooling across buffers and the issue-15 accuracy targets (issue 15 §1, §4)",
        "",
        f"{section['command_note']}. Variants: `today` = today's champion selection (the baseline); `physics_gp "
        "unpooled` = the campaign model with fixed per-buffer offsets (`pooling='fixed'`); `physics_gp pooled` = "
        "each per-buffer law parameter the group's value plus an offset whose scale is learned "
        "(`pooling='partial'`, surrogate/laws.py `group_scales`). The data is each world's version of the "
        "paper's experiments (a reconstruction of the paper, emulated; not measurements).",
        "",
        "Targets outside the data: coverage ≥ 80% (all targets pooled); median 90% width ≤ 0.35 for rate and "
        "capacity retention; |capacity bias| ≤ 0.05; interval score better than today's on ≥ 7 of 8 worlds.",
        "",
        "| world | variant | coverage | met | median width (rate, capacity) | met | capacity bias | met | "
        "interval score (rate+capacity, outside) | vs today |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for world in section["worlds"]:
        today = section["outside_interval_score"]["today"][world]
        for name in section["checks"]:
            c = section["checks"][name][world]
            widths = ", ".join(f"{w:.3f}" for w in c["outside_median_width"].values())
            bias = "" if c["outside_capacity_bias"] is None else f"{c['outside_capacity_bias']:+.3f}"
            score = section["outside_interval_score"][name][world]
            lines.append(
                f"| {world} | {name} | {c['outside_coverage']:.1%} | {yes[c['outside_coverage_met']]} | {widths} | "
                f"{yes[c['outside_median_width_met']]} | {bias} | {yes[c['outside_capacity_bias_met']]} | "
                f"{score:.4f} | {score / today:.2f}× |"
            )
    lines += [
        "",
        "Worlds where the variant's outside interval score beats today's: "
        + ", ".join(f"{k} {v} of {len(section['worlds'])}" for k, v in section["worlds_better_than_today"].items()),
        "",
    ]
    return lines


def _pooled_coverage(section: dict[str, Any]) -> float:
    n = sum(section[t]["all"]["n"] for t in TARGETS)
    return sum(section[t]["all"]["coverage_of_fresh_measurements"] * section[t]["all"]["n"] for t in TARGETS) / n


# ---------------------------------------------------------------------- narrow features (issue 15 §3)
SCAN_FILM_ANNEALS_C = np.arange(25.0, 506.0, 30.0)
"""Anneal temperatures (°C) of the scan's films: every 30 °C, so a 40 °C window holds one or two films."""
SCAN_CELL_ANNEALS_C = np.arange(25.0, 506.0, 30.0)
SCAN_TEST_TEMPS_C = (25.0, 45.0, 65.0, 85.0, 105.0)


def scan_dataset(world: Any, seed: int) -> dict[str, pd.DataFrame]:
    """A campaign-like data set measured in ``world`` (noisy, seeded), per target (conductivity, rate).

    Films at every :data:`SCAN_FILM_ANNEALS_C` measured at 25 and 80 °C; cells of every buffer at every
    :data:`SCAN_CELL_ANNEALS_C` and :data:`SCAN_TEST_TEMPS_C` at 10 C. Emulated, not measured.
    """
    rng = np.random.default_rng(seed)
    films = _frame(
        2 * len(SCAN_FILM_ANNEALS_C),
        **{
            ANNEAL_TEMP_C: np.repeat(SCAN_FILM_ANNEALS_C, 2),
            TEST_TEMP_C: np.tile([25.0, 80.0], len(SCAN_FILM_ANNEALS_C)),
        },
    )
    grid = [(b, a, t) for b in BUFFERS for a in SCAN_CELL_ANNEALS_C for t in SCAN_TEST_TEMPS_C]
    cells = _frame(
        len(grid),
        **{BUFFER: [g[0] for g in grid], ANNEAL_TEMP_C: [g[1] for g in grid], TEST_TEMP_C: [g[2] for g in grid]},
        **{C_RATE: 10.0},
    )
    return {
        CONDUCTIVITY: world.measure_frame(films, rng),
        RATE_RETENTION: world.measure_frame(cells, rng),
    }


def _scan_test_designs(n: int, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """Designs across the scan's space and beyond it (test temperature 105-130 °C, anneal 505-550 °C)."""
    inside = {ANNEAL_TEMP_C: rng.uniform(25.0, 505.0, n), TEST_TEMP_C: rng.uniform(25.0, 105.0, n)}
    outside = {ANNEAL_TEMP_C: rng.uniform(25.0, 550.0, n), TEST_TEMP_C: rng.uniform(105.0, 130.0, n)}
    return {
        CONDUCTIVITY: pd.concat([_frame(n, **inside), _frame(n, **outside)], ignore_index=True),
        RATE_RETENTION: pd.concat(
            [
                _frame(n, **inside, **{BUFFER: rng.choice(BUFFERS, n), C_RATE: rng.choice([10.0, 30.0], n)}),
                _frame(n, **outside, **{BUFFER: rng.choice(BUFFERS, n), C_RATE: rng.choice([10.0, 30.0], n)}),
            ],
            ignore_index=True,
        ),
    }


def _narrow_world(world: Any, n: int, seed: int, max_points: int) -> dict[str, Any]:
    """One world, one scan seed: smooth and narrow physics_gp per target, scored per region."""
    from scipy.stats import norm

    from surrogate.models.physics_gp import FilmCoupling, PhysicsPriorGP
    from surrogate.scoring import QUANTILE_LEVELS, REGIONS, design_regions, summary
    from surrogate.targets import get_target

    data = scan_dataset(world, seed)  # conductivity first: the coupled rate model follows its film model
    films: dict[str, Any] = {}
    designs = _scan_test_designs(n, np.random.default_rng(seed + 1))
    noise = np.random.default_rng(seed + 2)
    entry: dict[str, Any] = {"laws": world.describe()}
    for target, rows in data.items():
        declared = get_target(target)
        inputs = list(declared.inputs)
        design = designs[target]
        truth = _score_space(target, world.measure_frame(design, None)[target].to_numpy(float))
        fresh = _score_space(target, world.measure_frame(design, noise)[target].to_numpy(float))
        trained = rows[inputs]
        numeric = [c for c in inputs if c != BUFFER]
        flagged = np.zeros(len(design), dtype=bool)
        for c in numeric:
            values = design[c].to_numpy(float)
            flagged |= (values < trained[c].min()) | (values > trained[c].max())
        regions = design_regions(trained, design[inputs], flagged)
        entry[target] = {}
        variants: dict[str, tuple[str, Any]] = {"smooth": ("smooth", None), "narrow": ("narrow", None)}
        if target == RATE_RETENTION:  # the rate law coupled to the smooth conductivity model of the same scan
            variants["coupled"] = ("smooth", FilmCoupling(films["smooth"]))
        for variant, (features, film) in variants.items():
            started = time.perf_counter()
            model = PhysicsPriorGP(target=target, features=features, max_points=max_points, film=film)
            model.fit(trained, declared.space.forward(rows[target].to_numpy(float)))
            fit_s = time.perf_counter() - started
            if target == CONDUCTIVITY:
                films[variant] = model
            mean, sd = model.predict(design[inputs], return_std=True)
            z = norm.ppf([(1.0 - LEVEL) / 2.0, (1.0 + LEVEL) / 2.0])
            q = mean[:, None] + sd[:, None] * norm.ppf(QUANTILE_LEVELS)[None, :]
            to_score = {"log10": lambda v: v, "logit": declared.space.inverse}[declared.space.name]
            lower, upper = to_score(mean + z[0] * sd), to_score(mean + z[1] * sd)
            scores = {
                region: summary(truth[m], fresh[m], to_score(mean)[m], lower[m], upper[m], to_score(q)[m], LEVEL)
                for region in REGIONS
                if (m := regions == region).any()
            }
            hyper = dict(zip(model.hyper_names_, np.exp(model.hyper_).round(4).tolist(), strict=True))
            entry[target][variant] = {"fit_seconds": round(fit_s, 2), "hyper": hyper, "scores": scores}
    return entry


def narrow_feature_section(n: int, seed: int, replicates: int = 3, max_points: int = 150) -> dict[str, Any]:
    """physics_gp smooth (baseline) against narrow on the narrow-feature worlds and the paper's (control).

    Each world is scanned ``replicates`` times (scan seeds ``seed + 100 k``); scores are pooled over the
    replicates (n-weighted means of each replicate's scores; widths: of each replicate's median width).
    """
    from surrogate.worlds import NARROW_FEATURE_WORLDS, paper_world

    out: dict[str, Any] = {}
    for world in (*NARROW_FEATURE_WORLDS, paper_world()):
        runs = [_narrow_world(world, n, seed + 100 * k, max_points) for k in range(replicates)]
        entry: dict[str, Any] = {"laws": world.describe(), "replicates": runs}
        for target in (CONDUCTIVITY, RATE_RETENTION):
            entry[target] = {}
            for features in runs[0][target]:
                pooled: dict[str, Any] = {}
                for region in runs[0][target][features]["scores"]:
                    parts = [
                        r[target][features]["scores"][region] for r in runs if region in r[target][features]["scores"]
                    ]
                    total = sum(p["n"] for p in parts)
                    pooled[region] = {"n": total} | {
                        k: sum(p["n"] * p[k] for p in parts) / total for k in parts[0] if k != "n"
                    }
                entry[target][features] = {"scores": pooled, "hyper": runs[0][target][features]["hyper"]}
        out[world.name] = entry
    return {
        "note": "physics_gp fitted on a campaign-like scan of each world (scan_dataset; emulated, not measured); "
        "smooth = the model before issue 15 §3 (baseline), narrow = anneal-only short-length discrepancy + "
        "learned crystallisation step; scores in decades of σ and fractions of retention; regions: inside/between "
        "the scan (surrogate.scoring.design_regions), outside = beyond the scan's ranges",
        "n_per_region_set": n,
        "replicates": replicates,
        "worlds": out,
    }


def narrow_markdown(section: dict[str, Any] | None) -> list[str]:
    """The narrow-feature section: smooth (baseline) against narrow per world, target and region."""
    if not section:
        return []
    lines = [
        "## Narrow features: physics_gp smooth (baseline) against narrow (issue 15 §3)",
        "",
        section["note"] + ".",
        "",
        "| world | target | region | n | IS smooth | IS narrow | ratio | CRPS smooth | CRPS narrow | width smooth "
        "| width narrow | cov. smooth | cov. narrow | RMSE smooth | RMSE narrow |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in section["worlds"].items():
        for target in (CONDUCTIVITY, RATE_RETENTION):
            smooth, narrow = entry[target]["smooth"]["scores"], entry[target]["narrow"]["scores"]
            for region, a in smooth.items():
                b = narrow[region]
                lines.append(
                    f"| {name} | {target} | {region} | {a['n']} | {a['interval_score']:.4f} | {b['interval_score']:.4f} "
                    f"| {b['interval_score'] / a['interval_score']:.2f} | {a['crps']:.4f} | {b['crps']:.4f} | "
                    f"{a['median_width']:.4f} | {b['median_width']:.4f} | {a['coverage']:.1%} | {b['coverage']:.1%} | "
                    f"{a['rmse']:.4f} | {b['rmse']:.4f} |"
                )
    lines += [
        "",
        "Rate retention coupled to the film (issue 15 §1): the smooth rate model against the same model whose "
        "electrolyte term follows the smooth conductivity model fitted on the scan's films (FilmCoupling).",
        "",
        "| world | region | n | IS smooth | IS coupled | ratio | CRPS smooth | CRPS coupled | width smooth "
        "| width coupled | cov. smooth | cov. coupled | RMSE smooth | RMSE coupled |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in section["worlds"].items():
        smooth, coupled = entry[RATE_RETENTION]["smooth"]["scores"], entry[RATE_RETENTION]["coupled"]["scores"]
        for region, a in smooth.items():
            b = coupled[region]
            lines.append(
                f"| {name} | {region} | {a['n']} | {a['interval_score']:.4f} | {b['interval_score']:.4f} | "
                f"{b['interval_score'] / a['interval_score']:.2f} | {a['crps']:.4f} | {b['crps']:.4f} | "
                f"{a['median_width']:.4f} | {b['median_width']:.4f} | {a['coverage']:.1%} | {b['coverage']:.1%} | "
                f"{a['rmse']:.4f} | {b['rmse']:.4f} |"
            )
    lines += ["", "Fitted anneal length scales (anneal/100 °C) and narrow components (first replicate):", ""]
    for name, entry in section["worlds"].items():
        for target in (CONDUCTIVITY, RATE_RETENTION):
            for features in ("smooth", "narrow"):
                hyper = entry[target][features]["hyper"]
                keep = {k: v for k, v in hyper.items() if "anneal" in k}
                lines.append(f"- {name}, {target}, {features}: {keep}")
    return [*lines, ""]


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(v, 2) for v in load] if load else None,
    }


# ---------------------------------------------------------------------- main
def run(
    n: int, seed: int, out_dir: Path, n_worlds: int = 8, world_families: tuple[str, ...] = ("physics", "gp", "trees")
) -> dict[str, Any]:
    from surrogate.facts import all_hold, check_facts
    from training.train import train

    started = dt.datetime.now(dt.UTC)
    machine_before = machine()
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="surrogate-bench-") as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(store) / 'mlruns' / 'mlflow.db'}"
        os.chdir(store)
        try:
            wall = time.perf_counter()
            result = train(None, experiment="benchmark-surrogate-accuracy", tune_trials=0, level=LEVEL)
            wall = time.perf_counter() - wall
        finally:
            os.chdir(cwd)
    surrogate = result.surrogate
    rng = np.random.default_rng(seed)
    within = evaluate(surrogate, held_out_designs(n, rng), seed + 1)
    beyond = evaluate(surrogate, extrapolated_designs(n, rng), seed + 2)
    facts = check_facts(predict=surrogate.predict_means, include_physics_only=False)
    from surrogate.dataset import load_default_dataset
    from surrogate.worlds import paper_world

    proper_rng = np.random.default_rng(seed + 3)
    proper_designs = {
        t: pd.concat([held_out_designs(n, proper_rng)[t], extrapolated_designs(n, proper_rng)[t]], ignore_index=True)
        for t in TARGETS
    }
    proper = proper_scores_by_region(surrogate, load_default_dataset(), proper_designs, seed + 4, paper_world())
    worlds = world_family_section(n_worlds, 0, n // 3, seed, list(world_families)) if n_worlds else None
    fact_rows = [r.to_dict("model") for r in facts]
    retention_rmse = max(within[t]["all"]["rmse"] for t in (RATE_RETENTION, CAPACITY_RETENTION))
    coverage = _pooled_coverage(within)
    checks = {
        "log10_sigma_rmse": within[CONDUCTIVITY]["all"]["log10_sigma_rmse"] <= GOALS["log10_sigma_rmse_max"],
        "retention_rmse": retention_rmse <= GOALS["retention_rmse_max"],
        "coverage_pooled": GOALS["coverage_range"][0] <= coverage <= GOALS["coverage_range"][1],
        "every_fact": all_hold(facts),
        "train_time": result.train_time_s <= GOALS["train_time_s_max"],
    }
    return {
        "benchmark": "surrogate_accuracy",
        "date_utc": started.isoformat(timespec="seconds"),
        "command": f"{COMMAND} --n {n} --seed {seed} --worlds {n_worlds}",
        "machine_at_start": machine_before,
        "machine_at_end": machine(),
        "data": {
            "source": result.data_source,
            "rows": result.rows,
            "sha256": result.data_hash,
            "note": "the embedded data set is a reconstruction from Tan et al. 2021, not measurements",
        },
        "goals": GOALS,
        "checks": checks,
        "training": {
            "families": "all (physics, gp, trees, torch), no tuning",
            "champions": result.champions,
            "train_time_s": round(result.train_time_s, 2),
            "wall_time_s": round(wall, 2),
            "cv_scores": {t: result.surrogate.info["cv_scores"][t] for t in result.champions},
            "cv_seconds_per_family": {
                family: round(sum(e["families"][family]["fit_seconds"] for e in result.report["targets"].values()), 2)
                for family in next(iter(result.report["targets"].values()))["families"]
            },
            "activation_energies": result.to_dict()["activation_energies"],
            "between_sample": {
                t: {"sd": float(np.sqrt(v["between_variance"])), "source": v["source"]}
                for t, v in result.surrogate.info["sample_variance"].items()
            },
            "selection_rule": result.report["selection_rule"],
            "champion_reasons": {t: e.get("champion_reason") for t, e in result.report["targets"].items()},
        },
        "level": LEVEL,
        "n_per_target": n,
        "seed": seed,
        "within_paper_ranges": within,
        "retention_rmse_worst": retention_rmse,
        "coverage_pooled_within": coverage,
        "extrapolated": beyond,
        "proper_scores": proper,
        "forecast": forecast_scores(result.report),
        "world_family": worlds,
        "issue15_checks": issue15_checks(worlds),
        "facts": {
            "all_hold": all_hold(facts),
            "counts": {
                s: sum(r["status"] == s for r in fact_rows)
                for s in ("ok", "fail", "contradiction", "recorded", "skipped")
            },
            "failed": [
                {"id": r["id"], "paper": r["paper"], "model": r["model"]} for r in fact_rows if r["status"] == "fail"
            ],
            "entries": [{k: r[k] for k in ("id", "status", "paper", "model", "unit")} for r in fact_rows],
        },
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def world_markdown(section: dict[str, Any] | None) -> list[str]:
    """The world-family section: inside vs flagged-extrapolation scores per world and target."""
    if not section:
        return []
    cov = section["coverage_pooled"]
    lines = [
        "## World family: inside vs outside the data (issue 8 §4 and §6)",
        "",
        f"Each world of {section['command_note']}. Each world's surrogates are trained on that world's version "
        "of the paper's experiments (surrogate.worlds.paper_dataset: the same films, cells, rates and cycles, "
        "measured under the world's laws) and scored against that world's noise-free truth and fresh noisy "
        "measurements.",
        "",
        f"Pooled coverage of fresh measurements by the 90% intervals: inside the data {cov['inside']:.1%}; at "
        f"designs flagged as extrapolation {cov['flagged_extrapolation']:.1%} (issue 8 goal ≥ "
        f"{section['goal_flagged_coverage_min']:.0%}: "
        f"{'met' if cov['flagged_extrapolation'] >= section['goal_flagged_coverage_min'] else '**missed**'}).",
        "",
        "| world | target | champion | inside: n | RMSE | coverage | flagged: n | RMSE | coverage |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in section["worlds"].items():
        for target, entry in row["targets"].items():
            key = "log10_sigma_rmse" if target == CONDUCTIVITY else "rmse"
            cells = []
            for label in ("inside", "flagged_extrapolation"):
                sc = entry.get(label)
                cells += (
                    ["0", "", ""]
                    if sc is None
                    else [str(sc["n"]), f"{sc[key]:.4f}", f"{sc['coverage_of_fresh_measurements']:.1%}"]
                )
            lines.append(f"| {name} | {target} | {row['champions'].get(target, '')} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "RMSE in decades of σ for conductivity and in fraction for the retentions. World laws: "
        + "; ".join(f"{name}: {row['laws']}" for name, row in section["worlds"].items())
        + ".",
        "",
    ]
    return lines


ISSUE15_GOALS = {
    "outside_coverage_min": 0.80,
    "outside_median_width_max": 0.35,
    "outside_capacity_bias_max": 0.05,
}
"""Issue 15 "Done when" accuracy targets (outside the data, per world; width and bias in fractions)."""


def issue15_checks(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """The issue-15 accuracy targets on the world family: per world, measured value and whether it is met."""
    if not section:
        return None
    out: dict[str, Any] = {}
    for name, row in section["worlds"].items():
        proper = row.get("proper_scores") or {}
        outside = {t: e["outside"] for t, e in proper.items() if "outside" in e}
        n = sum(v["n"] for v in outside.values())
        coverage = sum(v["n"] * v["coverage"] for v in outside.values()) / max(n, 1)
        widths = {t: outside[t]["median_width"] for t in (RATE_RETENTION, CAPACITY_RETENTION) if t in outside}
        bias = outside.get(CAPACITY_RETENTION, {}).get("bias")
        out[name] = {
            "outside_coverage": coverage,
            "outside_coverage_met": coverage >= ISSUE15_GOALS["outside_coverage_min"],
            "outside_median_width": widths,
            "outside_median_width_met": all(w <= ISSUE15_GOALS["outside_median_width_max"] for w in widths.values()),
            "outside_capacity_bias": bias,
            "outside_capacity_bias_met": bias is not None and abs(bias) <= ISSUE15_GOALS["outside_capacity_bias_max"],
        }
    return out


def proper_markdown(report: dict[str, Any]) -> list[str]:
    """Proper scores per data set, target and region, and the issue-15 accuracy targets."""
    sources = [("embedded data (paper lab)", report.get("proper_scores"))]
    worlds = (report.get("world_family") or {}).get("worlds", {})
    sources += [(name, row.get("proper_scores")) for name, row in worlds.items()]
    lines = [
        "## Proper scores per region (issue 15 §4)",
        "",
        "Regions: `inside` = at a trained state (every numeric feature within 3% of its trained range of a "
        "training row with the same buffer/protocol), `between` = inside the trained ranges but away from every "
        "trained state, `outside` = flagged extrapolation by the model itself (surrogate.scoring.design_regions). "
        "Units: decades of σ for conductivity, fraction for the retentions. RMSE and bias of the mean against the "
        "noise-free truth; coverage, interval (Winkler) score at 90% and CRPS against fresh noisy measurements; "
        "lower interval score and CRPS are better (surrogate.scoring, Gneiting & Raftery 2007).",
        "",
        "| data | target | region | n | RMSE | bias | coverage | median 90% width | interval score | CRPS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, proper in sources:
        for target, entry in (proper or {}).items():
            for region, sc in entry.items():
                lines.append(
                    f"| {name} | {target} | {region} | {sc['n']} | {sc['rmse']:.4f} | {sc['bias']:+.4f} | "
                    f"{sc['coverage']:.1%} | {sc['median_width']:.4f} | {sc['interval_score']:.4f} | {sc['crps']:.4f} |"
                )
    checks = report.get("issue15_checks")
    if checks:
        yes = {True: "yes", False: "**NO**"}
        lines += [
            "",
            "### Issue 15 accuracy targets, outside the data, per world",
            "",
            f"Targets: coverage ≥ {ISSUE15_GOALS['outside_coverage_min']:.0%} (all targets pooled); median 90% "
            f"width ≤ {ISSUE15_GOALS['outside_median_width_max']} for rate and capacity retention; |capacity bias| ≤ "
            f"{ISSUE15_GOALS['outside_capacity_bias_max']}.",
            "",
            "Misses are the measured value against the target in the same row. The models scored are today's "
            "champion selection (physics, gp, trees per world): the baseline of issue 15 §3; the sharper-outside "
            "work (monotone / Arrhenius-shaped priors) is not in this run.",
            "",
            "| world | coverage | met | median width (rate, capacity) | met | capacity bias | met |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, c in checks.items():
            widths = ", ".join(f"{w:.3f}" for w in c["outside_median_width"].values())
            bias = "" if c["outside_capacity_bias"] is None else f"{c['outside_capacity_bias']:+.3f}"
            lines.append(
                f"| {name} | {c['outside_coverage']:.1%} | {yes[c['outside_coverage_met']]} | {widths} | "
                f"{yes[c['outside_median_width_met']]} | {bias} | {yes[c['outside_capacity_bias_met']]} |"
            )
    return [*lines, ""]


def forecast_markdown(report: dict[str, Any]) -> list[str]:
    """Fade forecasts (forward chaining) on the embedded data and on each world, pooled and per protocol."""
    sources = [("embedded data", report.get("forecast"))]
    sources += [
        (name, row.get("forecast")) for name, row in (report.get("world_family") or {}).get("worlds", {}).items()
    ]
    sources = [(name, f) for name, f in sources if f]
    if not sources:
        return []
    lines = [
        "## Fade forecasts (forward chaining, issue 8 §4)",
        "",
        "Each family trained on every curve's first 60% (then 80%) of cycles and scored on the next 20%: a "
        "forecast, not an interpolation. Since issue 8 this score enters champion selection for capacity "
        "retention beside the cycle blocks. RMSE in fraction of initial capacity; coverage of the 90% interval. "
        "`long`: the SiO2 1000-cycle protocol (forecasting cycles 600-1000); `standard`: the 100-cycle curves.",
        "",
        "| data | family | pooled RMSE | coverage | long RMSE | long coverage | standard RMSE | standard coverage |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cells(scores: dict[str, Any] | None) -> list[str]:
        if not scores or scores.get("rmse_units") is None:
            return ["", ""]
        return [f"{scores['rmse_units']:.4f}", f"{scores['coverage']:.1%}"]

    for name, forecast in sources:
        for family, scores in forecast["families"].items():
            marks = (" (champion)" if family == forecast["champion"] else "") + (
                " (best forecast)" if family == forecast["best_family"] else ""
            )
            row = cells(scores["pooled"]) + cells(scores.get("long")) + cells(scores.get("standard"))
            lines.append(f"| {name} | {family}{marks} | " + " | ".join(row) + " |")
    return [*lines, ""]


def markdown(report: dict[str, Any]) -> str:
    """A readable summary of the JSON report."""
    yes = {True: "yes", False: "**NO**"}
    lines = [
        "# Surrogate accuracy benchmark",
        "",
        f"Date (UTC): {report['date_utc']}  ",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine_at_start']['platform']}, Python {report['machine_at_start']['python']}, "
        f"{report['machine_at_start']['cpu_count']} cores; load average at start "
        f"{report['machine_at_start']['load_average_1_5_15']}, at end {report['machine_at_end']['load_average_1_5_15']} "
        "(the machine is shared; times are wall-clock).",
        "",
        f"Data: {report['data']['source']} ({report['data']['rows']} rows) — {report['data']['note']}. "
        "Ground truth: the noise-free virtual lab; coverage against fresh noisy lab measurements "
        f"(a new seed); {report['n_per_target']} designs per target, {report['level']:.0%} intervals.",
        "",
        "## Goals",
        "",
        "| goal | target | measured | met |",
        "|---|---|---|---|",
    ]
    within = report["within_paper_ranges"]
    training = report["training"]
    checks = report["checks"]
    lines += [
        f"| log10 σ RMSE (decades) | ≤ {report['goals']['log10_sigma_rmse_max']} | "
        f"{within[CONDUCTIVITY]['all']['log10_sigma_rmse']:.4f} | {yes[checks['log10_sigma_rmse']]} |",
        f"| retention RMSE (fraction, worst of the two) | ≤ {report['goals']['retention_rmse_max']} | "
        f"{report['retention_rmse_worst']:.4f} | {yes[checks['retention_rmse']]} |",
        f"| 90% interval coverage of fresh measurements (pooled) | 85-95% | "
        f"{report['coverage_pooled_within']:.1%} | {yes[checks['coverage_pooled']]} |",
        f"| every paper fact by the champion | all | {report['facts']['counts']['ok']} ok, "
        f"{report['facts']['counts']['fail']} fail | {yes[checks['every_fact']]} |",
        f"| training without tuning | ≤ 60 s | {training['train_time_s']:.1f} s | {yes[checks['train_time']]} |",
        "",
        f"Training wall time {training['wall_time_s']:.1f} s; cross-validation seconds per family (all targets, "
        f"summed over worker processes): {training['cv_seconds_per_family']}.",
        "",
        f"Champions: {training['champions']} (rule: {training['selection_rule']}). Ea per anneal state: "
        + ", ".join(
            f"{r['anneal_temp_c']:g} °C {r['ea_ev']:.3f} ± {r['ea_se_ev']:.3f} eV"
            for r in training["activation_energies"]
        ),
        "",
    ]
    for title, section in (
        ("Within the paper's ranges", within),
        ("Extrapolated designs (no target applies)", report["extrapolated"]),
    ):
        lines += [
            f"## {title}",
            "",
            "| target | group | n | RMSE | max abs error | mean 90% width | coverage (fresh) | coverage (truth) "
            "| flagged extrapolation |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for target, entry in section.items():
            rmse_key = "log10_sigma_rmse" if target == CONDUCTIVITY else "rmse"
            for group, scores in [("all", entry["all"]), *entry["groups"].items()]:
                lines.append(
                    f"| {target} | {group} | {scores['n']} | {scores[rmse_key]:.4f} | {scores['max_abs_error']:.4f} | "
                    f"{scores['mean_interval_width']:.4f} | {scores['coverage_of_fresh_measurements']:.1%} | {scores['coverage_of_truth']:.1%} | "
                    f"{scores['extrapolation_flagged']:.0%} |"
                )
        lines.append("")
    lines += [
        "RMSE and interval width: log10 σ in decades for conductivity, fraction for retentions. "
        "'coverage (fresh)': share of fresh "
        "noisy lab measurements (each a new film or cell, so film-to-film and cell-to-cell variation included) "
        "inside the 90% interval; 'coverage (truth)': share of noise-free values inside it. 'flagged "
        "extrapolation': share of designs whose prediction of this target is marked extrapolation.",
        "",
        "Intervals are for a fresh sample: parameter uncertainty + between-sample variance + reading noise "
        "(surrogate.models.features.FreshSampleRegressor). Between-sample spread used per target: "
        + "; ".join(
            f"{t} {v['sd']:.3g} ({v['source']}{', replicate films' if v['source'] == 'replicates' else ''})"
            for t, v in training["between_sample"].items()
        )
        + ". The embedded data has three replicate films per anneal state (film-to-film spread estimated from them) "
        "but one cell per buffer and protocol, so the cell-to-cell spread is a stated prior "
        "(PRIOR_BETWEEN_SAMPLE_SD, our literature-style judgement, not read from the virtual lab). The lab's own "
        "assumption of cell-to-cell spread is similar, so the retention coverage measured here partly reflects "
        "that agreement: with real cells of another spread it would differ.",
        "",
        *world_markdown(report.get("world_family")),
        *proper_markdown(report),
        *forecast_markdown(report),
        *narrow_markdown(report.get("narrow_features")),
        "## Paper facts (champion's means)",
        "",
        "| fact | status | paper | model |",
        "|---|---|---|---|",
    ]
    for entry in report["facts"]["entries"]:
        lines.append(f"| {entry['id']} | {entry['status']} | {_fmt(entry['paper'])} | {_fmt(entry['model'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="held-out designs per target (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the designs and the fresh measurements")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the results files")
    parser.add_argument("--worlds", type=int, default=8, help="world-family size (0: the paper's lab only)")
    parser.add_argument(
        "--world-families", default="physics,gp,trees", help="model families trained in each world (fast ones)"
    )
    parser.add_argument(
        "--narrow-n", type=int, default=200, help="designs per region set of the narrow section (0: skip)"
    )
    parser.add_argument("--narrow-replicates", type=int, default=3, help="scans per world in the narrow section")
    parser.add_argument("--narrow-only", action="store_true", help="run the narrow-feature section alone")
    parser.add_argument(
        "--pooling-only",
        action="store_true",
        help="run the pooling section alone (today's selection, physics_gp unpooled and pooled, per world)",
    )
    args = parser.parse_args(argv)
    if args.pooling_only:
        section = pooling_section(args.worlds, 0, args.n, args.seed, args.world_families.split(","))
        section["command"] = (
            f"{COMMAND} --pooling-only --n {args.n} --worlds {args.worlds} --world-families {args.world_families} "
            f"--seed {args.seed}"
        )
        section["machine"] = machine()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "surrogate_accuracy_pooling.json").write_text(
            json.dumps(section, indent=2, default=str) + "\n", encoding="utf-8"
        )
        text = "\n".join([f"Command: `{section['command']}`", "", *pooling_markdown(section)])
        (args.out / "surrogate_accuracy_pooling.md").write_text(text, encoding="utf-8")
        print(text)
        return 0
    if args.narrow_only:
        section = narrow_feature_section(args.narrow_n, args.seed, args.narrow_replicates)
        section["command"] = (
            f"{COMMAND} --narrow-only --narrow-n {args.narrow_n} --narrow-replicates {args.narrow_replicates} --seed {args.seed}"
        )
        section["machine"] = machine()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "surrogate_accuracy_narrow.json").write_text(json.dumps(section, indent=2) + "\n", encoding="utf-8")
        text = "\n".join([f"Command: `{section['command']}`", "", *narrow_markdown(section)])
        (args.out / "surrogate_accuracy_narrow.md").write_text(text, encoding="utf-8")
        print(text)
        return 0
    report = run(args.n, args.seed, args.out, args.worlds, tuple(args.world_families.split(",")))
    report["narrow_features"] = (
        narrow_feature_section(args.narrow_n, args.seed, args.narrow_replicates) if args.narrow_n else None
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "surrogate_accuracy.json").write_text(
        json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8"
    )
    (args.out / "surrogate_accuracy.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
