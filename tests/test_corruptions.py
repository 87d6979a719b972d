"""Corruptions (attrobust/corruptions) and the corruption-accuracy part: contract tests generated from the registry
(pixels stay in [0, 1], reproducible per seed, the same image corrupted the same way in any batch, more distortion at
higher severity), one-line refusals, and `evaluate eval.corruptions=[...]` end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from attrobust.corruptions import CORRUPTIONS, build_corruptions
from attrobust.errors import AttrobustError

MNIST = np.load(__import__("attrobust.data", fromlist=["x"]).__path__[0] + "/mnist_mini.npz")
IMAGES = torch.tensor(MNIST["x_test"][:24], dtype=torch.float32)[:, None] / 255
INDICES = torch.arange(100, 124)


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_corruption_contract(name):
    corruption = CORRUPTIONS.build({"name": name})
    distortion = []
    for severity in corruption.severities:
        moved = corruption.corrupt(IMAGES, severity, 7, INDICES)
        assert moved.shape == IMAGES.shape and moved.dtype == IMAGES.dtype
        assert moved.min() >= 0 and moved.max() <= 1 and torch.isfinite(moved).all()
        assert torch.equal(moved, corruption.corrupt(IMAGES, severity, 7, INDICES))  # reproducible per seed
        pieces = [corruption.corrupt(IMAGES[a:a + 5], severity, 7, INDICES[a:a + 5]) for a in range(0, 24, 5)]
        assert torch.equal(torch.cat(pieces), moved)  # an image's corruption does not depend on its batch
        reversed_order = corruption.corrupt(IMAGES.flip(0), severity, 7, INDICES.flip(0)).flip(0)
        torch.testing.assert_close(reversed_order, moved, atol=1e-6, rtol=0)
        distortion.append(float((moved - IMAGES).abs().mean()))
    assert distortion[-1] > distortion[0] > 0, distortion  # severity 5 distorts more than 1
    assert corruption.describe(3).endswith("@3")


def test_random_corruptions_draw_per_seed_and_image():
    noise = CORRUPTIONS.build({"name": "gaussian_noise"})
    a, b = noise.corrupt(IMAGES, 3, 0, INDICES), noise.corrupt(IMAGES, 3, 1, INDICES)
    assert not torch.equal(a, b)
    same_image_twice = noise.corrupt(IMAGES[:1].expand(2, -1, -1, -1), 3, 0, torch.tensor([5, 6]))
    assert not torch.equal(same_image_twice[0], same_image_twice[1])  # two indices, two draws
    z = (noise.corrupt(torch.full((64, 1, 28, 28), 0.5), 1, 0, torch.arange(64)) - 0.5) / 0.08
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02  # the noise is N(0, sigma^2)


def test_canny_edges_equal_scikit_image_s_canny_as_mnist_c_calls_it():
    feature = pytest.importorskip("skimage.feature")
    from attrobust.corruptions.canny_edges import canny
    images = MNIST["x_test"][:100].astype(np.float64) / 255
    ours, theirs = canny(torch.tensor(images)).numpy(), np.stack([feature.canny(image) for image in images])
    # equal on every pixel here; a magnitude exactly at a neighbour's may round either way on another build
    assert theirs.sum() > 1000 and (ours != theirs).sum() <= 0.001 * theirs.sum()
    full = CORRUPTIONS.build({"name": "canny_edges"}).corrupt(IMAGES, 5, 0, INDICES)  # severity 5: the edges alone
    assert set(full.unique().tolist()) <= {0.0, 1.0}


def test_shot_noise_is_poisson_in_photons_and_the_new_mnist_c_corruptions_follow_their_levels():
    shot = CORRUPTIONS.build({"name": "shot_noise"})
    grey = torch.full((64, 1, 28, 28), 0.04)
    counts = shot.corrupt(grey, 1, 0, torch.arange(64)) * 60   # Poisson(0.04 x 60 = 2.4) photons (no clipping)
    assert torch.equal(counts.round(), counts.round().clamp_min(0)) and (counts - counts.round()).abs().max() < 1e-4
    assert abs(float(counts.mean()) - 2.4) < 0.03 and abs(float(counts.var()) - 2.4) < 0.06
    zigzag = CORRUPTIONS.build({"name": "zigzag"}).corrupt(torch.zeros(8, 1, 28, 28), 1, 0, torch.arange(8))
    columns = (zigzag > 0).any(dim=2)[:, 0]   # one zigzag within columns 2 .. 25 (MNIST-C's; rows may leave the image)
    assert not columns[:, :2].any() and not columns[:, 26:].any() and columns.sum(dim=1).float().mean() > 20
    fog = CORRUPTIONS.build({"name": "fog"}).corrupt(torch.zeros(4, 1, 28, 28), 5, 0, torch.arange(4))
    assert torch.equal(fog, torch.zeros_like(fog))           # fog scales by the image's maximum: a black image stays


def test_glass_blur_swaps_pixels_and_blurs_along_the_rows_as_mnist_c_runs_it():
    from attrobust.corruptions.base import gaussian_filter, uniform
    from attrobust.corruptions.glass_blur import shuffle
    positions = [(h, w) for h in range(26, 2, -1) for w in range(26, 2, -1)]
    draws = uniform(3, INDICES[:4], (2, len(positions), 3), IMAGES).double()
    shuffled = shuffle(IMAGES[:4].double(), positions, draws, 2)
    assert not torch.equal(shuffled, IMAGES[:4].double())
    assert torch.equal(shuffled.flatten(1).sort().values, IMAGES[:4].double().flatten(1).sort().values)  # a permutation
    dot = torch.zeros(1, 1, 9, 9)
    dot[0, 0, 4, 4] = 1
    blurred = gaussian_filter(dot, 1.0, rows_only=True)[0, 0]
    assert blurred[:, 4].sum() == pytest.approx(1) and blurred[:, [3, 5]].abs().max() == 0  # one column only


def test_a_corruption_that_cannot_fit_the_images_is_refused_before_any_work():
    from types import SimpleNamespace

    from attrobust.parts.corruption import CorruptionAccuracy
    part = CorruptionAccuracy(build_corruptions(["gaussian_noise", {"name": "compose", "of": ["fog", "rotate"]}]))
    big = SimpleNamespace(test=SimpleNamespace(images=torch.zeros(2, 1, 300, 300, dtype=torch.uint8)))
    with pytest.raises(AttrobustError, match=r"^eval.corruptions: fog\+rotate: fog draws a 256-pixel fractal, and "
                                             r"these images are 300 x 300; leave fog out for them$"):
        part.prepare(big, None, None)
    part.prepare(SimpleNamespace(test=SimpleNamespace(images=torch.zeros(2, 1, 28, 28, dtype=torch.uint8))), None, None)


def test_bad_corruption_settings_are_one_line_each():
    with pytest.raises(AttrobustError, match=r"unknown corruption 'frost'; choose one of: .*gaussian_noise"):
        build_corruptions(["frost"])
    for bad in ([0, 6], [2, 2], []):
        with pytest.raises(AttrobustError, match=r"severities must be a non-empty list of different levels 1 to 5, "
                                                 rf"got \[{', '.join(map(str, bad))}\]"):
            build_corruptions([{"name": "rotate", "severities": bad}])
    with pytest.raises(AttrobustError, match=r"of must list two or more different corruptions"):
        build_corruptions([{"name": "compose", "of": ["rotate", "rotate"]}])


def test_evaluate_measures_accuracy_under_each_corruption_and_severity(cli, tmp_path):
    from conftest import TINY_RUN

    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=40", "attack.steps=1", "attributions=false",
                 "eval.corruptions=[brightness,{name:rotate,severities:[1,5]},{name:compose,of:[scale,contrast],"
                 "severities:[2]}]", "hydra.run.dir=ood")
    assert result.exit_code == 0, result.stderr
    per_image = pd.read_csv(tmp_path / "ood" / "corruption.csv")
    assert len(per_image) == 40 and list(per_image.columns[2:]) == [
        "brightness@1", "brightness@2", "brightness@3", "brightness@4", "brightness@5", "rotate@1", "rotate@5",
        "scale+contrast@2"]
    results = pd.read_csv(tmp_path / "ood" / "results.csv")
    rotate = results[(results["attack"].str.startswith("rotate")) & (results["metric"] == "corruption_accuracy@5")]
    assert len(rotate) == 1 and rotate["value"].iloc[0] == pytest.approx(100 * per_image["rotate@5"].mean())
    overall = results[results["attack"].str.startswith("mean over 3 corruptions")]
    assert overall["value"].iloc[0] == pytest.approx(100 * per_image.iloc[:, 2:].to_numpy().mean())
    assert (overall["low"] <= overall["value"]).all() and (overall["value"] <= overall["high"]).all()
    bad = cli("evaluate", "checkpoint=run", "attributions=false", "eval.corruptions=[rotate,rotate]",
              "hydra.run.dir=bad")
    assert bad.exit_code != 0 and "eval.corruptions lists rotate more than once" in bad.stderr


def test_corruption_error_is_the_ratio_of_summed_errors_to_the_baseline(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    def folder(name: str, rotate: list[list[bool]], clean: list[bool]) -> Path:
        path = tmp_path / name
        path.mkdir()
        pd.DataFrame({"index": [4, 9, 11, 20], "label": 0, "rotate@1": rotate[0], "rotate@5": rotate[1]}).to_csv(
            path / "corruption.csv", index=False)
        pd.DataFrame({"index": [4, 9, 11, 20], "correct": clean}).to_csv(path / "accuracy.csv", index=False)
        return path

    base = folder("base", [[True, True, True, False], [True, False, False, False]], [True] * 4)  # errors 1/4, 3/4
    other = folder("other", [[True, True, True, True], [True, True, False, False]], [True] * 4)  # errors 0, 2/4
    script = Path(__file__).resolve().parents[1] / "scripts" / "corruption_error.py"
    done = subprocess.run([sys.executable, str(script), "--baseline", str(base), str(other), "--out",
                           str(tmp_path / "out"), "--resamples", "50"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "out" / "corruption_error.csv")
    ce = table.set_index("corruption")["CE (%)"]
    assert ce["rotate"] == pytest.approx(100 * (0 + 0.5) / (0.25 + 0.75)) and ce["mCE"] == pytest.approx(50)
    assert (table["low"] <= table["CE (%)"] + 1e-9).all() and (table["CE (%)"] <= table["high"] + 1e-9).all()
