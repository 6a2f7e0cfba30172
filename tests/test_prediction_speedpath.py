"""The array fast path of prediction gives the answers of the frame path, to the last bit where it can.

:class:`~surrogate.models.base.Surrogate` predicts on a :class:`~surrogate.models.base.DesignBatch`
(float columns + integer category codes) and each family has a ``predict_batch`` that skips pandas and
re-validation. These tests check it against independent references:

- the bundle's assembly (intervals, reference points, training-domain reasons, output columns) against
  the straightforward per-row algorithm the code used before, on a few thousand random designs, for
  every model family;
- each shortcut against what it replaces: numpy's ``interp``, the per-parameter Jacobian loop,
  scikit-learn's GP and tree ``predict``, the dictionary lookup of category effects;
- validation: the cheap screen of :func:`design_batch` never lets through a value
  :func:`surrogate.schema.value_problem` rejects, and errors still name the design and the field.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from surrogate.dataset import load_default_dataset
from surrogate.design import BUFFERS, PROTOCOLS, TARGETS
from surrogate.errors import InputError
from surrogate.models import base
from surrogate.models.base import FEATURES, TARGET_SPACES, Surrogate, TrainingDomain, design_frame

FAMILY_PARAMS = {
    "physics": {},
    "gp": {"max_points": 80},
    "trees": {"n_estimators": 30},
    "torch": {"epochs": 60, "n_members": 3, "hidden": 16},
}


def random_designs(n: int, seed: int = 7) -> pd.DataFrame:
    """Designs inside and outside the data: training rows, exact anneal states, aliases, unseen buffers,
    reference points (0.1 C, cycle 1), temperatures and cycle counts beyond the data."""
    rng = np.random.default_rng(seed)
    data = load_default_dataset()
    states = np.unique(data["anneal_temp_c"].dropna().to_numpy())
    anneal = np.where(rng.random(n) < 0.3, rng.choice(states, n), rng.uniform(0, 600, n)).round(1)
    test = np.where(rng.random(n) < 0.3, 25.0, rng.uniform(-20, 150, n)).round(2)
    c_rate = np.where(rng.random(n) < 0.1, 0.1, 10 ** rng.uniform(-1.5, 2.5, n))
    cycles = np.where(rng.random(n) < 0.1, 1, np.round(10 ** rng.uniform(0, 3.6, n))).astype(int)
    drawn = pd.DataFrame(
        {
            "buffer": rng.choice([*BUFFERS, "SiO2", "LiPON"], n),
            "anneal_temp_c": anneal,
            "test_temp_c": test,
            "c_rate": c_rate,
            "cycles": cycles,
            "protocol": rng.choice(PROTOCOLS, n),
        }
    )
    rows = data.sample(n // 3, random_state=seed, replace=True)[list(drawn.columns)].reset_index(drop=True)
    rows["c_rate"] = rows["c_rate"].fillna(30.0)
    rows["cycles"] = rows["cycles"].fillna(100).astype(int)
    rows["protocol"] = rows["protocol"].fillna("standard")
    return pd.concat([drawn, rows], ignore_index=True)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return load_default_dataset()


@pytest.fixture(scope="module")
def designs() -> pd.DataFrame:
    return random_designs(1500)


@pytest.fixture(scope="module", params=list(FAMILY_PARAMS))
def bundle(request, data) -> Surrogate:
    from surrogate.evaluation import fit_surrogate

    name = request.param
    return fit_surrogate(data, {t: name for t in TARGETS}, {t: FAMILY_PARAMS[name] for t in TARGETS})


# ------------------------------------------------------------------ the bundle against the per-row algorithm
def reference_reasons(domain: TrainingDomain, X: pd.DataFrame) -> list[list[str]]:
    """The per-row training-domain check, written out plainly (string keys, one row at a time)."""
    out = []
    for _, row in X.iterrows():
        key = tuple(str(row[c]) for c in domain.categorical)
        if key not in domain.regions:
            combo = ", ".join(f"{c}={v}" for c, v in zip(domain.categorical, key, strict=True))
            out.append([f"{combo}: no training data for this combination"])
            continue
        where = f" (for {', '.join(key)})" if key else ""
        why = []
        for column, (low, high) in domain.regions[key].items():
            value = float(row[column])
            if value < low - 1e-9 or value > high + 1e-9:
                why.append(f"{column}={value:g} outside trained range [{low:g}, {high:g}]{where}")
        out.append(why)
    return out


def reference_predict(surrogate: Surrogate, designs: pd.DataFrame, level: float) -> pd.DataFrame:
    """Surrogate.predict computed the plain way: frames, each model's public ``predict``, row-by-row reasons."""
    frame = design_frame(designs)
    z = norm.ppf(0.5 + level / 2.0)
    out = pd.DataFrame(index=frame.index)
    reasons: list[list[str]] = [[] for _ in range(len(frame))]
    for target in surrogate.targets:
        X = frame[list(FEATURES[target])]
        mean, std = surrogate.models[target].predict(X, return_std=True)
        space = TARGET_SPACES[target]
        part = {
            "mean": space.inverse(mean),
            "lower": space.inverse(mean - z * std),
            "upper": space.inverse(mean + z * std),
        }
        if target == "rate_retention":
            reference = frame["c_rate"].to_numpy() <= 0.1
        elif target == "capacity_retention":
            reference = frame["cycles"].to_numpy() <= 1
        else:
            reference = np.zeros(len(frame), dtype=bool)
        for name, values in part.items():
            out[f"{target}_{name}"] = np.where(reference, 1.0, values)
        for i, why in enumerate(reference_reasons(surrogate.domains[target], X)):
            if not reference[i]:
                reasons[i] += [f"{target}: {w}" for w in why]
    out["extrapolation"] = [bool(r) for r in reasons]
    out["extrapolation_reasons"] = reasons
    return out


def assert_same_predictions(new: pd.DataFrame, old: pd.DataFrame, rtol: float = 1e-9) -> None:
    assert list(new.columns) == list(old.columns)
    assert new.index.equals(old.index)
    for column in old.columns:
        if column == "extrapolation_reasons":
            assert [list(r) for r in new[column]] == [list(r) for r in old[column]]
        elif column == "extrapolation":
            assert new[column].dtype == bool
            np.testing.assert_array_equal(new[column].to_numpy(), old[column].to_numpy())
        else:
            np.testing.assert_allclose(new[column].to_numpy(float), old[column].to_numpy(float), rtol=rtol, atol=0)


def test_bundle_answers_as_the_per_row_algorithm(bundle, designs):
    for level in (0.9, 0.5):
        assert_same_predictions(bundle.predict(designs, level=level), reference_predict(bundle, designs, level))
    flags = bundle.predict(designs)["extrapolation"]
    assert 0 < flags.sum() < len(designs)  # both the inside fast exit and the reasons are exercised


def test_every_input_form_gives_the_same_answer(bundle, designs):
    few = designs.iloc[:50]
    expected = bundle.predict(few)
    as_batch = base.design_batch(few)
    assert_same_predictions(bundle.predict(few.to_dict("records")), expected, rtol=0)
    assert_same_predictions(bundle.predict(as_batch), expected, rtol=0)
    assert_same_predictions(pd.DataFrame(bundle.predict_columns(as_batch)), expected, rtol=0)
    # One design at a time: rows are independent, but BLAS rounds one row differently from many (float32 in torch).
    for i in (0, 7, 49):
        assert_same_predictions(
            bundle.predict(few.iloc[[i]]).reset_index(drop=True), expected.iloc[[i]].reset_index(drop=True), rtol=1e-6
        )
    means = bundle.predict_means(few)
    for target in bundle.targets:
        np.testing.assert_array_equal(means[target].to_numpy(), expected[f"{target}_mean"].to_numpy())


def test_family_array_path_equals_its_frame_path(bundle, designs):
    batch = base.design_batch(designs)
    frame = batch.frame()
    for target, model in bundle.models.items():
        fast = model.predict_batch(batch, return_std=True)
        slow = model.predict(frame[list(FEATURES[target])], return_std=True)
        np.testing.assert_array_equal(fast[0], slow[0])
        np.testing.assert_array_equal(fast[1], slow[1])
        np.testing.assert_array_equal(model.predict_batch(batch), fast[0])


# ------------------------------------------------------------------ each shortcut against what it replaces
def test_interp_of_many_parameter_vectors_equals_numpy_interp():
    from surrogate.models.physics_baseline import _interp

    rng = np.random.default_rng(0)
    xp = np.array([25.0, 200.0, 300.0, 450.0])
    x = np.concatenate([xp, rng.uniform(-50, 600, 500), [xp[0] - 1e-12, xp[-1] + 1e-12]])
    fp = rng.normal(size=(xp.size, 6))
    both = _interp(x[:, None], xp, fp)
    for k in range(fp.shape[1]):
        np.testing.assert_array_equal(both[:, k], np.interp(x, xp, fp[:, k]))
    np.testing.assert_array_equal(_interp(x, xp, fp[:, 0]), np.interp(x, xp, fp[:, 0]))


@pytest.mark.parametrize("target", TARGETS)
def test_batched_jacobian_equals_the_per_parameter_loop(data, designs, target):
    from surrogate.evaluation import training_xy
    from surrogate.models.physics_baseline import PhysicsBaseline, _columns

    X, y, _ = training_xy(data, target)
    model = PhysicsBaseline(target).fit(X, y)
    law = model.law_
    assert law.batched
    columns = _columns(base.design_batch(designs))
    full = np.concatenate([model.theta_, np.zeros(len(law.extra_names))])
    mean = law.natural(full, columns)
    jac = np.empty((len(mean), full.size))
    for j in range(full.size):
        step = 1e-6 * max(1.0, abs(full[j]))
        shifted = full.copy()
        shifted[j] += step
        jac[:, j] = (law.natural(shifted, columns) - mean) / step
    steps = 1e-6 * np.maximum(1.0, np.abs(full))
    batched = law.natural(
        np.column_stack([full, full[:, None] + np.diag(steps)]), {k: v[:, None] for k, v in columns.items()}
    )
    np.testing.assert_array_equal(batched[:, 0], mean)
    np.testing.assert_array_equal((batched[:, 1:] - mean[:, None]) / steps, jac)


def test_category_effect_equals_a_lookup():
    from surrogate.models.physics_baseline import _category_effect

    codes = np.array([0, 1, 2, 3, 2, 0])
    seen = ["llto_ncm", "none", "sio2"]
    effects = np.array([0.5, -1.0, 2.0])
    lookup = dict(zip(seen, effects, strict=True))
    expected = [lookup.get(BUFFERS[c], float(np.mean(effects)) + 0.25) for c in codes]
    np.testing.assert_array_equal(_category_effect(codes, seen, effects, 0.25), expected)
    many = _category_effect(codes[:, None], seen, np.column_stack([effects, 2 * effects]), np.array([0.25, 0.5]))
    np.testing.assert_array_equal(many[:, 0], expected)


def test_gp_posterior_equals_scikit_learn_predict(data):
    from surrogate.evaluation import training_xy
    from surrogate.models.features import encode
    from surrogate.models.gp import GPSurrogate, gp_posterior

    X, y, _ = training_xy(data, "rate_retention")
    model = GPSurrogate("rate_retention", max_points=60).fit(X, y)
    z = model._standardise(encode(random_designs(300)[list(X.columns)], "rate_retention"))
    mean, std = model.gp_.predict(z, return_std=True)
    fast_mean, fast_std = gp_posterior(model.gp_, z, return_std=True)
    np.testing.assert_array_equal(fast_mean, mean)
    np.testing.assert_array_equal(fast_std, std)
    np.testing.assert_array_equal(gp_posterior(model.gp_, z), model.gp_.predict(z))


def test_forest_tree_shortcut_equals_each_trees_predict(data):
    from surrogate.evaluation import training_xy
    from surrogate.models.features import encode
    from surrogate.models.trees import ForestSurrogate

    X, y, _ = training_xy(data, "rate_retention")
    model = ForestSurrogate("rate_retention", n_estimators=20).fit(X, y)
    designs = random_designs(200)[list(X.columns)]
    features = encode(designs, "rate_retention")
    per_tree = np.stack([tree.predict(features) for tree in model.forest_.estimators_])
    mean, std = model.predict(designs, return_std=True)
    np.testing.assert_array_equal(mean, per_tree.mean(axis=0))
    np.testing.assert_array_equal(std, np.sqrt(per_tree.var(axis=0) + model.noise_variance_))


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("column", ["anneal_temp_c", "test_temp_c", "c_rate", "cycles"])
def test_validation_screen_never_misses_a_value_the_schema_rejects(column):
    from surrogate.models.base import _suspect
    from surrogate.schema import value_problem

    rng = np.random.default_rng(1)
    edges = [
        -300,
        -273.15,
        -273.14,
        -100,
        -100.000001,
        -1,
        0,
        1e-9,
        0.1,
        0.5,
        1,
        1.5,
        2,
        25,
        199.99,
        200,
        200.01,
        272.99,
        273,
        273.15,
        298.15,
        300,
        373.15,
        573.15,
        573.1500001,
        1000,
        1199,
        1200,
        1200.5,
        1473.15,
        1e6,
    ]
    values = np.array(
        edges
        + list(rng.uniform(-400, 1600, 4000))
        + list(np.round(rng.uniform(-400, 1600, 2000), 2))
        + list(np.arange(-300, 1600) + 0.15),
        dtype=float,
    )
    rejected = np.array([value_problem(column, float(v)) is not None for v in values])
    screened = _suspect(column, values)
    assert not np.any(rejected & ~screened), values[rejected & ~screened][:5]


def test_validation_names_the_design_and_the_field():
    good = {"buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 25.0}
    bad = [
        good,
        {**good, "buffer": "gold"},
        {**good, "anneal_temp_c": 573.15},
        {**good, "test_temp_c": float("nan")},
        {**good, "c_rate": -1.0},
        {**good, "cycles": 2.5, "protocol": "fast"},
        {**good, "anneal_temp_c": "hot"},
        {**good, "test_temp_c": float("inf")},
    ]
    with pytest.raises(InputError) as error:
        base.design_batch(bad)
    message = str(error.value)
    for expected in (
        "design 2: buffer: unknown buffer 'gold'",
        "design 3: anneal_temp_c: 573.15 looks like kelvin",
        "design 4: test_temp_c: missing (required)",
        "design 5: c_rate: c_rate must be > 0 C",
        "design 6: protocol: unknown protocol 'fast'",
        "design 6: cycles: cycles must be a whole number",
        "design 7: anneal_temp_c: 'hot' is not a number",
        "design 8: test_temp_c: must be finite, got inf",
    ):
        assert expected in message
    assert "design 1:" not in message
    for rows in (bad, bad * 5):  # a frame (read row-wise when small, by column when large) says the same
        with pytest.raises(InputError) as from_list:
            base.design_batch(rows)
        with pytest.raises(InputError) as from_frame:
            base.design_batch(pd.DataFrame(rows))
        assert str(from_frame.value) == str(from_list.value)
    with pytest.raises(InputError, match="at least one design"):
        base.design_batch([])
    with pytest.raises(InputError, match="test_temp_c: missing"):
        base.design_batch([{"buffer": "sio2", "anneal_temp_c": 300.0}])


def test_design_batch_fills_defaults_and_canonicalises():
    batch = base.design_batch(
        {
            "buffer": ["SiO₂", "bare"],
            "anneal_temp_c": [300, 25],
            "test_temp_c": [25.0, 60.0],
            "protocol": [None, "LONG"],
            "cycles": [None, 10],
        }
    )
    frame = batch.frame()
    assert list(frame.columns) == ["buffer", "anneal_temp_c", "test_temp_c", "c_rate", "cycles", "protocol", "material"]
    assert frame["material"].tolist() == ["llto_film", "llto_film"]  # optional: the paper's film by default
    assert frame["buffer"].tolist() == ["sio2", "none"] and frame["protocol"].tolist() == ["standard", "long"]
    assert frame["c_rate"].tolist() == [30.0, 30.0] and frame["cycles"].tolist() == [100.0, 10.0]
    pd.testing.assert_frame_equal(design_frame(frame), frame)
    assert len(base.DesignBatch.concat([batch, batch.take(np.array([1]))])) == 3


def test_training_domain_lookup_is_not_pickled_and_is_rebuilt(data):
    from surrogate.evaluation import training_xy

    X, _, _ = training_xy(data, "capacity_retention")
    domain = TrainingDomain.from_frame(X)
    batch = base.design_batch(random_designs(200))
    before = domain.outside(batch)
    assert "_lookup" in domain.__dict__
    copy = pickle.loads(pickle.dumps(domain))
    assert "_lookup" not in copy.__dict__ and copy == domain
    assert copy.outside(batch) == before


def test_derived_caches_are_not_pickled_and_a_refit_replaces_them(data):
    from surrogate.evaluation import training_xy
    from surrogate.models.registry import make_model

    X, y, meta = training_xy(data, "capacity_retention")
    model = make_model("physics", "capacity_retention").fit(X, y, sample_ids=meta["sample_id"])
    batch = base.design_batch(random_designs(100))
    first = model.predict_batch(batch, return_std=True)
    assert "_seen_codes" in model.__dict__ and "_vectors" in model.estimator_.__dict__
    copy = pickle.loads(pickle.dumps(model))
    assert "_seen_codes" not in copy.__dict__ and "_vectors" not in copy.estimator_.__dict__
    np.testing.assert_array_equal(copy.predict_batch(batch, return_std=True)[1], first[1])
    keep = X["protocol"].to_numpy() == "standard"  # a refit on other data must not answer from the old caches
    model.fit(X[keep], y[keep], sample_ids=meta["sample_id"][keep])
    fresh = make_model("physics", "capacity_retention").fit(X[keep], y[keep], sample_ids=meta["sample_id"][keep])
    np.testing.assert_array_equal(model.predict_batch(batch, return_std=True)[1], fresh.predict_batch(batch, True)[1])
