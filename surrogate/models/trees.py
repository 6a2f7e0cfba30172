"""Tree family: a random forest on the shared features, with ensemble intervals.

The forest (scikit-learn ``RandomForestRegressor``, bootstrap) is fitted on the
features of :mod:`surrogate.models.features`. Predictive variance = the spread
of the individual trees' predictions (model uncertainty) + the out-of-bag mean
squared residual (noise plus the model error a fresh row meets; conservative,
as part of the model error is counted twice). Trees are piecewise constant:
outside the training data they return the nearest leaf's value, so they do not
extrapolate trends (the training domain flags such designs). ``random_state``
makes fits deterministic.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
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
    validate_params,
    vocabulary_of,
)


class ForestSurrogate(RegressorMixin, BaseEstimator):
    """Random forest for one target; ``predict(X, return_std=True)`` gives tree spread + out-of-bag noise.

    Parameters: ``target``; ``n_estimators``; ``min_samples_leaf``; ``max_features`` (fraction of
    features per split); ``random_state``; ``encoding`` (``onehot`` or ``descriptors``).
    """

    def __init__(
        self,
        target: str = CONDUCTIVITY,
        n_estimators: int = 100,
        min_samples_leaf: int = 2,
        max_features: float = 1.0,
        random_state: int = 0,
        encoding: str = "onehot",
        handle_unknown: str = "population",
    ) -> None:
        self.target = target
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state
        self.encoding = encoding
        self.handle_unknown = handle_unknown

    _parameter_constraints: dict = {
        **PARAMETER_CONSTRAINTS_COMMON,
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "max_features": [Interval(Real, 0.0, 1.0, closed="right")],
    }

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> ForestSurrogate:
        validate_params(self)
        frame = canonical_features(X, self.target)
        values = check_y(y, len(frame))
        if len(values) < 3:
            raise InputError(f"{self.target}: a forest with out-of-bag noise needs ≥ 3 rows, got {len(values)}")
        self.vocabulary_ = Vocabulary.learn(frame, check_encoding(self.encoding))
        features = self.vocabulary_.encode(DesignBatch.from_frame(frame), self.target)
        self.forest_ = RandomForestRegressor(
            n_estimators=int(self.n_estimators),
            min_samples_leaf=int(self.min_samples_leaf),
            max_features=float(self.max_features),
            bootstrap=True,
            oob_score=True,
            random_state=self.random_state,
            n_jobs=1,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "some inputs have no OOB score" on tiny data
            self.forest_.fit(features, values)
        oob = self.forest_.oob_prediction_
        seen = np.isfinite(oob)
        self.noise_variance_ = float(np.mean((oob[seen] - values[seen]) ** 2)) if seen.any() else float(np.var(values))
        self.n_features_in_ = frame.shape[1]
        self.feature_names_in_ = np.array(list(FEATURES[self.target]), dtype=object)
        return self

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mean over trees (and std: tree spread + out-of-bag noise) in natural space."""
        check_is_fitted(self, "forest_")
        return self.predict_batch(DesignBatch.from_frame(canonical_features(X, self.target)), return_std)

    def predict_batch(
        self, designs: DesignBatch, return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` on validated designs (arrays, no checks)."""
        check_is_fitted(self, "forest_")
        return predict_with_unknown_buffers(self, designs, return_std, self._predict_encoded)

    def _predict_encoded(self, designs: DesignBatch, return_std: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        features = vocabulary_of(self).encode(designs, self.target)
        if not return_std:
            return self.forest_.predict(features)
        # Each tree's own predict re-validates its input; the fitted tree structures answer the same directly.
        rows = np.ascontiguousarray(features, dtype=np.float32)
        per_tree = np.stack([tree.tree_.predict(rows)[:, 0] for tree in self.forest_.estimators_])
        mean = per_tree.mean(axis=0)
        return mean, np.sqrt(per_tree.var(axis=0) + self.noise_variance_)

    @property
    def categories_(self) -> dict[str, tuple[str, ...]]:
        """The categories learned at fit time (``buffer``, ``material``), like ``OneHotEncoder.categories_``."""
        return vocabulary_of(self).categories
