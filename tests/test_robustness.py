"""Hostile and broken input (issue 18's findings 2, 9 and 10): strict CSV reading, wide headers, minor items.

Each test here failed on ddca1da: the reader padded short rows and let an unclosed quote swallow
the rest of the file, validation grew quadratically with the number of columns, formula strings
were accepted, a UTF-16 file was "binary data", a duplicate header printed a pandas warning and
Ctrl-C exited 1.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

import surrogate.cli as cli
from surrogate.campaign import Campaign
from surrogate.errors import DataValidationError, InputError
from surrogate.objectives import Objective
from surrogate.schema import load_measurements, validation_report

BAD = Path(__file__).parent / "data" / "bad"
GOOD_FILE = Path(__file__).parent / "data" / "good" / "measurements.csv"

OBJECTIVE = Objective("conductivity")
HEADER = "buffer,anneal_temp_c,test_temp_c,conductivity_s_cm,sample_id\n"


def _ten_rows() -> list[str]:
    buffers = ("none", "sio2", "lipon", "llto_ncm")
    return [f"{buffers[i % 4]},{300 + 10 * i},25,{1e-5 * (i + 1):.1e},F{i}\n" for i in range(10)]


# ------------------------------------------------------------ finding 2: CSV
def test_unclosed_quote_is_an_error_naming_its_line_not_three_valid_rows(monkeypatch, capsys) -> None:
    """The probe's file: 10 rows, a quote opened on line 4 and never closed."""
    report = validation_report(BAD / "unclosed_quote.csv")
    assert report["ok"] is False
    assert "line 4" in report["problems"][0]["reason"]
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("data",))
    assert cli.main(["data", "validate", str(BAD / "unclosed_quote.csv")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "line 4" in err and "valid" not in err.replace("not valid", "")


def test_short_row_is_never_padded(tmp_path: Path) -> None:
    rows = _ten_rows()
    rows[5] = "sio2,350,25\n"  # a short row: two values missing, line 7 of the file
    path = tmp_path / "short.csv"
    path.write_text(HEADER + "".join(rows))
    with pytest.raises(DataValidationError) as info:
        load_measurements(path)
    assert [(p.row, p.reason) for p in info.value.problems] == [(6, "line 7: 3 values but the header has 5 columns")]


def test_long_row_with_values_is_an_error_but_trailing_blank_cells_are_not(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(HEADER + "".join(_ten_rows()[:3]) + "none,500,25,2e-5,F9,oops\n")
    with pytest.raises(DataValidationError, match="line 5: 6 values but the header has 5 columns"):
        load_measurements(path)
    path.write_text(HEADER + "".join(r.rstrip("\n") + ",,\n" for r in _ten_rows()))
    assert len(load_measurements(path)) == 10


def test_a_quote_closed_rows_later_is_caught_too(tmp_path: Path) -> None:
    """Two stray quotes that pair up would merge lines 3-6 into one row of the right width."""
    rows = _ten_rows()
    rows[1] = rows[1].replace(",F1", ',"F1')
    rows[4] = rows[4].replace(",F4", ',F4"')
    path = tmp_path / "paired_quotes.csv"
    path.write_text(HEADER + "".join(rows))
    report = validation_report(path)
    assert report["ok"] is False
    assert "line 3: a quoted value runs over lines 3-6" in report["problems"][0]["reason"]


def test_campaign_observe_refuses_a_broken_file_and_writes_nothing(tmp_stores, tmp_path: Path, capsys) -> None:
    Campaign.create("strict-csv", OBJECTIVE)
    path = tmp_path / "observations.csv"
    path.write_text((BAD / "unclosed_quote.csv").read_text())
    assert cli.main(["campaign", "observe", "strict-csv", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 4" in err
    short = tmp_path / "short.csv"
    short.write_text(HEADER + "none,300,25,1e-5,F1\nsio2,350,25\n")
    assert cli.main(["campaign", "observe", "strict-csv", str(short), "--json"]) == 2
    assert "line 3: 3 values but the header has 5 columns" in capsys.readouterr().err
    assert Campaign.load("strict-csv").status()["observed"] == 0
    assert Campaign.load("strict-csv").study.get_trials() == []


# ---------------------------------------------------- finding 9: wide headers
def _wide_csv(path: Path, n_columns: int, n_rows: int = 5) -> Path:
    header = ["buffer", "anneal_temp_c", "test_temp_c", "conductivity_s_cm"] + [f"x{i}" for i in range(n_columns - 4)]
    lines = [",".join(header)]
    lines += [",".join(["sio2", "400", "25", f"{1e-5 * (r + 1):g}"] + ["1"] * (n_columns - 4)) for r in range(n_rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_table_above_the_column_limit_is_refused_with_the_limit(tmp_path: Path, monkeypatch, capsys) -> None:
    from surrogate.schema import MAX_COLUMNS, check_frame

    path = _wide_csv(tmp_path / "too_wide.csv", MAX_COLUMNS + 1)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("data",))
    assert cli.main(["data", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{MAX_COLUMNS + 1:,} columns" in err and f"at most {MAX_COLUMNS:,}" in err
    frame = pd.DataFrame({f"x{i}": [1] for i in range(MAX_COLUMNS + 1)})
    with pytest.raises(InputError, match=f"at most {MAX_COLUMNS:,}"):
        check_frame(frame, "wide frame")
    frame.to_parquet(tmp_path / "too_wide.parquet")
    assert f"at most {MAX_COLUMNS:,}" in validation_report(tmp_path / "too_wide.parquet")["problems"][0]["reason"]


def test_a_table_at_the_column_limit_validates_without_pandas_warnings(tmp_path: Path) -> None:
    from surrogate.schema import MAX_COLUMNS

    path = _wide_csv(tmp_path / "wide.csv", MAX_COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fragmented frame (column-by-column insertion) warns
        frame = load_measurements(path)
    assert frame.shape == (5, len(frame.columns)) and f"x{MAX_COLUMNS - 5}" in frame.columns
    assert frame[f"x{MAX_COLUMNS - 5}"].tolist() == ["1"] * 5


# ------------------------------------------------------ finding 10: minor
@pytest.mark.parametrize("column", ["sample_id", "source", "experiment", "operator"])
@pytest.mark.parametrize(
    "payload", ["=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "+cmd|' /C calc'!A0", " -2+3"]
)
def test_formula_strings_in_text_fields_are_refused(tmp_path: Path, column: str, payload: str) -> None:
    path = tmp_path / "formula.csv"
    pd.DataFrame(
        {"buffer": ["sio2", "none"], "anneal_temp_c": [400, 300], "test_temp_c": [25, 25]}
        | {"conductivity_s_cm": [1e-5, 2e-5], column: ["ok", payload]}
    ).to_csv(path, index=False)
    with pytest.raises(DataValidationError) as info:
        load_measurements(path)
    [problem] = info.value.problems
    assert (problem.row, problem.column) == (2, column)
    assert "spreadsheet runs as a formula" in problem.reason


def test_numbers_and_placeholders_in_text_fields_are_not_formulas(tmp_path: Path) -> None:
    path = tmp_path / "fine.csv"
    pd.DataFrame(
        {"buffer": ["sio2", "none", "lipon"], "anneal_temp_c": [400, 300, 25], "test_temp_c": [25, 25, 25]}
        | {"conductivity_s_cm": [1e-5, 2e-5, 3e-6], "sample_id": ["-5", "-", "F-3"], "note": ["+1.5", "a=b", "x"]}
    ).to_csv(path, index=False)
    assert load_measurements(path)["sample_id"].tolist() == ["-5", "-", "F-3"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_file_with_byte_order_mark_is_read(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / f"{encoding}.csv"
    text = GOOD_FILE.read_text(encoding="utf-8")
    data = text.encode(encoding)
    if encoding != "utf-16":  # the -le / -be codecs write no mark; Excel's "Unicode text" has one
        data = ("\ufeff" + text).encode(encoding)
    path.write_bytes(data)
    assert load_measurements(path).equals(load_measurements(GOOD_FILE))


def test_duplicate_header_is_a_problem_without_pandas_warnings(tmp_stores, tmp_path: Path, capsys) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("buffer,anneal_temp_c,test_temp_c,conductivity_s_cm,Conductivity_S_cm\nnone,25,25,2e-6,3e-6\n")
    Campaign.create("dup-header", OBJECTIVE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main(["campaign", "observe", "dup-header", str(path)]) == 2
        assert cli.main(["data", "validate", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert "column 'conductivity_s_cm' appears 2 times in the header" in err
    assert json.loads(out)["problems"][0]["column"] == "conductivity_s_cm"
    assert Campaign.load("dup-header").study.get_trials() == []


def test_ctrl_c_exits_130(monkeypatch, capsys) -> None:
    """SIGINT's conventional exit status (128 + 2), so shells and schedulers see an interruption."""
    import surrogate.cli.data as data_cli

    def interrupted(args) -> int:
        raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a command

    monkeypatch.setattr(data_cli, "_validate", interrupted)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("data",))
    assert cli.main(["data", "validate", str(GOOD_FILE)]) == 130
    assert "interrupted" in capsys.readouterr().err
