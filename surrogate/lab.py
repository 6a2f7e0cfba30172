"""The virtual lab: the paper-calibrated physics of :mod:`surrogate.physics` plus seeded, realistic noise.

It is the ground truth for benchmarks and the generator of the embedded data
set. It emulates; it does not measure: anything it returns is a model of the
paper's system, not a measurement.

Noise, per quantity (all multiplicative effects are log-normal):

* conductivity — each film has its own geometric error (thickness and area
  enter σ = t / (R·A) and are known to about ±5%: ln-sd 0.05, shared by every
  temperature the film is measured at) and each EIS fit its own repeatability
  (ln-sd 0.03, typical of fitting an R‖CPE arc). Together ≈ 6% per point.
* rate retention — each cell's characteristic rate varies from cell to cell
  (ln-sd 0.05, interface quality) and each capacity reading carries an
  absolute error of 0.5 percentage points. 0.1 C is the reference: exactly 1.
* capacity retention — each cell's fade rate varies (ln-sd 0.05 on the log
  loss) and each capacity reading carries 0.4 percentage points. Cycle 1 is
  the reference: exactly 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from surrogate import physics
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
    REFERENCE_C_RATE,
    REFERENCE_CYCLE,
    TEST_TEMP_C,
    canonical_buffer,
    canonical_protocol,
)
from surrogate.errors import InputError


@dataclass(frozen=True)
class NoiseLevels:
    """Standard deviations of the lab's noise (see the module docstring for the reasons)."""

    film_log_sd: float = 0.05
    eis_log_sd: float = 0.03
    cell_rate_log_sd: float = 0.05
    rate_reading_sd: float = 0.005
    cell_fade_log_sd: float = 0.05
    capacity_reading_sd: float = 0.004


class VirtualLab:
    """Emulates the paper's experiments: ``measure`` one design, or ``measure_frame`` many.

    ``seed`` makes every result reproducible; ``noise=False`` returns the
    noise-free physics.
    """

    def __init__(
        self,
        seed: int | None = 0,
        noise: bool = True,
        noise_levels: NoiseLevels | None = None,
        params: physics.LabParameters = physics.PARAMETERS,
    ) -> None:
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise InputError(f"seed: {seed!r} must be a whole number >= 0 (or None for fresh noise)")
        self.seed = seed
        self.noise = noise
        self.noise_levels = noise_levels or NoiseLevels()
        self.params = params
        self.rng = np.random.default_rng(seed)

    # ---------------------------------------------------------------- truth
    def truth(
        self,
        buffer: str,
        anneal_temp_c: float,
        test_temp_c: float,
        c_rate: float = DEFAULT_C_RATE,
        cycles: int = DEFAULT_CYCLES,
        protocol: str = DEFAULT_PROTOCOL,
    ) -> dict[str, float]:
        """Noise-free values of the three targets for one design (validated)."""
        buffer, protocol = self._check(buffer, anneal_temp_c, test_temp_c, c_rate, cycles, protocol)
        p = self.params
        return {
            CONDUCTIVITY: float(physics.conductivity_s_cm(anneal_temp_c, test_temp_c, p)),
            RATE_RETENTION: float(physics.rate_retention(buffer, anneal_temp_c, test_temp_c, c_rate, p)),
            CAPACITY_RETENTION: float(physics.capacity_retention(buffer, test_temp_c, cycles, protocol, p)),
        }

    def measure(
        self,
        buffer: str,
        anneal_temp_c: float,
        test_temp_c: float,
        c_rate: float = DEFAULT_C_RATE,
        cycles: int = DEFAULT_CYCLES,
        protocol: str = DEFAULT_PROTOCOL,
    ) -> dict[str, float]:
        """One emulated measurement of all three targets: a fresh film and a fresh cell, with noise."""
        buffer, protocol = self._check(buffer, anneal_temp_c, test_temp_c, c_rate, cycles, protocol)
        frame = pd.DataFrame(
            [
                {
                    BUFFER: buffer,
                    ANNEAL_TEMP_C: anneal_temp_c,
                    TEST_TEMP_C: test_temp_c,
                    C_RATE: c_rate,
                    CYCLES: cycles,
                    PROTOCOL: protocol,
                }
            ]
        )
        row = self.measure_frame(frame).iloc[0]
        return {name: float(row[name]) for name in (CONDUCTIVITY, RATE_RETENTION, CAPACITY_RETENTION)}

    # ---------------------------------------------------------------- vectorised
    def measure_frame(self, designs: pd.DataFrame, sample_ids: pd.Series | None = None) -> pd.DataFrame:
        """Measure many designs; returns ``designs`` with the three target columns added.

        Rows sharing a ``sample_id`` share the film / cell effects (the same film
        measured at several temperatures, the same cell at several rates or
        cycles). Without ``sample_ids`` every row is its own film and cell.
        Expects canonical, validated designs (the ones :meth:`measure` builds or
        :mod:`surrogate.dataset` writes).
        """
        p = self.params
        out = designs.copy()
        buffer = out[BUFFER].to_numpy()
        anneal = out[ANNEAL_TEMP_C].to_numpy(float)
        temp = out[TEST_TEMP_C].to_numpy(float)
        c_rate = out[C_RATE].to_numpy(float)
        cycles = out[CYCLES].to_numpy(float)
        protocol = out[PROTOCOL].to_numpy()
        sigma = physics.conductivity_s_cm(anneal, temp, p)
        c_star = physics.characteristic_rate_c(buffer, anneal, temp, p)
        capacity = physics.capacity_retention(buffer, temp, cycles, protocol, p)
        if self.noise:
            n = len(out)
            levels = self.noise_levels
            groups = np.arange(n) if sample_ids is None else pd.factorize(sample_ids)[0]
            n_groups = groups.max() + 1 if n else 0
            film = self.rng.normal(0.0, levels.film_log_sd, n_groups)[groups]
            cell_rate = self.rng.normal(0.0, levels.cell_rate_log_sd, n_groups)[groups]
            cell_fade = self.rng.normal(0.0, levels.cell_fade_log_sd, n_groups)[groups]
            sigma = sigma * np.exp(film + self.rng.normal(0.0, levels.eis_log_sd, n))
            c_star = c_star * np.exp(cell_rate)
            capacity = np.exp(np.log(capacity) * np.exp(cell_fade))
            rate_noise = self.rng.normal(0.0, levels.rate_reading_sd, n)
            capacity_noise = self.rng.normal(0.0, levels.capacity_reading_sd, n)
        else:
            rate_noise = capacity_noise = 0.0
        rate = physics.relative_rate_retention(c_rate, c_star)
        rate = np.where(c_rate <= REFERENCE_C_RATE, 1.0, np.clip(rate + rate_noise, 0.0, 1.0))
        capacity = np.where(cycles <= REFERENCE_CYCLE, 1.0, np.clip(capacity + capacity_noise, 0.0, 1.0))
        out[CONDUCTIVITY] = sigma
        out[RATE_RETENTION] = rate
        out[CAPACITY_RETENTION] = capacity
        return out

    # ---------------------------------------------------------------- input
    @staticmethod
    def _check(
        buffer: str, anneal_temp_c: float, test_temp_c: float, c_rate: float, cycles: float, protocol: str
    ) -> tuple[str, str]:
        problems = []
        try:
            buffer = canonical_buffer(buffer)
        except InputError as exc:
            problems.append(f"buffer: {exc}")
        try:
            protocol = canonical_protocol(protocol)
        except InputError as exc:
            problems.append(f"protocol: {exc}")
        try:
            values = [float(v) for v in (anneal_temp_c, test_temp_c, c_rate, cycles)]
        except (TypeError, ValueError):
            raise InputError("anneal_temp_c, test_temp_c, c_rate and cycles must be numbers") from None
        if float(cycles) != int(cycles):
            problems.append(f"cycles: {cycles} is not a whole number")
        if not problems and buffer not in physics.lab_buffers():
            problems.append(
                f"buffer: the virtual lab has no numbers for {buffer!r}; give 'lab: {{rate_30c, retention_100}}' "
                "in its materials entry to emulate it"
            )
        problems += physics.lab_domain_problems(*values, protocol if not problems else "standard")
        if problems:
            raise InputError("; ".join(problems))
        return buffer, protocol
