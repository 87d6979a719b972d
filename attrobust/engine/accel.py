"""GPU switches, all off by default (a CPU gains little from them): bf16 autocast, channels-last, torch.compile.

- `amp`: forward passes under `torch.autocast(dtype=bfloat16)` (training objectives, accuracy, attribution attacks).
  Gradients with respect to the float32 inputs, saliency maps and every metric stay float32. What it changes in IN
  and CO is measured, not assumed: see docs/tests-and-benchmarks.md (GPU switches).
- `channels_last`: the model's convolution weights in NHWC layout (faster convolutions on recent GPUs).
- `compile`: `torch.compile` for first-order uses only (natural and PGD training steps, accuracy and its PGD);
  double backward (IG objectives, input gradients, attribution attacks) runs the eager model, which compiled
  graphs do not support. If compiling fails the eager model is used, with one warning.
- `pin_memory` (on by default; CUDA only, nothing changes on a CPU): batches are gathered into page-locked host
  memory and copied with `non_blocking=True`, so the host queues the next kernels instead of waiting for the copy.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from attrobust.data.base import ImageSet

log = logging.getLogger("attrobust")


@dataclass(frozen=True)
class Accel:
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    pin_memory: bool = True

    def data(self, images: ImageSet) -> ImageSet:
        """`images` with batches copied to CUDA devices through pinned memory (when `pin_memory`)."""
        return replace(images, pin_memory=self.pin_memory)

    def autocast(self, device: torch.device) -> AbstractContextManager[object]:
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model in the chosen memory layout (in place)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def first_order(self, model: nn.Module) -> nn.Module:
        """What first-order code should call: the compiled model (with an eager fallback) or `model` itself."""
        return CompiledOrEager(model) if self.compile else model


class CompiledOrEager(nn.Module):
    """torch.compile(model), falling back to `model` for good at the first compilation error."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.eager = model
        self.compiled: nn.Module | None = torch.compile(model)

    def forward(self, x: Tensor) -> Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as error:  # noqa: BLE001 - any compiler failure: keep going eagerly
                log.warning("torch.compile failed (%s: %s); running the eager model", type(error).__name__,
                            str(error).splitlines()[0] if str(error) else "")
                self.compiled = None
        return self.eager(x)


NO_ACCEL = Accel()  # every switch off: the plain float32 eager path
