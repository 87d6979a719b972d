"""A 1-Lipschitz CNN (L2) built from deel-torchlip's layers (Serrurier et al.; pip install "attrobust[lipschitz]").

Two spectrally normalised 3x3 convolutions (Bjorck-orthogonalised, `SpectralConv2d`) with GroupSort2 activations and
scaled L2-norm pooling, then a spectral linear layer, GroupSort2 and a spectral linear output layer: every layer is
1-Lipschitz, so the network is (the product of their constants, each at most 1; the spectral norm of each weight is
checked by power iteration in the tests). With the dataset's normalisation in front (`NormalizedModel`) the model's
constant is 1 / min(std) (1 on MNIST, whose std is 1): its traits' `lipschitz_constant` reports it for certificates.

For evaluation the trained network is exported to plain PyTorch layers (`vanilla_export`: fixed weights, no
parametrisation; torchlip's own GroupSort2 and LPPool2d stay, both plain modules), so an evaluation runs without
re-normalising weights at every pass. GroupSort2 is piecewise linear, so its second derivative is zero: it has a smooth
counterpart (`attributions.surrogate.SoftMaxMin`, softplus in place of the ReLU inside max/min), through which the
attacks on explanations take their direction, as they do through softplus on a ReLU network;
`attribution_attack.direction=estimated` takes it from probes of the network itself instead.
"""

from __future__ import annotations

from torch import nn

from attrobust.errors import AttrobustError
from attrobust.models import MODELS

INSTALL = 'model=lipschitz_cnn needs deel-torchlip: pip install "attrobust[lipschitz]"'


@MODELS.register("lipschitz_cnn", lipschitz=True)
def lipschitz_cnn(in_channels: int, image_size: tuple[int, int], num_classes: int, channels: tuple[int, int] = (16, 32),
                  hidden_units: int = 128) -> nn.Module:
    try:
        from deel import torchlip
    except ImportError as error:
        raise AttrobustError(INSTALL) from error
    height, width = image_size
    if height % 4 or width % 4:
        raise ValueError(f"image_size must be divisible by 4 (two 2x2 poolings), got {height}x{width}")
    first, second = channels
    net = torchlip.Sequential(
        torchlip.SpectralConv2d(in_channels, first, 3, padding=1), torchlip.GroupSort2(),
        torchlip.ScaledL2NormPool2d(2),
        torchlip.SpectralConv2d(first, second, 3, padding=1), torchlip.GroupSort2(),
        torchlip.ScaledL2NormPool2d(2),
        nn.Flatten(),
        torchlip.SpectralLinear(second * (height // 4) * (width // 4), hidden_units), torchlip.GroupSort2(),
        torchlip.SpectralLinear(hidden_units, num_classes),
    )
    return net
