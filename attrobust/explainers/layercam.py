"""LayerCAM (Jiang et al., IEEE TIP 2021): each activation weighted by its own positive gradient,
cam = relu(sum_c relu(g_c) * A_c), as the `grad-cam` package's `LayerCAM` computes it. Layer, ReLU and upsampling as
`gradcam`. One forward and one backward pass per image. Oracle: the `grad-cam` package.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.gradcam import GradCAMExplainer


@EXPLAINERS.register("layercam")
@dataclass(frozen=True)
class LayerCAMExplainer(GradCAMExplainer):

    def combine(self, activation: Tensor, grad: Tensor) -> Tensor:
        return (torch.relu(grad) * activation).sum(dim=1, keepdim=True)
