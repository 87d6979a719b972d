"""Gradient-weighted attention relevance (Chefer, Gur, Wolf, "Generic Attention-model Explainability", ICCV 2021) on
attrobust's ViT: R = I over the tokens, and for each block from the first, R <- R + mean_heads((dA * A)+) R, with A
the block's attention probabilities and dA the target logit's gradient with respect to them; the class token's row
over the patches, upsampled bilinearly to the image, as the authors' code (hila-chefer/Transformer-MM-Explainability,
the ViT notebook). One forward and one backward pass per image. With `create_graph` it is differentiable (second
order through the attention), as smooth as the network. The test's oracle is the paper's update written one image
at a time with autograd on a single image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.attention_maps import class_row_map, kept_attention, vit_of
from attrobust.explainers.base import Explainer


@EXPLAINERS.register("attention_gradient")
@dataclass(frozen=True)
class AttentionGradientExplainer(Explainer):
    family = "attention"
    needs_surrogate = False

    def check_model(self, model: nn.Module) -> None:
        vit_of(model, self.registry_name)

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        vit = vit_of(model, self.registry_name)
        modules = vit.attention_modules()
        with kept_attention(modules), torch.enable_grad():
            z = x if x.requires_grad else x.detach().requires_grad_(True)
            score = model(z).gather(1, target.view(-1, 1)).sum()
            attentions = [module.kept for module in modules]
            grads = torch.autograd.grad(score, attentions, create_graph=create_graph)
        tokens = attentions[0].shape[-1]
        relevance = torch.eye(tokens, dtype=x.dtype, device=x.device).expand(len(x), -1, -1)
        for attention, grad in zip(attentions, grads, strict=True):
            weighted = (grad * attention).clamp(min=0).mean(dim=1).to(x.dtype)
            relevance = relevance + weighted @ relevance
        result = class_row_map(relevance, vit.grid_size, tuple(x.shape[-2:]))
        return result if create_graph else result.detach()
