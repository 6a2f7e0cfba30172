"""scikit-learn's conventions in every model family (issue 17 §6): constraints, check_is_fitted, handle_unknown.

``parametrize_with_checks`` runs scikit-learn's estimator checks on each family. The families are regressors of
*design tables* (named columns: buffer, anneal_temp_c, ...; see surrogate.models.features), not of anonymous
numeric matrices, so the checks that feed random numeric arrays cannot apply; each is listed below as an
expected failure with its reason.
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from surrogate.design import CONDUCTIVITY
from surrogate.models.registry import FAMILIES

ESTIMATORS = [FAMILIES[name].make(CONDUCTIVITY) for name in FAMILIES]


NUMERIC_MATRIX = (
    "feeds an anonymous numeric matrix (or list); a family fits a design table with named columns (buffer, "
    "anneal_temp_c, test_temp_c, ...) and refuses anything else with an InputError naming the missing column"
)
NEEDS_NUMERIC_MATRIX = [
    "check_regressors_train",
    "check_estimators_pickle",
    "check_supervised_y_2d",
    "check_requires_y_none",
    "check_regressors_no_decision_function",
    "check_regressors_int",
    "check_regressor_data_not_an_array",
    "check_readonly_memmap_input",
    "check_positive_only_tag_during_fit",
    "check_pipeline_consistency",
    "check_n_features_in_after_fitting",
    "check_n_features_in",
    "check_methods_subset_invariance",
    "check_methods_sample_order_invariance",
    "check_fit_score_takes_y",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_fit2d_predict1d",
    "check_fit2d_1sample",
    "check_fit2d_1feature",
    "check_f_contiguous_array_estimator",
    "check_estimators_overwrite_params",
    "check_estimators_nan_inf",
    "check_estimators_fit_returns_self",
    "check_estimators_dtypes",
    "check_dtype_object",
    "check_dont_overwrite_parameters",
    "check_dict_unchanged",
    "check_complex_data",
]
OTHER_REASONS = {
    "check_estimators_empty_data_messages": "an empty design table is refused with the project's InputError message "
    "('X: missing column ...'), not scikit-learn's wording for an empty array",
    "check_estimator_sparse_tag": "design tables are dense frames of mixed types; no sparse input",
    "check_estimator_sparse_matrix": "design tables are dense frames of mixed types; no sparse input",
    "check_estimator_sparse_array": "design tables are dense frames of mixed types; no sparse input",
    "check_non_transformer_estimators_n_iter": "max_iter caps an inner L-BFGS-B fit of kernel hyper-parameters; the "
    "estimator has no iterations of its own to report as n_iter_ (and the check fits a numeric matrix)",
}


def expected_failed_checks(estimator) -> dict[str, str]:
    """Every check that cannot apply to a design-table regressor, with why (the n_iter check only where the
    estimator has a ``max_iter``: the others pass it)."""
    reasons = {name: NUMERIC_MATRIX for name in NEEDS_NUMERIC_MATRIX} | OTHER_REASONS
    if "max_iter" not in estimator.get_params():
        reasons.pop("check_non_transformer_estimators_n_iter")
    return reasons


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ------------------------------------------------------------------ the conventions on design tables
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402

from surrogate.dataset import load_default_dataset  # noqa: E402
from surrogate.design import RATE_RETENTION  # noqa: E402
from surrogate.errors import InputError  # noqa: E402
from surrogate.evaluation import training_xy  # noqa: E402
from surrogate.models.features import HANDLE_UNKNOWN  # noqa: E402

FAST = {
    "physics_gp": {"max_points": 60},
    "gp": {"max_points": 40},
    "trees": {"n_estimators": 20},
    "torch": {"epochs": 40, "n_members": 2},
}
ML_FAMILIES = list(FAST)


@pytest.mark.parametrize("name", ML_FAMILIES)
def test_every_family_declares_parameter_constraints_and_refuses_bad_ones(name):
    estimator = FAMILIES[name].make(RATE_RETENTION)
    assert set(estimator._parameter_constraints) == set(estimator.get_params())
    assert estimator.get_params()["handle_unknown"] == "population" and "population" in HANDLE_UNKNOWN
    bad = FAMILIES[name].make(RATE_RETENTION, handle_unknown="ignore")
    X, y, _ = training_xy(load_default_dataset(), RATE_RETENTION)
    with pytest.raises(InputError, match="handle_unknown"):
        bad.fit(X, y)


@pytest.mark.parametrize("name", ML_FAMILIES)
def test_unfitted_estimators_raise_not_fitted_via_check_is_fitted(name):
    estimator = FAMILIES[name].make(RATE_RETENTION)
    design = pd.DataFrame({"buffer": ["sio2"], "anneal_temp_c": [300.0], "test_temp_c": [25.0], "c_rate": [10.0]})
    with pytest.raises(NotFittedError, match="not fitted"):
        estimator.predict(design)


@pytest.mark.parametrize("name", ML_FAMILIES)
def test_one_handle_unknown_policy_for_a_buffer_the_model_never_saw(name):
    """'population' (the default, every family): a new member of the buffer population, wider than a trained
    buffer; 'error': an InputError naming the buffers the model knows."""
    X, y, _ = training_xy(load_default_dataset(), RATE_RETENTION)
    seen = X["buffer"].isin(["none", "llto_ncm", "sio2"]).to_numpy()
    X, y = X[seen].reset_index(drop=True), y[seen]
    design = pd.DataFrame(
        {"buffer": ["sio2", "lipon"], "anneal_temp_c": [300.0] * 2, "test_temp_c": [25.0] * 2, "c_rate": [10.0] * 2}
    )
    model = FAMILIES[name].make(RATE_RETENTION, **FAST[name]).fit(X, y)
    mean, std = model.predict(design, return_std=True)
    assert np.all(np.isfinite(mean)) and std[1] > std[0]
    strict = FAMILIES[name].make(RATE_RETENTION, handle_unknown="error", **FAST[name]).fit(X, y)
    with pytest.raises(InputError, match="lipon"):
        strict.predict(design)
