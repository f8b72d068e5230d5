"""Fréchet distance (FID) and kernel distance (KID) between two sets of features, in float64.

FID = |mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2)). The trace term is computed as the sum of the
square roots of the eigenvalues of sqrt(S_a) S_b sqrt(S_a), a symmetric PSD matrix with the same eigenvalues as
S_a S_b, so no non-symmetric matrix square root (and no complex parts) is ever needed.

KID is the unbiased MMD^2 estimator with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random
subsets (Binkowski et al. 2018; as torch-fidelity and clean-fid compute it). Values are raw: reports usually show
KID x 100.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fusionlab.errors import FusionlabError

ArrayLike = Tensor | np.ndarray


def _as_f64(x: ArrayLike, what: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise FusionlabError(f"{what} must be a tensor or numpy array, got {type(x).__name__}")
    return x.detach().to("cpu", torch.float64)


def _features_pair(features_a: ArrayLike, features_b: ArrayLike) -> tuple[Tensor, Tensor]:
    a, b = _as_f64(features_a, "features_a"), _as_f64(features_b, "features_b")
    for what, x in (("features_a", a), ("features_b", b)):
        if x.dim() != 2:
            raise FusionlabError(f"{what} must be [N, D], got shape {tuple(x.shape)}")
        if x.shape[0] < 2:
            raise FusionlabError(f"{what} needs at least 2 samples, got {x.shape[0]}")
        if not torch.isfinite(x).all():
            raise FusionlabError(f"{what} holds NaN or inf values")
    if a.shape[1] != b.shape[1]:
        raise FusionlabError(f"feature dimensions differ: features_a has {a.shape[1]}, features_b {b.shape[1]}")
    return a, b


def _sym_sqrt(m: Tensor) -> Tensor:
    """Square root of a symmetric PSD matrix; rounding's tiny negative eigenvalues are clamped to 0."""
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance_from_moments(mu_a: ArrayLike, sigma_a: ArrayLike, mu_b: ArrayLike, sigma_b: ArrayLike) -> float:
    """Fréchet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b); `mu` [D], `sigma` [D, D] PSD."""
    mu_a, mu_b = _as_f64(mu_a, "mu_a"), _as_f64(mu_b, "mu_b")
    sigma_a, sigma_b = _as_f64(sigma_a, "sigma_a"), _as_f64(sigma_b, "sigma_b")
    d = mu_a.shape[-1] if mu_a.dim() == 1 else -1
    if mu_a.dim() != 1 or mu_b.shape != mu_a.shape or sigma_a.shape != (d, d) or sigma_b.shape != (d, d):
        raise FusionlabError(f"moments must be mu [D] and sigma [D, D] with one D; got mu_a {tuple(mu_a.shape)}, "
                             f"sigma_a {tuple(sigma_a.shape)}, mu_b {tuple(mu_b.shape)}, "
                             f"sigma_b {tuple(sigma_b.shape)}")
    root_a = _sym_sqrt(sigma_a)
    inner = root_a @ sigma_b @ root_a
    tr_covmean = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    diff = mu_a - mu_b
    fid = diff @ diff + torch.trace(sigma_a) + torch.trace(sigma_b) - 2 * tr_covmean
    return max(float(fid), 0.0)  # >= 0 in exact arithmetic; rounding can leave -1e-12 for identical sets


def feature_moments(features: ArrayLike) -> tuple[Tensor, Tensor]:
    """Mean [D] and unbiased covariance [D, D] (float64) of `[N, D]` features, as pytorch-fid's `np.cov`."""
    x = _as_f64(features, "features")
    if x.dim() != 2 or x.shape[0] < 2:
        raise FusionlabError(f"features must be [N, D] with N >= 2, got shape {tuple(x.shape)}")
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """FID between two `[N, D]` feature sets (N may differ; D must match)."""
    a, b = _features_pair(features_a, features_b)
    return frechet_distance_from_moments(*feature_moments(a), *feature_moments(b))


def _mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    d = x.shape[1]
    m = x.shape[0]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kernel_inception_distance(features_a: ArrayLike, features_b: ArrayLike, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over subsets) between two `[N, D]` feature sets.

    Each of `subsets` draws `subset_size` rows (capped at the smaller set) without replacement from each set, with a
    private generator seeded by `seed`, and computes the unbiased MMD^2. The mean can be slightly negative when the
    two sets come from the same distribution; the std is the spread over subsets (ddof 0, as torch-fidelity).
    """
    a, b = _features_pair(features_a, features_b)
    if subsets < 1:
        raise FusionlabError(f"subsets must be >= 1, got {subsets}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise FusionlabError(f"subset_size must be >= 2, got {subset_size}")
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(a.shape[0], generator=gen)[:m]]
        y = b[torch.randperm(b.shape[0], generator=gen)[:m]]
        values.append(_mmd2_unbiased(x, y))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=False))
