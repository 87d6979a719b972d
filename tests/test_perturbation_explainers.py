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

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


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
