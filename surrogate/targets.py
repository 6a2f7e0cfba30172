"""The targets, declared once: what each output is, how it is modelled, checked, split and explained by physics.

A :class:`Target` holds everything the rest of the project asks about a target:

* ``name``, ``unit``, ``description`` (the contract's words);
* ``space``: the modelling space (:class:`TargetSpace`: ``log10`` for a conductivity, ``logit`` for a
  fraction) in which models are fitted and errors scored;
* ``value_kind``: the plausibility check of a measured value (``positive`` or ``fraction``);
* ``inputs``: the design columns it depends on (a model's features). Every target also depends on the
  optional ``material`` column (what was measured), which models read when it is there and default to the
  paper's LLTO film otherwise;
* ``conditions``: measurement conditions a row carrying it must give (rate retention needs ``c_rate``);
* ``reference``: the condition at which it is 1 by definition (rate retention at ≤ 0.1 C), or None;
* ``cv_plan``: its cross-validation splits (:class:`SplitSpec`, read by :mod:`surrogate.evaluation`);
* ``physics_law``: the name of its law in :data:`surrogate.laws.LAWS` (its functional form, priors with
  their sources and modelling space, read by the physics baseline, ``physics_gp`` and the suggester), and ``lab_law``: the function of :mod:`surrogate.physics` the
  virtual lab evaluates (None: the lab does not emulate it);
* ``prior_between_sample_sd``: the between-sample spread (natural space) used without replicates;
* ``experiment``: the value of the ``experiment`` column its rows usually carry;
* ``objective_name``: its name in objective labels (``conductivity``; default the target's name);
* ``axis_label``: the axis label of a figure in contract units (default ``name (unit)``).

:data:`TARGETS` holds the declarations by name (the paper's three first). :func:`register_target` adds
one at run time (a test adds interfacial resistance); :func:`get_target` raises
:class:`~surrogate.errors.InputError` for a name that is not declared, so there is never a silent
fall-through to another target's behaviour. See docs/targets.md for the recipe.

This module imports only :mod:`surrogate.parameters` and :mod:`surrogate.errors` (no cycles).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, logit

from surrogate.errors import InputError
from surrogate.parameters import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CYCLES,
    DEFAULT_PROTOCOL,
    PROTOCOL,
    TEST_TEMP_C,
)

CONDUCTIVITY = "conductivity_s_cm"
RATE_RETENTION = "rate_retention"
CAPACITY_RETENTION = "capacity_retention"

REFERENCE_C_RATE = 0.1
"""``rate_retention`` is capacity at C over capacity at this rate (0.1 C): exactly 1 at and below it."""
REFERENCE_CYCLE = 1
"""``capacity_retention`` is relative to the capacity of this cycle: exactly 1 there."""

_FRACTION_EPS = 1e-3
SPACE_NAMES: tuple[str, ...] = ("log10", "logit")


@dataclass(frozen=True)
class TargetSpace:
    """How a target is modelled: ``forward`` maps contract units to the natural space, ``inverse`` back.

    ``log10`` (a positive quantity spanning decades) or ``logit`` (a fraction, clipped to [0.001, 0.999]).
    """

    name: str
    label: str

    def __post_init__(self) -> None:
        if self.name not in SPACE_NAMES:
            raise InputError(f"target space: {self.name!r} is not one of {', '.join(SPACE_NAMES)}")

    def forward(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if self.name == "log10":
            return np.log10(values)
        return logit(np.minimum(np.maximum(values, _FRACTION_EPS), 1.0 - _FRACTION_EPS))  # np.clip, cheaper

    def inverse(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if self.name == "log10":
            return 10.0**values
        return expit(values)


@dataclass(frozen=True)
class Reference:
    """The target is exactly 1 on rows whose ``column`` is ≤ ``value`` (the point it is relative to)."""

    column: str
    value: float
    description: str


@dataclass(frozen=True)
class SplitSpec:
    """One cross-validation split of a target's plan.

    ``grouping``: ``column`` (leave one value of ``column`` out), ``curve`` (leave one buffer × protocol
    curve out), ``cycle_blocks`` (each curve cut in blocks of consecutive cycles, folds of blocks) or
    ``forward`` (forward chaining along ``column``: train on the early part of each curve, score the next
    part; a forecast, not an interpolation). ``selects``: the split's score enters champion selection.
    """

    name: str
    description: str
    grouping: str
    selects: bool
    column: str | None = None


GROUPINGS: tuple[str, ...] = ("column", "curve", "cycle_blocks", "forward")


@dataclass(frozen=True)
class Condition:
    """A measurement condition a row carrying the target must give: ``column`` and what it means."""

    column: str
    what: str


VALUE_KINDS: tuple[str, ...] = ("positive", "fraction")
_PERCENT_LIKE = (1.5, 100.0)
"""Fractions in this range are reported as percentages; (1 + tolerance, 1.5] just as "above 1"."""
FRACTION_ABOVE_ONE_TOLERANCE = 0.01
"""A measured fraction may exceed 1 by this much and is accepted as it is (not clipped).

A retention is a ratio of two measured capacities, so a real cell can give a little more than its reference
(a cell still settling in its first cycles, a cycler's reading noise): the real cycler files of
tests/data/raw/cycling give 1.0002 to 1.0023. 0.01 accepts those with room to spare and still refuses
1.02 and above, which is no longer reading noise but a wrong reference (a formation cycle, a lower-rate step).
Models see no difference: the logit space clips a fraction to 0.999 either way (:class:`TargetSpace`).
"""


@dataclass(frozen=True)
class Target:
    """One declared target (see the module docstring for every attribute)."""

    name: str
    unit: str
    description: str
    space: TargetSpace
    value_kind: str
    inputs: tuple[str, ...]
    cv_plan: tuple[SplitSpec, ...]
    experiment: str
    prior_between_sample_sd: float
    conditions: tuple[Condition, ...] = ()
    reference: Reference | None = None
    physics_law: str | None = None
    lab_law: str | None = None
    short_label: str = ""
    objective_name: str = ""
    axis_label: str = ""
    notes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.value_kind not in VALUE_KINDS:
            raise InputError(f"{self.name}: value_kind {self.value_kind!r} is not one of {', '.join(VALUE_KINDS)}")
        if self.value_kind == "fraction" and self.space.name != "logit":
            raise InputError(f"{self.name}: a fraction is modelled in logit space")
        for split in self.cv_plan:
            if split.grouping not in GROUPINGS:
                raise InputError(f"{self.name}: split {split.name!r} has unknown grouping {split.grouping!r}")
        if not self.inputs:
            raise InputError(f"{self.name}: declare the design columns the target depends on (inputs)")

    @property
    def figure_label(self) -> str:
        """Axis label of a figure in contract units, e.g. ``ionic conductivity σ (S/cm)``."""
        return self.axis_label or f"{self.name} ({self.unit})"

    @property
    def label(self) -> str:
        """Axis label in the natural space, e.g. ``log10(σ / S cm⁻¹)``."""
        return self.space.label

    def value_problem(self, value: float) -> str | None:
        """Why a measured ``value`` (contract units) is not plausible (None when it is).

        A fraction is accepted from 0 to 1 + :data:`FRACTION_ABOVE_ONE_TOLERANCE` (a measured retention of
        1.002 is kept as it is); above that it is refused, and from 1.5 to 100 it is called a percentage.
        """
        if self.value_kind == "positive":
            if value < 0:
                return f"negative {self.short_label or self.name} {value:g} {self.unit}: it must be > 0"
            if value == 0:
                return (
                    f"zero {self.short_label or self.name}: it must be > 0 {self.unit} (leave the cell blank if not "
                    "measured)"
                )
            return None
        if value < 0:
            return f"negative {self.short_label or 'fraction'} {value:g}: a fraction 0-1 is expected"
        if _PERCENT_LIKE[0] < value <= _PERCENT_LIKE[1]:
            return f"{value:g} looks like a percentage; give {value / 100:g} (a fraction 0-1 is expected)"
        if value > 1 + FRACTION_ABOVE_ONE_TOLERANCE:
            return (
                f"{value:g} is above 1 by more than the {FRACTION_ABOVE_ONE_TOLERANCE:g} a measured fraction may "
                "exceed it: a fraction 0-1 is expected"
            )
        return None

    def reference_rows(self, numbers: dict[str, np.ndarray]) -> np.ndarray | None:
        """Rows where the target is 1 by definition (None: the target has no reference point)."""
        if self.reference is None:
            return None
        return np.asarray(numbers[self.reference.column], dtype=float) <= self.reference.value

    def tag(self, conditions: dict[str, Any]) -> str:
        """A short label of the target at ``conditions``, e.g. ``rate_retention@10C`` (objective names)."""
        parts = []
        for condition in self.conditions:
            value = conditions.get(condition.column)
            if condition.column == C_RATE:
                parts.append(f"{float(value):g}C")
            elif condition.column == CYCLES:
                parts.append(f"{int(value)}cyc")
            else:
                parts.append(f"{condition.column}={value}")
        protocol = conditions.get(PROTOCOL, DEFAULT_PROTOCOL)
        if PROTOCOL in self.inputs and protocol != DEFAULT_PROTOCOL:
            parts.append(str(protocol))
        return (self.objective_name or self.name) + ("@" + ",".join(parts) if parts else "")


# ------------------------------------------------------------------ the declarations
_CONDUCTIVITY = Target(
    name=CONDUCTIVITY,
    unit="S/cm",
    description="ionic conductivity of the electrolyte at test_temp_c (a film property: no buffer)",
    space=TargetSpace("log10", "log10(σ / S cm⁻¹)"),
    value_kind="positive",
    inputs=(ANNEAL_TEMP_C, TEST_TEMP_C),
    cv_plan=(
        SplitSpec("anneal_state", "leave one anneal temperature out", "column", True, ANNEAL_TEMP_C),
        SplitSpec("test_temp", "leave one test temperature out", "column", True, TEST_TEMP_C),
    ),
    experiment="conductivity",
    prior_between_sample_sd=0.04,
    physics_law="arrhenius",
    lab_law="conductivity_s_cm",
    short_label="conductivity",
    objective_name="conductivity",
    axis_label="ionic conductivity σ (S/cm)",
)
_RATE = Target(
    name=RATE_RETENTION,
    unit="fraction of 0.1 C capacity",
    description="capacity at c_rate over capacity at 0.1 C",
    space=TargetSpace("logit", "logit(rate retention)"),
    value_kind="fraction",
    inputs=(BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE),
    cv_plan=(
        SplitSpec("c_rate", "leave one C-rate out (all buffers)", "column", True, C_RATE),
        SplitSpec("buffer", "leave one buffer's rate curve out", "column", False, BUFFER),
    ),
    experiment="rate",
    prior_between_sample_sd=0.07,
    conditions=(Condition(C_RATE, "the C-rate the retention was measured at, > 0"),),
    reference=Reference(C_RATE, REFERENCE_C_RATE, "capacity at 0.1 C is the reference: retention 1"),
    physics_law="rate",
    lab_law="rate_retention",
    short_label="retention",
    axis_label="rate retention (fraction of 0.1 C capacity)",
)
_CAPACITY = Target(
    name=CAPACITY_RETENTION,
    unit="fraction of initial capacity",
    description="discharge capacity after cycles over the initial capacity, under protocol",
    space=TargetSpace("logit", "logit(capacity retention)"),
    value_kind="fraction",
    inputs=(BUFFER, TEST_TEMP_C, CYCLES, PROTOCOL),
    cv_plan=(
        SplitSpec(
            "cycle_block",
            "each curve in 10 blocks of consecutive cycles, 5 folds of 2 blocks",
            "cycle_blocks",
            True,
            CYCLES,
        ),
        SplitSpec("curve", "leave one buffer × protocol curve out", "curve", False),
        SplitSpec(
            "forward",
            "forward chaining: train on each curve's first 40/60/80% of cycles, score the rest (a forecast)",
            "forward",
            True,
            CYCLES,
        ),
    ),
    experiment="cycling",
    prior_between_sample_sd=0.07,
    conditions=(Condition(CYCLES, "the cycle count the retention was measured at, integer >= 1"),),
    reference=Reference(CYCLES, REFERENCE_CYCLE, "cycle 1 is the reference: retention 1"),
    physics_law="fade",
    lab_law="capacity_retention",
    short_label="retention",
    axis_label="capacity retention (fraction of initial capacity)",
)

TARGETS: dict[str, Target] = {t.name: t for t in (_CONDUCTIVITY, _RATE, _CAPACITY)}
"""Every declared target by name, the paper's three first (then any registered at run time)."""

PAPER_TARGETS: tuple[str, ...] = tuple(TARGETS)
"""The paper's three targets (``design.TARGETS``)."""

# Views other modules re-export under their historical names; register_target keeps them in step.
INPUTS: dict[str, tuple[str, ...]] = {}
SPACES: dict[str, TargetSpace] = {}
UNITS: dict[str, str] = {}
PRIOR_SD: dict[str, float] = {}


def _refresh_views(target: Target) -> None:
    INPUTS[target.name] = target.inputs
    SPACES[target.name] = target.space
    UNITS[target.name] = target.unit
    PRIOR_SD[target.name] = target.prior_between_sample_sd


for _target in TARGETS.values():
    _refresh_views(_target)


def target_names() -> tuple[str, ...]:
    """Every declared target name, in declaration order."""
    return tuple(TARGETS)


def get_target(name: str) -> Target:
    """The declaration of ``name``; :class:`InputError` naming the declared targets otherwise."""
    target = TARGETS.get(name) if isinstance(name, str) else None
    if target is None:
        raise InputError(f"target: {name!r} is not a target; allowed are {', '.join(TARGETS)}")
    return target


def register_target(target: Target, replace: bool = False) -> Target:
    """Declare ``target`` at run time (its column is then accepted by the schema, models and CV).

    Re-declaring a name is an :class:`InputError` unless ``replace`` (tests) or the declaration is equal.
    """
    existing = TARGETS.get(target.name)
    if existing is not None and existing != target and not replace:
        raise InputError(f"target {target.name!r} is already declared")
    TARGETS[target.name] = target
    _refresh_views(target)
    return target


def unregister_target(name: str) -> None:
    """Remove a target declared at run time (the paper's targets cannot be removed)."""
    if name in PAPER_TARGETS:
        raise InputError(f"target {name!r} is one of the paper's targets and cannot be removed")
    for table in (TARGETS, INPUTS, SPACES, UNITS, PRIOR_SD):
        table.pop(name, None)
