"""Score-CAM (Wang et al., CVPR Workshops 2020): the layer's channels weighted by the target's score on the image
masked by each channel, as the `grad-cam` package's `ScoreCAM` computes it: each channel A_c is upsampled to the
image (bilinear, corners aligned: `nn.UpsamplingBilinear2d`), min-max scaled to [0, 1] per image and channel
(+1e-8), the image times that mask goes through the model, and the weights are the softmax over channels of the
target's logits. cam = relu(sum_c w_c A_c), upsampled as `gradcam`.

Uncertain: the Score-CAM authors' code (haofanwang/Score-CAM) weights each channel by the target's softmax
probability on its masked image (no softmax over channels) and upsamples with unaligned corners; we follow the
package the study's readers use as the oracle. Passes per image: 1 + the layer's channels (counted for 64, the
Madry CNN's); forward passes only, so not differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import check_max_points, rows_per_pass
from attrobust.explainers.gradcam import GradCAMExplainer
from attrobust.explainers.perturbation import refuse_create_graph, target_scores


@EXPLAINERS.register("scorecam")
@dataclass(frozen=True)
class ScoreCAMExplainer(GradCAMExplainer):
    max_points: int | None = None
    needs_surrogate = False
    differentiable = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_max_points(self.max_points)

    @property
    def passes_per_image(self) -> int:
        return 1 + 64

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        refuse_create_graph(self.registry_name, create_graph)
        x = x.detach()
        activation, _ = self.activation_and_gradient(model, x, target, False, with_gradient=False)
        masks = F.interpolate(activation, size=x.shape[-2:], mode="bilinear", align_corners=True)
        low = masks.amin(dim=(2, 3), keepdim=True)
        high = masks.amax(dim=(2, 3), keepdim=True)
        masks = ((masks - low) / (high - low + 1e-8)).transpose(0, 1).unsqueeze(2)  # (C, B, 1, H, W)
        scores = target_scores(model, lambda start, stop: x.unsqueeze(0) * masks[start:stop], len(masks), target,
                               rows_per_pass(self.max_points, x))  # (C, B)
        weights = scores.t().softmax(dim=1)[:, :, None, None]
        return self.finish((weights * activation).sum(dim=1, keepdim=True), x, False)
