"""A family of virtual labs whose laws differ from the models' ("worlds"), for benchmarks.

The project's models and campaign suggester are built on the physics of :mod:`surrogate.physics`. A
benchmark on that same lab only shows that the models fit the laws they were written from. A
:class:`World` is the virtual lab with its laws and constants changed, so benchmarks can ask whether
campaigns and surrogates learn a system they have never seen:

* ``crystallisation_onset_c`` (200-420 °C): where the film stops relaxing and starts to crystallise,
  which is where its conductivity peaks (the paper: 300 °C; crystallisation completes 100 °C later);
* ``rate_ranking`` / ``fade_ranking``: the buffers, best first, that receive the paper's 30 C rate
  retentions (0.30, 0.22, 0.18, 0.10) and 100-cycle retentions (0.79, 0.76, 0.71, 0.54);
* ``interface_ea_ev`` and ``fade_ea_ev`` (0.1-0.6 eV): Arrhenius activation of the interface
  resistance and of fade per cycle;
* ``rate_law`` (:data:`RATE_LAWS`): the accessible capacity fraction f(C/C*) of a cell;
* ``fade_onset`` (:data:`FADE_ONSETS`): how the loss grows with (temperature-accelerated) cycles under
  the standard protocol. Every onset keeps the world's 100-cycle retentions at 25 °C, so the paper's
  capacity numbers hold in every world; the long protocol keeps the lab's law with the world's constants;
* ``noise_scale`` (0.5-2): every noise level of :class:`surrogate.lab.NoiseLevels` times this factor;
* ``anneal_window_c`` (°C, or None): the film conducts :data:`ANNEAL_WINDOW_GAIN` times better in a window
  :data:`ANNEAL_WINDOW_FWHM_C` (40 °C) wide centred there (a narrow anneal feature; rate follows through
  the electrolyte resistance);
* ``side_reaction_onset_c`` (°C, or None): above it an interphase grows and the interface resistance
  rises (×(1 + :data:`SIDE_REACTION_GROWTH` · softplus((T − onset)/:data:`SIDE_REACTION_WIDTH_C`))), so
  rate retention first rises with the operating temperature and then falls (a non-monotone response).

Each world is re-calibrated like the lab: its rate constants are solved so its rate law meets its
30 C retentions at the paper's cell conditions (300 °C anneal, 25 °C).

:func:`world_family` gives ``n`` worlds deterministically: world 0 is the paper's lab unchanged, worlds
1 and 2 are the two worlds users reported (:func:`paper_world`, :data:`REPORTED_WORLDS`), the rest are
drawn at random. :data:`NARROW_FEATURE_WORLDS` are two more named worlds (a 40 °C anneal window, a side
reaction above 70 °C), kept out of :func:`world_family` so earlier results stay comparable. Worlds are
emulations: none of their numbers is a measurement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from surrogate import physics
from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    BUFFERS,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    DEFAULT_C_RATE,
    DEFAULT_CYCLES,
    DEFAULT_PROTOCOL,
    PROTOCOL,
    RATE_RETENTION,
    REFERENCE_C_RATE,
    REFERENCE_CYCLE,
    TEST_TEMP_C,
    DesignSpace,
    canonical_buffer,
    canonical_protocol,
)
from surrogate.errors import InputError
from surrogate.lab import NoiseLevels
from surrogate.objectives import Objective

# ------------------------------------------------------------------ laws a world can have
PAPER_RATE_RANKING: tuple[str, ...] = ("sio2", "lipon", "llto_ncm", "none")
"""Buffers by 30 C rate retention in the paper's lab, best first."""
PAPER_FADE_RANKING: tuple[str, ...] = ("lipon", "sio2", "llto_ncm", "none")
"""Buffers by 100-cycle capacity retention in the paper's lab, best first."""
CRYSTALLISATION_WIDTH_C = 100.0
"""Anneal range over which a film crystallises (the paper: 300 to 400 °C)."""
CRYSTALLISATION_RANGE_C = (200.0, 420.0)
ACTIVATION_RANGE_EV = (0.1, 0.6)
NOISE_SCALE_RANGE = (0.5, 2.0)
ANNEAL_WINDOW_FWHM_C = 40.0
"""Full width at half maximum (°C) of a world's anneal window (the issue-15 report: a film good only in ~40 °C)."""
ANNEAL_WINDOW_GAIN = 4.0
"""How many times better the film conducts at the centre of its anneal window."""
SIDE_REACTION_WIDTH_C = 8.0
"""°C over which a world's interfacial side reaction sets in (softplus width)."""
SIDE_REACTION_GROWTH = 8.0
"""Growth of the interface resistance per softplus unit above the side reaction's onset."""


def _resistance_shape(x: np.ndarray) -> np.ndarray:
    return physics.rate_shape(x, 1.0)


def _diffusion_shape(x: np.ndarray) -> np.ndarray:
    root = np.sqrt(x)
    return np.tanh(root) / root


def _sharp_shape(x: np.ndarray) -> np.ndarray:
    return (1.0 + x**3) ** (-1.0 / 3.0)


RATE_LAWS = {
    "resistance": _resistance_shape,
    "diffusion": _diffusion_shape,
    "sharp": _sharp_shape,
}
"""Accessible capacity fraction f(x), x = C/C*, of a cell:

* ``resistance`` — the project's law (1 − e^(−x))/x: tail ∝ 1/x;
* ``diffusion`` — solid-state diffusion limited, tanh(√x)/√x: a slow tail ∝ 1/√x;
* ``sharp`` — a cut-off voltage reached abruptly, (1 + x³)^(−1/3): flat, then ∝ 1/x.
"""


def _parabolic_onset(u: np.ndarray) -> np.ndarray:
    return np.sqrt(u)


def _accelerating_onset(u: np.ndarray) -> np.ndarray:
    return u**1.5


FADE_ONSETS = {
    "early_drop": None,
    "parabolic": _parabolic_onset,
    "accelerating": _accelerating_onset,
}
"""Standard-protocol loss −ln R as a function of u = (n_eff − 1)/99 (n_eff: cycles × fade acceleration):

* ``early_drop`` — the lab's law (a drop over the first few dozen cycles, then steady fade, then a knee);
* ``parabolic`` — L·√u, surface-film growth: fast at first, slowing down;
* ``accelerating`` — L·u^1.5, a slow onset that speeds up (cracking, plating).

L = −ln(100-cycle retention of the buffer), so each onset meets the world's 100-cycle retentions at 25 °C.
"""

PAPER_RATE_30C: tuple[float, ...] = tuple(physics.PARAMETERS.value(f"rate_30c_{b}") for b in PAPER_RATE_RANKING)
PAPER_RETENTION_100: tuple[float, ...] = tuple(
    physics.PARAMETERS.value(f"retention_100_{b}") for b in PAPER_FADE_RANKING
)


# ------------------------------------------------------------------ a world
@dataclass(frozen=True)
class World:
    """A virtual lab with its own laws (see the module docstring for each field and its unit)."""

    name: str = "paper"
    crystallisation_onset_c: float = 300.0
    rate_ranking: tuple[str, ...] = PAPER_RATE_RANKING
    fade_ranking: tuple[str, ...] = PAPER_FADE_RANKING
    interface_ea_ev: float = 0.30
    fade_ea_ev: float = 0.20
    rate_law: str = "resistance"
    fade_onset: str = "early_drop"
    noise_scale: float = 1.0
    anneal_window_c: float | None = None
    side_reaction_onset_c: float | None = None
    note: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        for ranking in ("rate_ranking", "fade_ranking"):
            value = tuple(getattr(self, ranking))
            if sorted(value) != sorted(BUFFERS):
                raise InputError(f"{ranking}: {value} must list each of {', '.join(BUFFERS)} once")
            object.__setattr__(self, ranking, value)
        if self.rate_law not in RATE_LAWS:
            raise InputError(f"rate_law: {self.rate_law!r} is not one of {', '.join(RATE_LAWS)}")
        if self.fade_onset not in FADE_ONSETS:
            raise InputError(f"fade_onset: {self.fade_onset!r} is not one of {', '.join(FADE_ONSETS)}")
        low, high = CRYSTALLISATION_RANGE_C
        if not low <= self.crystallisation_onset_c <= high:
            raise InputError(f"crystallisation_onset_c: {self.crystallisation_onset_c} °C is outside [{low}, {high}]")
        for field_name in ("interface_ea_ev", "fade_ea_ev"):
            if not ACTIVATION_RANGE_EV[0] <= getattr(self, field_name) <= ACTIVATION_RANGE_EV[1]:
                raise InputError(f"{field_name}: {getattr(self, field_name)} eV is outside {ACTIVATION_RANGE_EV}")
        if not NOISE_SCALE_RANGE[0] <= self.noise_scale <= NOISE_SCALE_RANGE[1]:
            raise InputError(f"noise_scale: {self.noise_scale} is outside {NOISE_SCALE_RANGE}")

    # ------------------------------------------------------------ description
    def laws(self) -> dict[str, Any]:
        """The world's laws and constants as a JSON-ready mapping (no name or note)."""
        data = dataclasses.asdict(self)
        data.pop("name")
        data.pop("note")
        data["rate_ranking"] = list(self.rate_ranking)
        data["fade_ranking"] = list(self.fade_ranking)
        return data

    def describe(self) -> str:
        """One line: what differs from the paper's lab."""
        parts = []
        paper = World()
        if self.crystallisation_onset_c != paper.crystallisation_onset_c:
            parts.append(f"film peaks/crystallises at {self.crystallisation_onset_c:.0f} °C")
        if self.rate_ranking != paper.rate_ranking:
            parts.append("rate " + ">".join(self.rate_ranking))
        if self.fade_ranking != paper.fade_ranking:
            parts.append("retention " + ">".join(self.fade_ranking))
        if self.interface_ea_ev != paper.interface_ea_ev:
            parts.append(f"interface Ea {self.interface_ea_ev:.2f} eV")
        if self.fade_ea_ev != paper.fade_ea_ev:
            parts.append(f"fade Ea {self.fade_ea_ev:.2f} eV")
        if self.rate_law != paper.rate_law:
            parts.append(f"{self.rate_law} rate law")
        if self.fade_onset != paper.fade_onset:
            parts.append(f"{self.fade_onset} fade")
        if self.noise_scale != paper.noise_scale:
            parts.append(f"noise x{self.noise_scale:.2f}")
        if self.anneal_window_c is not None:
            parts.append(
                f"film x{ANNEAL_WINDOW_GAIN:g} in a {ANNEAL_WINDOW_FWHM_C:g} °C window at {self.anneal_window_c:g} °C"
            )
        if self.side_reaction_onset_c is not None:
            parts.append(f"interface side reaction above {self.side_reaction_onset_c:g} °C")
        return "; ".join(parts) or "the paper's lab unchanged"

    # ------------------------------------------------------------ calibration
    @cached_property
    def params(self) -> physics.LabParameters:
        """The lab's parameters with this world's crystallisation, rankings and activation energies."""
        changes: dict[str, physics.Parameter] = {}

        def world_value(name: str, value: float) -> None:
            old = getattr(physics.PARAMETERS, name)
            if value != old.value:
                changes[name] = physics.Parameter(float(value), old.unit, "world", f"{self.name}: set by the world")

        world_value("crystallisation_onset_c", self.crystallisation_onset_c)
        world_value("crystallisation_complete_c", self.crystallisation_onset_c + CRYSTALLISATION_WIDTH_C)
        world_value("interface_ea_ev", self.interface_ea_ev)
        world_value("fade_ea_ev", self.fade_ea_ev)
        for buffer, value in zip(self.rate_ranking, PAPER_RATE_30C, strict=True):
            world_value(f"rate_30c_{buffer}", value)
        for buffer, value in zip(self.fade_ranking, PAPER_RETENTION_100, strict=True):
            world_value(f"retention_100_{buffer}", value)
        return dataclasses.replace(physics.PARAMETERS, **changes)

    @cached_property
    def noise_levels(self) -> NoiseLevels:
        base = NoiseLevels()
        return NoiseLevels(**{f.name: getattr(base, f.name) * self.noise_scale for f in dataclasses.fields(base)})

    @cached_property
    def _rate_calibration(self) -> tuple[float, dict[str, float]]:
        """(K, interface resistance per buffer) so the world's rate law meets its 30 C retentions."""
        p = self.params
        shape = RATE_LAWS[self.rate_law]
        reference, calibration_rate = p.value("reference_rate_c"), p.value("calibration_rate_c")

        def retention_at_30c(c_star: float, target: float) -> float:
            return shape(calibration_rate / c_star) / shape(reference / c_star) - target

        c_star = {
            b: brentq(retention_at_30c, 1e-3, 1e4, args=(p.value(f"rate_30c_{b}"),), xtol=1e-14, rtol=1e-14)
            for b in BUFFERS
        }
        rate_constant = c_star["none"] / p.value("electrolyte_share_no_buffer")
        return rate_constant, {b: rate_constant / c_star[b] - 1.0 for b in BUFFERS}

    # ------------------------------------------------------------ noise-free laws (vectorised)
    def conductivity_s_cm(self, anneal_temp_c: Any, test_temp_c: Any) -> np.ndarray:
        """The film's ionic conductivity (S/cm): the lab's law with this world's constants, times its anneal window."""
        sigma = physics.conductivity_s_cm(anneal_temp_c, test_temp_c, self.params)
        if self.anneal_window_c is None:
            return sigma
        sd = ANNEAL_WINDOW_FWHM_C / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        bump = np.exp(-0.5 * ((np.asarray(anneal_temp_c, dtype=float) - self.anneal_window_c) / sd) ** 2)
        return sigma * ANNEAL_WINDOW_GAIN**bump

    def characteristic_rate_c(self, buffer: Any, anneal_temp_c: Any, test_temp_c: Any) -> np.ndarray:
        """C* (in C) of a cell: K / (R_interface(buffer, T) + R_electrolyte(anneal, T)), as in the lab."""
        p = self.params
        rate_constant, interface = self._rate_calibration
        reference_sigma = self.conductivity_s_cm(p.value("cell_anneal_temp_c"), p.value("cell_test_temp_c"))
        r_electrolyte = reference_sigma / self.conductivity_s_cm(anneal_temp_c, test_temp_c)
        r_interface = np.vectorize(interface.__getitem__, otypes=[float])(np.asarray(buffer))
        speed_up = np.exp(
            self.interface_ea_ev
            / physics.K_B_EV
            * (1.0 / physics.kelvin(p.value("cell_test_temp_c")) - 1.0 / physics.kelvin(test_temp_c))
        )
        if self.side_reaction_onset_c is not None:
            excess = (np.asarray(test_temp_c, dtype=float) - self.side_reaction_onset_c) / SIDE_REACTION_WIDTH_C
            r_interface = r_interface * (1.0 + SIDE_REACTION_GROWTH * np.logaddexp(0.0, excess))
        return rate_constant / (r_interface / speed_up + r_electrolyte)

    def relative_rate(self, c_rate: Any, c_star: Any) -> np.ndarray:
        """Capacity at ``c_rate`` over capacity at 0.1 C under this world's rate law (1 at and below 0.1 C)."""
        shape = RATE_LAWS[self.rate_law]
        rate = np.maximum(np.asarray(c_rate, dtype=float), REFERENCE_C_RATE)
        c_star = np.asarray(c_star, dtype=float)
        return shape(rate / c_star) / shape(REFERENCE_C_RATE / c_star)

    def capacity_retention(self, buffer: Any, test_temp_c: Any, cycles: Any, protocol: Any = "standard") -> np.ndarray:
        """Capacity after ``cycles`` over the initial capacity (fraction) under this world's fade onset."""
        p = self.params
        lab_law = physics.capacity_retention(buffer, test_temp_c, cycles, protocol, p)
        onset = FADE_ONSETS[self.fade_onset]
        if onset is None:
            return lab_law
        loss_100 = -np.log(np.vectorize(lambda b: p.value(f"retention_100_{b}"), otypes=[float])(np.asarray(buffer)))
        n_eff = 1.0 + (np.asarray(cycles, dtype=float) - 1.0) * physics.fade_acceleration(test_temp_c, p)
        world_law = np.exp(-loss_100 * onset((n_eff - 1.0) / 99.0))
        return np.where(np.asarray(protocol) == "long", lab_law, world_law)

    def truth_arrays(
        self, buffer: Any, anneal_temp_c: Any, test_temp_c: Any, c_rate: Any, cycles: Any, protocol: Any = "standard"
    ) -> dict[str, np.ndarray]:
        """Noise-free targets for arrays of canonical designs (no validation; the fast path of grids)."""
        c_star = self.characteristic_rate_c(buffer, anneal_temp_c, test_temp_c)
        rate = np.where(np.asarray(c_rate) <= REFERENCE_C_RATE, 1.0, self.relative_rate(c_rate, c_star))
        capacity = np.where(
            np.asarray(cycles) <= REFERENCE_CYCLE, 1.0, self.capacity_retention(buffer, test_temp_c, cycles, protocol)
        )
        return {
            CONDUCTIVITY: self.conductivity_s_cm(anneal_temp_c, test_temp_c),
            RATE_RETENTION: rate,
            CAPACITY_RETENTION: capacity,
        }

    # ------------------------------------------------------------ the lab interface
    def truth(self, design: dict[str, Any]) -> dict[str, float]:
        """Noise-free values of the three targets for one design (validated; conditions default as in the lab)."""
        row = _full_design(design)
        values = self.truth_arrays(*(row[k] for k in (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES, PROTOCOL)))
        return {target: float(value) for target, value in values.items()}

    def measure(self, design: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
        """One noisy measurement of the three targets (a fresh film and cell), drawing its noise from ``rng``."""
        frame = self.measure_frame(pd.DataFrame([_full_design(design)]), rng)
        return {target: float(frame[target].iloc[0]) for target in (CONDUCTIVITY, RATE_RETENTION, CAPACITY_RETENTION)}

    def measure_frame(
        self, designs: pd.DataFrame, rng: np.random.Generator | None, sample_ids: pd.Series | None = None
    ) -> pd.DataFrame:
        """Measure canonical designs like :meth:`surrogate.lab.VirtualLab.measure_frame`, under this world's laws.

        The noise model and the order of the draws are the lab's (with this world's noise levels), so world 0
        with ``rng = np.random.default_rng(seed)`` reproduces ``VirtualLab(seed=seed)``. ``rng=None``: no noise.
        """
        out = designs.copy()
        buffer, protocol = out[BUFFER].to_numpy(), out[PROTOCOL].to_numpy()
        anneal, temp = out[ANNEAL_TEMP_C].to_numpy(float), out[TEST_TEMP_C].to_numpy(float)
        c_rate, cycles = out[C_RATE].to_numpy(float), out[CYCLES].to_numpy(float)
        sigma = self.conductivity_s_cm(anneal, temp)
        c_star = self.characteristic_rate_c(buffer, anneal, temp)
        capacity = self.capacity_retention(buffer, temp, cycles, protocol)
        rate_noise = capacity_noise = 0.0
        if rng is not None:
            n, levels = len(out), self.noise_levels
            groups = np.arange(n) if sample_ids is None else pd.factorize(sample_ids)[0]
            n_groups = groups.max() + 1 if n else 0
            film = rng.normal(0.0, levels.film_log_sd, n_groups)[groups]
            cell_rate = rng.normal(0.0, levels.cell_rate_log_sd, n_groups)[groups]
            cell_fade = rng.normal(0.0, levels.cell_fade_log_sd, n_groups)[groups]
            sigma = sigma * np.exp(film + rng.normal(0.0, levels.eis_log_sd, n))
            c_star = c_star * np.exp(cell_rate)
            with np.errstate(divide="ignore"):  # a dead cell (retention 0) stays dead
                capacity = np.exp(np.log(capacity) * np.exp(cell_fade))
            rate_noise = rng.normal(0.0, levels.rate_reading_sd, n)
            capacity_noise = rng.normal(0.0, levels.capacity_reading_sd, n)
        rate = self.relative_rate(c_rate, c_star)
        out[CONDUCTIVITY] = sigma
        out[RATE_RETENTION] = np.where(c_rate <= REFERENCE_C_RATE, 1.0, np.clip(rate + rate_noise, 0.0, 1.0))
        out[CAPACITY_RETENTION] = np.where(cycles <= REFERENCE_CYCLE, 1.0, np.clip(capacity + capacity_noise, 0.0, 1.0))
        return out

    # ------------------------------------------------------------ optimum
    def optimum(
        self,
        objective: Objective,
        space: DesignSpace | None = None,
        anneal_step_c: float = 1.0,
        test_temp_step_c: float = 0.25,
    ) -> dict[str, Any]:
        """The noise-free best design of ``objective`` in ``space`` on a dense grid (steps in °C).

        Returns ``value`` (objective units), ``buffer``, ``anneal_temp_c`` and ``test_temp_c`` (°C).
        """
        space = space or DesignSpace()
        objective.check_space(space)
        anneal = _grid(*space.effective_anneal_temp_c, anneal_step_c)
        temps = (
            np.array([objective.test_temp_c])
            if objective.test_temp_c is not None
            else _grid(*space.effective_test_temp_c, test_temp_step_c)
        )
        anneal_grid, temp_grid = np.meshgrid(anneal, temps, indexing="ij")
        best: dict[str, Any] = {"value": -np.inf}
        for buffer in space.buffers:
            values = objective.value(
                self.truth_arrays(
                    buffer, anneal_grid, temp_grid, objective.c_rate, objective.cycles, objective.protocol
                )
            )
            i = np.unravel_index(np.argmax(values), values.shape)
            if values[i] > best["value"]:
                best = {
                    "value": float(values[i]),
                    BUFFER: buffer,
                    ANNEAL_TEMP_C: float(anneal_grid[i]),
                    TEST_TEMP_C: float(temp_grid[i]),
                }
        return best


def _grid(low: float, high: float, step: float) -> np.ndarray:
    """low, low + step, ... and high itself."""
    return np.unique(np.append(np.arange(low, high, step), high))


def _full_design(design: dict[str, Any]) -> dict[str, Any]:
    """A validated, canonical design with the lab's default conditions filled in."""
    row = {
        C_RATE: DEFAULT_C_RATE,
        CYCLES: DEFAULT_CYCLES,
        PROTOCOL: DEFAULT_PROTOCOL,
        **{k: v for k, v in design.items() if v is not None},
    }
    missing = [k for k in (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C) if k not in row]
    if missing:
        raise InputError(f"design: {', '.join(missing)} missing")
    row[BUFFER] = canonical_buffer(row[BUFFER])
    row[PROTOCOL] = canonical_protocol(row[PROTOCOL])
    try:
        values = [float(row[k]) for k in (ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES)]
    except (TypeError, ValueError):
        raise InputError("anneal_temp_c, test_temp_c, c_rate and cycles must be numbers") from None
    problems = physics.lab_domain_problems(*values, row[PROTOCOL])
    if problems:
        raise InputError("; ".join(problems))
    row[ANNEAL_TEMP_C], row[TEST_TEMP_C], row[C_RATE], row[CYCLES] = values
    return row


# ------------------------------------------------------------------ the family
def paper_world() -> World:
    """World 0: the paper's lab unchanged."""
    return World(name="paper", note="the paper-calibrated virtual lab (surrogate.lab.VirtualLab)")


REPORTED_WORLDS: tuple[World, ...] = (
    World(
        name="cryst250-lipon",
        crystallisation_onset_c=250.0,
        rate_ranking=("lipon", "sio2", "llto_ncm", "none"),
        note="reported by a user: the film crystallises at 250 °C and LiPON is the best buffer for rate",
    ),
    World(
        name="hot-fade",
        fade_ea_ev=0.60,
        note="reported by a user: fade strongly temperature-activated, the optimum at 25 °C",
    ),
)
"""The two worlds users reported where campaigns failed (issue 8); always worlds 1 and 2 of the family."""


NARROW_FEATURE_WORLDS: tuple[World, ...] = (
    World(
        name="window-360",
        anneal_window_c=360.0,
        note="issue 15: the film is good only in a ~40 °C anneal window (340-380 °C), 4x the conductivity there",
    ),
    World(
        name="side-reaction-70",
        side_reaction_onset_c=70.0,
        note="issue 15: an interfacial side reaction above ~70 °C cuts rate retention (non-monotone in temperature)",
    ),
)
"""Worlds with narrow or non-monotone features (issue 15 §3), not part of :func:`world_family`."""


def random_world(index: int, seed: int = 0) -> World:
    """World ``index`` (>= 3) of a family: constants drawn at random from their ranges, shapes cycled.

    The rate law and the fade onset cycle through :data:`RATE_LAWS` and :data:`FADE_ONSETS` (offset so
    world 3 already differs from the paper in both), so any three consecutive random worlds hold every
    shape; everything else comes from ``np.random.default_rng([seed, index])``.
    """
    rng = np.random.default_rng([seed, index])
    rate_laws, fade_onsets = list(RATE_LAWS), list(FADE_ONSETS)
    return World(
        name=f"random-{seed}-{index}",
        crystallisation_onset_c=float(np.round(rng.uniform(*CRYSTALLISATION_RANGE_C))),
        rate_ranking=tuple(str(b) for b in rng.permutation(BUFFERS)),
        fade_ranking=tuple(str(b) for b in rng.permutation(BUFFERS)),
        interface_ea_ev=float(np.round(rng.uniform(*ACTIVATION_RANGE_EV), 3)),
        fade_ea_ev=float(np.round(rng.uniform(*ACTIVATION_RANGE_EV), 3)),
        rate_law=rate_laws[(index - 2) % len(rate_laws)],
        fade_onset=fade_onsets[(index - 1) % len(fade_onsets)],
        noise_scale=float(np.round(np.exp(rng.uniform(*np.log(NOISE_SCALE_RANGE))), 3)),
        note="drawn at random",
    )


def world_family(n: int, seed: int = 0) -> list[World]:
    """``n`` (>= 3) worlds: the paper's lab, the two reported worlds, then ``n - 3`` random ones.

    Deterministic: world ``i`` (i >= 3) depends only on ``seed`` and ``i``, so a larger family extends a
    smaller one.
    """
    fixed = [paper_world(), *REPORTED_WORLDS]
    if not isinstance(n, (int, np.integer)) or n < len(fixed):
        raise InputError(f"n: {n!r} must be a whole number >= {len(fixed)} (the paper's and the reported worlds)")
    drawn = [random_world(i, seed) for i in range(len(fixed), n)]
    return fixed + drawn


# ------------------------------------------------------------------ data
def paper_dataset(world: World, seed: int = 20210412) -> pd.DataFrame:
    """The paper's experimental design (:func:`surrogate.dataset.paper_design`) measured in ``world``.

    The same layout as the embedded data set (each row keeps its own target only; conditions that do not
    apply stay empty), so ``world_family(n)[0]`` with the default seed reproduces it. Its ``source`` says
    which world emulated it: the values are not measurements.
    """
    from surrogate.dataset import COLUMNS, SOURCE, paper_design
    from surrogate.schema import EXPERIMENT, SAMPLE_ID
    from surrogate.schema import SOURCE as SOURCE_COLUMN

    design = paper_design()
    lab_input = design.assign(**{C_RATE: design[C_RATE].fillna(REFERENCE_C_RATE), CYCLES: design[CYCLES].fillna(1)})
    measured = world.measure_frame(lab_input, np.random.default_rng(seed), sample_ids=design[SAMPLE_ID])
    frame = design.copy()
    kind = frame[EXPERIMENT]
    frame[CONDUCTIVITY] = measured[CONDUCTIVITY].where(kind == "conductivity")
    frame[RATE_RETENTION] = measured[RATE_RETENTION].where(kind == "rate")
    frame[CAPACITY_RETENTION] = measured[CAPACITY_RETENTION].where(kind == "cycling")
    frame.loc[kind != "rate", C_RATE] = np.nan
    frame.loc[kind != "cycling", CYCLES] = np.nan
    frame[CYCLES] = frame[CYCLES].astype("Int64")
    frame[SOURCE_COLUMN] = SOURCE if world.laws() == World().laws() else f"world {world.name} (emulated, not measured)"
    return frame[list(COLUMNS)]
