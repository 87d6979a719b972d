"""A small Vision Transformer (Dosovitskiy et al., ICLR 2021) that trains on mnist_mini on a CPU: non-overlapping
`patch` x `patch` patches embedded linearly, a class token and learned position embeddings, `depth` pre-norm blocks
of multi-head self-attention and a GELU MLP, and a linear head on the final class token.

Everything is smooth (GELU, softmax, LayerNorm), so attacks and attribution-robust objectives differentiate it
without a surrogate. What explainers read is declared, not searched for:
- each block's attention probabilities (B, heads, T, T), kept while `keep_attention` is on (`Attention.kept`), for
  attention rollout and Chefer et al.'s gradient-weighted attention (attrobust/explainers/attention.py);
- `grid`: the patch tokens entering the last block, reshaped to a (B, dim, h, w) feature map (an identity module),
  the layer Grad-CAM and its variants read on a ViT (the token reshape of the `grad-cam` package's ViT example).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attrobust.models import MODELS


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim must be a multiple of heads, got {dim} and {heads}")
        self.heads, self.qkv, self.out = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.keep_attention = False
        self.kept: Tensor | None = None  # the last forward pass's attention probabilities, while keep_attention

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attention = (q @ k.transpose(-2, -1) * (dim // self.heads) ** -0.5).softmax(dim=-1)
        if self.keep_attention:
            self.kept = attention
        return self.out((attention @ v).transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1, self.attention = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, in_channels: int, image_size: tuple[int, int], num_classes: int, patch: int, dim: int,
                 depth: int, heads: int, mlp: int) -> None:
        super().__init__()
        height, width = image_size
        if height % patch or width % patch:
            raise ValueError(f"patch={patch} must divide the image size {height} x {width}")
        self.grid_size = (height // patch, width // patch)
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.randn(1, 1 + self.grid_size[0] * self.grid_size[1], dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp) for _ in range(depth))
        self.grid = nn.Identity()
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        patches = self.embed(x).flatten(2).transpose(1, 2)                     # (B, N, dim)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), patches], 1) + self.position
        for block in self.blocks[:-1]:
            tokens = block(tokens)
        batch, _, dim = tokens.shape
        grid = self.grid(tokens[:, 1:].transpose(1, 2).reshape(batch, dim, *self.grid_size))
        tokens = torch.cat([tokens[:, :1], grid.flatten(2).transpose(1, 2)], 1)
        tokens = self.blocks[-1](tokens)
        return self.head(self.norm(tokens[:, 0]))

    def attention_modules(self) -> list[Attention]:
        return [block.attention for block in self.blocks]


@MODELS.register("vit", cam_layer="grid")
def vit(in_channels: int, image_size: tuple[int, int], num_classes: int, patch: int = 4, dim: int = 64,
        depth: int = 4, heads: int = 4, mlp: int = 128) -> nn.Module:
    return ViT(in_channels, image_size, num_classes, patch, dim, depth, heads, mlp)
