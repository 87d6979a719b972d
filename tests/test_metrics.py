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


# ---- contract tests, generated from the metric registry: a new metric is tested the moment it is registered ----

from attrobust.metrics import METRICS, MapSpec, build_metrics  # noqa: E402
from attrobust.metrics.lens import diverse_top_k_mask, lens_window_mask  # noqa: E402

SIZE = (9, 7)
SPEC = MapSpec(SIZE, 12)


def saliency_like(n: int, seed: int) -> torch.Tensor:
    """Non-negative maps with exact zeros and ties, like |IG| of MNIST digits."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(n, SIZE[0] * SIZE[1], generator=g, dtype=torch.float64)
    maps[maps < 0.3] = 0
    return (maps * 8).round() / 8


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_contract_identical_maps_batched_and_declarations(name):
    metric = METRICS.build({"name": name})
    a, b = saliency_like(6, 0), saliency_like(6, 1)
    values = metric(a, b, SPEC)
    assert values.shape == (6,) and values.dtype == torch.float64 and torch.isfinite(values).all()
    per_row = torch.cat([metric(a[i:i + 1], b[i:i + 1], SPEC) for i in range(6)])
    torch.testing.assert_close(values, per_row, atol=1e-12, rtol=0)
    same = metric(a, a, SPEC)
    torch.testing.assert_close(same, torch.full_like(same, metric.identical), atol=1e-12, rtol=0)
    best = values.max() if metric.higher_is_better else values.min()
    assert (best <= metric.identical) if metric.higher_is_better else (best >= metric.identical)
    assert metric.heading and metric.unit in ("%", "", "px") and metric.column == name
    assert build_metrics([{"name": name}])[0] == metric




@pytest.mark.parametrize("name", [name for name in METRICS.names() if METRICS.get(name).symmetric])
def test_symmetric_metrics_are_symmetric(name):
    metric = METRICS.build({"name": name})
    a, b = saliency_like(5, 2), saliency_like(5, 3)
    torch.testing.assert_close(metric(a, b, SPEC), metric(b, a, SPEC), atol=1e-12, rtol=0)


def test_lens_recall_and_precision_swap_with_the_maps_and_a_1x1_window_is_the_topk_intersection():
    a, b = saliency_like(8, 4), saliency_like(8, 5)
    recall, precision = (METRICS.build({"name": n, "window": 1}) for n in ("lens_recall", "lens_precision"))
    intersection = METRICS.build({"name": "topk_intersection"})
    torch.testing.assert_close(recall(a, b, SPEC), intersection(a, b, SPEC), atol=0, rtol=0)
    torch.testing.assert_close(precision(a, b, SPEC), intersection(a, b, SPEC), atol=0, rtol=0)
    wide_recall, wide_precision = (METRICS.build({"name": n}) for n in ("lens_recall", "lens_precision"))
    torch.testing.assert_close(wide_recall(a, b, SPEC), wide_precision(b, a, SPEC), atol=0, rtol=0)
    assert (wide_recall(a, b, SPEC) >= intersection(a, b, SPEC)).all()


def window_oracle(pixels: set[int], window: int) -> set[int]:
    height, width = SIZE
    half = window // 2
    return {r * width + c for p in pixels for r in range(p // width - half, p // width + half + 1)
            for c in range(p % width - half, p % width + half + 1) if 0 <= r < height and 0 <= c < width}


@pytest.mark.parametrize("window", [3, 5, 7])
def test_lens_equals_a_set_oracle_in_2d_without_wrapping_rows(window):
    a, b = saliency_like(6, 6), saliency_like(6, 7)
    k = SPEC.k
    recall = METRICS.build({"name": "lens_recall", "window": window})(a, b, SPEC)
    precision = METRICS.build({"name": "lens_precision", "window": window})(a, b, SPEC)
    for i in range(6):
        o = set(np.argsort(a[i].numpy(), kind="stable")[-k:].tolist())
        p = set(np.argsort(b[i].numpy(), kind="stable")[-k:].tolist())
        assert recall[i].item() == len(window_oracle(o, window) & p) / k
        assert precision[i].item() == len(o & window_oracle(p, window)) / k
    corner = torch.zeros(1, SIZE[0] * SIZE[1], dtype=torch.bool)
    corner[0, SIZE[1] - 1] = True  # the last pixel of the first row: its window must not reach the second row's start
    assert not lens_window_mask(corner, SIZE, 3)[0, SIZE[1]]


def test_diverse_top_k_equals_a_greedy_loop_oracle():
    jitter = torch.rand(5, SIZE[0] * SIZE[1], generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    maps = saliency_like(5, 8) + jitter * 1e-3  # no ties
    k, window, candidates = 6, 3, 30
    got = diverse_top_k_mask(maps, k, SIZE, window, candidates)
    for i in range(5):
        order = np.argsort(-maps[i].numpy(), kind="stable")[:candidates].tolist()
        taken: list[int] = []
        for pixel in order:
            if len(taken) < k and not window_oracle({pixel}, window) & set(taken):
                taken.append(pixel)
        assert set(got[i].nonzero().flatten().tolist()) == set(taken)


def test_cosine_equals_numpy():
    a, b = saliency_like(4, 9), saliency_like(4, 10)
    expected = [float(np.dot(p, q) / (np.linalg.norm(p) * np.linalg.norm(q))) for p, q in zip(a.numpy(), b.numpy(),
                                                                                            strict=True)]
    assert METRICS.build({"name": "cosine"})(a, b, SPEC).tolist() == pytest.approx(expected, abs=1e-12)


def test_metric_lists_are_checked():
    from attrobust.errors import AttrobustError

    with pytest.raises(AttrobustError, match="unknown metric 'nope'; choose one of: center_shift"):
        build_metrics(["nope"])
    with pytest.raises(AttrobustError, match="lists kendall more than once"):
        build_metrics(["kendall", {"name": "kendall"}])
    with pytest.raises(AttrobustError, match="window must be an odd number"):
        build_metrics([{"name": "lens_recall", "window": 4}])
    assert [m.column for m in build_metrics(["lens_recall", {"name": "lens_recall", "window": 5},
                                             {"name": "lens_recall", "diverse": True}])] == \
        ["lens_recall", "lens_recall_window5", "lens_recall_diverse"]


def test_pearson_equals_scipy():
    a, b = saliency_like(4, 11), saliency_like(4, 12)
    expected = [stats.pearsonr(p, q).statistic for p, q in zip(a.numpy(), b.numpy(), strict=True)]
    assert METRICS.build({"name": "pearson"})(a, b, SPEC).tolist() == pytest.approx(expected, abs=1e-12)


def test_a_constant_map_is_uncorrelated_unless_both_maps_are_equal():
    a = saliency_like(3, 13)
    constant = torch.zeros_like(a)
    for name in ("kendall", "spearman", "pearson"):
        metric = METRICS.build({"name": name})
        assert metric(a, constant, SPEC).tolist() == [0.0, 0.0, 0.0]  # scipy: NaN
        assert metric(constant, constant, SPEC).tolist() == [1.0, 1.0, 1.0]


def test_diverse_top_k_of_a_row_does_not_depend_on_the_other_rows():
    maps = saliency_like(4, 14)
    maps[0] = 0
    maps[0, :3] = torch.tensor([3.0, 2.0, 1.0])  # three candidates in one window: it runs out after one pick
    batched = diverse_top_k_mask(maps, 6, SIZE, 5, 3)
    rows = torch.cat([diverse_top_k_mask(maps[i:i + 1], 6, SIZE, 5, 3) for i in range(4)])
    assert torch.equal(batched, rows) and batched[0].sum() == 1 and batched[0, 0]
