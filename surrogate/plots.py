"""Figures of a trained surrogate and its data, for people: units on every axis, log scales where the science uses them.

Each function returns a matplotlib :class:`~matplotlib.figure.Figure` (Agg
backend, no display needed); :mod:`training.train` logs them with
``mlflow.log_figure``. ``note`` is appended to titles, e.g.
:data:`RECONSTRUCTION_NOTE` when the data is the embedded reconstruction.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from surrogate.design import (  # noqa: E402
    ANNEAL_TEMP_C,
    BUFFER,
    BUFFER_LABELS,
    BUFFERS,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    DEFAULT_MATERIAL,
    MATERIAL,
    PROTOCOL,
    RATE_RETENTION,
    REFERENCE_C_RATE,  # noqa: E402
    TARGET_UNITS,
    TEST_TEMP_C,
)
from surrogate.models.base import TARGET_SPACES, Surrogate  # noqa: E402
from surrogate.targets import get_target  # noqa: E402

RECONSTRUCTION_NOTE = "data: reconstruction from Tan et al. 2021, not measurements"
KELVIN = 273.15
_MAX_CURVES = 8


def _log_axis(objective: Any) -> bool:
    """True when every target of ``objective`` spans decades (modelled in log10): draw it on a log axis."""
    return all(get_target(t).space.name == "log10" for t in objective.targets)


def _title(text: str, note: str) -> str:
    return f"{text}\n({note})" if note else text


def _new(width: float = 6.4, height: float = 4.8) -> tuple[Figure, plt.Axes]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def parity_figure(
    target: str,
    observed: np.ndarray,
    mean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    level: float = 0.9,
    note: str = "",
    kind: str = "cross-validated",
) -> Figure:
    """Predicted vs observed for one target (contract units), with the ``level`` interval as error bars.

    A log10-modelled target (conductivity, S/cm) is drawn on log-log axes; fractions on linear axes.
    """
    observed, mean = np.asarray(observed, float), np.asarray(mean, float)
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    fig, ax = _new()
    errors = np.vstack([np.clip(mean - lower, 0, None), np.clip(upper - mean, 0, None)])
    inside = (observed >= lower) & (observed <= upper)
    ax.errorbar(observed, mean, yerr=errors, fmt="none", ecolor="0.7", elinewidth=0.8, zorder=1)
    ax.scatter(observed[inside], mean[inside], s=12, color="tab:blue", label="observation inside interval", zorder=2)
    ax.scatter(observed[~inside], mean[~inside], s=14, color="tab:red", label="observation outside", zorder=3)
    low = np.nanmin(np.concatenate([observed, lower]))
    high = np.nanmax(np.concatenate([observed, upper]))
    ax.plot([low, high], [low, high], color="k", lw=1, ls="--", label="y = x")
    if get_target(target).space.name == "log10":  # a quantity spanning decades
        ax.set_xscale("log")
        ax.set_yscale("log")
    unit = TARGET_UNITS[target]
    ax.set_xlabel(f"observed {target} ({unit})")
    ax.set_ylabel(f"predicted {target} ({unit})")
    coverage = float(np.mean(inside)) if len(observed) else float("nan")
    ax.set_title(_title(f"Parity: {target}, {level:.0%} intervals, coverage {coverage:.0%}\n{kind}", note), fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def residuals_figure(
    target: str, observed: np.ndarray, mean: np.ndarray, note: str = "", kind: str = "cross-validated"
) -> Figure:
    """Residuals against the prediction, in two panels: the modelling space (log10 σ, or logit of a
    retention) and natural units (the ratio observed / predicted σ, or the retention difference as a fraction)."""
    space = TARGET_SPACES[target]
    observed, mean = np.asarray(observed, float), np.asarray(mean, float)
    predicted = space.forward(mean)
    residual = space.forward(observed) - predicted
    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.scatter(predicted, residual, s=12, color="tab:blue")
    left.axhline(0.0, color="k", lw=1, ls="--")
    left.set_xlabel(f"predicted {space.label}")
    left.set_ylabel(f"residual, observed − predicted ({space.label})")
    rmse = float(np.sqrt(np.mean(residual**2))) if len(residual) else float("nan")
    left.set_title(f"modelling space: RMSE {rmse:.3g}", fontsize=9)
    left.grid(True, alpha=0.3)
    if space.name == "log10":  # a ratio of a quantity spanning decades
        ratio = observed / mean
        right.scatter(mean, ratio, s=12, color="tab:green")
        right.axhline(1.0, color="k", lw=1, ls="--")
        right.set_xscale("log")
        right.set_yscale("log")
        right.set_xlabel(f"predicted {target} ({TARGET_UNITS[target]})")
        right.set_ylabel("observed / predicted")
        factor = 10**rmse if np.isfinite(rmse) else float("nan")
        right.set_title(f"natural units: typical factor ×/÷ {factor:.3g}", fontsize=9)
    else:
        difference = observed - mean
        right.scatter(mean, difference, s=12, color="tab:green")
        right.axhline(0.0, color="k", lw=1, ls="--")
        right.set_xlabel(f"predicted {target} (fraction)")
        right.set_ylabel("residual, observed − predicted (fraction)")
        rmse_units = float(np.sqrt(np.mean(difference**2))) if len(difference) else float("nan")
        right.set_title(f"natural units: RMSE {rmse_units:.3f} ({rmse_units * 100:.1f} percentage points)", fontsize=9)
    right.grid(True, which="both", alpha=0.3)
    fig.suptitle(_title(f"Residuals: {target}\n{kind}", note), fontsize=9)
    return fig


def _design(frame: dict[str, object], n: int) -> pd.DataFrame:
    columns = {
        BUFFER: "none",
        ANNEAL_TEMP_C: 300.0,
        TEST_TEMP_C: 25.0,
        C_RATE: 30.0,
        CYCLES: 100.0,
        PROTOCOL: "standard",
    }
    columns.update(frame)
    return pd.DataFrame({k: np.broadcast_to(np.asarray(v, dtype=object), n) for k, v in columns.items()})


def arrhenius_figure(
    data: pd.DataFrame,
    surrogate: Surrogate | None,
    activation_energies: pd.DataFrame | None = None,
    level: float = 0.9,
    note: str = "",
) -> Figure:
    """Arrhenius plot: σ (S/cm, log scale) against 1000/T (K⁻¹), data and fitted lines per anneal state.

    Lines and bands are the surrogate's conductivity mean and ``level`` interval over the
    measured test-temperature range; the legend gives Ea ± SE (eV) from
    ``activation_energies`` (columns ``anneal_temp_c``, ``ea_ev``, ``ea_se_ev``). The top
    axis shows the test temperature in °C.
    """
    rows = data.dropna(subset=[CONDUCTIVITY])
    fig, ax = _new(7.0, 5.0)
    ea = (
        {}
        if activation_energies is None
        else {
            float(r[ANNEAL_TEMP_C]): (float(r["ea_ev"]), float(r["ea_se_ev"]))
            for _, r in activation_energies.iterrows()
        }
    )
    rows = _with_material(rows)
    states = sorted(set(zip(rows[MATERIAL], rows[ANNEAL_TEMP_C], strict=True)))[:_MAX_CURVES]
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(states), 1)))
    for color, (material, anneal) in zip(colors, states, strict=False):
        subset = rows[(rows[MATERIAL] == material) & (rows[ANNEAL_TEMP_C] == anneal)]
        state = "as-deposited" if anneal <= 25.0 else f"annealed {anneal:g} °C"
        label = _material_label(material) + state
        if anneal in ea:
            label += f": Ea = {ea[anneal][0]:.3f} ± {ea[anneal][1]:.3f} eV"
        ax.scatter(1000.0 / (subset[TEST_TEMP_C] + KELVIN), subset[CONDUCTIVITY], s=14, color=color, label=label)
        if surrogate is not None and CONDUCTIVITY in surrogate.targets:
            temps = np.linspace(subset[TEST_TEMP_C].min(), subset[TEST_TEMP_C].max(), 60)
            design = _design({ANNEAL_TEMP_C: anneal, TEST_TEMP_C: temps, MATERIAL: material}, len(temps))
            predicted = surrogate.predict_target(CONDUCTIVITY, _numeric(design), level)
            x = 1000.0 / (temps + KELVIN)
            ax.plot(x, predicted["mean"], color=color, lw=1.5)
            ax.fill_between(x, predicted["lower"], predicted["upper"], color=color, alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("1000 / T (K⁻¹)")
    ax.set_ylabel(get_target(CONDUCTIVITY).figure_label)
    top = ax.secondary_xaxis("top", functions=(_inverse_kilo_kelvin_to_c, _c_to_inverse_kilo_kelvin))
    top.set_xlabel("test temperature (°C)")
    ax.set_title(
        _title(f"Arrhenius plot: data, surrogate mean and {level:.0%} band per anneal state", note), fontsize=9
    )
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def _inverse_kilo_kelvin_to_c(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    with np.errstate(divide="ignore"):
        return np.where(x > 0, 1000.0 / np.where(x > 0, x, 1.0) - KELVIN, np.inf)


def _c_to_inverse_kilo_kelvin(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, float)
    with np.errstate(divide="ignore"):
        return np.where(t > -KELVIN, 1000.0 / np.where(t > -KELVIN, t + KELVIN, 1.0), np.inf)


def _numeric(design: pd.DataFrame) -> pd.DataFrame:
    out = design.copy()
    for column in (ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES):
        out[column] = out[column].astype(float)
    return out


def _with_material(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with every ``material`` cell filled (absent or blank: the paper's LLTO film): curves follow the data."""
    material = rows[MATERIAL] if MATERIAL in rows.columns else pd.Series(None, index=rows.index, dtype=object)
    return rows.assign(**{MATERIAL: material.where(material.notna(), DEFAULT_MATERIAL).astype(str)})


def _material_label(material: str) -> str:
    return "" if material == DEFAULT_MATERIAL else f"{material}, "


def _groups(rows: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    groups = sorted(_with_material(rows).groupby(keys + [MATERIAL], dropna=False), key=lambda item: -len(item[1]))[
        :_MAX_CURVES
    ]
    order = {b: i for i, b in enumerate(BUFFERS)}
    return sorted(groups, key=lambda item: (order.get(item[0][0], 99), item[0][1:]))


def rate_figure(data: pd.DataFrame, surrogate: Surrogate | None, level: float = 0.9, note: str = "") -> Figure:
    """Rate retention against C-rate (log axis) per buffer, at each cell's anneal and test temperature.

    Points are the data; lines and bands the surrogate's mean and ``level`` interval from the
    0.1 C reference (where retention is 1 by definition) upward. Between 0.1 C and the lowest
    trained rate the line is dashed: the model has no data there (the reference rows are not
    trained on), so that stretch is the model's interpolation towards 1, drawn without a band.
    """
    rows = data.dropna(subset=[RATE_RETENTION])
    fig, ax = _new(7.0, 5.0)
    colors = plt.get_cmap("tab10")
    for i, ((buffer, anneal, temp, material), subset) in enumerate(_groups(rows, [BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C])):
        color = colors(i % 10)
        label = f"{_material_label(material)}{BUFFER_LABELS.get(buffer, buffer)}, anneal {anneal:g} °C, {temp:g} °C"
        ax.scatter(subset[C_RATE], subset[RATE_RETENTION], s=16, color=color, label=label)
        if surrogate is not None and RATE_RETENTION in surrogate.targets:
            trained = subset.loc[subset[C_RATE] > REFERENCE_C_RATE, C_RATE]
            if trained.empty:
                continue
            rates = np.geomspace(REFERENCE_C_RATE, trained.max(), 80)
            design = _design(
                {BUFFER: buffer, ANNEAL_TEMP_C: anneal, TEST_TEMP_C: temp, C_RATE: rates, MATERIAL: material},
                len(rates),
            )
            predicted = surrogate.predict_target(RATE_RETENTION, _numeric(design), level)
            inside = rates >= trained.min()
            below = rates <= trained.min()
            ax.plot(rates[inside], predicted["mean"][inside], color=color, lw=1.5)
            ax.plot(rates[below], predicted["mean"][below], color=color, lw=1.2, ls="--")
            ax.fill_between(
                rates[inside], predicted["lower"][inside], predicted["upper"][inside], color=color, alpha=0.15, lw=0
            )
    ax.plot([], [], color="0.3", lw=1.5, label=f"surrogate mean and {level:.0%} band (trained rates)")
    ax.plot([], [], color="0.3", lw=1.2, ls="--", label="mean below the lowest trained rate, towards 1 at 0.1 C")
    ax.set_xscale("log")
    ax.set_xlabel("discharge rate (C, log scale)")
    ax.set_ylabel(get_target(RATE_RETENTION).figure_label)
    ax.set_xlim(REFERENCE_C_RATE * 0.8, None)
    ax.set_ylim(0.0, 1.05)
    ax.set_title(_title(f"Rate retention per buffer: data, surrogate mean and {level:.0%} band", note), fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def fade_figure(data: pd.DataFrame, surrogate: Surrogate | None, level: float = 0.9, note: str = "") -> Figure:
    """Capacity retention against cycle number per buffer and protocol, one panel per protocol.

    Points are the data; lines and bands the surrogate's mean and ``level`` interval from cycle 2
    (cycle 1 is the reference, retention 1 by definition).
    """
    rows = data.dropna(subset=[CAPACITY_RETENTION])
    protocols = [p for p in ("standard", "long") if (rows[PROTOCOL] == p).any()] or ["standard"]
    fig = Figure(figsize=(6.4 * len(protocols), 5.6), layout="constrained")
    axes = fig.subplots(1, len(protocols), squeeze=False)[0]
    colors = plt.get_cmap("tab10")
    for ax, protocol in zip(axes, protocols, strict=True):
        subset_protocol = rows[rows[PROTOCOL] == protocol]
        for i, ((buffer, temp, material), subset) in enumerate(_groups(subset_protocol, [BUFFER, TEST_TEMP_C])):
            color = colors(i % 10)
            label = f"{_material_label(material)}{BUFFER_LABELS.get(buffer, buffer)}, {temp:g} °C"
            ax.scatter(
                subset[CYCLES].astype(float), subset[CAPACITY_RETENTION], s=6, color=color, alpha=0.6, label=label
            )
            if surrogate is not None and CAPACITY_RETENTION in surrogate.targets:
                cycles = np.linspace(2.0, max(2.0, float(subset[CYCLES].max())), 120)
                design = _design(
                    {BUFFER: buffer, TEST_TEMP_C: temp, CYCLES: cycles, PROTOCOL: protocol, MATERIAL: material},
                    len(cycles),
                )
                predicted = surrogate.predict_target(CAPACITY_RETENTION, _numeric(design), level)
                ax.plot(cycles, predicted["mean"], color=color, lw=1.5)
                ax.fill_between(cycles, predicted["lower"], predicted["upper"], color=color, alpha=0.15, lw=0)
        ax.set_xlabel("cycle number")
        ax.set_ylabel(get_target(CAPACITY_RETENTION).figure_label)
        ax.set_title(f"protocol {protocol}", fontsize=10)
        ax.legend(fontsize=9, markerscale=2.5, title="buffer, test temperature", title_fontsize=9, loc="lower left")
        ax.grid(True, alpha=0.3)
    fig.suptitle(_title(f"Capacity fade: data, surrogate mean and {level:.0%} band", note), fontsize=9)
    return fig


def _objective_label(objective) -> str:
    """Axis label of an objective: its name, what it scores (mean or lower bound) and its unit."""
    statistic = "lower bound" if objective.statistic == "lower" else "mean"
    return f"{objective.name}\n(predicted {statistic}, {objective.unit})"


def _design_label(row: pd.Series) -> str:
    buffer = BUFFER_LABELS.get(row[BUFFER], row[BUFFER])
    return f"{buffer} {row[ANNEAL_TEMP_C]:.0f}/{row[TEST_TEMP_C]:.0f} °C"


def pareto_figure(result) -> Figure:
    """Every pair of objectives of a :class:`~surrogate.search.SearchResult`, with units.

    Background: every trial of the search (grey; crosses are infeasible, orange rims
    extrapolations). Foreground: the Pareto set (or the best designs for one objective), the
    predicted mean with its interval, coloured by buffer, each labelled "buffer anneal/test °C";
    an extrapolated design (outside the training data) is drawn hollow with a red rim. A
    conductivity axis is logarithmic.
    """
    objectives = list(result.objectives)
    pairs = [(a, b) for i, a in enumerate(objectives) for b in objectives[i + 1 :]]
    single = not pairs
    fig = Figure(figsize=(6.4 * max(len(pairs), 1), 5.6), layout="constrained")
    axes = fig.subplots(1, max(len(pairs), 1), squeeze=False)[0]
    frame = result.designs
    trials = getattr(result, "trials", None)
    colors = {b: plt.get_cmap("tab10")(i) for i, b in enumerate(BUFFERS)}
    for ax, pair in zip(axes, pairs or [(objectives[0], objectives[0])], strict=True):
        x_obj, y_obj = pair
        if single:
            x_col, y_col = ANNEAL_TEMP_C, y_obj.name
        else:
            x_col, y_col = x_obj.name, y_obj.name
        if trials is not None and len(trials):
            feasible = trials["feasible"].to_numpy(bool)
            extrapolated = trials["extrapolation"].to_numpy(bool)
            ax.scatter(
                trials.loc[feasible, x_col],
                trials.loc[feasible, y_col],
                s=10,
                color="0.75",
                label=f"all {len(trials)} trials",
                zorder=1,
            )
            ax.scatter(
                trials.loc[~feasible, x_col],
                trials.loc[~feasible, y_col],
                s=12,
                marker="x",
                color="0.8",
                label="infeasible trial",
                zorder=1,
            )
            ax.scatter(
                trials.loc[feasible & extrapolated, x_col],
                trials.loc[feasible & extrapolated, y_col],
                s=14,
                facecolors="none",
                edgecolors="tab:orange",
                linewidths=0.6,
                label="trial extrapolated",
                zorder=1,
            )
        for _, row in frame.iterrows():
            color = colors.get(row[BUFFER], "k")
            x = row[x_col] if single else row[f"{x_col}_mean"]
            y_mean = row[f"{y_col}_mean"]
            yerr = [[y_mean - row[f"{y_col}_lower"]], [row[f"{y_col}_upper"] - y_mean]]
            xerr = None if single else [[x - row[f"{x_col}_lower"]], [row[f"{x_col}_upper"] - x]]
            ax.errorbar(x, y_mean, xerr=xerr, yerr=yerr, fmt="none", ecolor=color, alpha=0.5, zorder=2)
            hollow = bool(row["extrapolation"])
            ax.scatter(
                [x],
                [y_mean],
                s=60,
                zorder=3,
                linewidths=1.6,
                facecolors="white" if hollow else [color],
                edgecolors="tab:red" if hollow else "k",
            )
            ax.annotate(_design_label(row), (x, y_mean), xytext=(5, 4), textcoords="offset points", fontsize=7)
        for buffer in sorted(set(frame[BUFFER]), key=lambda b: BUFFERS.index(b) if b in BUFFERS else 99):
            ax.scatter(
                [], [], s=60, color=colors.get(buffer, "k"), edgecolors="k", label=BUFFER_LABELS.get(buffer, buffer)
            )
        if frame["extrapolation"].any():
            ax.scatter(
                [],
                [],
                s=60,
                facecolors="white",
                edgecolors="tab:red",
                linewidths=1.6,
                label="extrapolation (outside the training data)",
            )
        if single:
            ax.set_xlabel("anneal temperature (°C)")
        else:
            ax.set_xlabel(_objective_label(x_obj))
            if _log_axis(x_obj):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel(_objective_label(y_obj))
        if _log_axis(y_obj):
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    what = "best designs" if single else "Pareto set"
    fig.suptitle(
        f"{what} of {result.n_trials} trials: surrogate predictions with {result.level:.0%} intervals "
        "(not measurements); labels: buffer anneal/test °C",
        fontsize=9,
    )
    return fig
