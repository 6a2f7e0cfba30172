"""Impedance spectra in, R_bulk and sigma out (issue 16, EIS part): readers, circuit fits, Kramers-Kronig."""

import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from impedance import preprocessing, validation

from surrogate.errors import DataValidationError, InputError
from surrogate.ingest.conductivity import film_conductivity
from surrogate.ingest.eis import (
    BLOCKING_CIRCUIT,
    PAPER_CIRCUIT,
    FitError,
    conductivity_from_fit,
    fit_spectrum,
    kramers_kronig,
    simulate_spectrum,
)
from surrogate.ingest.formats import MIN_POINTS, Spectrum, read_spectrum

RAW = Path(__file__).parent / "data" / "raw" / "eis"
FREQUENCY_HZ = np.logspace(7, 0, 71)  # 10 MHz to 1 Hz, 10 points per decade

FIXTURES = {
    # file: (format, points, impedance.py reader)
    "exampleDataBioLogic.mpt": ("biologic-mpt", 43, "biologic"),
    "exampleDataGamry.DTA": ("gamry-dta", 72, "gamry"),
    "exampleDataZPlot.z": ("zview-z", 21, "zplot"),
    "exampleData.csv": ("csv", 66, None),
}
"""The text fixtures (impedance.py's data); the .mpr fixture has tests of its own below."""


def _problem(exc: pytest.ExceptionInfo[DataValidationError]) -> tuple[int | None, str]:
    assert len(exc.value.problems) >= 1
    first = exc.value.problems[0]
    return first.row, first.reason


# ------------------------------------------------------------------ readers on real files
@pytest.mark.parametrize("name", list(FIXTURES))
def test_each_real_fixture_is_read_with_its_format(name):
    source_format, points, _ = FIXTURES[name]
    spectrum = read_spectrum(RAW / name)
    assert spectrum.source_format == source_format
    assert len(spectrum) == points
    assert spectrum.path.endswith(name)
    assert np.all(spectrum.frequency_hz > 0)
    assert np.all(np.isfinite(spectrum.impedance_ohm))


@pytest.mark.parametrize("name", list(FIXTURES))
def test_reader_agrees_with_impedance_py(name):
    """Our parser exists for its error messages; on good files it must give impedance.py's numbers."""
    instrument = FIXTURES[name][2]
    f_ref, z_ref = preprocessing.readFile(str(RAW / name), instrument=instrument)
    spectrum = read_spectrum(RAW / name)
    np.testing.assert_allclose(spectrum.frequency_hz, f_ref, rtol=1e-12)
    np.testing.assert_allclose(spectrum.impedance_ohm, z_ref, rtol=1e-12)


def test_format_comes_from_content_not_extension(tmp_path):
    renamed = tmp_path / "spectrum.csv"
    shutil.copy(RAW / "exampleDataBioLogic.mpt", renamed)
    assert read_spectrum(renamed).source_format == "biologic-mpt"
    gamry_as_txt = tmp_path / "sweep.txt"
    shutil.copy(RAW / "exampleDataGamry.DTA", gamry_as_txt)
    assert read_spectrum(gamry_as_txt).source_format == "gamry-dta"


def test_csv_with_named_columns_and_minus_imaginary(tmp_path):
    simulated = simulate_spectrum(PAPER_CIRCUIT, [50, 2000, 1e-9, 0.85], FREQUENCY_HZ[:20])
    lines = ["# written by a lab script", "Frequency_Hz, Z_real_ohm, -Z''"]
    lines += [
        f"{f},{zr},{-zi}"
        for f, zr, zi in zip(simulated.frequency_hz, simulated.z_real_ohm, simulated.z_imag_ohm, strict=True)
    ]
    path = tmp_path / "named.csv"
    path.write_text("\n".join(lines) + "\n")
    spectrum = read_spectrum(path)
    np.testing.assert_allclose(spectrum.z_imag_ohm, simulated.z_imag_ohm)
    assert np.all(spectrum.z_imag_ohm < 0)


def test_minimal_crlf_mpt_as_a_virtual_lab_would_write_it(tmp_path):
    simulated = simulate_spectrum(PAPER_CIRCUIT, [50, 2000, 1e-9, 0.85], FREQUENCY_HZ, 0.01, seed=1)
    rows = [
        f"{f:.7E}\t{zr:.7E}\t{-zi:.7E}"
        for f, zr, zi in zip(simulated.frequency_hz, simulated.z_real_ohm, simulated.z_imag_ohm, strict=True)
    ]
    text = "\r\n".join(["EC-Lab ASCII FILE", "Nb header lines : 3", "freq/Hz\tRe(Z)/Ohm\t-Im(Z)/Ohm\t", *rows]) + "\r\n"
    path = tmp_path / "lab.mpt"
    path.write_bytes(text.encode("latin-1"))
    spectrum = read_spectrum(path)
    assert spectrum.source_format == "biologic-mpt"
    np.testing.assert_allclose(spectrum.impedance_ohm, simulated.impedance_ohm, rtol=1e-6)
    f_ref, z_ref = preprocessing.readFile(str(path), instrument="biologic")
    np.testing.assert_allclose(spectrum.impedance_ohm, z_ref)


# ------------------------------------------------------------------ readers: bad input
def test_unknown_format_names_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Sample 7, annealed at 400 C\nlooked fine\n")
    with pytest.raises(DataValidationError) as exc:
        read_spectrum(path)
    assert str(path) in str(exc.value)
    assert "unknown format" in _problem(exc)[1]


def test_damaged_mpr_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "run.mpr"
    path.write_bytes(b"BIO-LOGIC MODULAR FILE\x1a\x00\x00\x00binary")
    with pytest.raises(InputError, match=r"run.mpr: galvani 0\.5\.0 cannot read this .mpr file .*export it as .mpt"):
        read_spectrum(path)
    truncated = tmp_path / "cut.mpr"
    truncated.write_bytes((RAW / MPR).read_bytes()[:5000])
    with pytest.raises(InputError, match="cut.mpr: galvani .* cannot read"):
        read_spectrum(truncated)


# ------------------------------------------------------------------ BioLogic .mpr through galvani (optional)
MPR = "peis.issue_149.mpr"


def test_mpr_spectrum_is_read_per_sweep_and_fits():
    """A real EC-Lab PEIS .mpr of four sweeps (yadg's test data): each sweep is read, and fits the paper's circuit."""
    from galvani import BioLogic

    with pytest.raises(DataValidationError, match=r"4 sweeps in one file \(cycle number 1 to 4\).*'sweep: N'"):
        read_spectrum(RAW / MPR)
    reference = BioLogic.MPRfile(str(RAW / MPR)).data
    for sweep in (1, 4):
        spectrum = read_spectrum(RAW / MPR, sweep=sweep)
        rows = reference[reference["cycle number"] == sweep]
        assert spectrum.source_format == "biologic-mpr" and len(spectrum) == 21
        np.testing.assert_allclose(spectrum.frequency_hz, rows["freq/Hz"])
        np.testing.assert_allclose(spectrum.z_imag_ohm, -rows["-Im(Z)/Ohm"])
        fit = fit_spectrum(spectrum)
        assert fit.converged
        assert fit.r_bulk_ohm == pytest.approx(87.5, rel=0.03)  # 89.1 and 86.4 ohm: the cell drifts
        assert fit.parameters["R0"] == pytest.approx(12.0, rel=0.03)
    with pytest.raises(DataValidationError, match=r"sweep 9: not in the file \(cycle number 1 to 4\)"):
        read_spectrum(RAW / MPR, sweep=9)


def test_mpr_without_galvani_names_the_file_and_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "galvani", None)  # as if the optional extra were not installed
    with pytest.raises(InputError) as exc:
        read_spectrum(RAW / MPR)
    message = str(exc.value)
    assert message.startswith(f"{MPR}: a BioLogic .mpr file")
    assert 'pip install -e ".[mpr]"' in message and "GPL-3" in message


def test_a_cycling_mpr_given_as_spectrum_is_refused():
    with pytest.raises(DataValidationError, match=r"a cycler file .*'Q charge/discharge/mA.h'.*give it as a cycling"):
        read_spectrum(RAW.parent / "cycling" / "gcpl.issue_149.mpr")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_spectrum(tmp_path / "absent.mpt")
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(DataValidationError, match="empty"):
        read_spectrum(tmp_path / "empty.csv")


def test_truncated_last_row_is_named(tmp_path):
    lines = (RAW / "exampleDataGamry.DTA").read_text(encoding="latin-1").splitlines()
    lines[-1] = "\t".join(lines[-1].split("\t")[:4])  # the copy stopped mid-row
    path = tmp_path / "cut.DTA"
    path.write_text("\n".join(lines), encoding="latin-1")
    with pytest.raises(DataValidationError) as exc:
        read_spectrum(path)
    row, reason = _problem(exc)
    assert row == len(lines)
    assert reason == "3 fields where the first data row has 11: the file looks truncated"


def test_truncated_header_is_named(tmp_path):
    lines = (RAW / "exampleDataBioLogic.mpt").read_text(encoding="latin-1").splitlines()[:30]
    path = tmp_path / "cut.mpt"
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(DataValidationError, match="declares 61 lines but the file has 30: truncated"):
        read_spectrum(path)


def test_cycler_file_given_as_spectrum_is_refused(tmp_path):
    arbin = tmp_path / "cell_timeseries.csv"
    arbin.write_text("Cycle_Index,Test_Time (s),Current (A),Voltage (V),Discharge_Capacity (Ah)\n1,0,0.1,3.2,0\n")
    with pytest.raises(DataValidationError) as exc:
        read_spectrum(arbin)
    row, reason = _problem(exc)
    assert row == 1
    assert "a cycler file" in reason and "Discharge_Capacity" in reason
    gcpl = tmp_path / "gcpl.mpt"
    header = "mode\tox/red\ttime/s\tcontrol/V/mA\tEcell/V\tQ charge/discharge/mA.h\tcycle number"
    gcpl.write_text(f"EC-Lab ASCII FILE\nNb header lines : 4\n\n{header}\n1\t1\t0\t0.1\t3.2\t0\t0\n")
    with pytest.raises(DataValidationError, match="a cycler file"):
        read_spectrum(gcpl)


def test_too_few_points(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("".join(f"{10.0**k},{100 + k},{-k - 1}\n" for k in range(5)))
    with pytest.raises(DataValidationError, match=f"only 5 data points; a spectrum needs at least {MIN_POINTS}"):
        read_spectrum(path)


def test_bad_cells_are_all_reported_with_their_line(tmp_path):
    rows = [f"{10.0**k},{100 + k},{-k - 1}" for k in range(12)]
    rows[2] = "100,abc,-3"
    rows[5] = "-5,105,-6"
    path = tmp_path / "bad.csv"
    path.write_text("f,z',z''\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataValidationError) as exc:
        read_spectrum(path)
    problems = exc.value.problems
    assert [(p.row, p.column) for p in problems] == [(4, "z'"), (7, "f")]
    assert "'abc' is not a finite number" in problems[0].reason
    assert "must be > 0" in problems[1].reason


# ------------------------------------------------------------------ fits on synthetic spectra
PAPER_CASES = [  # R0, R_bulk, Q, n: R_bulk over three decades
    (20.0, 150.0, 2e-8, 0.9),
    (50.0, 2000.0, 1e-9, 0.85),
    (10.0, 40_000.0, 3e-10, 0.8),
    (150.0, 90_000.0, 2e-10, 0.92),
]


@pytest.mark.parametrize("parameters", PAPER_CASES)
def test_paper_circuit_recovers_r_bulk_within_2_percent_at_1_percent_noise(parameters):
    spectrum = simulate_spectrum(PAPER_CIRCUIT, parameters, FREQUENCY_HZ, noise_fraction=0.01, seed=7)
    fit = fit_spectrum(spectrum)
    assert fit.converged and fit.circuit == PAPER_CIRCUIT
    assert fit.r_bulk_ohm == pytest.approx(parameters[1], rel=0.02)
    assert 0 < fit.r_bulk_stderr_ohm < 0.02 * parameters[1]
    assert set(fit.parameters) == {"R0", "R1", "CPE1_0", "CPE1_1"}
    assert fit.rmse_relative == pytest.approx(0.01, rel=0.3)  # the misfit is the noise
    assert fit.kk_residual_max < 0.05
    assert "impedance.py 1.7.1 CustomCircuit.fit of R0-p(R1,CPE1)" in fit.method


@pytest.mark.parametrize("parameters", [(20.0, 800.0, 2e-9, 0.9, 2e-6, 0.85), (40.0, 30_000.0, 5e-10, 0.85, 5e-6, 0.9)])
def test_blocking_circuit_recovers_r_bulk(parameters):
    spectrum = simulate_spectrum(BLOCKING_CIRCUIT, parameters, FREQUENCY_HZ, noise_fraction=0.01, seed=3)
    fit = fit_spectrum(spectrum, BLOCKING_CIRCUIT)
    assert fit.converged
    assert fit.r_bulk_ohm == pytest.approx(parameters[1], rel=0.02)
    assert set(fit.parameters) == {"R0", "R1", "CPE1_0", "CPE1_1", "CPE2_0", "CPE2_1"}


def test_noise_free_spectrum_is_recovered_exactly():
    truth = [50.0, 2000.0, 1e-9, 0.85]
    fit = fit_spectrum(simulate_spectrum(PAPER_CIRCUIT, truth, FREQUENCY_HZ))
    np.testing.assert_allclose(list(fit.parameters.values()), truth, rtol=1e-5)


def test_fitted_impedance_reproduces_the_spectrum():
    spectrum = simulate_spectrum(PAPER_CIRCUIT, [50.0, 2000.0, 1e-9, 0.85], FREQUENCY_HZ, 0.01, seed=1)
    fit = fit_spectrum(spectrum)
    residual = spectrum.impedance_ohm - fit.impedance_ohm(spectrum.frequency_hz)
    assert math.sqrt(np.mean(np.concatenate([residual.real, residual.imag]) ** 2)) == pytest.approx(fit.rmse_ohm)


# ------------------------------------------------------------------ fits: bad input
def test_a_cell_that_changed_mid_sweep_fails_kramers_kronig():
    f = FREQUENCY_HZ
    r_bulk = np.where(np.arange(f.size) < f.size // 2, 2000.0, 3000.0)  # R_bulk jumps halfway through the sweep
    z = np.array(
        [
            simulate_spectrum(PAPER_CIRCUIT, [50, r, 1e-9, 0.85], [fk]).impedance_ohm[0]
            for fk, r in zip(f, r_bulk, strict=True)
        ]
    )
    spectrum = Spectrum(f, z.real, z.imag, "csv", "drifted.csv")
    assert kramers_kronig(spectrum).violation() is not None
    with pytest.raises(FitError) as exc:
        fit_spectrum(spectrum)
    assert "drifted.csv" in str(exc.value)
    assert "fails the Kramers-Kronig (lin-KK) test" in exc.value.reason and " Hz " in exc.value.reason


def test_kk_shim_matches_linkk_and_linkk_still_has_the_numpy2_bug():
    """If impedance.py is upgraded and linKK works again, this test says so (then drop the shim)."""
    spectrum = simulate_spectrum(PAPER_CIRCUIT, [50.0, 2000.0, 1e-9, 0.85], FREQUENCY_HZ, 0.01, seed=2)
    f, z = spectrum.frequency_hz, spectrum.impedance_ohm
    ours = kramers_kronig(spectrum)
    with pytest.raises(NameError, match="np"):
        validation.linKK(f, z, c=None, max_M=ours.rc_elements, fit_type="complex")
    candidates = []
    for add_cap in (False, True):
        with np.printoptions(legacy="1.25"):  # linKK's own expression evaluates with numpy 1.x scalar printing
            _, _, _, real, imag = validation.linKK(
                f, z, c=None, max_M=ours.rc_elements, fit_type="complex", add_cap=add_cap
            )
        candidates.append((max(np.abs(real).max(), np.abs(imag).max()), real, imag))
    _, real, imag = min(candidates, key=lambda c: c[0])
    np.testing.assert_allclose(ours.residual_real, real, atol=1e-9)
    np.testing.assert_allclose(ours.residual_imag, imag, atol=1e-9)


def test_a_spectrum_without_an_arc_is_refused():
    rng = np.random.default_rng(0)
    f = FREQUENCY_HZ
    z = 100.0 * (1 + 0.01 * rng.standard_normal(f.size)) + 1j * rng.standard_normal(f.size)  # a resistor
    with pytest.raises(FitError, match="R_bulk = .* ohm is not resolved"):
        fit_spectrum(Spectrum(f, z.real, z.imag, "csv", "resistor.csv"))


def test_a_fit_that_does_not_converge_is_a_clear_error(monkeypatch):
    import surrogate.ingest.eis as eis

    def give_up(*args, **kwargs):
        raise ValueError("Residuals are not finite in the initial point.")

    monkeypatch.setattr(eis, "least_squares", give_up)
    spectrum = simulate_spectrum(PAPER_CIRCUIT, [50.0, 2000.0, 1e-9, 0.85], FREQUENCY_HZ, 0.01, seed=5, path="s.mpt")
    with pytest.raises(FitError) as exc:
        fit_spectrum(spectrum)
    assert str(exc.value).startswith("s.mpt: ")
    assert exc.value.reason == "the R0-p(R1,CPE1) fit did not converge from any of 6 starting points"


def test_fit_is_a_minimum_of_impedance_py_objective():
    """Cross-check with the library: CustomCircuit.fit (well scaled) started from our result finds no
    better point and the same R_bulk."""
    from impedance.models.circuits import CustomCircuit

    spectrum = simulate_spectrum(PAPER_CIRCUIT, [20.0, 30_000.0, 5e-10, 0.88], FREQUENCY_HZ, 0.01, seed=9)
    fit = fit_spectrum(spectrum)
    values = list(fit.parameters.values())
    library = CustomCircuit(PAPER_CIRCUIT, initial_guess=values)
    library.fit(spectrum.frequency_hz, spectrum.impedance_ohm, weight_by_modulus=True, x_scale=np.abs(values))

    def cost(parameters):
        z_fit = simulate_spectrum(PAPER_CIRCUIT, parameters, spectrum.frequency_hz).impedance_ohm
        return float(np.mean(np.abs((z_fit - spectrum.impedance_ohm) / np.abs(spectrum.impedance_ohm)) ** 2))

    assert cost(list(library.parameters_)) >= cost(values) * (1 - 1e-6)
    assert library.parameters_[1] == pytest.approx(fit.r_bulk_ohm, rel=1e-4)


def test_r_bulk_standard_error_matches_the_scatter_over_noise_draws():
    """The reported standard error is what sigma's uncertainty is built on: check it against 40 repeats."""
    truth = [20.0, 30_000.0, 5e-10, 0.88]
    fits = [fit_spectrum(simulate_spectrum(PAPER_CIRCUIT, truth, FREQUENCY_HZ, 0.01, seed=s)) for s in range(40)]
    scatter = np.std([fit.r_bulk_ohm for fit in fits], ddof=1)
    reported = np.mean([fit.r_bulk_stderr_ohm for fit in fits])
    assert 0.7 < reported / scatter < 1.5


def test_unsupported_circuit_is_an_input_error():
    spectrum = simulate_spectrum(PAPER_CIRCUIT, [50.0, 2000.0, 1e-9, 0.85], FREQUENCY_HZ)
    with pytest.raises(InputError, match=re.escape("circuit: 'R0-p(R1,C1)' is not supported")):
        fit_spectrum(spectrum, "R0-p(R1,C1)")


# ------------------------------------------------------------------ fits on the real fixtures
def test_biologic_fixture_fits_the_paper_circuit():
    fit = fit_spectrum(read_spectrum(RAW / "exampleDataBioLogic.mpt"))
    assert fit.converged
    assert fit.parameters["R0"] == pytest.approx(63.6, rel=0.02)
    assert fit.r_bulk_ohm == pytest.approx(48.2, rel=0.02)
    assert fit.rmse_relative < 0.03  # a noisy spectrum: about 2% scatter


def test_zplot_fixture_fits_the_paper_circuit():
    fit = fit_spectrum(read_spectrum(RAW / "exampleDataZPlot.z"))
    assert fit.converged
    assert fit.parameters["R0"] == pytest.approx(149.6, rel=0.02)
    assert fit.r_bulk_ohm == pytest.approx(501.2, rel=0.02)
    assert fit.rmse_relative < 0.02


def test_gamry_fixture_fails_kk_below_1_hz_and_fits_above():
    spectrum = read_spectrum(RAW / "exampleDataGamry.DTA")
    with pytest.raises(FitError, match="Kramers-Kronig"):
        fit_spectrum(spectrum)
    fit = fit_spectrum(spectrum.band(min_hz=1.0), BLOCKING_CIRCUIT)
    assert fit.converged
    assert fit.r_bulk_ohm == pytest.approx(4060, rel=0.03)


def test_csv_fixture_of_a_li_ion_cell_is_refused_by_the_one_arc_circuit():
    """A two-arc Li-ion spectrum: the paper's circuit lands outside physical bounds, and says so."""
    spectrum = read_spectrum(RAW / "exampleData.csv")
    with pytest.raises(FitError, match="exceeds 5%"):
        fit_spectrum(spectrum)
    with pytest.raises(FitError, match=r"CPE1_1 \(CPE exponent n\) = 0\.4\d\d is outside the physical range"):
        fit_spectrum(spectrum.band(min_hz=0.5, max_hz=800))
    loose = fit_spectrum(spectrum.band(min_hz=0.5, max_hz=800), strict=False)
    assert not loose.converged and loose.problems


def test_band_refuses_to_leave_too_few_points():
    with pytest.raises(InputError, match="only"):
        read_spectrum(RAW / "exampleDataZPlot.z").band(min_hz=100_000)


# ------------------------------------------------------------------ conductivity
def test_conductivity_from_fit_uses_r_bulk_and_geometry():
    spectrum = simulate_spectrum(PAPER_CIRCUIT, [50.0, 2000.0, 1e-9, 0.85], FREQUENCY_HZ, 0.01, seed=4)
    fit = fit_spectrum(spectrum)
    sigma = conductivity_from_fit(fit, (300.0, 400.0), diameter_mm=(3.0, 4.0))
    expected = film_conductivity(
        fit.r_bulk_ohm, fit.r_bulk_stderr_ohm, (300.0, 400.0), (math.pi * 9 / 4, math.pi * 16 / 4)
    )
    assert sigma == expected
    point = conductivity_from_fit(fit, 350.0, area_mm2=10.0)
    assert point.sigma_s_per_cm == pytest.approx(350e-7 / (fit.r_bulk_ohm * 0.1))


def test_conductivity_needs_thickness_and_one_area():
    fit = fit_spectrum(simulate_spectrum(PAPER_CIRCUIT, [50.0, 2000.0, 1e-9, 0.85], FREQUENCY_HZ))
    with pytest.raises(InputError, match="thickness_nm: missing"):
        conductivity_from_fit(fit, None, area_mm2=10.0)
    with pytest.raises(InputError, match="give exactly one"):
        conductivity_from_fit(fit, 350.0)
    with pytest.raises(InputError, match="give exactly one"):
        conductivity_from_fit(fit, 350.0, area_mm2=10.0, diameter_mm=3.5)
