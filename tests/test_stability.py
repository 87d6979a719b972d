"""The stability metrics against Quantus (the oracle) on the same model, inputs, explainer and noise draws, and the
driver's batching: a batch gives each image the value it gets alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CountedExplainer, CountedModel
from torch import nn

from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.stability import STABILITY, build_stability, estimate, perturbations
from attrobust.stability.base import image_seed

quantus = pytest.importorskip("quantus")

QUANTUS_CLASSES = {"max_sensitivity": "MaxSensitivity", "avg_sensitivity": "AvgSensitivity",
                   "local_lipschitz": "LocalLipschitzEstimate", "relative_input_stability": "RelativeInputStability",
                   "relative_output_stability": "RelativeOutputStability"}
QUANTUS_SETTINGS = {"local_lipschitz": {"normalise": False}}  # see local_lipschitz.py: a batch-wide normalisation


class Float64Net(nn.Module):
    """A small softplus CNN in float64 that takes any float input (Quantus predicts on float32 tensors)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Softplus(), nn.Flatten(),
                                  nn.Linear(3 * 36, 4)).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.double())


@pytest.mark.parametrize("name", STABILITY.names())
def test_stability_metric_contract(name):
    """Every registered metric (those with a Quantus counterpart are also checked against it below): built by name,
    declares its heading, direction and reduction, and gives each image the value it gets alone."""
    metric = STABILITY.build({"name": name, "samples": 4})
    assert metric.registry_name == name and metric.column == name and metric.heading and metric.family == "stability"
    assert metric.reduction in ("max", "mean")
    model = Float64Net().eval()
    x = 0.2 + 0.6 * torch.rand(3, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    explainer = EXPLAINERS.build({"name": "gradient"})
    batched = estimate(metric, model, explainer, x, y, [4, 5, 6], seed=1, rows=5).values
    alone = torch.cat([estimate(metric, model, explainer, x[i:i + 1], y[i:i + 1], [4 + i], seed=1).values
                       for i in range(3)])
    torch.testing.assert_close(batched, alone, atol=1e-12, rtol=0, equal_nan=True)
    counted = CountedModel(model)
    explaining = CountedExplainer(explainer, counted)
    estimate(metric, counted, explaining, x, y, [4, 5, 6], seed=1, rows=5)  # the cost its card states, counted
    assert metric.passes() == {"forward": counted.rows // 3, "explainer": explaining.rows // 3} == {"forward": 5,
                                                                                                "explainer": 5}


def test_quantus_oracles_name_registered_metrics():
    assert set(QUANTUS_CLASSES) <= set(STABILITY.names())


@pytest.mark.parametrize("name", sorted(QUANTUS_CLASSES))
@pytest.mark.parametrize("explainer_name", ["gradient", "ig"])
def test_values_equal_quantus_on_the_same_draws(name, explainer_name):
    model, samples = Float64Net().eval(), 6
    x = 0.2 + 0.6 * torch.rand(5, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x[0, 0, :2] = 0.0  # zero pixels: the relative metrics' 1e-6 guard
    y = model(x).argmax(1)
    ids = [10, 11, 12, 13, 14]
    metric = STABILITY.build({"name": name, "samples": samples})
    explainer = EXPLAINERS.build({"name": explainer_name, **({"steps": 8} if explainer_name == "ig" else {})})
    ours = estimate(metric, model, explainer, x, y, ids, seed=3, rows=7).values

    noise = torch.stack([metric.draw_noise((samples, 1, 6, 6), torch.Generator().manual_seed(image_seed(3, i)))
                         for i in ids], 1).flatten(2).numpy()  # (samples, N, D), the draws ours used
    steps = iter(noise)

    def replay(arr, indices=None, indexed_axes=None, **unused):
        return arr + next(steps).reshape(arr.shape)

    def explain(model, inputs, targets, **unused):
        inputs = torch.as_tensor(np.asarray(inputs), dtype=torch.float64)
        return explainer.explain(model, inputs, torch.as_tensor(np.asarray(targets))).detach().numpy()

    oracle = getattr(quantus, QUANTUS_CLASSES[name])(nr_samples=samples, perturb_func=replay, disable_warnings=True,
                                                     **QUANTUS_SETTINGS.get(name, {}))
    theirs = oracle(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=explain,
                    explain_func_kwargs={}, channel_first=True, softmax=False, device="cpu", batch_size=len(x))
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs, dtype=np.float64), rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", STABILITY.names())
def test_a_batch_gives_each_image_its_value_alone(name):
    model, explainer = Float64Net().eval(), EXPLAINERS.build({"name": "gradient"})
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y, ids = model(x).argmax(1), [3, 1, 4, 7]
    metric = STABILITY.build({"name": name, "samples": 5})
    together = estimate(metric, model, explainer, x, y, ids, seed=0, rows=6).values
    alone = torch.cat([estimate(metric, model, explainer, x[i:i + 1], y[i:i + 1], ids[i:i + 1], seed=0).values
                       for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-12, atol=0, equal_nan=True)


def test_draws_are_seeded_per_image_and_a_changed_prediction_is_nan_for_the_relative_metrics():
    metric = STABILITY.build({"name": "relative_input_stability", "samples": 4, "low": 0.5, "high": 0.9})
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    first, again = perturbations(metric, x, [5, 6, 7], seed=1), perturbations(metric, x[1:], [6, 7], seed=1)
    assert torch.equal(first[:, 1:], again) and not torch.equal(first, perturbations(metric, x, [5, 6, 7], seed=2))
    model = Float64Net().eval()
    result = estimate(metric, model, EXPLAINERS.build({"name": "gradient"}), x, model(x).argmax(1), [5, 6, 7], 1)
    assert torch.equal(result.values.isnan(), result.changed.any(1))
    kept = STABILITY.build({"name": "relative_input_stability", "samples": 4, "low": 0.5, "high": 0.9,
                            "refuse_changed_predictions": False})
    assert not estimate(kept, model, EXPLAINERS.build({"name": "gradient"}), x, model(x).argmax(1), [5, 6, 7],
                        1).values.isnan().any()


def test_bad_settings_are_one_line():
    for entry, message in [({"name": "max_sensitivity", "samples": 0}, "samples must be >= 1"),
                           ({"name": "max_sensitivity", "radius": 0.0}, "radius must be positive"),
                           ({"name": "relative_input_stability", "low": 0.3, "high": 0.2}, "low and high must"),
                           ({"name": "local_lipschitz", "std": -1.0}, "std must be positive"),
                           ("max_sens", "unknown stability 'max_sens'")]:
        with pytest.raises(AttrobustError, match=message):
            build_stability([entry])
    with pytest.raises(AttrobustError, match="lists max_sensitivity more than once"):
        build_stability(["max_sensitivity", {"name": "max_sensitivity", "samples": 3}])


def test_evaluate_adds_the_stability_metrics_as_one_table_line(cli, tmp_path):
    from conftest import TINY_RUN

    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=6", "attack.steps=1", "attributions=false",
                 "explainer=gradient", "eval.stability=[max_sensitivity,{name:local_lipschitz,samples:3}]",
                 "hydra.run.dir=evaluation")
    assert result.exit_code == 0, result.stderr
    evaluation = tmp_path / "evaluation"
    per_image = pd.read_csv(evaluation / "stability.csv")
    assert list(per_image.columns) == ["index", "label", "max_sensitivity", "local_lipschitz"]
    table = pd.read_csv(evaluation / "table.csv")
    line = table[table["attack"].str.contains("stability of gradient")]
    assert len(line) == 1 and int(line["scored"].iloc[0]) == len(per_image) > 0
    assert line["max-sens"].iloc[0] == pytest.approx(per_image["max_sensitivity"].mean(), rel=1e-5)  # 6 digits
    assert "divides the input's change" not in (evaluation / "evaluate.log").read_text()
    assert "estimated cost on cpu (an upper bound from a short calibration): accuracy" in \
        (evaluation / "evaluate.log").read_text()  # before the work, every part: accuracy, then stability
    relative = cli("evaluate", "checkpoint=run", "eval.num_examples=6", "attack.steps=1", "attributions=false",
                   "explainer=gradient", "eval.stability=[{name:relative_input_stability,samples:2}]",
                   "hydra.run.dir=relative")
    assert relative.exit_code == 0, relative.stderr
    log = (tmp_path / "relative" / "evaluate.log").read_text()
    assert "relative_input_stability divides the input's change by each pixel's value:" in log
    assert "% of these images' pixels are below 0.01" in log
    bad = cli("evaluate", "checkpoint=run", "attributions=false", "eval.stability=[max_sens]", "hydra.run.dir=bad")
    assert bad.exit_code == 2 and "unknown stability 'max_sens'" in bad.stderr
    assert not (tmp_path / "bad" / "results.csv").exists()
