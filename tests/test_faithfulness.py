"""Insertion and deletion: deletion's curve against Quantus's PixelFlipping (the oracle) on the same model, inputs
and explainer; both curves against a one-image-at-a-time reading of RISE's loop; analytic cases; the config path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
import torch
from conftest import CountedModel
from torch import nn

from attrobust.explainers import EXPLAINERS
from attrobust.faithfulness import FAITHFULNESS, build_faithfulness, importance
from attrobust.faithfulness.base import area, blur_kernel, curves, substrate

quantus = pytest.importorskip("quantus")


class Float64Net(nn.Module):
    """A small tanh CNN in float64 (distinct gradients: no ties in the pixel order)."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.Tanh(), nn.Flatten(),
                                  nn.Linear(4 * 64, 5)).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.double())


def images(channels: int = 1, n: int = 4) -> torch.Tensor:
    x = torch.rand(n, channels, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x[:, :, 0, 0] = 0.0  # each image's minimum is 0: Quantus's "black" is the same baseline as our zero
    return x


def rise_curve(model: nn.Module, x: torch.Tensor, y: int, saliency: np.ndarray, steps: int,
               start: torch.Tensor, finish: torch.Tensor) -> np.ndarray:
    """RISE's `single_run` for one image: the probability of `y`, then `H*W/steps` more pixels from finish."""
    pixels = x.shape[-1] * x.shape[-2]
    step = pixels // steps
    order = np.argsort(-saliency.reshape(-1), kind="stable")
    current = start.clone().reshape(x.shape[0], pixels)
    scores = []
    for i in range(steps + 1):
        with torch.no_grad():
            scores.append(float(model(current.view(1, *x.shape)).softmax(1)[0, y]))
        coords = torch.as_tensor(order[step * i:step * (i + 1)].copy())
        current[:, coords] = finish.reshape(x.shape[0], pixels)[:, coords]
    return np.array(scores)


@pytest.mark.parametrize("name", FAITHFULNESS.names())
def test_faithfulness_metric_contract(name):
    """Every registered metric: built by name, declares its heading and direction, refuses more steps than pixels, and
    scores a batch as it scores each image alone."""
    metric = build_faithfulness([name])[0]
    assert metric.registry_name == name and metric.column == name and metric.heading and metric.family
    with pytest.raises(ValueError, match="more than the 4 pixels"):
        metric.__class__(steps=5).check_fits(4)
    model, x = Float64Net().eval(), images()
    y = model(x).argmax(1)
    attributions = EXPLAINERS.build({"name": "gradient"}).explain(model, x, y)
    small = metric.__class__(steps=6)
    batched = area(curves(small, model, x, y, attributions, rows=7))
    alone = torch.cat([area(curves(small, model, x[i:i + 1], y[i:i + 1], attributions[i:i + 1]))
                       for i in range(len(x))])
    torch.testing.assert_close(batched, alone, atol=1e-12, rtol=0)


def test_settings_and_config():
    metrics = build_faithfulness(["deletion", {"name": "insertion", "steps": 16, "baseline": "zero"}])
    assert (metrics[0].baseline, metrics[1].steps, metrics[1].baseline) == ("zero", 16, "zero")
    assert not metrics[0].higher_is_better and metrics[1].higher_is_better
    with pytest.raises(ValueError, match="steps=100 is more than the 64 pixels"):
        metrics[0].__class__(steps=100).check_fits(64)


@pytest.mark.parametrize("explainer_name", ["gradient", "ig"])
def test_deletion_curve_equals_quantus_pixel_flipping(explainer_name):
    model, x = Float64Net().eval(), images()
    y = model(x).argmax(1)
    explainer = EXPLAINERS.build({"name": explainer_name, **({"steps": 8} if explainer_name == "ig" else {})})
    attributions = explainer.explain(model, x, y).detach()
    metric = FAITHFULNESS.build({"name": "deletion", "steps": 16})
    ours = curves(metric, model, x, y, attributions, rows=7)

    oracle = quantus.PixelFlipping(features_in_step=4, perturb_baseline="black", abs=False, normalise=False,
                                   disable_warnings=True, display_progressbar=False)
    theirs = oracle(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=attributions.numpy(), softmax=True,
                    device="cpu")
    np.testing.assert_allclose(ours[:, 1:].numpy(), np.array(theirs), rtol=1e-5, atol=1e-12)
    # (Quantus's own AUC calls np.trapz, which numpy 2 removed; the area is RISE's formula, checked analytically below)


@pytest.mark.parametrize("name", ["deletion", "insertion"])
@pytest.mark.parametrize("baseline", ["zero", "blur", "mean"])
def test_batched_curves_equal_rise_one_image_at_a_time(name, baseline):
    model, x = Float64Net(channels=3).eval(), images(channels=3)
    y = model(x).argmax(1)
    attributions = EXPLAINERS.build({"name": "gradient"}).explain(model, x, y).detach()
    metric = FAITHFULNESS.build({"name": name, "steps": 8, "baseline": baseline})
    ours = curves(metric, model, x, y, attributions, rows=5)  # rows that split images: a batch of mixed points
    start, finish = metric.endpoints(x)
    for i in range(len(x)):
        saliency = importance(attributions[i:i + 1]).numpy()
        expected = rise_curve(model, x[i], int(y[i]), saliency, 8, start[i], finish[i])
        np.testing.assert_allclose(ours[i].numpy(), expected, rtol=1e-12, atol=1e-15)


def test_analytic_cases():
    model, x = Float64Net().eval(), images()
    y = model(x).argmax(1)
    a = EXPLAINERS.build({"name": "gradient"}).explain(model, x, y).detach()
    deletion, insertion = (FAITHFULNESS.build({"name": n, "steps": 8, "baseline": "zero"}) for n in ("deletion",
                                                                                                      "insertion"))
    d, i = curves(deletion, model, x, y, a), curves(insertion, model, x, y, a)
    probability = model(x).softmax(1).gather(1, y[:, None]).squeeze(1)
    blank = model(torch.zeros_like(x)).softmax(1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(d[:, 0], probability.detach(), rtol=1e-12, atol=0)  # nothing removed yet
    torch.testing.assert_close(d[:, -1], blank.detach(), rtol=1e-12, atol=0)       # everything removed
    torch.testing.assert_close(i[:, -1], probability.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(i[:, 0], blank.detach(), rtol=1e-12, atol=0)
    assert torch.allclose(area(torch.ones(2, 9, dtype=torch.float64)), torch.ones(2, dtype=torch.float64))
    ramp = torch.linspace(0, 1, 9, dtype=torch.float64).expand(2, 9)
    assert torch.allclose(area(ramp), torch.full((2,), 0.5, dtype=torch.float64))
    kernel = blur_kernel()
    assert kernel.shape == (11, 11) and abs(float(kernel.sum()) - 1) < 1e-6
    flat = torch.full((1, 1, 30, 30), 0.5)
    assert torch.allclose(substrate(flat, "blur")[..., 12:18, 12:18], flat[..., 12:18, 12:18])  # blur keeps a flat
    reversed_order = curves(deletion, model, x, y, -a)  # least important first: slower loss of confidence
    assert float(area(reversed_order).mean()) > float(area(d).mean())


def test_evaluate_writes_the_faithfulness_columns(cli, tmp_path):
    from conftest import TINY_RUN

    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=12", "attack.steps=1", "attributions=false",
                 "explainer=gradient", "eval.faithfulness=[insertion,{name:deletion,steps:14}]",
                 "eval.stability=[{name:max_sensitivity,samples:2}]", "hydra.run.dir=evaluation")
    assert result.exit_code == 0, result.stderr
    per_image = pd.read_csv(tmp_path / "evaluation" / "faithfulness.csv")
    assert list(per_image.columns) == ["index", "label", "confidence", "insertion", "deletion"]
    assert per_image[["confidence", "insertion", "deletion"]].apply(lambda c: c.between(0, 1)).all().all()
    results = pd.read_csv(tmp_path / "evaluation" / "results.csv").set_index("metric")
    for metric in ("insertion", "deletion"):  # how much of each is the model's confidence: scipy's rho, intervals
        row = results.loc[f"{metric}_vs_confidence"]
        rho = stats.spearmanr(per_image[metric], per_image["confidence"]).statistic
        assert row["value"] == pytest.approx(rho) and row["n"] == len(per_image)
        assert row["low"] <= row["value"] <= row["high"]
    table = pd.read_csv(tmp_path / "evaluation" / "table.csv")
    line = table[table["attack"].str.contains("stability and faithfulness of gradient")]
    assert len(line) == 1 and {"insertion", "deletion", "max-sens"} <= set(table.columns)
    assert line["deletion"].iloc[0] == pytest.approx(per_image["deletion"].mean(), rel=1e-5)
    bad = cli("evaluate", "checkpoint=run", "attributions=false", "eval.faithfulness=[{name:deletion,steps:1000}]",
              "hydra.run.dir=bad")
    assert bad.exit_code == 2 and "steps=1000 is more than the 784 pixels" in bad.stderr
    assert not (tmp_path / "bad" / "results.csv").exists()


@pytest.mark.parametrize("name", FAITHFULNESS.names())
def test_contract_of_every_faithfulness_metric(name):
    """Generated from the registry: a curve of probabilities from the clean to the baseline image (or back), an area
    in [0, 1], the same values whatever the rows per pass, a direction of better declared."""
    model, x = Float64Net().eval(), images()
    y = model(x).argmax(1)
    a = EXPLAINERS.build({"name": "gradient"}).explain(model, x, y).detach()
    metric = FAITHFULNESS.build({"name": name, "steps": 8})
    whole, one_row = curves(metric, model, x, y, a, rows=10_000), curves(metric, model, x, y, a, rows=1)
    torch.testing.assert_close(whole, one_row, rtol=1e-12, atol=1e-15)
    assert whole.shape == (len(x), 9) and bool(((whole >= 0) & (whole <= 1)).all())
    clean = model(x).softmax(1).gather(1, y[:, None]).squeeze(1).detach()
    torch.testing.assert_close(whole[:, -1 if metric.inserts else 0], clean, rtol=1e-12, atol=0)
    assert bool(((area(whole) >= 0) & (area(whole) <= 1)).all())
    assert isinstance(type(metric).higher_is_better, bool) and metric.column == name
    counted = CountedModel(model)
    curves(metric, counted, x, y, a, rows=5)
    assert metric.passes() == {"forward": counted.rows // len(x), "explainer": 0} == {"forward": 9, "explainer": 0}
