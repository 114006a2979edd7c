"""Vision-transformer parts shared by the DINOv2 and DINOv3 ports, named as in Meta's code.

Feature levels of a VisionTransformer: "last" = patch tokens of the last block after the final
norm; "block{i}" = the same for block i (0-based, Meta's `get_intermediate_layers(norm=True)`).
"""

import re
from abc import abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from anomalens.backbones.base import Backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_DIM = 64
"""Width of one attention head in Meta's DINO ViTs: a checkpoint without a config has
width / 64 heads."""
Rope = tuple[torch.Tensor, torch.Tensor]
"""Rotary position embedding of the patch tokens: (cos, sin), each (patches, head dim)."""


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens (B, rows * cols, dim)."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


def rotate(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Apply rotary embeddings to the trailing patch tokens of (B, heads, tokens, head dim)."""
    cos, sin = rope
    prefix, patches = x.split([x.shape[-2] - cos.shape[0], cos.shape[0]], dim=-2)
    first, second = patches.chunk(2, dim=-1)
    patches = patches * cos + torch.cat([-second, first], dim=-1) * sin
    return torch.cat([prefix, patches], dim=-2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and optional rotary embeddings."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        if rope is not None:
            query, key = rotate(query, rope), rotate(key, rope)
        attended = F.scaled_dot_product_attention(query, key, value)
        return self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Two-layer GELU feed-forward."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """SwiGLU feed-forward with fused gate and value projections (Meta's SwiGLUFFNFused)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class LayerScale(nn.Module):
    """Learned per-channel scale."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with layer scale.

    Args:
        dim: token width.
        heads: attention heads.
        hidden: feed-forward width (of each SwiGLU half).
        swiglu: SwiGLU feed-forward instead of GELU MLP.
        eps: layer-norm epsilon.
    """

    def __init__(self, dim: int, heads: int, hidden: int, swiglu: bool, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = SwiGLU(dim, hidden) if swiglu else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(Backbone):
    """A DINO ViT: tokens from `embed`, blocks, and normalised patch tokens as feature maps.

    Args:
        name: registry name.
        dim: token width.
        depth: number of blocks.
        heads: attention heads.
        hidden: feed-forward width (of each SwiGLU half).
        swiglu: SwiGLU feed-forward instead of GELU MLP.
        patch: patch size in pixels, the stride of every level.
        eps: layer-norm epsilon.
    """

    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    default_levels = ("last",)

    def __init__(
        self,
        name: str,
        dim: int,
        depth: int,
        heads: int,
        hidden: int,
        swiglu: bool,
        patch: int,
        eps: float,
    ):
        super().__init__()
        self.name = name
        self.size_multiple = patch
        self.block_of_level = {"last": depth - 1} | {f"block{i}": i for i in range(depth)}
        self.strides = dict.fromkeys(self.block_of_level, patch)
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, swiglu, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)

    @abstractmethod
    def embed(self, images: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, Rope | None]:
        """Input tokens (B, prefix + rows * cols, dim), patch tokens last, and the rotary
        embedding the blocks use, if any."""

    def forward(self, images: torch.Tensor, levels: tuple[str, ...]) -> dict[str, torch.Tensor]:
        self.check_levels(levels)
        batch = images.shape[0]
        rows, cols = (size // self.size_multiple for size in images.shape[2:])
        x, rope = self.embed(images, rows, cols)
        first_patch = x.shape[1] - rows * cols
        wanted = {level: self.block_of_level[level] for level in levels}
        features = {}
        for index, block in enumerate(self.blocks[: max(wanted.values()) + 1]):
            x = block(x, rope)
            for level, block_index in wanted.items():
                if block_index == index:
                    tokens = self.norm(x[:, first_patch:])
                    features[level] = tokens.transpose(1, 2).reshape(batch, -1, rows, cols)
        return features


def vit_shape(state: dict[str, torch.Tensor]) -> dict:
    """dim, depth, hidden, swiglu and patch of a VisionTransformer, read from a state dict in
    Meta's layout."""
    swiglu = "blocks.0.mlp.w12.weight" in state
    return {
        "dim": state["cls_token"].shape[-1],
        "depth": len({key.split(".")[1] for key in state if key.startswith("blocks.")}),
        "hidden": (
            state["blocks.0.mlp.w3.weight"].shape[1]
            if swiglu
            else state["blocks.0.mlp.fc1.weight"].shape[0]
        ),
        "swiglu": swiglu,
        "patch": state["patch_embed.proj.weight"].shape[-1],
    }


def rename_keys(
    state: dict[str, torch.Tensor], renames: tuple[tuple[str, str], ...]
) -> dict[str, torch.Tensor]:
    """`state` with each key renamed by the first (regex, replacement) of `renames` it matches."""
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in renames:
            key, count = re.subn(pattern, replacement, key)
            if count:
                break
        renamed[key] = value
    return renamed


def fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fuse `blocks.N.attn.{query,key,value}.{weight,bias}` into Meta's `blocks.N.attn.qkv.*`;
    a missing key bias (DINOv3 has none) is zero."""
    fused = dict(state)
    for name in [key for key in state if re.fullmatch(r"blocks\.\d+\.attn\.query\.\w+", key)]:
        prefix, kind = name.rsplit(".query.", 1)
        query = fused.pop(name)
        key = fused.pop(f"{prefix}.key.{kind}", torch.zeros_like(query))
        fused[f"{prefix}.qkv.{kind}"] = torch.cat([query, key, fused.pop(f"{prefix}.value.{kind}")])
    return fused
