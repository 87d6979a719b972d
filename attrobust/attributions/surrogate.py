"""The smooth surrogate of a piecewise-linear network, on the same weights, for second-order attack directions.

ReLU has a zero second derivative almost everywhere, so the gradient of an attribution with respect to the input
carries no signal through it. As in the RAR reference code (after Ghorbani et al.), the attack direction is computed
with ReLU replaced by softplus (beta = 1), and a leaky ReLU of slope s by s*x + (1 - s)*softplus(x); measures use the
original network. GroupSort2 (1-Lipschitz networks) gets `SoftMaxMin`, the same rule applied to the ReLU inside it
(attrobust's, registered once deel-torchlip is imported: `register_imported_counterparts`).

The replacement is an open mapping, `SMOOTH_COUNTERPARTS` (activation type -> function of the module and beta giving
its smooth counterpart): a new activation gets a surrogate with `register_smooth_counterpart`. Activations listed in
`NO_SECOND_DERIVATIVE` (piecewise linear: ReLU6, Hardtanh, PReLU, ..., and GroupSort-like sorting activations, matched
by class name) that have no counterpart make `check_smoothable` refuse the model with one line: their attack
direction would be exactly zero and every image would stay unmoved, scored as robust. Activations called as
functions (F.relu in a forward) cannot be swapped; attrobust's models use modules, and a model you bring
(`model=external`) is probed once with `functional_piecewise` (a forward pass of its surrogate that records such calls)
and the result declared in the model's traits (`unswappable_activation`), which `check_smoothable` refuses like a
compiled program's activations.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from attrobust.errors import AttrobustError
from attrobust.models.normalize import traits_of

Counterpart = Callable[[nn.Module, float], nn.Module]


class NotSmoothable(AttrobustError):
    """The model has an activation with no second derivative and no smooth counterpart (one line says which;
    `activation` names it briefly)."""

    def __init__(self, message: str, activation: str) -> None:
        super().__init__(message)
        self.activation = activation


class LeakySoftplus(nn.Module):
    """s*x + (1 - s) * softplus(x; beta): the smooth counterpart of LeakyReLU(negative_slope=s)."""

    def __init__(self, negative_slope: float, beta: float = 1.0) -> None:
        super().__init__()
        self.negative_slope, self.beta = negative_slope, beta

    def forward(self, x: Tensor) -> Tensor:
        return self.negative_slope * x + (1.0 - self.negative_slope) * F.softplus(x, beta=self.beta)


class SoftMaxMin(nn.Module):
    """The smooth counterpart of GroupSort with groups of two neighbouring channels (dim 1; deel-torchlip's
    GroupSort2, also called MaxMin): a pair (a, b) becomes (a - softplus(a - b; beta), b + softplus(a - b; beta)),
    times the module's Lipschitz coefficient `scale`. GroupSort2 is (min, max) = (a - relu(a - b), b + relu(a - b)), so
    this is the reference's rule (ReLU -> softplus) applied to the ReLU inside it; it tends to GroupSort2 as beta grows,
    and keeps each pair's sum. No reference code attacks the explanations of GroupSort networks: this counterpart is
    attrobust's (the estimated direction, `direction=estimated`, needs none)."""

    def __init__(self, scale: float = 1.0, beta: float = 1.0) -> None:
        super().__init__()
        self.scale, self.beta = scale, beta

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] % 2:
            raise ValueError(f"GroupSort2 needs an even number of channels, got {x.shape[1]}")
        first, second = x.unflatten(1, (x.shape[1] // 2, 2)).unbind(2)  # (B, C/2, ...) each
        gap = F.softplus(first - second, beta=self.beta)
        return torch.stack([first - gap, second + gap], dim=2).flatten(1, 2) * self.scale


SMOOTH_COUNTERPARTS: dict[type[nn.Module], Counterpart] = {
    nn.ReLU: lambda module, beta: nn.Softplus(beta=beta),
    nn.LeakyReLU: lambda module, beta: LeakySoftplus(module.negative_slope, beta),  # type: ignore[arg-type]
}
NO_SECOND_DERIVATIVE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.Hardtanh, nn.PReLU,
                                                     nn.RReLU, nn.Threshold, nn.Hardshrink, nn.Softshrink,
                                                     nn.Hardsigmoid)
SORTING_ACTIVATIONS = ("GroupSort", "MaxMin", "FullSort")  # class names (deel-torchlip, orthogonium, ...)


def register_smooth_counterpart(kind: type[nn.Module], counterpart: Counterpart) -> None:
    """Let the surrogate replace every module of type `kind` (exactly) by `counterpart(module, beta)`."""
    SMOOTH_COUNTERPARTS[kind] = counterpart


def register_imported_counterparts() -> None:
    """Register the counterparts of the activations of packages already imported (deel-torchlip's GroupSort2), so that
    a network built from them anywhere (`model=lipschitz_cnn`, a model of your own) gets its surrogate; importing
    nothing."""
    torchlip = sys.modules.get("deel.torchlip")
    kind = getattr(torchlip, "GroupSort2", None)
    if isinstance(kind, type) and kind not in SMOOTH_COUNTERPARTS:
        register_smooth_counterpart(kind, lambda module, beta: SoftMaxMin(getattr(module, "_coefficient_lip", 1.0),
                                                                          beta))


def smooth_counterpart(module: nn.Module, beta: float) -> nn.Module | None:
    make = SMOOTH_COUNTERPARTS.get(type(module))
    return None if make is None else make(module, beta)


def check_smoothable(model: nn.Module, purpose: str) -> None:
    """One line naming the first activation of `model` with no second derivative and no smooth counterpart (inside a
    TorchScript program no activation can be swapped)."""
    register_imported_counterparts()
    for name, module in model.named_modules():
        compiled, called = compiled_piecewise(module), traits_of(module).unswappable_activation
        if compiled is not None or called is not None:
            what = (f"is a compiled program (TorchScript or torch.export) with {compiled}" if compiled is not None
                    else f"calls {called} as a function")
            remedy = ("load the network as model.source=torchvision:<name>, timm:<name> or package.module:function "
                      "with model.weights=<state dict>" if compiled is not None else "use activation modules (nn.ReLU)")
            raise NotSmoothable(
                f"{purpose} needs second derivatives, but the model's {name or 'network'} {what}, which cannot be "
                f"swapped for its smooth counterpart, so every attack direction would be zero; {remedy}, or run "
                f"attack=random_sign", f"{name or 'network'}: {compiled or called}")
        if type(module) in SMOOTH_COUNTERPARTS:
            continue
        kind = type(module).__name__
        if isinstance(module, NO_SECOND_DERIVATIVE) or any(sort in kind for sort in SORTING_ACTIVATIONS):
            raise NotSmoothable(
                f"{purpose} needs second derivatives, but the model's activation {name} ({kind}) has none and no "
                f"smooth counterpart, so every attack direction would be zero; register one with "
                f"attrobust.attributions.surrogate.register_smooth_counterpart, or run attack=random_sign",
                f"{name} ({kind})")


PIECEWISE_OPS = ("relu", "leaky_relu", "relu6", "hardtanh", "prelu", "rrelu", "threshold", "hardshrink", "softshrink",
                 "hardsigmoid")


def compiled_piecewise(module: nn.Module) -> str | None:
    """The first piecewise-linear activation op in the graph of a TorchScript module or a torch.export / fx graph
    module ('aten::relu'), None otherwise (or for a module of Python code, whose activations `softplus_surrogate`
    swaps)."""
    if isinstance(module, torch.jit.ScriptModule):
        graph = str(module.inlined_graph)
    elif isinstance(module, torch.fx.GraphModule):
        graph = str(module.graph).replace("aten.", "aten::").replace(".default", "(")
    else:
        return None
    for op in PIECEWISE_OPS:
        if f"aten::{op}(" in graph or f"aten::{op}_(" in graph:
            return f"aten::{op}"
    return None


class _PiecewiseCalls(TorchFunctionMode):
    """Records the piecewise-linear activations called as functions (F.relu, torch.relu, x.relu(), ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = getattr(func, "__name__", "").rstrip("_")
        if name in PIECEWISE_OPS and not self.found:
            self.found.append(f"{getattr(func, '__module__', None) or 'torch'}.{name}")
        return func(*args, **(kwargs or {}))


def functional_piecewise(model: nn.Module, example: Tensor) -> str | None:
    """The first piecewise-linear activation that `model` calls as a function once its activation modules are swapped
    for their smooth counterparts (so a call that remains cannot be swapped), found on one forward pass of `example`;
    None when there is none."""
    with softplus_surrogate(model), _PiecewiseCalls() as calls, torch.no_grad():
        model(example)
    return calls.found[0] if calls.found else None


@contextmanager
def softplus_surrogate(model: nn.Module, beta: float = 1.0) -> Iterator[nn.Module]:
    """Within the block, every activation module of `model` with a smooth counterpart is replaced by it (same
    weights); restored after."""
    register_imported_counterparts()
    swaps = [(parent, name, child, smooth)
             for parent in model.modules() for name, child in parent.named_children()
             if (smooth := smooth_counterpart(child, beta)) is not None]
    for parent, name, _, smooth in swaps:
        setattr(parent, name, smooth)
    try:
        yield model
    finally:
        for parent, name, child, _ in swaps:
            setattr(parent, name, child)
