"""Grad-CAM (Selvaraju et al., ICCV 2017) of the target logit at a named layer, upsampled to the input size.

cam = sum_c (mean_hw dF/dA_c) * A_c over the channels c of the layer's output A, then ReLU (`relu`, as in the paper;
Captum's `LayerGradCam` leaves it off by default: `relu_attributions`) and `F.interpolate` to the image size
(`interpolation`: bilinear or nearest, as Captum's `LayerAttribution.interpolate`). One map per image: (B, 1, H, W).

`layer` is a module path in the model (e.g. `net.features.4`); null takes the layer the model names as its last
convolutional block (the `cam_layer` attrobust's models declare: madry_cnn / small_cnn `features.4`, rar_resnet
`act_last`, resnet18 `layer4`). The layer is looked up at every call, so under the smooth surrogate a swapped
activation module is the one read. One forward and one backward pass per image.
Oracle: Captum's `LayerGradCam` + `LayerAttribution.interpolate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer
from attrobust.models.normalize import traits_of

Interpolation = Literal["bilinear", "nearest"]


@EXPLAINERS.register("gradcam")
@dataclass(frozen=True)
class GradCAMExplainer(Explainer):
    family = "cam"
    layer: str | None = None
    relu: bool = True
    interpolation: Interpolation = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be one of bilinear, nearest, got '{self.interpolation}'")

    def layer_name(self, model: nn.Module) -> str:
        name = self.layer if self.layer is not None else traits_of(model).cam_layer
        if name is None:
            choices = ", ".join(_conv_blocks(model)) or "none"
            raise AttrobustError(f"explainer {self.registry_name}: model {type(model).__name__} names no layer to "
                                 f"read; set explainer.layer=MODULE_PATH (one of: {choices})")
        return name

    def check_model(self, model: nn.Module) -> None:
        name = self.layer_name(model)
        try:
            model.get_submodule(name)
        except AttributeError as error:
            raise AttrobustError(f"explainer.layer={name} is not a module of {type(model).__name__}; choose one of: "
                                 f"{', '.join(_conv_blocks(model)) or 'none'}") from error

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        activation, grad = self.activation_and_gradient(model, x, target, create_graph)
        return self.finish(self.combine(activation, grad), x, create_graph)

    def combine(self, activation: Tensor, grad: Tensor) -> Tensor:
        """(B, 1, h, w) before the ReLU: the channels weighted by their mean gradient (what the CAM variants
        change)."""
        return (grad.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1, keepdim=True)

    def finish(self, cam: Tensor, x: Tensor, create_graph: bool) -> Tensor:
        """The ReLU (`relu`) and the upsampling to x's size (`interpolation`)."""
        if self.relu:
            cam = F.relu(cam)
        cam = F.interpolate(cam, size=x.shape[-2:], mode=self.interpolation)
        return cam if create_graph else cam.detach()

    def activation_and_gradient(self, model: nn.Module, x: Tensor, target: Tensor, create_graph: bool,
                                with_gradient: bool = True) -> tuple[Tensor, Tensor | None]:
        """The layer's (B, C, h, w) output and the target logit's gradient there (None without `with_gradient`),
        in x's dtype: under autocast the layer's output is bf16, the map stays float32 like every other."""
        layer = model.get_submodule(self.layer_name(model))
        captured: list[Tensor] = []
        handle = layer.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
        with torch.enable_grad() if with_gradient else torch.no_grad():
            z = x if x.requires_grad or not with_gradient else x.detach().requires_grad_(True)
            try:
                logits = model(z)
            finally:
                handle.remove()
            if not captured or not isinstance(captured[-1], Tensor) or captured[-1].dim() != 4:
                raise AttrobustError(f"explainer {self.registry_name}: layer {self.layer_name(model)} gave no (B, C, "
                                     f"h, w) feature map in the forward pass; choose a convolutional block with "
                                     f"explainer.layer")
            activation = captured[-1]
            if not with_gradient:
                return activation.to(x.dtype), None
            score = logits.gather(1, target.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, activation, create_graph=create_graph)
        return activation.to(x.dtype), grad.to(x.dtype)

    def describe(self) -> str:
        return self.registry_name if self.layer is None else f"{self.registry_name}({self.layer})"


def _conv_blocks(model: nn.Module) -> list[str]:
    """Module paths whose output is a feature map: the candidates for `layer`, for the error message."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)][-3:]
