"""Cycler files: readers for each format, capacity per cycle, retentions, flags, bad input (issue 16)."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from surrogate.errors import InputError
from surrogate.ingest.cycling import (
    CHARGE_AH,
    CYCLE,
    DISCHARGE_AH,
    RateStep,
    detect_format,
    parse_rate_steps,
    rate_retention,
    read_cycler,
    reduce_cycles,
)

RAW = Path(__file__).parent / "data" / "raw" / "cycling"
BA_HEADER = (
    "Date_Time,Test_Time (s),Cycle_Index,Current (A),Voltage (V),Charge_Capacity (Ah),Discharge_Capacity (Ah),"
    "Charge_Energy (Wh),Discharge_Energy (Wh),Environment_Temperature (C),Cell_Temperature (C)"
)


def _battery_archive(path: Path, discharge_ah: list[float], charge_ah: list[float] | None = None) -> Path:
    """A battery-archive time series: per cycle a charge then a discharge, counters reset every cycle."""
    charge_ah = charge_ah or [q * 1.01 for q in discharge_ah]
    lines = [BA_HEADER]
    t = 0.0
    for cycle, (qc, qd) in enumerate(zip(charge_ah, discharge_ah, strict=True), start=1):
        for fraction in (0.0, 0.5, 1.0):
            t += 10
            lines.append(f"2026-01-01 00:00:00,{t},{cycle},0.001,3.9,{qc * fraction:.9g},0,0,0,25,25")
        for fraction in (0.0, 0.5, 1.0):
            t += 10
            lines.append(f"2026-01-01 00:00:00,{t},{cycle},-0.001,3.6,{qc:.9g},{qd * fraction:.9g},0,0,25,25")
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ real files, one per format
def _neware_by_pandas(path: Path) -> pd.DataFrame:
    """Per-cycle capacities computed independently: per-step maxima of the step-resetting counters, summed."""
    frame = pd.read_csv(path, compression="gzip")
    step_runs = (frame["Step Index"].diff() != 0).cumsum()
    per_step = frame.groupby([frame["Cycle Index"], step_runs])[["Chg. Cap.(Ah)", "DChg. Cap.(Ah)"]].max()
    return per_step.groupby(level=0).sum()


def test_neware_csv_gives_capacity_per_cycle_and_retention():
    path = RAW / "neware_uio.csv.gz"
    assert detect_format(path) == "neware"
    table = reduce_cycles(read_cycler(path))
    expected = _neware_by_pandas(path)
    assert table.frame[CYCLE].tolist() == expected.index.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(table.frame[DISCHARGE_AH], expected["DChg. Cap.(Ah)"], rtol=1e-9)
    np.testing.assert_allclose(table.frame[CHARGE_AH], expected["Chg. Cap.(Ah)"], rtol=1e-9)
    first = expected["DChg. Cap.(Ah)"].iloc[0]
    assert table.reference_cycle == 1
    good = table.good()
    np.testing.assert_allclose(good["capacity_retention"], good[DISCHARGE_AH] / first)
    np.testing.assert_allclose(table.frame["coulombic_efficiency"], table.frame[DISCHARGE_AH] / table.frame[CHARGE_AH])


def test_maccor_text_export_splits_one_capacity_column_by_state():
    path = RAW / "PredictionDiagnostics_000109_tztest.010.gz"
    assert detect_format(path) == "maccor"
    table = reduce_cycles(read_cycler(path))
    raw = pd.read_csv(io.StringIO(gzip.decompress(path.read_bytes()).decode()), sep="\t", skiprows=1)
    discharge = raw[raw["State"] == "D"].groupby(["Cyc#", "Step"])["Amp-hr"].max().groupby(level=0).sum()
    assert table.frame[CYCLE].tolist() == [86, 87, 88, 89]
    np.testing.assert_allclose(table.frame[DISCHARGE_AH], discharge.to_numpy(), rtol=1e-9)
    assert table.reference_cycle == 86
    assert table.frame["capacity_retention"].iloc[1] == pytest.approx(discharge.iloc[1] / discharge.iloc[0])


def test_biologic_export_scales_mah_to_ah_and_flags_the_unfinished_last_cycle():
    path = RAW / "test_loopsnewoutput_MB_CE1_short10k.csv.gz"
    assert detect_format(path) == "biologic"
    data = read_cycler(path)
    table = reduce_cycles(data)
    raw = pd.read_csv(path, sep=";", compression="gzip", low_memory=False)
    runs = ((raw["cycle number"].diff() != 0) | (raw["Ns"].diff() != 0)).cumsum()
    rise = raw.groupby(runs)["Q discharge/mA.h"].max()  # the counter restarts from 0 every half cycle
    per_cycle = rise.groupby(raw.groupby(runs)["cycle number"].first()).sum() / 1000.0
    np.testing.assert_allclose(table.frame[DISCHARGE_AH], per_cycle.to_numpy(), rtol=1e-9)
    assert table.frame["flag"].tolist() == ["", "", "incomplete"]
    assert np.isnan(table.frame["capacity_retention"].iloc[2])


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("sample_data_arbin.csv", "arbin"),
        ("sample_data_maccor.csv", "maccor"),
        ("Sample_data_biologic_no_header.mpt", "biologic"),
    ],
)
def test_short_real_files_are_read_and_have_no_complete_cycle(name, fmt):
    data = read_cycler(RAW / name)
    assert data.format == fmt
    table = reduce_cycles(data)
    assert table.reference_cycle is None
    assert set(table.frame["flag"]) == {"incomplete"}
    assert (table.frame[CHARGE_AH] >= 0).all()


def test_arbin_csv_with_two_full_cycles_gives_capacity_per_cycle_and_retention():
    """battdat's Arbin example: counters cumulative within a cycle, reset at the next; the file starts mid-charge."""
    path = RAW / "arbin_example.csv.gz"
    assert detect_format(path) == "arbin"
    table = reduce_cycles(read_cycler(path))
    raw = pd.read_csv(path, compression="gzip")
    per_cycle = raw.groupby("Cycle_Index")[["Charge_Capacity", "Discharge_Capacity"]].max()
    assert table.frame[CYCLE].tolist() == per_cycle.index.tolist() == [1, 2]
    np.testing.assert_allclose(table.frame[CHARGE_AH], per_cycle["Charge_Capacity"], rtol=1e-9)
    np.testing.assert_allclose(table.frame[DISCHARGE_AH], per_cycle["Discharge_Capacity"], rtol=1e-9)
    assert (table.frame["flag"] == "").all() and table.reference_cycle == 1
    expected = per_cycle["Discharge_Capacity"].iloc[1] / per_cycle["Discharge_Capacity"].iloc[0]
    assert table.frame["capacity_retention"].iloc[1] == pytest.approx(expected, rel=1e-12)


def test_real_battery_archive_cycle_data_gives_retention_per_cycle():
    """batteryarchive.org's CALCE CX2-33 cycle data (9 cycles), as battdat ships it."""
    path = RAW / "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_cycle_data.csv"
    data = read_cycler(path)
    assert data.format == "battery_archive" and data.per_cycle
    table = reduce_cycles(data)
    raw = pd.read_csv(path)
    assert table.frame[CYCLE].tolist() == list(range(1, 10))
    np.testing.assert_allclose(table.frame[DISCHARGE_AH], raw["Discharge_Capacity (Ah)"])
    np.testing.assert_allclose(
        table.frame["capacity_retention"], raw["Discharge_Capacity (Ah)"] / raw["Discharge_Capacity (Ah)"].iloc[0]
    )
    # the first cycle's charge is partial (the cell was delivered part-charged): efficiency 2.1, not a flag
    assert table.frame["coulombic_efficiency"].iloc[0] == pytest.approx(1.292 / 0.604)
    assert (table.frame["flag"] == "").all()


def test_real_battery_archive_timeseries_is_read_and_its_unfinished_cycle_flagged():
    """The first 15 rows of the same cell's time series: rest, then the start of a charge."""
    path = RAW / "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_timeseries.csv"
    data = read_cycler(path)
    assert data.format == "battery_archive" and not data.per_cycle
    table = reduce_cycles(data)
    assert table.frame[CHARGE_AH].tolist() == [pytest.approx(0.059)]
    assert table.frame["flag"].tolist() == ["incomplete"] and table.reference_cycle is None


def test_biologic_mpr_through_galvani_gives_capacity_per_cycle():
    """A real EC-Lab GCPL .mpr (yadg's test data): four charge/discharge cycles of about 83 nAh."""
    from galvani import BioLogic

    path = RAW / "gcpl.issue_149.mpr"
    assert detect_format(path) == "biologic"
    data = read_cycler(path)
    assert data.format == "biologic"
    table = reduce_cycles(data)
    raw = BioLogic.MPRfile(str(path)).data
    q_mah = pd.Series(raw["Q charge/discharge/mA.h"])
    half_cycle = pd.Series(raw["half cycle"])
    discharge = (-q_mah[q_mah < 0]).groupby(half_cycle[q_mah < 0] // 2 + 1).max() / 1000.0  # one counter per half cycle
    assert table.frame[CYCLE].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(table.frame[DISCHARGE_AH], discharge.to_numpy(), rtol=1e-12)
    assert (table.frame["flag"] == "").all() and table.reference_cycle == 1
    np.testing.assert_allclose(table.frame["capacity_retention"], discharge.to_numpy() / discharge.iloc[0])
    assert table.frame["coulombic_efficiency"].between(0.99, 1.0).all()


def test_mpr_cycler_file_without_galvani_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "galvani", None)
    with pytest.raises(
        InputError, match=r'gcpl.issue_149.mpr: .*optional galvani package \(GPL-3\): pip install -e "\.\[mpr\]"'
    ):
        read_cycler(RAW / "gcpl.issue_149.mpr")


def test_a_spectrum_mpr_given_as_a_cycler_file_is_refused():
    with pytest.raises(InputError, match=r"peis.issue_149.mpr: a BioLogic .mpr file without the cycling columns.*EIS"):
        read_cycler(RAW.parent / "eis" / "peis.issue_149.mpr")


def test_arbin_file_without_cycle_numbers_is_an_error_naming_the_line():
    with pytest.raises(InputError, match=r"2017-05-09_test-TC-contact_CH33.csv: line 2: column 'cycle_index' is empty"):
        read_cycler(RAW / "2017-05-09_test-TC-contact_CH33.csv")


# ------------------------------------------------------------------ battery-archive and reduction
def test_battery_archive_timeseries_gives_exact_retention_and_efficiency(tmp_path):
    discharge = [1.0e-5, 0.99e-5, 0.97e-5, 0.96e-5]
    charge = [1.05e-5, 1.0e-5, 0.98e-5, 0.97e-5]
    path = _battery_archive(tmp_path / "cell_timeseries.csv", discharge, charge)
    data = read_cycler(path)
    assert data.format == "battery_archive" and not data.per_cycle
    table = reduce_cycles(data)
    np.testing.assert_allclose(table.frame["capacity_retention"], np.array(discharge) / discharge[0])
    np.testing.assert_allclose(table.frame["coulombic_efficiency"], np.array(discharge) / np.array(charge))
    against_third = reduce_cycles(data, reference_cycle=3)
    assert against_third.frame["capacity_retention"].iloc[2] == pytest.approx(1.0)


def test_battery_archive_cycle_data_file_is_one_row_per_cycle(tmp_path):
    header = (
        "Cycle_Index,Start_Time,End_Time,Test_Time (s),Min_Current (A),Max_Current (A),Min_Voltage (V),"
        "Max_Voltage (V),Charge_Capacity (Ah),Discharge_Capacity (Ah),Charge_Energy (Wh),Discharge_Energy (Wh)"
    )
    rows = [f"{c},a,b,{c * 100},-1,1,2.5,4.2,{1.1 - 0.01 * c},{1.0 - 0.01 * c},3,3" for c in range(1, 6)]
    path = tmp_path / "cell_cycle_data.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    data = read_cycler(path)
    assert data.per_cycle
    table = reduce_cycles(data)
    assert table.frame["capacity_retention"].iloc[-1] == pytest.approx(0.95 / 0.99)


def test_cycle_counter_reset_is_an_error_naming_file_and_line(tmp_path):
    path = _battery_archive(tmp_path / "joined.csv", [1e-5, 1e-5, 1e-5])
    lines = path.read_text().splitlines()
    lines += [line.replace(",3,", ",1,", 1) for line in lines[-6:]]  # the test restarted at cycle 1
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"joined.csv: line 20: the cycle counter resets from 3 to 1"):
        read_cycler(path)


def test_truncated_row_is_an_error_naming_the_line(tmp_path):
    path = _battery_archive(tmp_path / "cut.csv", [1e-5, 1e-5])
    path.write_text(path.read_text() + "2026-01-01 00:00:00,999,2,-0.001\n")
    with pytest.raises(InputError, match=r"cut.csv: line 14: 4 field\(s\).*truncated"):
        read_cycler(path)


def test_non_number_is_an_error_naming_line_and_column(tmp_path):
    path = _battery_archive(tmp_path / "bad.csv", [1e-5, 1e-5])
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[6] = "oops"  # Discharge_Capacity (Ah)
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"bad.csv: line 4: column 'discharge_capacity_ah': 'oops' is not a number"):
        read_cycler(path)


def test_unknown_binary_and_spectrum_files_are_refused(tmp_path):
    spectrum = tmp_path / "film.csv"
    spectrum.write_text("freq/Hz,Re(Z)/Ohm,-Im(Z)/Ohm\n1000,50,10\n")
    with pytest.raises(InputError, match=r"film.csv: not a cycler file.*impedance spectrum"):
        read_cycler(spectrum)
    binary = tmp_path / "cell.res"
    binary.write_bytes(b"\x00\x01\x00\x00Standard Jet DB\x00")
    with pytest.raises(InputError, match=r"cell.res: a binary file"):
        read_cycler(binary)
    damaged = tmp_path / "cell.mpr"
    damaged.write_bytes(b"BIO-LOGIC MODULAR FILE\x00\x00\x01")
    with pytest.raises(InputError, match=r"cell.mpr: galvani .* cannot read this .mpr file"):
        read_cycler(damaged)
    with pytest.raises(InputError, match=r"unknown cycler format 'gamry'"):
        read_cycler(RAW / "neware_uio.csv.gz", fmt="gamry")
    with pytest.raises(InputError, match=r"the manifest says format 'arbin'.*'neware'"):
        read_cycler(RAW / "neware_uio.csv.gz", fmt="arbin")


def test_outlier_and_counter_reset_cycles_are_flagged_and_left_out(tmp_path):
    discharge = list(np.linspace(1.0e-5, 0.95e-5, 20))
    discharge[10] = 0.5e-5  # a contact problem for one cycle
    path = _battery_archive(tmp_path / "cell.csv", discharge)
    lines = path.read_text().splitlines()
    # cycle 15: the discharge counter falls back within its step (a pause and resume)
    row = 1 + 14 * 6 + 5
    fields = lines[row].split(",")
    fields[6] = "1e-07"
    lines[row] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    table = reduce_cycles(read_cycler(path))
    flags = dict(zip(table.frame[CYCLE], table.frame["flag"], strict=True))
    assert flags[11] == "outlier"
    assert flags[15] == "counter_reset"
    assert sum(f != "" for f in flags.values()) == 2
    assert table.frame.loc[table.frame["flag"] != "", "capacity_retention"].isna().all()


def test_stated_reference_cycle_must_exist_and_be_usable(tmp_path):
    data = read_cycler(_battery_archive(tmp_path / "cell.csv", [1e-5, 1e-5]))
    with pytest.raises(InputError, match=r"reference cycle 9 is not in the file \(cycles 1 to 2\)"):
        reduce_cycles(data, reference_cycle=9)


# ------------------------------------------------------------------ rate steps
def test_rate_steps_are_parsed_and_need_a_tenth_c_step():
    assert parse_rate_steps("0.1:5, 1:5 30C:2") == (RateStep(0.1, 5), RateStep(1.0, 5), RateStep(30.0, 2))
    with pytest.raises(InputError, match=r"no 0.1 C step"):
        parse_rate_steps("1:5 5:5")
    with pytest.raises(InputError, match=r"'1-5' is not C-rate:cycles"):
        parse_rate_steps("0.1:5 1-5")


def test_rate_retention_is_each_step_over_the_tenth_c_step(tmp_path):
    retention = {0.1: 1.0, 1.0: 0.93, 10.0: 0.61}
    discharge = [1e-5 * r for r in retention.values() for _ in range(3)]
    table = reduce_cycles(read_cycler(_battery_archive(tmp_path / "rate.csv", discharge)))
    steps = parse_rate_steps("0.1:3 1:3 10:3")
    result = rate_retention(table, steps)
    np.testing.assert_allclose(result["rate_retention"], list(retention.values()))
    assert result["cycles_used"].tolist() == [3, 3, 3]
    with pytest.raises(InputError, match=r"rate.csv: the C-rate steps need cycles 1 to 12, the file has 1 to 9"):
        rate_retention(table, parse_rate_steps("0.1:3 1:3 10:6"))
