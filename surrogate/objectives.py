"""What a search or a campaign maximises: a target (or a product of targets) at fixed conditions.

An :class:`Objective` names its ``kind`` (one of :data:`OBJECTIVE_KINDS`), the
fixed conditions the targets are asked at (``c_rate`` in C for
``rate_retention``, ``cycles`` and ``protocol`` for ``capacity_retention``) and
optionally a fixed operating temperature ``test_temp_c`` (°C); without it the
operating temperature is a design variable. Its value is the product of its
targets in contract units (S/cm for conductivity, fractions for retentions),
always maximised. ``statistic="lower"`` (risk-aware) scores a design by the
lower bound of the predicted interval instead of the mean.

The design variables of every search and campaign are :data:`DESIGN_VARIABLES`
(``buffer``, ``anneal_temp_c``, ``test_temp_c``), bounded by a
:class:`~surrogate.design.DesignSpace`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    DEFAULT_C_RATE,
    DEFAULT_CYCLES,
    DEFAULT_PROTOCOL,
    PROTOCOL,
    RATE_RETENTION,
    TARGET_UNITS,
    TEST_TEMP_C,
    DesignSpace,
    canonical_protocol,
)
from surrogate.errors import InputError
from surrogate.laws import law_of, torch_model_to_contract
from surrogate.parameters import check_value
from surrogate.targets import get_target

DESIGN_VARIABLES: tuple[str, ...] = (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C)
"""What a search or campaign chooses; c_rate, cycles and protocol are fixed by the objective."""

OBJECTIVE_KINDS: dict[str, tuple[str, ...]] = {
    "conductivity": (CONDUCTIVITY,),
    "rate_retention": (RATE_RETENTION,),
    "capacity_retention": (CAPACITY_RETENTION,),
    "rate_x_capacity": (RATE_RETENTION, CAPACITY_RETENTION),
}
"""Objective kind → the targets whose product it maximises."""

STATISTICS: tuple[str, ...] = ("mean", "lower")


@dataclass(frozen=True)
class Objective:
    """A maximised target (or product of targets) at fixed conditions; see the module docstring for units."""

    kind: str
    c_rate: float = DEFAULT_C_RATE
    cycles: int = DEFAULT_CYCLES
    protocol: str = DEFAULT_PROTOCOL
    test_temp_c: float | None = None
    statistic: str = "mean"

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVE_KINDS:
            raise InputError(f"objective: unknown kind {self.kind!r}; allowed are {', '.join(OBJECTIVE_KINDS)}")
        if self.statistic not in STATISTICS:
            raise InputError(f"statistic: {self.statistic!r} is not one of {', '.join(STATISTICS)}")
        c_rate = check_value(C_RATE, self.c_rate)  # the declared bounds: (0, 1000] C, whole cycles in [1, 10⁶]
        cycles = check_value(CYCLES, self.cycles)
        object.__setattr__(self, "c_rate", c_rate)
        object.__setattr__(self, "cycles", int(cycles))
        object.__setattr__(self, "protocol", canonical_protocol(self.protocol))
        if self.test_temp_c is not None:
            temp = float(self.test_temp_c)
            if not np.isfinite(temp):
                raise InputError("test_temp_c: must be a finite temperature in °C")
            object.__setattr__(self, "test_temp_c", temp)

    # ------------------------------------------------------------ description
    @property
    def targets(self) -> tuple[str, ...]:
        """The targets whose product is maximised."""
        return OBJECTIVE_KINDS[self.kind]

    @property
    def name(self) -> str:
        """A short unique label, e.g. ``rate_retention@10C*capacity_retention@300cyc``."""
        conditions = self.conditions()
        parts = [get_target(target).tag(conditions) for target in self.targets]
        label = "*".join(parts)
        if self.test_temp_c is not None:
            label += f"@{self.test_temp_c:g}°C"
        return label + ("[lower]" if self.statistic == "lower" else "")

    @property
    def unit(self) -> str:
        """Unit of the objective value."""
        return " x ".join(TARGET_UNITS[t] for t in self.targets)

    @property
    def free_variables(self) -> tuple[str, ...]:
        """Design variables the optimiser chooses (``test_temp_c`` is dropped when the objective fixes it)."""
        return tuple(v for v in DESIGN_VARIABLES if not (v == TEST_TEMP_C and self.test_temp_c is not None))

    def conditions(self) -> dict[str, Any]:
        """The fixed measurement conditions: c_rate (C), cycles, protocol."""
        return {C_RATE: self.c_rate, CYCLES: self.cycles, PROTOCOL: self.protocol}

    def check_space(self, space: DesignSpace) -> None:
        """Raise :class:`InputError` when a fixed operating temperature lies outside ``space``."""
        if self.test_temp_c is not None:
            low, high = space.effective_test_temp_c
            if not low <= self.test_temp_c <= high:
                raise InputError(
                    f"test_temp_c: the objective's operating temperature {self.test_temp_c:g} °C is outside the "
                    f"space's [{low:g}, {high:g}] °C"
                )

    # ------------------------------------------------------------ evaluation
    def full_designs(self, designs: pd.DataFrame) -> pd.DataFrame:
        """Designs (buffer, anneal_temp_c[, test_temp_c]) completed with the objective's fixed conditions."""
        frame = designs.reset_index(drop=True).copy()
        if self.test_temp_c is not None:
            frame[TEST_TEMP_C] = self.test_temp_c
        for key, value in self.conditions().items():
            frame[key] = value
        return frame[[BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES, PROTOCOL]]

    def value(self, values: dict[str, Any]) -> np.ndarray:
        """The objective from per-target values (contract units): the product over :attr:`targets`."""
        result = np.ones_like(np.asarray(values[self.targets[0]], dtype=float))
        for target in self.targets:
            result = result * np.asarray(values[target], dtype=float)
        return result

    def score(self, predictions: pd.DataFrame) -> np.ndarray:
        """The optimised number per design from ``Surrogate.predict`` output (mean or lower bound)."""
        return self.value({t: predictions[f"{t}_{self.statistic}"].to_numpy() for t in self.targets})

    def measured_at_conditions(self, observed: pd.DataFrame, tolerance_c: float) -> pd.DataFrame:
        """Rows of ``observed`` measured at the objective's conditions, with every target of it present.

        A row matches when each target's declared conditions (``Target.conditions``: the C-rate, the cycle
        count) equal the objective's, its protocol is the objective's for a target that depends on the
        protocol, and, when the objective fixes the operating temperature, ``test_temp_c`` is within
        ``tolerance_c`` °C of it.
        """
        if observed.empty or any(t not in observed for t in self.targets):
            return observed.iloc[:0]
        keep = observed[list(self.targets)].notna().all(axis=1)
        conditions = self.conditions()
        for target in self.targets:
            declared = get_target(target)
            for condition in declared.conditions:
                keep &= np.isclose(observed[condition.column].astype(float), float(conditions[condition.column]))
            if PROTOCOL in declared.inputs:
                keep &= observed[PROTOCOL] == self.protocol
        if self.test_temp_c is not None:
            keep &= np.abs(observed[TEST_TEMP_C].astype(float) - self.test_temp_c) <= tolerance_c
        return observed[keep]

    def to_botorch(self) -> Any:
        """The objective as a BoTorch Monte-Carlo objective (``GenericMCObjective``), as BayBE's ``to_botorch``.

        It takes posterior samples of shape (..., number of targets), each target in its law's modelling
        space (:attr:`surrogate.laws.Law.model_space`), and returns the objective per sample: the product of
        the targets in contract units. A single log10-modelled target (conductivity) stays in log10
        (monotone, so the same best design, and improvements stay of order 1).
        """
        from botorch.acquisition.objective import GenericMCObjective

        spaces = [law_of(target).model_space for target in self.targets]
        if spaces == ["log10"]:
            return GenericMCObjective(lambda samples, X=None: samples[..., 0])

        def value(samples: Any, X: Any = None) -> Any:
            out = torch_model_to_contract(spaces[0], samples[..., 0])
            for i, space in enumerate(spaces[1:], start=1):
                out = out * torch_model_to_contract(space, samples[..., i])
            return out

        return GenericMCObjective(value)

    def interval(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """Objective mean, lower and upper per design (products of the targets' columns; targets are positive)."""
        return pd.DataFrame(
            {
                stat: self.value({t: predictions[f"{t}_{stat}"].to_numpy() for t in self.targets})
                for stat in ("mean", "lower", "upper")
            }
        )

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (round-trips through :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Objective:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown objective keys {unknown}: allowed are {sorted(known)}")
        return cls(**data)


def pareto_objectives(statistic: str = "mean") -> list[Objective]:
    """The default multi-objective set: conductivity, rate retention at 30 C, capacity retention after 100 cycles."""
    return [
        Objective("conductivity", statistic=statistic),
        Objective("rate_retention", c_rate=DEFAULT_C_RATE, statistic=statistic),
        Objective("capacity_retention", cycles=DEFAULT_CYCLES, statistic=statistic),
    ]
