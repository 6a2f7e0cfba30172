"""Torch family: a small deep ensemble of MLPs with Gaussian mean + variance heads (CPU, deterministic).

Each of ``n_members`` MLPs (``n_layers`` hidden layers of ``hidden`` SiLU units)
maps the standardised shared features (:mod:`surrogate.models.features`) to a
mean and a variance (softplus head) of the standardised target and is trained
full-batch with Adam on the Gaussian negative log-likelihood, so the variance
head learns the measurement noise. Members differ only by their initial
weights (drawn from a generator seeded with ``random_state``); the members are
stacked and trained in one batched pass (independently: no shared parameters,
losses summed, Adam is element-wise). The prediction is the mixture:
mean of the means, variance = mean of the variances (noise) + variance of the
means (model disagreement). One output per model (the per-target API).
Large data: the ensemble is trained on at most ``max_rows`` rows, the
deterministic stratified subsample of
:func:`~surrogate.models.features.stratified_subsample` (every buffer ×
protocol curve thinned evenly along its cycles): the 1,395 cycling rows
become 600, and a fit takes about 1 s on one core.

Initialisation uses its own seeded generator, so fitting does not touch the
global torch random state, and the same ``random_state`` gives the same
predictions. Fitting runs torch on one thread (restored afterwards).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn

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

VARIANCE_FLOOR = 1e-6
"""Smallest variance (standardised units) a head can give: keeps the likelihood finite."""


class _EnsembleMLP(nn.Module):
    """``n_members`` independent MLPs evaluated in one batched pass (weights stacked along a member axis).

    Members share no parameters and the loss is a sum of per-member losses, so Adam (element-wise)
    trains each exactly as if alone; batching only saves Python overhead.
    """

    def __init__(self, n_members: int, n_in: int, hidden: int, n_layers: int, seed: int) -> None:
        super().__init__()
        widths = [n_in] + [hidden] * n_layers + [2]
        generator = torch.Generator().manual_seed(seed)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            bound = 1.0 / np.sqrt(fan_in)  # PyTorch's default nn.Linear initialisation range
            w = (torch.rand(n_members, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(n_members, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (rows, features) → per-member mean and variance, each (members, rows)."""
        h = inputs.unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if k < last:
                h = nn.functional.silu(h)
        return h[..., 0], nn.functional.softplus(h[..., 1]) + VARIANCE_FLOOR


class DeepEnsemble(RegressorMixin, BaseEstimator):
    """Deep ensemble for one target (see the module docstring).

    Parameters: ``target``; ``n_members``; ``hidden`` (units per layer); ``n_layers``; ``epochs``
    (full-batch Adam steps); ``learning_rate``; ``weight_decay``; ``random_state``; ``max_rows``
    (training subsample size, rows); ``encoding`` (``onehot`` or ``descriptors``).
    """

    def __init__(
        self,
        target: str = CONDUCTIVITY,
        n_members: int = 5,
        hidden: int = 32,
        n_layers: int = 2,
        epochs: int = 400,
        learning_rate: float = 1e-2,
        weight_decay: float = 1e-4,
        random_state: int = 0,
        max_rows: int = 600,
        encoding: str = "onehot",
        handle_unknown: str = "population",
    ) -> None:
        self.target = target
        self.n_members = n_members
        self.hidden = hidden
        self.n_layers = n_layers
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.max_rows = max_rows
        self.encoding = encoding
        self.handle_unknown = handle_unknown

    _parameter_constraints: dict = {
        **PARAMETER_CONSTRAINTS_COMMON,
        **{
            name: [Interval(Integral, 1, None, closed="left")]
            for name in ("n_members", "hidden", "n_layers", "epochs", "max_rows")
        },
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0.0, None, closed="left")],
    }

    def _check_params(self) -> None:
        validate_params(self)

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> DeepEnsemble:
        self._check_params()
        frame = canonical_features(X, self.target).reset_index(drop=True)
        values = check_y(y, len(frame))
        if len(values) < 2:
            raise InputError(f"{self.target}: a deep ensemble needs ≥ 2 rows, got {len(values)}")
        self.vocabulary_ = Vocabulary.learn(frame, check_encoding(self.encoding))
        keep = stratified_subsample(frame, int(self.max_rows))
        frame, values = frame.iloc[keep], values[keep]
        features = self.vocabulary_.encode(DesignBatch.from_frame(frame), self.target)
        self.feature_mean_ = features.mean(axis=0)
        self.feature_scale_ = np.where(features.std(axis=0) > 1e-12, features.std(axis=0), 1.0)
        self.y_mean_ = float(values.mean())
        self.y_scale_ = float(values.std()) if values.std() > 1e-12 else 1.0
        inputs = torch.as_tensor((features - self.feature_mean_) / self.feature_scale_, dtype=torch.float32)
        target = torch.as_tensor((values - self.y_mean_) / self.y_scale_, dtype=torch.float32)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny networks: threads only add contention (restored below)
        try:
            self.network_ = self._train(inputs, target)
        finally:
            torch.set_num_threads(threads)
        self.n_features_in_ = frame.shape[1]
        self.feature_names_in_ = np.array(list(FEATURES[self.target]), dtype=object)
        return self

    def _train(self, inputs: torch.Tensor, target: torch.Tensor) -> _EnsembleMLP:
        network = _EnsembleMLP(
            int(self.n_members), inputs.shape[1], int(self.hidden), int(self.n_layers), int(self.random_state)
        )
        optimiser = torch.optim.Adam(
            network.parameters(), lr=float(self.learning_rate), weight_decay=float(self.weight_decay)
        )
        targets = target.unsqueeze(0).expand(int(self.n_members), -1)
        for _ in range(int(self.epochs)):
            optimiser.zero_grad()
            mean, var = network(inputs)
            # Gaussian NLL per member (mean over rows), summed over members.
            loss = (0.5 * (torch.log(var) + (mean - targets) ** 2 / var)).mean(dim=1).sum()
            loss.backward()
            optimiser.step()
        network.eval()
        return network

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mixture mean (and std: member noise + member disagreement) in natural space."""
        check_is_fitted(self, "network_")
        return self.predict_batch(DesignBatch.from_frame(canonical_features(X, self.target)), return_std)

    def predict_batch(
        self, designs: DesignBatch, return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` on validated designs (arrays, no checks)."""
        check_is_fitted(self, "network_")
        return predict_with_unknown_buffers(self, designs, return_std, self._predict_encoded)

    def _predict_encoded(self, designs: DesignBatch, return_std: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        features = vocabulary_of(self).encode(designs, self.target)
        inputs = torch.as_tensor((features - self.feature_mean_) / self.feature_scale_, dtype=torch.float32)
        with torch.no_grad():
            means, variances = self.network_(inputs)
        means_arr, vars_arr = means.numpy().astype(float), variances.numpy().astype(float)
        mean = means_arr.mean(axis=0) * self.y_scale_ + self.y_mean_
        if not return_std:
            return mean
        variance = (vars_arr.mean(axis=0) + means_arr.var(axis=0)) * self.y_scale_**2
        return mean, np.sqrt(variance)

    @property
    def categories_(self) -> dict[str, tuple[str, ...]]:
        """The categories learned at fit time (``buffer``, ``material``), like ``OneHotEncoder.categories_``."""
        return vocabulary_of(self).categories
