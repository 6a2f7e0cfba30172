"""The physics_gp family: a scikit-learn estimator whose physics prior the data can override, with honest intervals."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from surrogate import physics
from surrogate.dataset import load_default_dataset
from surrogate.design import CAPACITY_RETENTION, CONDUCTIVITY, RATE_RETENTION
from surrogate.errors import InputError
from surrogate.evaluation import training_xy
from surrogate.lab import VirtualLab
from surrogate.models.base import TARGET_SPACES
from surrogate.models.physics_gp import PhysicsPriorGP
from surrogate.models.registry import FAMILIES, make_model

Z90 = 1.6448536269514722


def lab_world(**values: float) -> physics.LabParameters:
    p = physics.PARAMETERS
    return replace(p, **{name: replace(getattr(p, name), value=value) for name, value in values.items()})


# Laws the prior does not know: fade strongly activated, a film that crystallises at 220 °C, a slow interface.
OTHER_WORLD = lab_world(
    fade_ea_ev=0.5, interface_ea_ev=0.55, crystallisation_onset_c=220.0, crystallisation_complete_c=320.0
)


def cells(rng: np.random.Generator, n: int, test_temp_c: tuple[float, float], c_rate=10.0, cycles=300) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "buffer": rng.choice(["none", "llto_ncm", "sio2", "lipon"], n),
            "anneal_temp_c": rng.uniform(25.0, 500.0, n),
            "test_temp_c": rng.uniform(*test_temp_c, n),
            "c_rate": c_rate,
            "cycles": cycles,
            "protocol": "standard",
        }
    )


def natural(target: str, frame: pd.DataFrame) -> np.ndarray:
    return TARGET_SPACES[target].forward(frame[target].to_numpy(float))


COLUMNS = {
    RATE_RETENTION: ["buffer", "anneal_temp_c", "test_temp_c", "c_rate"],
    CAPACITY_RETENTION: ["buffer", "anneal_temp_c", "test_temp_c", "cycles", "protocol"],
}


@pytest.fixture(scope="module")
def rate_model() -> tuple[PhysicsPriorGP, pd.DataFrame]:
    rng = np.random.default_rng(0)
    data = VirtualLab(seed=0, params=OTHER_WORLD).measure_frame(cells(rng, 40, (25.0, 45.0)))
    model = PhysicsPriorGP(target=RATE_RETENTION).fit(data[COLUMNS[RATE_RETENTION]], natural(RATE_RETENTION, data))
    return model, data


# ------------------------------------------------------------------ scikit-learn conventions
def test_params_round_trip_and_clone():
    model = PhysicsPriorGP(target=RATE_RETENTION, mean="constant", max_points=50, categories={"buffer": ["sio2"]})
    params = model.get_params()
    assert params == {
        "target": RATE_RETENTION,
        "mean": "constant",
        "max_points": 50,
        "categories": {"buffer": ["sio2"]},
        "reading_sd": 0.005,
        "max_iter": 60,
        "features": "smooth",
        "film": None,
        "pooling": "partial",
        "handle_unknown": "population",
    }
    copy = clone(model)
    assert copy.get_params() == params and copy is not model
    assert PhysicsPriorGP().set_params(**params).get_params() == params
    with pytest.raises(NotFittedError):
        model.predict(
            pd.DataFrame({"buffer": ["sio2"], "anneal_temp_c": [300.0], "test_temp_c": [25.0], "c_rate": [10.0]})
        )


def test_predict_never_trains(rate_model):
    model, data = rate_model
    before = pickle.dumps(model)
    other = cells(np.random.default_rng(9), 30, (60.0, 120.0))
    model.predict(other[COLUMNS[RATE_RETENTION]], return_std=True)
    model.posterior(other[COLUMNS[RATE_RETENTION]])
    assert pickle.dumps(model) == before
    assert not hasattr(clone(model), "theta_")


def test_bad_input_is_an_input_error():
    X = pd.DataFrame(
        {
            "buffer": ["sio2", "none"],
            "anneal_temp_c": [300.0, np.nan],
            "test_temp_c": [25.0, 25.0],
            "c_rate": [10.0, 10.0],
        }
    )
    with pytest.raises(InputError, match="anneal_temp_c"):
        PhysicsPriorGP(target=RATE_RETENTION).fit(X, np.zeros(2))
    with pytest.raises(InputError, match="c_rate"):
        PhysicsPriorGP(target=RATE_RETENTION).fit(X.drop(columns="c_rate"), np.zeros(2))
    with pytest.raises(InputError, match="mean"):
        PhysicsPriorGP(mean="neural").fit(X, np.zeros(2))
    with pytest.raises(InputError, match="buffer"):
        PhysicsPriorGP(target=RATE_RETENTION).fit(X.assign(buffer=["sio2", "gold"]), np.zeros(2))


# ------------------------------------------------------------------ from no data to thousands of rows
def test_no_data_is_the_prior_and_an_untried_buffer_keeps_its_uncertainty(rate_model):
    empty = pd.DataFrame(columns=COLUMNS[RATE_RETENTION])
    prior = PhysicsPriorGP(target=RATE_RETENTION, categories={"buffer": ["sio2", "lipon"]}).fit(empty, np.zeros(0))
    design = pd.DataFrame({"buffer": ["sio2"], "anneal_temp_c": [300.0], "test_temp_c": [25.0], "c_rate": [10.0]})
    mean, std = prior.predict(design, return_std=True)
    assert np.isfinite(mean).all() and std[0] > 0.5  # wide: nothing measured
    _, data = rate_model
    seen = design.assign(test_temp_c=35.0)
    sparse = data[data["buffer"] != "lipon"]
    partial = PhysicsPriorGP(target=RATE_RETENTION, categories={"buffer": ["none", "llto_ncm", "sio2", "lipon"]})
    partial.fit(sparse[COLUMNS[RATE_RETENTION]], natural(RATE_RETENTION, sparse))
    _, tried = partial.predict(seen, return_std=True)
    _, untried = partial.predict(seen.assign(buffer="lipon"), return_std=True)
    assert untried[0] > 2 * tried[0]


def test_thousands_of_rows_are_subsampled():
    X, y, _ = training_xy(load_default_dataset(), CAPACITY_RETENTION)
    assert len(X) > 1000
    model = PhysicsPriorGP(target=CAPACITY_RETENTION, max_points=120).fit(X, y)
    assert model.n_train_ <= 130
    mean, std = model.predict(X, return_std=True)
    assert np.sqrt(np.mean((mean - y) ** 2)) < 0.1  # logit: about 1-2 % retention
    assert np.all(std > 0)


def test_registered_family_fits_through_the_fresh_sample_wrapper():
    assert "physics_gp" in FAMILIES
    data = load_default_dataset()
    X, y, records = training_xy(data, CONDUCTIVITY)
    model = make_model("physics_gp", CONDUCTIVITY).fit(X, y, sample_ids=records["sample_id"])
    mean, std = model.predict(X, return_std=True)
    assert np.sqrt(np.mean((mean - y) ** 2)) < 0.05 and np.all(std > 0)


# ------------------------------------------------------------------ the data override a wrong law
def test_discrepancy_learns_an_anneal_dependence_the_law_does_not_have():
    world = lab_world(crystallisation_onset_c=220.0, crystallisation_complete_c=320.0)
    grid = pd.DataFrame(
        [(a, t) for a in np.linspace(25, 500, 12) for t in (25.0, 60.0, 120.0)],
        columns=["anneal_temp_c", "test_temp_c"],
    )
    y = np.log10(physics.conductivity_s_cm(grid["anneal_temp_c"], grid["test_temp_c"], world))
    model = PhysicsPriorGP(target=CONDUCTIVITY).fit(grid, y)
    anneal = np.arange(25.0, 501.0, 5.0)
    query = pd.DataFrame({"anneal_temp_c": anneal, "test_temp_c": 25.0})
    predicted = model.predict(query)
    truth = np.log10(physics.conductivity_s_cm(anneal, 25.0, world))
    assert np.max(np.abs(predicted - truth)) < 0.06  # decades
    assert abs(anneal[np.argmax(predicted)] - anneal[np.argmax(truth)]) <= 30.0


def test_recovers_the_lab_near_its_optimum():
    """From a 36-design noise-free grid (replaces the old suggester's PhysicsModel test)."""
    rows = pd.DataFrame(
        [
            {"buffer": b, "anneal_temp_c": a, "test_temp_c": t, "c_rate": 10.0, "cycles": 300, "protocol": "standard"}
            for b in ("none", "llto_ncm", "sio2", "lipon")
            for a in (100.0, 300.0, 450.0)
            for t in (25.0, 60.0, 100.0)
        ]
    )
    rows[RATE_RETENTION] = physics.rate_retention(rows.buffer, rows.anneal_temp_c, rows.test_temp_c, 10.0)
    rows[CAPACITY_RETENTION] = physics.capacity_retention(rows.buffer, rows.test_temp_c, 300)
    held_out = pd.DataFrame(
        {
            "buffer": ["sio2", "lipon"],
            "anneal_temp_c": [280.0, 300.0],
            "test_temp_c": [44.0, 54.0],
            "c_rate": 10.0,
            "cycles": 300,
            "protocol": "standard",
        }
    )
    truth = {
        RATE_RETENTION: physics.rate_retention(held_out.buffer, held_out.anneal_temp_c, held_out.test_temp_c, 10.0),
        CAPACITY_RETENTION: physics.capacity_retention(held_out.buffer, held_out.test_temp_c, 300),
    }
    # Capacity: the film's anneal is not an input of fade (targets.py, surrogate.laws), so its 36 designs are 12
    # cell conditions; the law has no knee and the 100 °C rows pass the lab's (300 accelerated cycles ≈ 1440 > 900),
    # which pulls the fitted fade Ea to 0.36 eV (lab: 0.2): measured 7% off at 44 °C, hence 8% (rate: 5%).
    for target, rtol in ((RATE_RETENTION, 0.05), (CAPACITY_RETENTION, 0.08)):
        model = PhysicsPriorGP(target=target).fit(rows[COLUMNS[target]], natural(target, rows))
        predicted = TARGET_SPACES[target].inverse(model.predict(held_out[COLUMNS[target]]))
        assert np.allclose(predicted, truth[target], rtol=rtol), target


# ------------------------------------------------------------------ honest intervals where the data end
@pytest.mark.parametrize(
    ("target", "cycles", "outside"), [(RATE_RETENTION, 300, (70.0, 110.0)), (CAPACITY_RETENTION, 30, (60.0, 85.0))]
)
def test_extrapolation_intervals_cover_fresh_measurements_and_widen(target, cycles, outside):
    """Trained at 25-45 °C in a world whose laws differ from the prior; asked at 25-45 °C and beyond.

    Capacity after 30 cycles: at 100 cycles and above 70 °C this world's cells pass the fade knee, which
    no data before it shows (docs/campaigns.md lists that failure).
    """
    rng = np.random.default_rng(1)
    lab = VirtualLab(seed=1, params=OTHER_WORLD)
    train = lab.measure_frame(cells(rng, 40, (25.0, 45.0), cycles=cycles))
    model = PhysicsPriorGP(target=target).fit(train[COLUMNS[target]], natural(target, train))
    widths, coverage = {}, {}
    for name, temps in (("inside", (25.0, 45.0)), ("outside", outside)):
        fresh = lab.measure_frame(cells(rng, 200, temps, cycles=cycles))
        mean, std = model.predict(fresh[COLUMNS[target]], return_std=True)
        y = natural(target, fresh)
        coverage[name] = np.mean(np.abs(y - mean) <= Z90 * std)
        widths[name] = np.median(std)
    assert coverage["inside"] >= 0.75
    assert coverage["outside"] >= 0.7  # a clear majority where the data end
    assert widths["outside"] > 1.5 * widths["inside"]
