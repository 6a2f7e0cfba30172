"""sigma = thickness / (R_bulk * area) with propagated uncertainty (issue 16)."""

import math

import pytest

from surrogate.ingest.conductivity import film_conductivity


def test_point_values_give_sigma_and_only_fit_uncertainty():
    r_ohm, thickness_nm, area_mm2 = 2000.0, 350.0, math.pi * 1.75**2
    result = film_conductivity(r_ohm, 20.0, (thickness_nm, thickness_nm), (area_mm2, area_mm2))
    expected = (thickness_nm * 1e-7) / (r_ohm * area_mm2 * 1e-2)
    assert result.sigma_s_per_cm == pytest.approx(expected)
    assert result.sigma_std_s_per_cm == pytest.approx(expected * 0.01)


def test_ranges_widen_the_uncertainty():
    narrow = film_conductivity(2000.0, 20.0, (350.0, 350.0), (9.6, 9.6))
    wide = film_conductivity(2000.0, 20.0, (300.0, 400.0), (7.0, 12.2))
    assert wide.sigma_std_s_per_cm > narrow.sigma_std_s_per_cm


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0.0, 1.0, (350.0, 350.0), (9.6, 9.6)), "r_bulk_ohm"),
        ((100.0, -1.0, (350.0, 350.0), (9.6, 9.6)), "r_bulk_std_ohm"),
        ((100.0, 1.0, (400.0, 300.0), (9.6, 9.6)), "thickness_nm"),
        ((100.0, 1.0, (350.0, 350.0), (0.0, 9.6)), "area_mm2"),
    ],
)
def test_bad_inputs_name_the_field(args, field):
    with pytest.raises(ValueError, match=field):
        film_conductivity(*args)
