"""Perturbation-based explainers against their oracles on the same model, inputs and draws (float64): occlusion
against Captum's `Occlusion`, RISE against `captum-rise` on the same masks and its masks against the authors'
skimage resize; LIME and KernelSHAP against Captum's on the same samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import Occlusion

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.rise import upsample_and_crop
from tests.test_explainers import MODELS, images

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:You are providing multiple inputs")


@pytest.mark.parametrize("make,size", MODELS)
@pytest.mark.parametrize("window,stride,baseline", [(4, 2, 0.0), (3, 3, 0.5)])
def test_occlusion_equals_captum(make, size, window, stride, baseline):
    model, x = make(), images(3, size)
    y = torch.tensor([1, 2, 0])
    ours = EXPLAINERS.build({"name": "occlusion", "window": window, "stride": stride, "baseline": baseline,
                             "max_points": 7}).explain(model, x, y)
    expected = Occlusion(model).attribute(x, sliding_window_shapes=(1, window, window), strides=(1, stride, stride),
                                          baselines=baseline, target=y, perturbations_per_eval=16)
    torch.testing.assert_close(ours, expected.double(), atol=1e-6, rtol=1e-5)  # Captum returns float32


@pytest.mark.parametrize("make,size", MODELS)
def test_rise_equals_captum_rise_on_the_same_masks(make, size, monkeypatch):
    rise_module = pytest.importorskip("rise", reason="captum-rise (the RISE oracle) is not installed")
    model, x = make(), images(2, size)
    y = torch.tensor([3, 1])
    explainer = EXPLAINERS.build({"name": "rise", "masks": 40, "cells": 4, "p": 0.4, "score": "logit",
                                  "max_points": 30})
    masks = explainer.draw_masks(size, size, like=x)
    monkeypatch.setattr(rise_module, "generate_mask_sets", lambda n, config: ((m[0],) for m in masks))
    expected = rise_module.RISE(model).attribute(x, n_masks=40, initial_mask_shapes=((4, 4),), target=y)
    ours = explainer.explain(model, x, y)
    # captum-rise sums in float32 and leaves out the paper's 1 / p
    torch.testing.assert_close(ours[:, 0] * 0.4, expected.double(), atol=1e-5, rtol=1e-5)


def test_rise_masks_are_the_authors_skimage_resize_and_crop():
    transform = pytest.importorskip("skimage.transform")
    explainer = EXPLAINERS.build({"name": "rise", "masks": 6, "cells": 7, "seed": 3})
    grids, offsets = explainer.grids_and_offsets(28, 28)
    ours = upsample_and_crop(grids, offsets, 28, 28)
    cell = int(np.ceil(28 / 7))
    assert (offsets >= 0).all() and (offsets < cell).all() and 0.2 < grids.mean() < 0.8
    for i in range(6):  # the authors' generate_masks (eclique/RISE explanations.py), one mask at a time
        up = transform.resize(grids[i].numpy(), ((7 + 1) * cell,) * 2, order=1, mode="reflect", anti_aliasing=False)
        top, left = offsets[i].tolist()
        np.testing.assert_allclose(ours[i, 0].numpy(), up[top:top + 28, left:left + 28], atol=1e-12)
    again = EXPLAINERS.build({"name": "rise", "masks": 6, "cells": 7, "seed": 3}).grids_and_offsets(28, 28)
    assert torch.equal(again[0], grids) and torch.equal(again[1], offsets)


@pytest.mark.parametrize("explainer", [["explainer=occlusion", "explainer.window=7", "explainer.stride=7"],
                                       ["explainer=rise", "explainer.masks=30"]], ids=["occlusion", "rise"])
def test_an_attack_on_a_perturbation_explainer_estimates_its_direction_and_says_so(cli, tmp_path, explainer):
    from conftest import TINY_RUN

    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=6", "attack.steps=1", *explainer,
                 "attribution_attack.steps=2", "attribution_attack.probes=4", "eval.baselines=[random_sign]",
                 "hydra.run.dir=attacked")
    assert result.exit_code == 0, result.stderr
    log = (tmp_path / "attacked" / "evaluate.log").read_text()
    name = explainer[0].split("=")[1]
    assert f"explainer {name} is not differentiable (its map comes from forward passes alone); the attack " \
           f"estimates its direction from 4 probe pairs per step" in log, log[-3000:]
    measures = pd.read_csv(tmp_path / "attacked" / "measures.csv")
    assert len(measures) > 0 and measures["moved"].any()


def _features(size: int, cell: int) -> torch.Tensor:
    from attrobust.explainers.linear_fit import grid_features

    return grid_features(size, size, cell, torch.device("cpu"))


@pytest.mark.parametrize("make,size", MODELS)
def test_kernel_shap_equals_captum_on_the_same_coalitions(make, size, monkeypatch):
    from captum.attr import KernelShap

    model, x = make(), images(2, size)
    y = torch.tensor([0, 3])
    explainer = EXPLAINERS.build({"name": "kernel_shap", "samples": 150, "cell": 4, "baseline": 0.2, "max_points": 50})
    features = _features(size, 4)
    kept = explainer.coalitions(int(features.max()) + 1)

    def same_coalitions(self, original, **kwargs):
        yield from (row[None] for row in kept)

    monkeypatch.setattr(KernelShap, "kernel_shap_perturb_generator", same_coalitions)
    expected = KernelShap(model).attribute(x, baselines=0.2, target=y, feature_mask=features[None, None],
                                           n_samples=150, perturbations_per_eval=50)
    ours = explainer.explain(model, x, y)
    scale = expected.abs().max()  # Captum fits in float32, with weights of 1e6 beside 1
    torch.testing.assert_close(ours / scale, expected.double() / scale, atol=3e-3, rtol=0)
    # the same fit in float64: sklearn's LinearRegression on the same scores and weights
    from sklearn.linear_model import LinearRegression

    from attrobust.explainers.linear_fit import masked_scores

    scores, _ = masked_scores(model, x, y, kept, features, 0.2, rows=None)
    weights = np.ones(len(kept))
    weights[:2] = 1e6
    for image in range(2):
        fit = LinearRegression().fit(kept.numpy().astype(float), scores[:, image].numpy(), sample_weight=weights)
        np.testing.assert_allclose(ours[image, 0].numpy(), fit.coef_[features.numpy()], atol=1e-9 * scale.item())


@pytest.mark.parametrize("make,size", MODELS)
def test_lime_equals_captum_lime_with_a_ridge_fit_on_the_same_coalitions(make, size):
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    model, x = make(), images(2, size)
    y = torch.tensor([1, 4])
    explainer = EXPLAINERS.build({"name": "lime", "samples": 50, "cell": 3, "alpha": 0.5, "kernel_width": 0.75})
    features = _features(size, 3)
    kept = explainer.coalitions(int(features.max()) + 1)

    def same_coalitions(original, **kwargs):
        yield from (row[None] for row in kept)

    lime = Lime(model, interpretable_model=SkLearnRidge(alpha=0.5), perturb_func=same_coalitions,
                similarity_func=get_exp_kernel_similarity_function("cosine", 0.75))
    expected = lime.attribute(x, baselines=0.0, target=y, feature_mask=features[None, None], n_samples=50,
                              perturbations_per_eval=25)
    ours = explainer.explain(model, x, y)
    scale = expected.abs().max()  # Captum fits in float32
    torch.testing.assert_close(ours / scale, expected.double() / scale, atol=1e-4, rtol=0)


def test_settings_that_leave_nothing_to_attribute_are_one_line():
    from attrobust.errors import AttrobustError
    from tests.test_explainers import madry_cnn

    model, x, y = madry_cnn(), images(1, 28), torch.tensor([0])
    for name in ("lime", "kernel_shap"):
        with pytest.raises(AttrobustError, match=r"explainer.cell=28 makes one superpixel of the 28 x 28 image"):
            EXPLAINERS.build({"name": name, "cell": 28}).explain(model, x, y)
    with pytest.raises(AttrobustError, match=r"explainer.window=40 is larger than the 28-pixel image"):
        EXPLAINERS.build({"name": "occlusion", "window": 40}).explain(model, x, y)
