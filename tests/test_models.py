"""The model families: each fits and predicts with intervals; the physics baseline recovers the lab's Ea."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from surrogate import physics
from surrogate.dataset import load_default_dataset
from surrogate.design import CAPACITY_RETENTION, CONDUCTIVITY, RATE_RETENTION, TARGETS
from surrogate.errors import InputError
from surrogate.evaluation import training_xy
from surrogate.models.base import Surrogate, TrainingDomain
from surrogate.models.features import (
    PRIOR_BETWEEN_SAMPLE_SD,
    FreshSampleRegressor,
    encode,
    estimate_sample_variance,
    feature_names,
)
from surrogate.models.physics_baseline import PhysicsBaseline
from surrogate.models.registry import FAMILIES, family, make_model

FAST_PARAMS = {
    "physics_gp": {"max_points": 100},
    "physics": {},
    "gp": {"max_points": 60},
    "trees": {"n_estimators": 30},
    "torch": {"epochs": 60, "n_members": 3},
}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return load_default_dataset()


def small_xy(data: pd.DataFrame, target: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The target's training rows; cycling thinned to every 4th row (keeps every curve, keeps tests fast)."""
    X, y, _ = training_xy(data, target)
    if target == CAPACITY_RETENTION:
        keep = np.arange(len(y)) % 4 == 0
        X, y = X[keep].reset_index(drop=True), y[keep]
    return X, y


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("target", TARGETS)
def test_family_fits_and_predicts_with_intervals(data, name, target):
    X, y = small_xy(data, target)
    model = family(name).make(target, **FAST_PARAMS[name]).fit(X, y)
    mean, std = model.predict(X, return_std=True)
    assert mean.shape == std.shape == (len(X),)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)
    assert np.allclose(model.predict(X), mean)
    # The fit explains the data better than its mean does.
    assert np.mean((mean - y) ** 2) < np.var(y)
    bundle = Surrogate({target: model}, {target: TrainingDomain.from_frame(X)})
    answer = bundle.predict_target(target, X)
    assert np.all(answer["lower"] < answer["mean"]) and np.all(answer["mean"] < answer["upper"])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_estimator_params_round_trip(name):
    model = family(name).make(RATE_RETENTION, **FAST_PARAMS[name])
    params = model.get_params()
    assert params["target"] == RATE_RETENTION
    copy = clone(model)
    assert copy.get_params() == params
    with pytest.raises(NotFittedError):
        model.predict(pd.DataFrame({"buffer": ["none"], "anneal_temp_c": [300.0], "test_temp_c": [25.0]}))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_bad_input_is_an_input_error(data, name):
    X, y = small_xy(data, RATE_RETENTION)
    model = family(name).make(RATE_RETENTION, **FAST_PARAMS[name])
    with pytest.raises(InputError, match="c_rate"):
        model.fit(X.drop(columns="c_rate"), y)
    with pytest.raises(InputError, match="y"):
        model.fit(X, y[:-1])
    model.fit(X, y)
    with pytest.raises(InputError, match="buffer"):
        model.predict(X.assign(buffer="graphite"))
    with pytest.raises(InputError, match="c_rate"):
        model.predict(X.assign(c_rate=np.nan))


def test_physics_recovers_lab_activation_energy_with_standard_error(data):
    X, y, _ = training_xy(data, CONDUCTIVITY)
    model = PhysicsBaseline(CONDUCTIVITY).fit(X, y)
    table = model.activation_energies()
    assert list(table.columns)[:4] == ["anneal_temp_c", "ea_ev", "ea_se_ev", "ln_prefactor"]
    assert {"ea_sigma_ev", "ea_sigma_se_ev", "n_temperatures"} <= set(table.columns)  # the σ form too
    assert table["anneal_temp_c"].tolist() == [25.0, 300.0, 400.0]
    assert np.all(table["ea_se_ev"] > 0) and np.all(table["ea_se_ev"] < 0.02)
    for _, row in table.iterrows():
        truth = float(physics.activation_energy_ev(row["anneal_temp_c"]))
        assert abs(row["ea_ev"] - truth) <= 3 * row["ea_se_ev"], (row.to_dict(), truth)
    assert abs(model.activation_energy_ev_[300.0] - 0.252) < 0.015
    assert model.activation_energy_se_ev_[300.0] == pytest.approx(table["ea_se_ev"].iloc[1])
    rate_model = PhysicsBaseline(RATE_RETENTION).fit(*small_xy(data, RATE_RETENTION))
    with pytest.raises(InputError, match="conductivity"):
        rate_model.activation_energies()


def test_physics_interpolates_anneal_states_with_wider_interval(data):
    X, y, _ = training_xy(data, CONDUCTIVITY)
    model = PhysicsBaseline(CONDUCTIVITY).fit(X, y)
    designs = pd.DataFrame({"anneal_temp_c": [25.0, 162.5, 300.0], "test_temp_c": [60.0, 60.0, 60.0]})
    mean, std = model.predict(designs, return_std=True)
    assert min(mean[0], mean[2]) <= mean[1] <= max(mean[0], mean[2])  # linear in ln A and Ea between states
    assert std[1] > 2 * max(std[0], std[2])  # a state never measured is uncertain


def test_physics_unseen_buffer_gets_mean_effect_and_wider_interval(data):
    X, y = small_xy(data, RATE_RETENTION)
    seen = X["buffer"] != "lipon"
    model = PhysicsBaseline(RATE_RETENTION).fit(X[seen], y[seen])
    mean, std = model.predict(X, return_std=True)
    assert np.all(np.isfinite(mean))
    assert std[~seen.to_numpy()].min() > std[seen.to_numpy()].max()


def test_physics_fade_fits_knee_only_for_the_long_protocol(data):
    X, y = small_xy(data, CAPACITY_RETENTION)
    model = PhysicsBaseline(CAPACITY_RETENTION).fit(X, y)
    assert "ln_knee_onset@sio2/long" in model.params_
    assert not any("/standard" in name and "knee" in name for name in model.params_)
    assert 700 < np.exp(model.params_["ln_knee_onset@sio2/long"]) < 1100  # the paper: 'after 900 cycles'
    no_knee = PhysicsBaseline(CAPACITY_RETENTION, knee="never").fit(X, y)
    assert not any("knee" in name for name in no_knee.params_)
    with pytest.raises(InputError, match="knee"):
        PhysicsBaseline(CAPACITY_RETENTION, knee="maybe").fit(X, y)


def test_physics_with_too_few_rows_is_an_input_error(data):
    X, y, _ = training_xy(data, CONDUCTIVITY)
    with pytest.raises(InputError, match="test temperatures"):
        PhysicsBaseline(CONDUCTIVITY).fit(X.iloc[:1], y[:1])


@pytest.mark.parametrize("name", ["trees", "torch"])
def test_same_seed_same_predictions(data, name):
    X, y = small_xy(data, CONDUCTIVITY)
    first = family(name).make(CONDUCTIVITY, **FAST_PARAMS[name], random_state=3).fit(X, y)
    second = family(name).make(CONDUCTIVITY, **FAST_PARAMS[name], random_state=3).fit(X, y)
    other = family(name).make(CONDUCTIVITY, **FAST_PARAMS[name], random_state=4).fit(X, y)
    a, b, c = (m.predict(X, return_std=True) for m in (first, second, other))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_torch_leaves_global_random_state_and_threads_alone(data):
    X, y = small_xy(data, CONDUCTIVITY)
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    family("torch").make(CONDUCTIVITY, **FAST_PARAMS["torch"]).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_feature_encoding_is_physics_aware():
    X = pd.DataFrame(
        {
            "buffer": ["SiO2", "none"],
            "test_temp_c": [25.0, 120.0],
            "cycles": [1.0, 1000.0],
            "protocol": ["long", "standard"],
        }
    )
    names = feature_names(CAPACITY_RETENTION)
    matrix = encode(X, CAPACITY_RETENTION)
    assert matrix.shape == (2, len(names))
    row = dict(zip(names, matrix[0], strict=True))
    assert row["buffer_sio2"] == 1 and row["buffer_none"] == 0 and row["protocol_long"] == 1
    assert row["inv_temp_1000_per_k"] == pytest.approx(1000 / 298.15)
    assert dict(zip(names, matrix[1], strict=True))["log10_cycles"] == pytest.approx(3.0)


def test_unknown_family_and_target_are_input_errors():
    with pytest.raises(InputError, match="family"):
        family("xgboost")
    with pytest.raises(InputError, match="target"):
        FAMILIES["physics"].make("voltage")


def test_between_sample_variance_from_replicates_recovers_the_spread():
    rng = np.random.default_rng(0)
    n_conditions, n_samples, n_rows, tau, noise = 20, 4, 6, 0.05, 0.02
    condition = np.repeat(np.arange(n_conditions), n_samples * n_rows).astype(float)
    sample = np.repeat(np.arange(n_conditions * n_samples), n_rows)
    effect = (
        rng.normal(0, tau, n_conditions * n_samples)[sample] + rng.normal(0, 0.3, n_conditions)[condition.astype(int)]
    )  # a per-condition offset (model bias) must not count as sample spread
    X = pd.DataFrame({"anneal_temp_c": condition, "test_temp_c": np.tile(np.arange(n_rows), n_conditions * n_samples)})
    residuals = effect + rng.normal(0, noise, len(sample))
    estimate = estimate_sample_variance(X, residuals, sample, prior_sd=1.0)
    assert estimate.source == "replicates" and estimate.n_replicated_conditions == n_conditions
    assert np.sqrt(estimate.between_variance) == pytest.approx(tau, rel=0.25)
    assert np.sqrt(estimate.within_variance) == pytest.approx(noise, rel=0.15)
    assert estimate.replicated_share == 1.0 and estimate.mean_inverse_samples == pytest.approx(1 / n_samples)
    assert estimate.added_variance == pytest.approx(estimate.between_variance / n_samples)
    # one sample per condition: not identifiable, the prior is used, twice (new sample + the trained one's)
    single = estimate_sample_variance(X, residuals, condition, prior_sd=0.07)
    assert single.source == "prior" and single.between_variance == pytest.approx(0.0049)
    assert single.added_variance == pytest.approx(2 * 0.0049)


def test_fresh_sample_model_widens_intervals_by_the_between_sample_variance(data):
    X, y, meta = training_xy(data, RATE_RETENTION)
    bare = family("physics").make(RATE_RETENTION).fit(X, y)
    model = make_model("physics", RATE_RETENTION).fit(X, y, sample_ids=meta["sample_id"])
    assert isinstance(model, FreshSampleRegressor) and model.sample_variance_.source == "prior"
    mean, std = model.predict(X, return_std=True)
    bare_mean, bare_std = bare.predict(X, return_std=True)
    np.testing.assert_allclose(mean, bare_mean)
    np.testing.assert_allclose(std**2, bare_std**2 + 2 * PRIOR_BETWEEN_SAMPLE_SD[RATE_RETENTION] ** 2)
    # the prior is a hyper-parameter
    wider = make_model("physics", RATE_RETENTION, between_sample_sd=0.2).fit(X, y, sample_ids=meta["sample_id"])
    assert np.all(wider.predict(X, return_std=True)[1] > std)
    assert clone(wider).get_params()["between_sample_sd"] == 0.2
    with pytest.raises(InputError, match="between_sample_sd"):
        make_model("physics", RATE_RETENTION, between_sample_sd=-1).fit(X, y)
    with pytest.raises(NotFittedError):
        make_model("physics", RATE_RETENTION).predict(X)
    # every cell was tested at 25 °C: a design at 60 °C gets the data's whole spread on top (and is flagged)
    hot = X.assign(test_temp_c=60.0)
    assert np.all(model.predict(hot, return_std=True)[1] ** 2 >= std**2 + 0.99 * np.var(y))


def test_fresh_sample_model_estimates_film_spread_from_replicate_films(data):
    X, y, meta = training_xy(data, CONDUCTIVITY)
    model = make_model("physics", CONDUCTIVITY).fit(X, y, sample_ids=meta["sample_id"])
    estimate = model.sample_variance_
    assert estimate.source == "replicates" and estimate.n_samples == 9 and estimate.n_replicated_conditions == 3
    assert 0.005 < np.sqrt(estimate.between_variance) < 0.05  # decades; film-to-film
    assert estimate.added_variance == pytest.approx(estimate.between_variance / 3)  # residual noise holds the rest


def test_fresh_sample_model_widens_a_category_combination_never_seen(data):
    X, y, meta = training_xy(data, CAPACITY_RETENTION)
    model = make_model("physics", CAPACITY_RETENTION).fit(X, y, sample_ids=meta["sample_id"])
    designs = pd.DataFrame(
        {"buffer": ["sio2", "none"], "test_temp_c": 25.0, "cycles": [500.0, 500.0], "protocol": ["long", "long"]}
    )
    extra = model.extrapolation_variance(designs)
    assert extra[0] == 0.0  # SiO2 was cycled under the long protocol
    assert extra[1] > 0.1  # 'none' never was: it may behave like any combination that was
    std = model.predict(designs, return_std=True)[1]
    assert std[1] > 2 * std[0]


def test_fresh_sample_model_widens_between_the_trained_anneal_states_of_a_world_that_crystallises_there():
    """Films made at 25, 300 and 400 °C in a world whose film peaks at 250 °C: the data cannot show the peak, so
    the intervals between the states widen (0 at a made film) and cover most of its fresh films (none without)."""
    from surrogate.dataset import DEFAULT_SEED
    from surrogate.models import features
    from surrogate.worlds import paper_dataset, world_family

    world = next(w for w in world_family(3) if w.name == "cryst250-lipon")
    data = paper_dataset(world, DEFAULT_SEED)
    X, y, meta = training_xy(data, CONDUCTIVITY)
    model = make_model("physics", CONDUCTIVITY).fit(X, y, sample_ids=meta["sample_id"])
    rng = np.random.default_rng(3)
    designs = pd.DataFrame({"anneal_temp_c": rng.uniform(150.0, 290.0, 80), "test_temp_c": rng.uniform(25, 120, 80)})
    made = pd.DataFrame({"anneal_temp_c": [25.0, 300.0, 400.0], "test_temp_c": 60.0})
    assert np.all(model.extrapolation_variance(made) == 0.0)
    gap = model.extrapolation_variance(pd.DataFrame({"anneal_temp_c": [200.0, 162.5, 350.0], "test_temp_c": 60.0}))
    assert gap[1] > gap[0] > gap[2] > 0  # largest mid-way across the widest gap (25-300 °C)
    full = designs.assign(buffer="none", c_rate=1.0, cycles=2, protocol="standard")
    fresh = np.log10(world.measure_frame(full, np.random.default_rng(4))[CONDUCTIVITY])
    mean, std = model.predict(designs, return_std=True)
    inside = np.abs(fresh.to_numpy() - mean) <= 1.645 * std
    assert inside.mean() >= 0.75  # near the peak (150-290 °C), the hardest part of the gap
    with pytest.MonkeyPatch.context() as patch:  # without the gap term the peak is outside most intervals
        patch.setattr(features, "GAP_GAIN", 0.0)
        mean, std = model.predict(designs, return_std=True)
        assert (np.abs(fresh.to_numpy() - mean) <= 1.645 * std).mean() < 0.2


# ---------------------------------------------------------------------- vocabulary and encodings (issue 9)
@pytest.mark.parametrize("name", ["gp", "trees", "torch"])
def test_families_take_an_encoding_and_learn_their_vocabulary(data, name: str) -> None:
    X, y, _ = training_xy(data, RATE_RETENTION)
    params = {"epochs": 30, "n_members": 2} if name == "torch" else {}
    model = make_model(name, RATE_RETENTION, encoding="descriptors", **params).fit(X, y)
    estimator = model.estimator_
    assert estimator.categories_["buffer"] == ("none", "llto_ncm", "sio2", "lipon")
    assert estimator.vocabulary_.encoding == "descriptors"
    names = estimator.vocabulary_.feature_names(RATE_RETENTION)
    assert "buffer_class_oxide" in names and not any(n.startswith("material_") for n in names)  # one material
    mean, std = model.predict(X.iloc[:5], return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    with pytest.raises(InputError, match="'encoding' parameter of .* must be a str among .*Got 'ordinal'"):
        make_model(name, RATE_RETENTION, encoding="ordinal", **params).fit(X, y)


def test_one_hot_columns_follow_the_data_not_the_catalogue(data) -> None:
    X, y, _ = training_xy(data, RATE_RETENTION)
    two = X["buffer"].isin(["sio2", "lipon"]).to_numpy()
    model = make_model("trees", RATE_RETENTION).fit(X[two], y[two])
    names = model.estimator_.vocabulary_.feature_names(RATE_RETENTION)
    assert [n for n in names if n.startswith("buffer_")] == ["buffer_sio2", "buffer_lipon"]


def test_huge_numbers_are_input_errors_never_overflows() -> None:
    from surrogate.models.base import design_batch

    for cycles in (10**30, 10**400, -5, 1e20):
        with pytest.raises(InputError, match="cycles"):
            design_batch([{"buffer": "sio2", "anneal_temp_c": 300, "test_temp_c": 25, "cycles": cycles}])


def test_hybrid_encoding_lets_a_buffers_own_data_override_its_descriptors(data) -> None:
    """Two buffers with identical descriptors are one input under ``descriptors``; ``hybrid`` tells them apart."""
    from surrogate.materials import CATALOGUE, use_materials

    state = CATALOGUE.snapshot()
    try:
        twin = CATALOGUE.get("sio2").descriptors.to_dict()
        use_materials({"buffers": [{"id": "sio2_twin", "descriptors": twin, "source": "test"}]})
        X, y, _ = training_xy(data, RATE_RETENTION)
        twin_rows = X[X["buffer"] == "none"].assign(buffer="sio2_twin")  # the bare cell's curve, SiO2's descriptors
        X2, y2 = pd.concat([X, twin_rows], ignore_index=True), np.concatenate([y, y[X["buffer"] == "none"]])
        design = X2[X2["buffer"].isin(["sio2", "sio2_twin"])].drop_duplicates("buffer").assign(c_rate=30.0)
        means = {}
        for encoding in ("descriptors", "hybrid"):
            model = make_model("trees", RATE_RETENTION, encoding=encoding).fit(X2, y2)
            means[encoding] = model.predict(design)
        assert abs(means["descriptors"][0] - means["descriptors"][1]) < 1e-9  # indistinguishable
        assert abs(means["hybrid"][0] - means["hybrid"][1]) > 0.5  # told apart (logit units)
    finally:
        CATALOGUE.restore(state)


# ------------------------------------------------------------------ novelty in descriptor space (issue 15 §4)
OTHER_PROCESS_FILMS = {
    "materials": [
        {
            "id": "models_pld_llto_film",
            "display_name": "epitaxial LLTO film by pulsed-laser deposition (test fixture)",
            "descriptors": {
                "class": "oxide",
                "conducts_li": True,
                "thickness_nm": 200,
                "log10_ionic_s_cm": -3.7,
                "electronic_insulator": True,
            },
            "source": "test fixture: an order of magnitude for a crystalline PLD film, not a measurement",
            "anneal_temp_c": [0, 1200],
            "test_temp_c": [-100, 200],
        },
        {
            "id": "models_twin_llto_film",
            "display_name": "sputtered LLTO film from another chamber (test fixture)",
            "descriptors": {
                "class": "oxide",
                "conducts_li": True,
                "thickness_nm": 1100,
                "log10_ionic_s_cm": -5.1,
                "electronic_insulator": True,
            },
            "source": "test fixture: nearly the paper's film",
            "anneal_temp_c": [0, 1200],
            "test_temp_c": [-100, 200],
        },
    ]
}


@pytest.fixture
def declared_materials():
    from surrogate.materials import CATALOGUE, use_materials

    state = CATALOGUE.snapshot()
    use_materials("tests/data/literature/perovskites.yaml")
    use_materials(OTHER_PROCESS_FILMS)
    yield
    CATALOGUE.restore(state)


def _film_designs(materials: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"material": materials, "buffer": "none", "anneal_temp_c": 300.0, "test_temp_c": 25.0, "c_rate": 10.0}
    )


@pytest.mark.parametrize("name", ["physics", "physics_gp"])  # the ML families refuse a material they never saw
def test_a_material_unlike_the_trained_ones_is_flagged_with_its_descriptor_distance(data, declared_materials, name):
    X, y = small_xy(data, CONDUCTIVITY)
    model = make_model(name, CONDUCTIVITY, **FAST_PARAMS[name]).fit(X, y)
    surrogate = Surrogate({CONDUCTIVITY: model}, {CONDUCTIVITY: TrainingDomain.from_frame(X)})
    # lstz: a Sr/Ta perovskite pellet (another chemistry); the PLD film: the same chemistry by another process
    predicted = surrogate.predict(_film_designs(["llto_film", "lstz", "models_pld_llto_film", "models_twin_llto_film"]))
    reasons = predicted["extrapolation_reasons"].tolist()
    assert not predicted["extrapolation"][0] and reasons[0] == []
    for row, nearest in ((1, "llto_film"), (2, "llto_film")):
        assert predicted["extrapolation"][row]
        novelty = [r for r in reasons[row] if "descriptors unlike every trained material" in r]
        assert len(novelty) == 1 and f"nearest, {nearest}" in novelty[0]
    distance = float(next(r for r in reasons[1] if "descriptors" in r).split("distance ")[1].split(" ")[0])
    assert distance == pytest.approx(np.hypot(6.0 - np.log10(1001.0), 1.3), abs=0.01)  # thickness and σ decades
    # a film close to the trained one in descriptor space: flagged only because the model has no data for it
    assert predicted["extrapolation"][3]
    assert not any("descriptors" in r for r in reasons[3]) and any("no training data" in r for r in reasons[3])


def test_descriptor_novelty_of_buffers_and_its_threshold(data):
    from surrogate.models.base import DESCRIPTOR_NOVELTY_THRESHOLD, descriptor_novelty

    X, _ = small_xy(data, RATE_RETENTION)
    domain = TrainingDomain.from_frame(X[X["buffer"].isin(["none", "sio2"])])
    trained = domain.descriptors["buffer"]
    assert set(trained) == {"none", "sio2"}
    # LiPON (a Li-conducting phosphate) is unlike both; SiO2 itself is not novel
    lipon, sio2 = descriptor_novelty("buffer", ("lipon", "sio2"), trained)
    assert lipon is not None and "buffer=lipon" in lipon and sio2 is None
    assert DESCRIPTOR_NOVELTY_THRESHOLD == 1.0
    # the domain carries the trained descriptors: a pickled domain needs no catalogue entry of the trained ids
    import pickle

    assert pickle.loads(pickle.dumps(domain)).descriptors == domain.descriptors
