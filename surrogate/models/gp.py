"""Gaussian-process family: scikit-learn's GaussianProcessRegressor on the shared physics-aware features.

Features come from :mod:`surrogate.models.features` (1000/T for the Arrhenius
dependence, log10 C-rate, log10 and linear cycles, one-hot buffer and
protocol), standardised; columns constant in the training data are dropped
(they carry nothing, and the training domain flags designs that vary them).
Kernel: C·RBF with one length scale per feature (ARD), plus (``linear_trend``)
a linear DotProduct term so Arrhenius-like trends extrapolate as lines, plus a
WhiteKernel for measurement noise; ``normalize_y=True``. The predictive std
includes the fitted white noise, so intervals are for fresh measurements.

Large data: the GP is fitted on at most about ``max_points`` rows, a
deterministic stratified subsample: every buffer × protocol stratum keeps a
share proportional to its size (at least 10 rows or all it has), spread evenly
over its rows sorted by the numeric features (so a cycling curve is thinned
evenly along its cycles; :func:`~surrogate.models.features.stratified_subsample`).
1,395 cycling rows become 150 by default.
"""

from __future__ import annotations

import warnings
from functools import partial
from numbers import Integral

import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, WhiteKernel
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from surrogate.design import CONDUCTIVITY
from surrogate.errors import InputError
from surrogate.models.base import FEATURES, DesignBatch
from surrogate.models.features import (
    PARAMETER_CONSTRAINTS_COMMON,
    Vocabulary,
    canonical_features,
    check_encoding,
    check_y,
    predict_with_unknown_buffers,
    stratified_subsample,
    validate_params,
    vocabulary_of,
)


def capped_lbfgs(
    obj_func, initial_theta: np.ndarray, bounds: np.ndarray, max_iter: int = 200
) -> tuple[np.ndarray, float]:
    """scikit-learn's GP optimiser (L-BFGS-B on the log marginal likelihood) with an iteration cap."""
    result = minimize(
        obj_func, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": max_iter}
    )
    return result.x, float(result.fun)


class GPSurrogate(RegressorMixin, BaseEstimator):
    """Gaussian process for one target (see the module docstring).

    Parameters: ``target``; ``max_points`` (subsample size, rows); ``n_restarts_optimizer`` (extra
    kernel-hyper-parameter restarts); ``linear_trend`` (add a DotProduct term); ``random_state``;
    ``max_iter`` (L-BFGS-B iterations per optimiser start); ``encoding`` (``onehot`` or ``descriptors``:
    how buffers and materials are encoded, see :mod:`surrogate.models.features`).
    """

    def __init__(
        self,
        target: str = CONDUCTIVITY,
        max_points: int = 150,
        n_restarts_optimizer: int = 0,
        linear_trend: bool = True,
        random_state: int = 0,
        max_iter: int = 100,
        encoding: str = "onehot",
        handle_unknown: str = "population",
    ) -> None:
        self.target = target
        self.max_points = max_points
        self.n_restarts_optimizer = n_restarts_optimizer
        self.linear_trend = linear_trend
        self.random_state = random_state
        self.max_iter = max_iter
        self.encoding = encoding
        self.handle_unknown = handle_unknown

    _parameter_constraints: dict = {
        **PARAMETER_CONSTRAINTS_COMMON,
        "max_points": [Interval(Integral, 2, None, closed="left")],
        "n_restarts_optimizer": [Interval(Integral, 0, None, closed="left")],
        "linear_trend": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> GPSurrogate:
        validate_params(self)
        frame = canonical_features(X, self.target).reset_index(drop=True)
        values = check_y(y, len(frame))
        self.vocabulary_ = Vocabulary.learn(frame, check_encoding(self.encoding))
        keep = stratified_subsample(frame, int(self.max_points))
        features = self.vocabulary_.encode(DesignBatch.from_frame(frame.iloc[keep]), self.target)
        self.feature_mean_ = features.mean(axis=0)
        scale = features.std(axis=0)
        self.active_ = scale > 1e-12
        if not self.active_.any():
            raise InputError(f"{self.target}: every feature is constant in the training data; a GP needs variation")
        self.feature_scale_ = np.where(self.active_, scale, 1.0)
        z = self._standardise(features)
        dims = int(self.active_.sum())
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(dims), (1e-2, 1e3))
        if self.linear_trend:
            kernel = kernel + ConstantKernel(0.1, (1e-4, 1e2)) * DotProduct(1.0, (1e-3, 1e2))
        kernel = kernel + WhiteKernel(1e-2, (1e-6, 1.0))
        self.gp_ = GaussianProcessRegressor(
            kernel,
            normalize_y=True,
            n_restarts_optimizer=int(self.n_restarts_optimizer),
            random_state=self.random_state,
            optimizer=partial(capped_lbfgs, max_iter=int(self.max_iter)),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # length scales at a bound: harmless here
            self.gp_.fit(z, values[keep])
        self.n_train_ = int(keep.size)
        self.n_features_in_ = frame.shape[1]
        self.feature_names_in_ = np.array(list(FEATURES[self.target]), dtype=object)
        return self

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.feature_mean_) / self.feature_scale_)[:, self.active_]

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mean (and predictive std including the white noise) in natural space."""
        check_is_fitted(self, "gp_")
        return self.predict_batch(DesignBatch.from_frame(canonical_features(X, self.target)), return_std)

    def predict_batch(
        self, designs: DesignBatch, return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` on validated designs (arrays, no checks)."""
        check_is_fitted(self, "gp_")
        return predict_with_unknown_buffers(self, designs, return_std, self._predict_encoded)

    def _predict_encoded(self, designs: DesignBatch, return_std: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        features = vocabulary_of(self).encode(designs, self.target)
        return gp_posterior(self.gp_, self._standardise(features), return_std)

    @property
    def categories_(self) -> dict[str, tuple[str, ...]]:
        """The categories learned at fit time (``buffer``, ``material``), like ``OneHotEncoder.categories_``."""
        return vocabulary_of(self).categories


def gp_posterior(
    gp: GaussianProcessRegressor, z: np.ndarray, return_std: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``gp.predict(z, return_std)`` of a fitted single-output GP, without re-validating ``z`` (a float matrix).

    The same arithmetic as scikit-learn's posterior branch (``_gpr.py``: K(z, X)·α, the triangular solve,
    variances clipped at 0 with its warning, normalisation undone); input validation costs more than the
    arithmetic for a handful of rows.
    """
    k_trans = gp.kernel_(z, gp.X_train_)
    mean = gp._y_train_std * (k_trans @ gp.alpha_) + gp._y_train_mean
    if mean.ndim > 1 and mean.shape[1] == 1:
        mean = np.squeeze(mean, axis=1)
    if not return_std:
        return mean
    v = solve_triangular(gp.L_, k_trans.T, lower=True, check_finite=False)  # L_ is the lower Cholesky factor
    variance = gp.kernel_.diag(z).copy()
    variance -= np.einsum("ij,ji->i", v.T, v)
    negative = variance < 0
    if np.any(negative):
        warnings.warn("Predicted variances smaller than 0. Setting those variances to 0.", stacklevel=2)
        variance[negative] = 0.0
    variance = np.outer(variance, gp._y_train_std**2).reshape(*variance.shape, -1)
    if variance.shape[1] == 1:
        variance = np.squeeze(variance, axis=1)
    return mean, np.sqrt(variance)
