"""Grad-CAM++ (Chattopadhyay et al., WACV 2018): Grad-CAM with each channel weighted by a pixel-wise weighted sum of
its positive gradients, w_c = sum_ij relu(g_cij) a_cij with

    a_cij = g_cij^2 / (2 g_cij^2 + sum_kl A_ckl g_cij^3 + 1e-6)   (0 where g_cij = 0),

g the target logit's gradient at the layer's output A: the closed form of the paper's Eq. 19 that the `grad-cam`
package (`GradCAMPlusPlus`) and the authors' code compute from the logit's gradient. Layer, ReLU and upsampling as
`gradcam` (the package then min-max scales each map, which the saliency post-processing makes irrelevant; the test
compares scaled maps). One forward and one backward pass per image. Oracle: the `grad-cam` package.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.gradcam import GradCAMExplainer


@EXPLAINERS.register("gradcam_pp")
@dataclass(frozen=True)
class GradCAMPlusPlusExplainer(GradCAMExplainer):

    def combine(self, activation: Tensor, grad: Tensor) -> Tensor:
        squared = grad ** 2
        total = activation.sum(dim=(2, 3), keepdim=True)
        alpha = squared / (2 * squared + total * squared * grad + 1e-6)
        alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
        weights = (torch.relu(grad) * alpha).sum(dim=(2, 3), keepdim=True)
        return (weights * activation).sum(dim=1, keepdim=True)
