"""Ionic conductivity of a thin film from its fitted bulk resistance.

sigma = thickness / (R_bulk * area). The uncertainty combines, in quadrature, the relative standard
error of R_bulk (from the fit covariance) with the film thickness and electrode area ranges, each read
as a uniform distribution (standard deviation = half-width / sqrt(3)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Conductivity:
    """A conductivity in S/cm with its one-sigma standard uncertainty in S/cm."""

    sigma_s_per_cm: float
    sigma_std_s_per_cm: float


def _uniform_relative_std(low: float, high: float, name: str) -> tuple[float, float]:
    """Mid-point and relative standard deviation of a uniform range [low, high]; raises on a bad range."""
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high < low:
        raise ValueError(f"{name}: need 0 < low <= high, got [{low}, {high}]")
    mid = 0.5 * (low + high)
    return mid, (0.5 * (high - low) / math.sqrt(3.0)) / mid


def film_conductivity(
    r_bulk_ohm: float,
    r_bulk_std_ohm: float,
    thickness_nm: tuple[float, float],
    area_mm2: tuple[float, float],
) -> Conductivity:
    """Conductivity in S/cm from R_bulk (ohm, with standard error) and thickness (nm) / area (mm^2) ranges.

    Pass a single value as a range of width zero, e.g. ``(350.0, 350.0)``.
    """
    if not math.isfinite(r_bulk_ohm) or r_bulk_ohm <= 0:
        raise ValueError(f"r_bulk_ohm: must be a positive finite resistance, got {r_bulk_ohm}")
    if not math.isfinite(r_bulk_std_ohm) or r_bulk_std_ohm < 0:
        raise ValueError(f"r_bulk_std_ohm: must be finite and >= 0, got {r_bulk_std_ohm}")
    thickness_mid_nm, thickness_rel = _uniform_relative_std(*thickness_nm, name="thickness_nm")
    area_mid_mm2, area_rel = _uniform_relative_std(*area_mm2, name="area_mm2")
    thickness_cm = thickness_mid_nm * 1e-7
    area_cm2 = area_mid_mm2 * 1e-2
    sigma = thickness_cm / (r_bulk_ohm * area_cm2)
    relative = math.sqrt((r_bulk_std_ohm / r_bulk_ohm) ** 2 + thickness_rel**2 + area_rel**2)
    return Conductivity(sigma_s_per_cm=sigma, sigma_std_s_per_cm=sigma * relative)
