"""Metrics equal scipy / numpy on random and on heavily tied maps (MNIST saliency has hundreds of exact zeros)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from attrobust.metrics import (
    average_ranks,
    center_of_mass,
    center_shift,
    kendall_tau_b,
    spearman_rho,
    top_k_indices,
    topk_intersection,
)


def random_maps(kind: str, n: int = 12, d: int = 784, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, d, generator=g)
    b = a + 0.3 * torch.rand(n, d, generator=g)
    if kind == "tied":  # like saliency maps: most entries exactly zero, the rest on a coarse grid
        zero = torch.rand(n, d, generator=g) < 0.8
        a = torch.where(zero, 0.0, (a * 8).floor())
        b = torch.where(zero & (torch.rand(n, d, generator=g) < 0.9), 0.0, (b * 8).floor())
    return a, b


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@pytest.mark.parametrize("kind", ["random", "tied"])
@pytest.mark.parametrize("d", [784, 5, 1000])
def test_kendall_and_spearman_equal_scipy(kind, d):
    a, b = random_maps(kind, d=d)
    tau, rho = kendall_tau_b(a, b), spearman_rho(a, b)
    for i in range(a.shape[0]):
        assert tau[i].item() == pytest.approx(stats.kendalltau(a[i], b[i]).statistic, abs=1e-12, nan_ok=True)
        assert rho[i].item() == pytest.approx(stats.spearmanr(a[i], b[i]).statistic, abs=1e-12, nan_ok=True)


def test_identical_and_reversed_maps():
    a, _ = random_maps("random")
    torch.testing.assert_close(kendall_tau_b(a, a), torch.ones(12, dtype=torch.float64))
    torch.testing.assert_close(kendall_tau_b(a, -a), -torch.ones(12, dtype=torch.float64))
    torch.testing.assert_close(spearman_rho(a, -a), -torch.ones(12, dtype=torch.float64))
    torch.testing.assert_close(topk_intersection(a, a, 100), torch.ones(12, dtype=torch.float64))


def test_constant_rows_give_nan_like_scipy():
    a = torch.zeros(1, 10)
    b = torch.rand(1, 10)
    assert torch.isnan(kendall_tau_b(a, b)).all() and torch.isnan(spearman_rho(a, b)).all()


def test_average_ranks_equal_scipy_rankdata():
    a, _ = random_maps("tied")
    expected = np.stack([stats.rankdata(row) for row in a.numpy()])
    np.testing.assert_array_equal(average_ranks(a).numpy(), expected)


@pytest.mark.parametrize("kind", ["random", "tied"])
@pytest.mark.parametrize("k", [1, 100, 200])
def test_topk_intersection_equals_numpy(kind, k):
    a, b = random_maps(kind)
    got = topk_intersection(a, b, k)
    for i in range(a.shape[0]):
        top_a = np.argsort(a[i].numpy(), kind="stable")[-k:]
        top_b = np.argsort(b[i].numpy(), kind="stable")[-k:]
        assert got[i].item() == len(np.intersect1d(top_a, top_b)) / k
    assert set(top_k_indices(a, k)[0].tolist()) == set(np.argsort(a[0].numpy(), kind="stable")[-k:].tolist())


def test_topk_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be in 1..4"):
        top_k_indices(torch.rand(2, 4), 5)


def test_center_of_mass_and_shift():
    maps = torch.zeros(2, 3 * 4)
    maps[0, 0] = 1.0                  # all mass at (0, 0)
    maps[1, 4 * 2 + 3] = 2.0          # all mass at (2, 3)
    torch.testing.assert_close(center_of_mass(maps, (3, 4)), torch.tensor([[0.0, 0.0], [2.0, 3.0]],
                                                                            dtype=torch.float64))
    torch.testing.assert_close(center_shift(maps[:1], maps[1:], (3, 4)), torch.tensor([13 ** 0.5],
                                                                                      dtype=torch.float64))
