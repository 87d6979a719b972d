"""torchvision's ResNet-18 (He et al.), trained from scratch, for larger images (e.g. 128x128 Flower-17 or your own).

Not in the RAR paper. Its in-place ReLUs are made out-of-place so that second-order gradients (IG-NORM, the
attribution attacks) and the softplus surrogate work. It has batch norm: in training mode the statistics of each
batch (for IG-NORM: of the B*m path points) normalise it; attacks and evaluation run it in eval mode.
"""

from __future__ import annotations

from torch import nn

from attrobust.models import MODELS


@MODELS.register("resnet18", cam_layer="layer4")  # the last convolutional block (Grad-CAM's usual choice)
def resnet18(in_channels: int, image_size: tuple[int, int], num_classes: int) -> nn.Module:
    from torchvision.models import resnet18 as torchvision_resnet18  # imported when used (a second to import)

    net = torchvision_resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return net
