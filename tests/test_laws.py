"""The law registry (surrogate/laws.py): each law declared once and read by the lab, the models and the suggester."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from surrogate import laws, physics
from surrogate.design import ANNEAL_TEMP_C, CAPACITY_RETENTION, CONDUCTIVITY, RATE_RETENTION
from surrogate.errors import InputError
from surrogate.models.physics_baseline import FORMS
from surrogate.models.physics_gp import PhysicsPriorGP, model_space
from surrogate.objectives import Objective
from surrogate.targets import TARGETS, get_target, register_target, unregister_target


def test_every_declared_law_exists_and_needs_only_declared_inputs():
    for target in TARGETS.values():
        if target.physics_law is None:
            continue
        law = laws.law_of(target.name)
        assert law is laws.LAWS[target.physics_law]
        assert set(law.required) <= set(target.inputs), target.name
        assert law.name in FORMS  # the physics baseline has a least-squares form of it


def test_every_prior_says_where_it_comes_from():
    for law in laws.LAWS.values():
        for row in law.table():
            assert row["source"], f"{law.name}: {row['parameter']} has no source"
            assert row["sd"] > 0


def test_fade_does_not_depend_on_the_film_anneal():
    """Cells were cycled with one film (the paper; the lab's fade law has no anneal): anneal is no input."""
    assert ANNEAL_TEMP_C not in get_target(CAPACITY_RETENTION).inputs
    X = pd.DataFrame(
        {
            "buffer": ["sio2", "none", "sio2"],
            "anneal_temp_c": [100.0, 300.0, 500.0],
            "test_temp_c": [25.0, 40.0, 60.0],
            "cycles": [100, 100, 100],
            "protocol": "standard",
        }
    )
    y = np.log(np.array([0.8, 0.6, 0.7]) / (1 - np.array([0.8, 0.6, 0.7])))
    model = PhysicsPriorGP(target=CAPACITY_RETENTION, max_iter=5).fit(X, y)
    assert ANNEAL_TEMP_C not in model.feature_names_in_
    moved = X.assign(anneal_temp_c=[450.0, 25.0, 200.0])
    assert np.array_equal(model.predict(X), model.predict(moved))


def test_modelling_spaces_come_from_the_laws():
    assert model_space(CONDUCTIVITY) == "log10"
    assert model_space(RATE_RETENTION) == "logit"
    assert model_space(CAPACITY_RETENTION) == "log_loss"
    values = np.array([0.05, 0.5, 0.95])
    for space in ("logit", "log_loss"):
        back = laws.model_to_contract(space, laws.contract_to_model(space, values))
        assert np.allclose(back, values)


def test_the_lab_uses_the_laws_shared_forms():
    assert physics.relative_rate_retention is laws.relative_rate_retention
    assert physics.K_B_EV == laws.K_B_EV
    assert laws.relative_rate_retention(0.1, 3.0) == pytest.approx(1.0)
    assert laws.relative_rate_retention(30.0, 3.0) < laws.relative_rate_retention(10.0, 3.0) < 1.0


def test_a_target_without_a_law_is_refused_by_physics_gp_with_its_name():
    extra = replace(get_target(CONDUCTIVITY), name="interfacial_resistance_ohm_cm2", physics_law=None, lab_law=None)
    register_target(extra)
    try:
        X = pd.DataFrame({"anneal_temp_c": [300.0], "test_temp_c": [25.0]})
        with pytest.raises(InputError, match="interfacial_resistance_ohm_cm2: no physics law"):
            PhysicsPriorGP(target=extra.name).fit(X, np.zeros(1))
    finally:
        unregister_target(extra.name)


def test_objective_to_botorch_is_the_product_in_contract_units():
    import torch

    samples = torch.tensor([[[0.3, -0.5]], [[-1.0, 0.2]]], dtype=torch.float64)  # (samples, q, targets)
    product = Objective("rate_x_capacity").to_botorch()(samples)
    expected = torch.sigmoid(samples[..., 0]) * torch.exp(-torch.exp(samples[..., 1]))
    assert torch.allclose(product, expected)
    capacity = Objective("capacity_retention").to_botorch()(samples[..., 1:])
    assert torch.allclose(capacity, torch.exp(-torch.exp(samples[..., 1])))
    log_sigma = torch.tensor([[[-5.2]], [[-4.9]]], dtype=torch.float64)
    assert torch.equal(Objective("conductivity").to_botorch()(log_sigma), log_sigma[..., 0])


def test_measured_at_conditions_reads_each_targets_declared_conditions():
    observed = pd.DataFrame(
        {
            "buffer": ["sio2"] * 5,
            "anneal_temp_c": 300.0,
            "test_temp_c": [25.0, 25.0, 25.0, 25.0, 40.0],
            "c_rate": [10.0, 30.0, 10.0, 10.0, 10.0],
            "cycles": [300, 300, 100, 300, 300],
            "protocol": ["standard", "standard", "standard", "long", "standard"],
            RATE_RETENTION: 0.4,
            CAPACITY_RETENTION: 0.6,
        }
    )
    objective = Objective("rate_x_capacity", c_rate=10, cycles=300)
    assert objective.measured_at_conditions(observed, 0.5).index.tolist() == [0, 4]
    fixed = Objective("rate_x_capacity", c_rate=10, cycles=300, test_temp_c=25.0)
    assert fixed.measured_at_conditions(observed, 0.5).index.tolist() == [0]
    assert Objective("rate_retention", c_rate=30).measured_at_conditions(observed, 0.5).index.tolist() == [1]


# ------------------------------------------------------------------ narrow features (issue 15 §3)
def _film_scan(world, seed: int = 1) -> pd.DataFrame:
    """Films every 30 °C of anneal (25-505 °C) at 25 and 80 °C, measured in ``world`` (emulated)."""
    anneals = np.arange(25.0, 506.0, 30.0)
    films = pd.DataFrame(
        {
            "buffer": "none",
            "anneal_temp_c": np.repeat(anneals, 2),
            "test_temp_c": np.tile([25.0, 80.0], len(anneals)),
            "c_rate": 0.1,
            "cycles": 1,
            "protocol": "standard",
        }
    )
    return world.measure_frame(films, np.random.default_rng(seed))


def test_narrow_features_fit_the_crystallisation_onset():
    """The conductivity law's crystallisation step is learned: the lab's film crystallises 300→400 °C (mid 350)."""
    from surrogate.worlds import paper_world

    films = _film_scan(paper_world())
    X, y = films[["anneal_temp_c", "test_temp_c"]], np.log10(films[CONDUCTIVITY].to_numpy())
    narrow = PhysicsPriorGP(target=CONDUCTIVITY, features="narrow").fit(X, y)
    table = narrow.law_parameters().set_index("name")
    assert 335.0 <= table.loc["crystallisation_onset_c", "mean"] <= 365.0
    assert table.loc["crystallisation_ln_step", "mean"] < 0  # the crystalline film conducts less
    assert {"narrow_anneal_amplitude", "narrow_anneal_length"} <= set(narrow.hyper_names_)
    smooth = PhysicsPriorGP(target=CONDUCTIVITY).fit(X, y)
    assert "crystallisation_onset_c" not in set(smooth.law_parameters()["name"])
    with pytest.raises(InputError, match="features"):
        PhysicsPriorGP(target=CONDUCTIVITY, features="wiggly").fit(X, y)


def test_narrow_feature_worlds():
    from surrogate.worlds import NARROW_FEATURE_WORLDS, paper_world

    window, side = NARROW_FEATURE_WORLDS
    anneal = np.array([300.0, 340.0, 360.0, 380.0, 420.0])
    gain = window.conductivity_s_cm(anneal, 25.0) / paper_world().conductivity_s_cm(anneal, 25.0)
    assert np.allclose(gain, [1.0, 2.0, 4.0, 2.0, 1.0], atol=0.01)  # ×4 at the centre, ×2 at ±20 °C
    temps = np.array([25.0, 55.0, 90.0, 120.0])
    rate = side.truth_arrays("sio2", 300.0, temps, 10.0, 100)[RATE_RETENTION]
    assert rate[1] > rate[0] and rate[1] > rate[2] > 0  # rises, then the side reaction cuts it
    paper_rate = paper_world().truth_arrays("sio2", 300.0, temps, 10.0, 100)[RATE_RETENTION]
    assert np.all(np.diff(paper_rate) > 0)  # the paper's lab: monotone in temperature
    assert "window" in window.describe() and "side reaction" in side.describe()


# ------------------------------------------------------------------ coupled physics (issue 15 §1)
def test_rate_coupled_to_the_film_follows_its_conductivity():
    """σ data of other anneals informs rate there: the embedded cells are all on the 300 °C film at 25 °C."""
    from scipy.special import expit
    from sklearn.base import clone

    from surrogate.dataset import load_default_dataset
    from surrogate.evaluation import training_xy
    from surrogate.models.physics_gp import FilmCoupling
    from surrogate.worlds import paper_world

    data = load_default_dataset()
    Xc, yc, _ = training_xy(data, CONDUCTIVITY)
    film = FilmCoupling(PhysicsPriorGP(target=CONDUCTIVITY).fit(Xc, yc))
    X, y, _ = training_xy(data, RATE_RETENTION)
    coupled = PhysicsPriorGP(target=RATE_RETENTION, film=film).fit(X, y)
    uncoupled = PhysicsPriorGP(target=RATE_RETENTION).fit(X, y)
    assert "electrolyte_ea_ev" not in set(coupled.law_parameters()["name"])  # the film supplies it
    design = pd.DataFrame({"buffer": "sio2", "anneal_temp_c": 400.0, "test_temp_c": [25.0, 60.0], "c_rate": 10.0})
    truth = paper_world().truth_arrays("sio2", 400.0, design["test_temp_c"].to_numpy(), 10.0, 100)[RATE_RETENTION]
    errors = {}
    for name, model in (("coupled", coupled), ("uncoupled", uncoupled)):
        mean, sd = model.predict(design, return_std=True)
        errors[name] = np.abs(expit(mean) - truth)
        if name == "coupled":  # its 90% interval holds the crystallised film's lower rate
            assert np.all((expit(mean - 1.645 * sd) <= truth) & (truth <= expit(mean + 1.645 * sd)))
    assert np.all(errors["coupled"] < errors["uncoupled"])
    assert clone(coupled).film is not None and hasattr(clone(coupled).film.model, "theta_")
    with pytest.raises(InputError, match="film"):
        PhysicsPriorGP(target=CONDUCTIVITY, film=film).fit(Xc, yc)


def test_suggester_couples_rate_to_observed_films_only_when_there_are_films():
    from surrogate.design import DesignSpace
    from surrogate.lab import VirtualLab
    from surrogate.suggester import MIN_FILM_ROWS, ObjectivePosterior

    rng = np.random.default_rng(3)
    n = MIN_FILM_ROWS + 2
    designs = pd.DataFrame(
        {
            "buffer": rng.choice(["sio2", "none"], n),
            "anneal_temp_c": rng.uniform(100.0, 450.0, n),
            "test_temp_c": rng.choice([25.0, 60.0], n),
            "c_rate": 10.0,
            "cycles": 300,
            "protocol": "standard",
        }
    )
    measured = VirtualLab(seed=3).measure_frame(designs)
    objective = Objective("rate_retention", c_rate=10)
    cells_only = measured.drop(columns=[CONDUCTIVITY])
    space = DesignSpace()
    assert ObjectivePosterior.fit(objective, cells_only, space).models[RATE_RETENTION].film is None
    with_films = ObjectivePosterior.fit(objective, measured, space)
    assert with_films.models[RATE_RETENTION].film is not None
    assert "electrolyte_ea_ev" not in set(with_films.models[RATE_RETENTION].law_parameters()["name"])
    hedge = ObjectivePosterior.fit(objective, measured, space, mean="constant")
    assert hedge.models[RATE_RETENTION].film is None  # the model-free hedge stays model-free
