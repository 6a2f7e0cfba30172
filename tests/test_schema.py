"""The measurement-table schema (surrogate.schema) and the ``surrogate data`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import surrogate.cli as cli
from surrogate.design import BUFFERS, TARGETS
from surrogate.errors import DataValidationError, InputError
from surrogate.schema import (
    COLUMNS,
    REQUIRED_COLUMNS,
    TARGET_COLUMNS,
    load_measurements,
    validate_frame,
    validation_report,
)

DATA = Path(__file__).parent / "data"
BAD = DATA / "bad"
GOOD = DATA / "good"
GOOD_FILE = GOOD / "measurements.csv"

REPORT_KEYS = {"ok", "source", "rows", "counts", "buffers", "materials", "ranges", "problems", "warnings"}

# file, error class, distinctive text, 1-based data row (None: a whole-file problem)
BAD_CASES = [
    ("unknown_buffer.csv", DataValidationError, "unknown buffer 'SiO3'", 2),
    ("missing_columns.csv", DataValidationError, "required column 'anneal_temp_c'", None),
    ("no_target_column.csv", DataValidationError, "no target column", None),
    ("non_numeric.csv", DataValidationError, "not a number: 'room'", 2),
    ("nan_required.csv", DataValidationError, "missing value (blank or NaN) in required column 'anneal_temp_c'", 2),
    ("infinite.csv", DataValidationError, "infinite value", 1),
    ("negative_conductivity.csv", DataValidationError, "negative conductivity", 3),
    ("zero_conductivity.csv", DataValidationError, "zero conductivity", 1),
    ("retention_percent.csv", DataValidationError, "76 looks like a percentage; give 0.76", 2),
    ("retention_negative.csv", DataValidationError, "negative retention", 1),
    ("kelvin_test_temp.csv", DataValidationError, "looks like kelvin; did you mean 25 °C?", 1),
    ("kelvin_anneal_temp.csv", DataValidationError, "673.15 looks like kelvin; did you mean 400 °C?", 2),
    ("impossible_temperature.csv", DataValidationError, "below absolute zero", 1),
    ("implausible_test_temp.csv", DataValidationError, "outside any plausible operating temperature", 1),
    ("implausible_anneal.csv", DataValidationError, "not a plausible anneal temperature", 1),
    ("missing_c_rate.csv", DataValidationError, "c_rate is required on rows with rate_retention", 2),
    ("bad_c_rate.csv", DataValidationError, "c_rate must be > 0", 1),
    ("bad_cycles.csv", DataValidationError, "cycles must be a whole number", 2),
    ("missing_cycles.csv", DataValidationError, "cycles is required on rows with capacity_retention", 1),
    ("duplicate_rows.csv", DataValidationError, "exact duplicate of row 1", 3),
    ("unknown_protocol.csv", DataValidationError, "unknown protocol 'fast'", 1),
    ("no_target_value.csv", DataValidationError, "no target value", 2),
    ("too_many_values.csv", DataValidationError, "line 2: 5 values but the header has 4 columns", 1),
    ("short_row.csv", DataValidationError, "line 3: 3 values but the header has 5 columns", 2),
    ("line_break_in_value.csv", DataValidationError, "line 2: a quoted value runs over lines 2-3", 1),
    ("unclosed_quote.csv", InputError, "malformed CSV from line 4", None),
    ("semicolon.csv", DataValidationError, "semicolon-separated", None),
    ("header_only.csv", DataValidationError, "no data rows", None),
    ("empty.csv", DataValidationError, "empty", None),
    ("garbled.csv", InputError, "not a CSV text file", None),
    ("garbled.parquet", InputError, "not a readable Parquet file", None),
    ("not_utf8.csv", InputError, "cannot be read as UTF-8", None),
    ("unsupported_suffix.json", InputError, "unsupported file type '.json'", None),
]


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the real ``surrogate`` entry point with only the ``data`` group registered."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("data",))
    return cli.main(argv)


# ----------------------------------------------------------------- bad files
def test_corpus_covers_every_bad_file() -> None:
    assert {case[0] for case in BAD_CASES} == {p.name for p in BAD.iterdir()} - {"many_problems.csv"}


@pytest.mark.parametrize(("name", "error", "text", "row"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_file_is_rejected_with_its_reason(name: str, error: type[Exception], text: str, row: int | None) -> None:
    with pytest.raises(error) as info:
        load_measurements(BAD / name)
    assert text in str(info.value)
    if error is DataValidationError:
        assert info.type is DataValidationError
        matching = [p for p in info.value.problems if text in p.reason]
        assert matching, info.value.problems
        assert matching[0].row == row
        if row is not None:
            assert f"row {row}" in str(info.value)
    else:
        assert info.type is InputError  # a readable message, not a raw pandas / pyarrow exception


@pytest.mark.parametrize(("name", "error", "text", "row"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_cli_validate_bad_file_exits_2_with_reason_on_stderr(
    name: str,
    error: type[Exception],
    text: str,
    row: int | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli(["data", "validate", str(BAD / name)], monkeypatch) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert text in err
    if row is not None:
        assert f"row {row}" in err


@pytest.mark.parametrize("name", ["retention_percent.csv", "garbled.csv", "missing_columns.csv"])
def test_cli_validate_bad_file_json(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["data", "validate", str(BAD / name), "--json"], monkeypatch) == 2
    out, _ = capsys.readouterr()
    report = json.loads(out)
    assert set(report) == REPORT_KEYS
    assert report["ok"] is False
    assert report["problems"]
    assert set(report["problems"][0]) == {"row", "column", "reason"}


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(DataValidationError) as info:
        load_measurements(BAD / "many_problems.csv")
    found = {(p.row, p.column) for p in info.value.problems}
    assert found == {
        (2, "buffer"),
        (3, "anneal_temp_c"),
        (4, "test_temp_c"),
        (4, "conductivity_s_cm"),
        (5, "rate_retention"),
        (5, "c_rate"),
        (6, "cycles"),
        (6, "protocol"),
        (7, None),
    }
    assert len(info.value.problems) == 9
    assert "9 problem(s)" in str(info.value)
    report = validation_report(BAD / "many_problems.csv")
    assert report["ok"] is False and len(report["problems"]) == 9 and report["rows"] == 7


def test_missing_file_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_measurements(tmp_path / "nowhere.csv")
    assert run_cli(["data", "validate", str(tmp_path / "nowhere.csv")], monkeypatch) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no such file" in err


def test_missing_condition_column_is_one_problem() -> None:
    frame = pd.DataFrame(
        {"buffer": ["sio2"] * 3, "anneal_temp_c": [400] * 3, "test_temp_c": [25, 40, 60], "rate_retention": [0.5] * 3}
    )
    with pytest.raises(DataValidationError) as info:
        validate_frame(frame)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].column == "c_rate" and "rows 1, 2, 3" in info.value.problems[0].reason


def test_retention_slightly_above_one_is_not_called_a_percentage() -> None:
    frame = pd.DataFrame({"buffer": ["sio2"], "anneal_temp_c": [400], "test_temp_c": [25], "cycles": [1]})
    with pytest.raises(DataValidationError, match="above 1") as info:
        validate_frame(frame.assign(capacity_retention=[1.02]))
    assert "percentage" not in str(info.value)


# ---------------------------------------------------------------- good files
@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("SiO₂", "sio2"),
        ("SiO2", "sio2"),
        ("LiPON", "lipon"),
        ("LLTO/NCM", "llto_ncm"),
        ("bare", "none"),
        ("Reference", "none"),
        (" none ", "none"),
    ],
)
def test_buffer_aliases_map_to_canonical_ids(alias: str, canonical: str) -> None:
    frame = pd.DataFrame(
        {"buffer": [alias], "anneal_temp_c": [25.0], "test_temp_c": [25.0], "conductivity_s_cm": [1e-6]}
    )
    assert validate_frame(frame)["buffer"].tolist() == [canonical]


def test_good_file_loads_with_canonical_dtypes() -> None:
    frame = load_measurements(GOOD_FILE)
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 8
    assert set(frame["buffer"]) <= set(BUFFERS)
    assert frame["buffer"].tolist()[:7] == ["none", "none", "none", "sio2", "llto_ncm", "none", "sio2"]
    assert frame["protocol"].tolist() == ["standard"] * 6 + ["long", "standard"]
    for name in ("anneal_temp_c", "test_temp_c", "c_rate", *TARGET_COLUMNS):
        assert frame[name].dtype == np.float64, name
    assert frame["cycles"].dtype == "Int64"
    assert frame["cycles"].dropna().tolist() == [100, 1000]
    assert pd.api.types.is_string_dtype(frame["buffer"]) and pd.api.types.is_string_dtype(frame["sample_id"])
    assert frame.index.equals(pd.RangeIndex(8))
    assert frame.attrs["warnings"] == []


def test_unknown_columns_are_kept_with_a_warning() -> None:
    frame = load_measurements(GOOD / "with_extra_column.csv")
    assert list(frame.columns) == [*COLUMNS, "operator"]
    assert frame["operator"].tolist() == ["jd", "jd"]
    assert frame["buffer"].tolist() == ["none", "sio2"]
    assert any("operator" in w for w in frame.attrs["warnings"])


def test_validate_frame_accepts_numbers_and_leaves_the_input_alone() -> None:
    raw = pd.DataFrame(
        {
            "capacity_retention": [0.8, 0.7],
            "buffer": ["SiO2", "LiPON"],
            "anneal_temp_c": [400, 25],
            "test_temp_c": [25.0, 60.0],
            "cycles": [100.0, 1000.0],
            "protocol": ["standard", np.nan],
        },
        index=[10, 20],
    )
    before = raw.copy()
    frame = validate_frame(raw)
    pd.testing.assert_frame_equal(raw, before)
    assert frame["cycles"].tolist() == [100, 1000]
    assert frame["protocol"].tolist() == ["standard", "standard"]
    assert list(frame.columns) == list(COLUMNS)


def test_parquet_round_trip(tmp_path: Path) -> None:
    frame = load_measurements(GOOD_FILE)
    path = tmp_path / "measurements.parquet"
    frame.to_parquet(path)
    again = load_measurements(path)
    pd.testing.assert_frame_equal(again, frame)


def test_constants() -> None:
    assert REQUIRED_COLUMNS == ("buffer", "anneal_temp_c", "test_temp_c")
    assert TARGET_COLUMNS == TARGETS
    assert set(REQUIRED_COLUMNS) | set(TARGET_COLUMNS) <= set(COLUMNS)


def test_validation_report_of_a_good_file() -> None:
    report = validation_report(GOOD_FILE)
    assert set(report) == REPORT_KEYS
    assert report["ok"] is True and report["rows"] == 8 and report["problems"] == []
    assert report["counts"] == {"conductivity_s_cm": 3, "rate_retention": 3, "capacity_retention": 2}
    assert report["buffers"] == ["none", "llto_ncm", "sio2", "lipon"]
    assert report["ranges"] == {"anneal_temp_c": [25.0, 400.0], "test_temp_c": [25.0, 80.0]}
    json.dumps(report, allow_nan=False)


# ---------------------------------------------------------------------- CLI
def test_cli_validate_good_file(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["data", "validate", str(GOOD_FILE)], monkeypatch) == 0
    out, err = capsys.readouterr()
    assert "valid, 8 row(s)" in out and "conductivity_s_cm (3)" in out and "25 to 80 °C" in out
    # 8 rows are too few to train anything: the warning gives train's reason ahead of it, the file is still valid
    assert "surrogate train will refuse this file" in err and "cross-validation needs ≥ 4" in err


def test_cli_validate_good_file_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["data", "validate", str(GOOD / "with_extra_column.csv"), "--json"], monkeypatch) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert set(report) == REPORT_KEYS and report["ok"] is True
    assert any("operator" in w for w in report["warnings"])
    assert err == ""


@pytest.mark.parametrize("argv", [["data", "--help"], ["data", "validate", "--help"], ["data", "build", "--help"]])
def test_cli_help(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(argv, monkeypatch) == 0
    assert len(capsys.readouterr().out) > 200


def test_cli_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "dataset.csv"
    assert run_cli(["data", "build", "--out", str(out_path), "--json"], monkeypatch) == 0
    result = json.loads(capsys.readouterr().out)
    assert Path(result["path"]) == out_path and out_path.exists()
    assert result["rows"] == len(load_measurements(out_path)) > 0
    assert run_cli(["data", "build", "--out", str(tmp_path / "dataset.txt")], monkeypatch) == 2
    out, err = capsys.readouterr()
    assert out == "" and ".csv" in err


# ---------------------------------------------------------------------- declared bounds (issues 9 and 11)
@pytest.mark.parametrize("cycles", ["-5", "1e20", "1" + "0" * 30, "1e400"])
def test_extreme_cycles_are_clear_problems_with_exit_2(
    cycles: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cycles.csv"
    path.write_text(f"buffer,anneal_temp_c,test_temp_c,cycles,capacity_retention\nsio2,300,25,{cycles},0.8\n")
    assert run_cli(["data", "validate", str(path)], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "row 1, column 'cycles'" in err and "Traceback" not in err
    assert ">= 1" in err or "[1, 1e+06] cycles" in err or "infinite" in err


def test_an_integer_kelvin_anneal_inside_the_bounds_is_a_warning_not_an_error() -> None:
    raw = pd.DataFrame(
        {"buffer": ["sio2"], "anneal_temp_c": ["573"], "test_temp_c": ["25"], "conductivity_s_cm": ["1e-5"]}
    )
    frame = validate_frame(raw)
    assert frame["anneal_temp_c"].tolist() == [573.0]
    (warning,) = frame.attrs["warnings"]
    assert "573 looks like kelvin; did you mean 300 °C?" in warning and "kept as °C" in warning
    raw["anneal_temp_c"] = ["1473"]  # 1,200 °C in kelvin: outside the film's range, so an error with the hint
    with pytest.raises(DataValidationError, match="1473 looks like kelvin; did you mean 1200 °C"):
        validate_frame(raw)


def test_one_validator_gives_the_same_message_on_every_path() -> None:
    from surrogate import parameters
    from surrogate.design import DesignSpace
    from surrogate.models.base import design_batch

    why = parameters.value_problem("c_rate", 5000.0)
    assert why == "5000 is outside the allowed range (0, 1000] C"
    with pytest.raises(InputError, match=r"c_rate: 5000 is outside the allowed range \(0, 1000\] C"):
        design_batch([{"buffer": "sio2", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 5000}])
    raw = pd.DataFrame(
        {"buffer": ["sio2"], "anneal_temp_c": [300], "test_temp_c": [25], "c_rate": [5000], "rate_retention": [0.2]}
    )
    with pytest.raises(DataValidationError, match=r"5000 is outside the allowed range \(0, 1000\] C"):
        validate_frame(raw)
    kelvin = parameters.value_problem("test_temp_c", 298.15)
    with pytest.raises(InputError, match="looks like kelvin"):
        DesignSpace(test_temp_c=(25.0, 298.15))
    assert "looks like kelvin; did you mean 25 °C?" in kelvin


def test_material_column_is_canonical_and_reported() -> None:
    raw = pd.DataFrame(
        {
            "buffer": ["none", "none"],
            "anneal_temp_c": [1350, 300],
            "test_temp_c": [25, 25],
            "conductivity_s_cm": [1e-3, 1e-5],
            "material": ["LLTO_pellet", None],
        }
    )
    frame = validate_frame(raw)
    assert frame["material"].tolist() == ["llto_bulk", "llto_film"]
    raw["material"] = ["graphite", None]
    with pytest.raises(DataValidationError, match="unknown material 'graphite'"):
        validate_frame(raw)
