"""FID and KID against closed forms and independent computations."""

import numpy as np
import pytest
import torch

from fusionlab.errors import FusionlabError
from fusionlab.fid import frechet_distance, frechet_distance_from_moments, kernel_inception_distance


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _fid_reference(mu_a, s_a, mu_b, s_b) -> float:
    """Independent route: Tr sqrt(S_a S_b) from the (real, non-negative) eigenvalues of the non-symmetric product."""
    eig = np.linalg.eigvals(s_a @ s_b)
    assert np.abs(eig.imag).max() < 1e-8 and eig.real.min() > -1e-8
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * np.sqrt(eig.real.clip(0)).sum())


def test_identical_features_have_zero_fid():
    x = torch.randn(500, 32, dtype=torch.float64) * 10 + 3
    scale = float(torch.cov(x.T).trace())
    assert abs(frechet_distance(x, x)) < 1e-6 * scale
    assert abs(frechet_distance(x.float(), x.numpy())) < 1e-6 * scale


def test_fid_is_symmetric_and_positive():
    a, b = torch.randn(300, 16), torch.randn(400, 16) * 1.5 + 0.2
    ab, ba = frechet_distance(a, b), frechet_distance(b, a)
    assert ab > 0.5
    assert ab == pytest.approx(ba, rel=1e-9)


def test_fid_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(0)
    mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
    s_a, s_b = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    closed = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(s_a) - np.sqrt(s_b)) ** 2)
    got = frechet_distance_from_moments(mu_a, np.diag(s_a), mu_b, np.diag(s_b))
    assert got == pytest.approx(closed, rel=1e-10)


def test_fid_of_full_covariances_matches_independent_computations():
    rng = np.random.default_rng(1)
    d = 12
    mu_a, mu_b, s_a, s_b = rng.normal(size=d), rng.normal(size=d), _random_cov(rng, d), _random_cov(rng, d)
    got = frechet_distance_from_moments(torch.from_numpy(mu_a), torch.from_numpy(s_a), mu_b, s_b)
    assert got == pytest.approx(_fid_reference(mu_a, s_a, mu_b, s_b), rel=1e-9)
    try:
        from scipy.linalg import sqrtm
    except ImportError:
        return
    covmean = np.real(sqrtm(s_a @ s_b))  # pytorch-fid's route
    ref = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean)
    assert got == pytest.approx(ref, rel=1e-8)


def test_fid_of_rank_deficient_covariances_is_finite():
    # Fewer samples than dims (as 2048-d Inception features of a few hundred images): singular covariances.
    a, b = torch.randn(20, 64), torch.randn(30, 64) + 1
    got = frechet_distance(a, b)
    mu_a, s_a = a.double().mean(0).numpy(), np.cov(a.double().numpy(), rowvar=False)
    mu_b, s_b = b.double().mean(0).numpy(), np.cov(b.double().numpy(), rowvar=False)
    assert np.isfinite(got) and got == pytest.approx(_fid_reference(mu_a, s_a, mu_b, s_b), rel=1e-6)


def test_fid_of_samples_approaches_the_fid_of_their_gaussians():
    rng = np.random.default_rng(2)
    d, n = 8, 20000
    mu_a, mu_b, s_a, s_b = rng.normal(size=d), rng.normal(size=d), _random_cov(rng, d), _random_cov(rng, d)
    a = rng.multivariate_normal(mu_a, s_a, size=n)
    b = rng.multivariate_normal(mu_b, s_b, size=n)
    true = _fid_reference(mu_a, s_a, mu_b, s_b)
    assert frechet_distance(a, b) == pytest.approx(true, rel=0.05)


@pytest.mark.parametrize("bad", [torch.randn(1, 4), torch.randn(10)])
def test_fid_refuses_too_few_samples_or_wrong_rank(bad):
    with pytest.raises(ValueError):
        frechet_distance(bad, torch.randn(10, 4))
    with pytest.raises(ValueError):
        kernel_inception_distance(torch.randn(10, 4), bad)


def test_mismatched_dims_are_refused():
    with pytest.raises(FusionlabError, match="dimensions differ"):
        frechet_distance(torch.randn(10, 4), torch.randn(10, 5))
    with pytest.raises(ValueError, match="dimensions differ"):
        kernel_inception_distance(torch.randn(10, 4), torch.randn(10, 5))
    with pytest.raises(ValueError):
        frechet_distance_from_moments(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def _mmd2_naive(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, pair by pair."""
    m, d = x.shape
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_with_whole_sets_is_the_unbiased_mmd2():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(25, 5)), rng.normal(loc=0.3, size=(25, 5))
    # subset_size caps at the set size: the subset is the whole set, and MMD^2 does not depend on the order.
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=1000)
    assert mean == pytest.approx(_mmd2_naive(x, y), rel=1e-10)
    assert std < 1e-12


def test_kid_of_a_set_with_itself_is_slightly_negative():
    # With X = Y the within-set sums skip the diagonal but the cross sum does not:
    # MMD^2_u = 2/m * (mean off-diagonal k - mean diagonal k) < 0. Not zero: the estimator is unbiased, not exact.
    x = np.random.default_rng(4).normal(size=(40, 6))
    k = (x @ x.T / 6 + 1) ** 3
    m = len(x)
    expected = 2 / m * ((k.sum() - np.trace(k)) / (m * (m - 1)) - np.trace(k) / m)
    mean, _ = kernel_inception_distance(x, x, subsets=2, subset_size=m)
    assert expected < 0 and mean == pytest.approx(expected, rel=1e-10)


def test_kid_of_the_same_distribution_is_unbiased_around_zero():
    gen = torch.Generator().manual_seed(5)
    a, b = torch.randn(2000, 16, generator=gen), torch.randn(2000, 16, generator=gen)
    subsets = 100
    mean, std = kernel_inception_distance(a, b, subsets=subsets, subset_size=200, seed=0)
    assert abs(mean) < 4 * std / subsets**0.5
    single = [kernel_inception_distance(a, b, subsets=1, subset_size=100, seed=s)[0] for s in range(40)]
    assert min(single) < 0 < max(single)  # a biased (V-statistic) estimate would be positive every time


def test_kid_of_a_shifted_distribution_is_clearly_positive():
    gen = torch.Generator().manual_seed(6)
    a, b = torch.randn(1000, 16, generator=gen), torch.randn(1000, 16, generator=gen) + 0.5
    same = kernel_inception_distance(a, torch.randn(1000, 16, generator=gen), subsets=50, subset_size=200)
    mean, std = kernel_inception_distance(a, b, subsets=50, subset_size=200)
    assert mean > 10 * std / 50**0.5 and mean > 10 * abs(same[0])


def test_kid_is_reproducible_by_seed():
    a, b = torch.randn(300, 8), torch.randn(300, 8) + 0.1
    first = kernel_inception_distance(a, b, subsets=5, subset_size=50, seed=7)
    assert kernel_inception_distance(a, b, subsets=5, subset_size=50, seed=7) == first
    assert kernel_inception_distance(a, b, subsets=5, subset_size=50, seed=8) != first
