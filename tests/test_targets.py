"""Targets are declared once (surrogate.targets) and read everywhere; a new target is a declaration, not an edit.

The last tests follow the recipe of docs/targets.md at run time: an interfacial resistance in Ω·cm², declared
in the test, is validated, cross-validated, trained and predicted with no other change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from surrogate import targets
from surrogate.design import BUFFER, BUFFERS, CAPACITY_RETENTION, CONDUCTIVITY, RATE_RETENTION, TARGETS, TEST_TEMP_C
from surrogate.errors import InputError
from surrogate.models.base import FEATURES, TARGET_SPACES
from surrogate.physics import K_B_EV, ZERO_C_K
from surrogate.targets import Reference, SplitSpec, Target, TargetSpace, get_target

INTERFACIAL = "interfacial_resistance_ohm_cm2"


def test_the_papers_targets_are_declared_with_everything_the_project_asks() -> None:
    assert TARGETS == targets.PAPER_TARGETS == (CONDUCTIVITY, RATE_RETENTION, CAPACITY_RETENTION)
    for name in TARGETS:
        target = get_target(name)
        assert target.unit and target.description and target.space.name in ("log10", "logit")
        assert FEATURES[name] == target.inputs and TARGET_SPACES[name] is target.space
        assert target.physics_law and target.lab_law and target.cv_plan
        assert any(split.selects for split in target.cv_plan)
    assert get_target(RATE_RETENTION).reference == Reference(
        "c_rate", 0.1, get_target(RATE_RETENTION).reference.description
    )
    assert get_target(CONDUCTIVITY).reference is None
    assert [c.column for c in get_target(CAPACITY_RETENTION).conditions] == ["cycles"]


def test_an_unknown_target_is_an_error_everywhere_never_a_fall_through() -> None:
    from surrogate.evaluation import split_plans
    from surrogate.models.physics_baseline import PhysicsBaseline

    with pytest.raises(InputError, match="'impedance' is not a target; allowed are conductivity_s_cm"):
        get_target("impedance")
    with pytest.raises(InputError, match="is not a target"):
        split_plans(pd.DataFrame(), pd.DataFrame(), "impedance")
    with pytest.raises(InputError, match="is not a target"):
        PhysicsBaseline("impedance").fit(pd.DataFrame({"x": [1.0]}), np.array([1.0]))
    with pytest.raises(InputError, match="target space"):
        TargetSpace("sqrt", "√x")


def test_declarations_are_validated() -> None:
    with pytest.raises(InputError, match="a fraction is modelled in logit space"):
        Target("x", "-", "x", TargetSpace("log10", "x"), "fraction", (BUFFER,), (), "x", 0.1)
    with pytest.raises(InputError, match="unknown grouping"):
        Target(
            "x",
            "-",
            "x",
            TargetSpace("log10", "x"),
            "positive",
            (BUFFER,),
            (SplitSpec("s", "s", "random", True),),
            "x",
            0.1,
        )


def test_value_checks_come_from_the_declaration() -> None:
    assert "looks like a percentage" in get_target(RATE_RETENTION).value_problem(76.0)
    assert "must be > 0" in get_target(CONDUCTIVITY).value_problem(-1e-5)
    assert get_target(CAPACITY_RETENTION).value_problem(0.5) is None


def test_objective_names_come_from_the_declared_conditions() -> None:
    from surrogate.objectives import Objective

    assert Objective("rate_x_capacity", c_rate=10, cycles=300, protocol="long").name == (
        "rate_retention@10C*capacity_retention@300cyc,long"
    )
    with pytest.raises(InputError, match="cycles"):
        Objective("capacity_retention", cycles=10**30)


def test_interval_levels_have_one_declaration() -> None:
    from surrogate.evaluation import cross_validate
    from surrogate.models.base import interval_z

    for level in (0.3, 0.9999):
        with pytest.raises(InputError, match="from 0.5 to 0.999"):
            interval_z(level)
        with pytest.raises(InputError, match="from 0.5 to 0.999"):
            cross_validate("physics", CONDUCTIVITY, pd.DataFrame(), level=level)


# ------------------------------------------------------------------ a target added at run time (the recipe)
@pytest.fixture
def interfacial_target():
    """Interfacial resistance (Ω·cm²) of the cathode/electrolyte interface: declared here, removed afterwards."""
    declared = targets.register_target(
        Target(
            name=INTERFACIAL,
            unit="Ω·cm²",
            description="area-specific resistance of the cathode/electrolyte interface (EIS), at test_temp_c",
            space=TargetSpace("log10", "log10(R_int / Ω cm²)"),
            value_kind="positive",
            inputs=(BUFFER, TEST_TEMP_C),
            cv_plan=(
                SplitSpec("test_temp", "leave one test temperature out", "column", True, TEST_TEMP_C),
                SplitSpec("buffer", "leave one buffer out", "column", False, BUFFER),
            ),
            experiment="eis",
            prior_between_sample_sd=0.05,
            short_label="interfacial resistance",
        )
    )
    yield declared
    targets.unregister_target(INTERFACIAL)


def _interfacial_rows(seed: int = 0) -> pd.DataFrame:
    """Arrhenius interfacial resistances per buffer (0.3 eV), two cells per buffer, 5 temperatures, 5% noise."""
    rng = np.random.default_rng(seed)
    r25 = {"none": 800.0, "llto_ncm": 400.0, "sio2": 150.0, "lipon": 250.0}
    rows = []
    for buffer in BUFFERS:
        for cell in range(2):
            for temp in (25.0, 40.0, 60.0, 80.0, 100.0):
                arrhenius = np.exp(0.3 / K_B_EV * (1 / (temp + ZERO_C_K) - 1 / (25.0 + ZERO_C_K)))
                value = r25[buffer] * arrhenius * np.exp(rng.normal(0, 0.05))
                rows.append(
                    {
                        "buffer": buffer,
                        "anneal_temp_c": 300.0,
                        "test_temp_c": temp,
                        INTERFACIAL: value,
                        "sample_id": f"{buffer}-{cell}",
                    }
                )
    return pd.DataFrame(rows)


def test_a_target_declared_at_run_time_is_validated_by_the_schema(interfacial_target) -> None:
    from surrogate.schema import validate_frame

    frame = validate_frame(_interfacial_rows())
    assert frame[INTERFACIAL].notna().all() and frame[INTERFACIAL].dtype == "float64"
    bad = _interfacial_rows().assign(**{INTERFACIAL: -5.0})
    with pytest.raises(InputError, match="must be > 0"):
        validate_frame(bad)


@pytest.mark.slow
def test_a_target_declared_at_run_time_trains_and_predicts(interfacial_target) -> None:
    from surrogate.evaluation import select_champions
    from surrogate.schema import validate_frame

    data = validate_frame(_interfacial_rows())
    selection = select_champions(data, families=["physics", "gp"], progress=False, n_jobs=1)
    entry = selection.report["targets"][INTERFACIAL]
    assert entry["champion"] == "gp"  # no physics law declared: the physics family says so and is skipped
    assert "no physics law is declared" in entry["skipped_families"]["physics"]
    out = selection.surrogate.predict([{"buffer": "sio2", "anneal_temp_c": 300, "test_temp_c": 50}])
    truth = 150.0 * np.exp(0.3 / K_B_EV * (1 / (50 + ZERO_C_K) - 1 / (25 + ZERO_C_K)))
    mean = out.loc[0, f"{INTERFACIAL}_mean"]
    assert abs(np.log10(mean / truth)) < 0.1
    assert out.loc[0, f"{INTERFACIAL}_lower"] < truth < out.loc[0, f"{INTERFACIAL}_upper"]
    assert not out.loc[0, "extrapolation"]


def test_registering_a_different_declaration_under_a_taken_name_is_refused(interfacial_target) -> None:
    with pytest.raises(InputError, match="already declared"):
        targets.register_target(
            Target(INTERFACIAL, "Ω", "x", TargetSpace("log10", "x"), "positive", (BUFFER,), (), "eis", 0.1)
        )
    with pytest.raises(InputError, match="cannot be removed"):
        targets.unregister_target(CONDUCTIVITY)


# ------------------------------------------------------------------ small data (issue 8 §5)
FOUR_TEMPERATURES = pd.DataFrame(
    {
        "buffer": ["none"] * 4,
        "anneal_temp_c": [300.0] * 4,
        "test_temp_c": [25.0, 50.0, 80.0, 120.0],
        "conductivity_s_cm": [9.6e-6, 2.0e-5, 4.1e-5, 7.8e-5],
        "sample_id": ["film-1"] * 4,
    }
)


def test_four_temperatures_give_ea_in_both_forms_with_selection_skipped() -> None:
    from surrogate.evaluation import select_champions
    from surrogate.schema import validate_frame

    selection = select_champions(validate_frame(FOUR_TEMPERATURES), progress=False, n_jobs=1)
    entry = selection.report["targets"][CONDUCTIVITY]
    assert entry["champion"] == "physics" and "model selection was skipped" in entry["selection_skipped"]
    (ea,) = entry["activation_energies"]
    assert ea["n_temperatures"] == 4
    sigma_t, sigma = ea["sigma_T_form"], ea["sigma_form"]
    # the two forms differ by about kT (≈ 0.03 eV); both have a standard error from 4 points
    assert 0.2 < sigma_t["ea_ev"] < 0.3 and 0.18 < sigma["ea_ev"] < 0.27
    assert 0.01 < sigma_t["ea_ev"] - sigma["ea_ev"] < 0.05
    assert 0 < sigma_t["ea_se_ev"] < 0.05 and 0 < sigma["ea_se_ev"] < 0.05
    out = selection.surrogate.predict([{"buffer": "none", "anneal_temp_c": 300, "test_temp_c": 60}])
    assert 2e-5 < out.loc[0, f"{CONDUCTIVITY}_mean"] < 4e-5


def test_validate_warns_ahead_of_training_when_cv_cannot_run(tmp_path, capsys) -> None:
    from surrogate.cli import main

    path = tmp_path / "four.csv"
    FOUR_TEMPERATURES.to_csv(path, index=False)
    assert main(["data", "validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert "too few groups for cross-validation" in err and "physics law will be fitted to all rows" in err


def test_fade_plan_has_forward_chaining_scored_on_later_cycles() -> None:
    from surrogate.dataset import load_default_dataset
    from surrogate.evaluation import cross_validate, split_plans, training_xy

    data = load_default_dataset()
    X, y, meta = training_xy(data, CAPACITY_RETENTION)
    forward = next(p for p in split_plans(X, meta, CAPACITY_RETENTION) if p.name == "forward")
    assert forward.folds is not None and forward.fold_names == ["cut 40%", "cut 60%", "cut 80%"]
    cycles = meta["cycles"].to_numpy(float)
    curves = (meta["buffer"] + meta["protocol"]).to_numpy()
    for train, test in forward.folds:
        for curve in np.unique(curves[test]):  # every scored cycle comes after every trained cycle of its curve
            assert cycles[test][curves[test] == curve].min() > cycles[train][curves[train] == curve].max()
    cv = cross_validate("physics", CAPACITY_RETENTION, data)
    forward, blocks = cv.splits["forward"], cv.splits["cycle_block"]
    overall = forward["overall"]
    assert overall["n"] > 0 and overall["rmse_natural"] > 0 and forward["selects"] and blocks["selects"]
    # the forecast enters selection: the score is the mean of the interpolation and the forecast RMSE
    assert cv.score == pytest.approx((overall["rmse_natural"] + blocks["overall"]["rmse_natural"]) / 2)
    # forecasts are reported per protocol: the SiO2 1000-cycle curve apart from the 100-cycle ones
    by_protocol = forward["by_protocol"]
    assert set(by_protocol) == {"long", "standard"}
    assert sum(part["n"] for part in by_protocol.values()) == overall["n"]
    assert by_protocol["long"]["n"] > 0 and by_protocol["long"]["rmse_units"] >= 0


@pytest.mark.slow
def test_train_registers_serves_and_describes_a_target_declared_at_run_time(
    interfacial_target, tmp_stores, tmp_path
) -> None:
    """`surrogate train` trains every declared target (not only the paper's three); predict and serve answer it."""
    from serving.schemas import Design
    from serving.service import designs_batch, predictions_json
    from surrogate.tracking import champion_info, load_champion
    from training.train import train

    examples = Path(__file__).resolve().parents[1] / "examples" / "measurements.csv"
    data = pd.concat([pd.read_csv(examples), _interfacial_rows().assign(experiment="eis")], ignore_index=True)
    path = tmp_path / "with_interfacial.csv"
    data.to_csv(path, index=False)
    result = train(path, families=["physics", "gp"], progress=False)
    assert INTERFACIAL in result.surrogate.targets and INTERFACIAL in result.to_dict()["targets"]
    assert champion_info()["families"][INTERFACIAL] == "gp"
    surrogate = load_champion()
    designs = designs_batch([Design(buffer="sio2", anneal_temp_c=300, test_temp_c=50)])
    columns = {c: surrogate.predict(designs.frame())[c].to_numpy() for c in surrogate.predict(designs.frame())}
    answer = predictions_json(designs, columns)[0]
    assert answer[INTERFACIAL]["lower"] < answer[INTERFACIAL]["mean"] < answer[INTERFACIAL]["upper"]
