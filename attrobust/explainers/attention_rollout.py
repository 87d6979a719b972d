"""Attention rollout (Abnar and Zuidema, ACL 2020) on attrobust's ViT: each block's attention fused over heads
(`head_fusion`: mean, max or min), the residual added as 0.5 A + 0.5 I with rows renormalised, multiplied from the
first block to the last; the class token's row over the patches, upsampled bilinearly to the image. As the widely
used implementation (jacobgil/vit-explain) with `discard_ratio` 0. Class-agnostic: the target is not used.
One forward pass per image; differentiable (attention is smooth in x). The test's oracle is the paper's recursion
written one image at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.attention_maps import class_row_map, kept_attention, vit_of
from attrobust.explainers.base import Explainer

Fusion = Literal["mean", "max", "min"]


@EXPLAINERS.register("attention_rollout")
@dataclass(frozen=True)
class AttentionRolloutExplainer(Explainer):
    family = "attention"
    head_fusion: Fusion = "mean"
    needs_surrogate = False

    def __post_init__(self) -> None:
        if self.head_fusion not in ("mean", "max", "min"):
            raise ValueError(f"head_fusion must be one of mean, max, min, got '{self.head_fusion}'")

    def check_model(self, model: nn.Module) -> None:
        vit_of(model, self.registry_name)

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        vit = vit_of(model, self.registry_name)
        modules = vit.attention_modules()
        with kept_attention(modules), torch.set_grad_enabled(create_graph or torch.is_grad_enabled()):
            model(x)
            attentions = [module.kept for module in modules]
        tokens = attentions[0].shape[-1]
        rollout = torch.eye(tokens, dtype=x.dtype, device=x.device).expand(len(x), -1, -1)
        for attention in attentions:
            fused = getattr(attention, self.head_fusion)(dim=1)
            fused = fused if self.head_fusion == "mean" else fused.values
            step = 0.5 * fused.to(x.dtype) + 0.5 * torch.eye(tokens, dtype=x.dtype, device=x.device)
            rollout = (step / step.sum(dim=-1, keepdim=True)) @ rollout
        result = class_row_map(rollout, vit.grid_size, tuple(x.shape[-2:]))
        return result if create_graph else result.detach()

    def describe(self) -> str:
        return "attention_rollout" if self.head_fusion == "mean" else f"attention_rollout({self.head_fusion})"
