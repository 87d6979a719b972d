"""The model-randomisation sanity check (attrobust/parts/randomisation.py, Adebayo et al. 2018) and its SSIM
(scikit-image as the oracle)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import TINY_RUN
from torch import nn

from attrobust.metrics import METRICS
from attrobust.metrics.base import MapSpec
from attrobust.parts.randomisation import cascade, randomise
from attrobust.reporting.tables import heading


def test_ssim_is_scikit_images_structural_similarity_of_maxima_scaled_maps():
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 12 * 10, generator=g, dtype=torch.float64)
    b = a + 0.5 * torch.rand(4, 12 * 10, generator=g, dtype=torch.float64)
    ours = METRICS.build({"name": "ssim"})(a, b, MapSpec((12, 10), 10))
    theirs = [structural_similarity((x / x.max()).view(12, 10).numpy(), (y / y.max()).view(12, 10).numpy(),
                                    data_range=1.0) for x, y in zip(a, b, strict=True)]
    torch.testing.assert_close(ours, torch.tensor(theirs, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="at least 7 x 7"):
        METRICS.build({"name": "ssim"}).check_fits(6, 28)


def test_the_cascade_goes_from_the_top_down_and_randomising_is_seeded_and_local():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    assert cascade(net) == ["3", "0"]
    before = [p.detach().clone() for p in net.parameters()]
    randomise(net[3], seed=0, name="3")
    after = list(net.parameters())
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])  # the conv is untouched
    assert not torch.equal(after[2], before[2])
    again = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    randomise(again[3], seed=0, name="3")
    assert torch.equal(again[3].weight, net[3].weight)  # the same draw, whatever the weights were


def test_evaluate_runs_the_randomisation_check_as_one_more_part(cli, tmp_path):
    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=30", "attributions=false", "attack.steps=1",
                 "explainer=gradient", "eval.randomisation=[spearman,ssim]", "hydra.run.dir=rand")
    assert result.exit_code == 0, result.stderr
    frame = pd.read_csv(tmp_path / "rand" / "randomisation.csv")
    layers = [column.split("@")[1] for column in frame.columns if column.startswith("spearman@")]
    assert layers and layers[0].endswith("classifier.3")  # the top first
    assert [c for c in frame.columns if c.startswith("ssim@")] == [f"ssim@{layer}" for layer in layers]
    assert len(frame) > 0 and frame.drop(columns=["index", "label"]).lt(1.0 - 1e-9).all().all()  # maps changed
    rows = pd.read_csv(tmp_path / "rand" / "results.csv")
    assert {f"spearman@{layer}" for layer in layers} <= set(rows["metric"])
    table = pd.read_csv(tmp_path / "rand" / "table.csv")
    assert heading(f"ssim@{layers[-1]}") == f"SSIM @{layers[-1]}" and f"SSIM @{layers[-1]}" in table.columns
    assert "randomisation of gradient" in table["attack"].iloc[0]
