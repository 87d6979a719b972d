"""The CAM variants against the `grad-cam` package on the same model, layer and inputs (float64 model; the package
min-max scales each map to [0, 1] in float32, so the test compares our maps scaled the same way)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attrobust.explainers import EXPLAINERS
from tests.test_explainers import MODELS, images

cam_package = pytest.importorskip("pytorch_grad_cam", reason="grad-cam (the CAM oracle) is not installed")
targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
image_module = pytest.importorskip("pytorch_grad_cam.utils.image")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

ORACLES = {"gradcam": "GradCAM", "gradcam_pp": "GradCAMPlusPlus", "layercam": "LayerCAM", "scorecam": "ScoreCAM"}


def exact_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.resize(image, (width, height)) with INTER_LINEAR's rule in float64."""
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float64))[None, None]
    return F.interpolate(tensor, size=size[::-1], mode="bilinear", align_corners=False)[0, 0].numpy()


def scaled(maps: torch.Tensor) -> torch.Tensor:
    """The package's `scale_cam_image`: minus the minimum, over 1e-7 + the maximum, per image."""
    flat = maps.flatten(1)
    flat = flat - flat.amin(1, keepdim=True)
    return (flat / (1e-7 + flat.amax(1, keepdim=True))).view(maps.shape[0], 1, *maps.shape[-2:])


@pytest.mark.parametrize("make,size", MODELS)
@pytest.mark.parametrize("name", sorted(ORACLES))
def test_cam_variants_equal_the_grad_cam_package(make, size, name, monkeypatch):
    # the package resizes with cv2's INTER_LINEAR, whose 11-bit fixed-point weights are off by up to 5e-4: the same
    # bilinear rule (pixel centres, edges repeated), exact, in its place
    monkeypatch.setattr(image_module.cv2, "resize", exact_resize)
    model, x = make(), images(3, size)
    y = torch.tensor([4, 0, 2])
    ours = EXPLAINERS.build({"name": name}).explain(model, x, y)
    layer = model.get_submodule(model.traits.cam_layer)
    oracle = getattr(cam_package, ORACLES[name])(model=model, target_layers=[layer])
    if name == "scorecam":
        oracle.batch_size = 64
    expected = oracle(input_tensor=x, targets=[targets_module.ClassifierOutputTarget(int(c)) for c in y])
    assert ours.shape == (3, 1, size, size) and (ours >= 0).all()
    # scaled twice as the package does (per layer, then after averaging layers); float32 results, and Score-CAM's
    # weights are a float32 softmax
    atol = 5e-5 if name == "scorecam" else 1e-6
    expected = torch.from_numpy(expected).double().unsqueeze(1)
    torch.testing.assert_close(scaled(scaled(ours)), expected, atol=atol, rtol=0)
