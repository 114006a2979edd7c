"""DINOv2 vision transformers (Meta, Apache-2.0): a compact port of Meta's model.

Loads Meta's checkpoints (`dinov2_vits14_pretrain.pth`, `dinov2_vits14_reg4_pretrain.pth`, ...)
or a Hugging Face folder (`facebook/dinov2-small`: config.json + model.safetensors, e.g. from
the Hugging Face cache); both give identical features. The architecture is read from the
weights, so any DINOv2 size loads under any of the registered names.

Feature levels: "last" = patch tokens of the last block after the final norm; "block{i}" = the
same for block i (0-based, Meta's `get_intermediate_layers(..., norm=True)`). Stride 14.
"""

import json
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anomalens.backbones import BackboneEntry, register
from anomalens.backbones.base import Backbone
from anomalens.backbones.checkpoints import (
    WeightsFileError,
    load_weights,
    locate_weights,
    read_state_dict,
)

_URL = "https://dl.fbaipublicfiles.com/dinov2"
_SIZES = {"s": "small", "b": "base", "l": "large", "g": "giant"}
_HEAD_DIM = 64
# Hugging Face key patterns -> Meta's names; query/key/value are fused into qkv afterwards.
_HF_RENAMES = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.register_tokens$", "register_tokens"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.", r"blocks.\1.attn."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layer_scale(\d)\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_in\.", r"blocks.\1.mlp.w12."),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_out\.", r"blocks.\1.mlp.w3."),
    (r"^encoder\.layer\.(\d+)\.", r"blocks.\1."),
    (r"^layernorm\.", "norm."),
)


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens (B, rows * cols, dim)."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
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
    """SwiGLU feed-forward of ViT-g (Meta's SwiGLUFFNFused)."""

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
    """Pre-norm transformer block with layer scale."""

    def __init__(self, dim: int, heads: int, hidden: int, swiglu: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLU(dim, hidden) if swiglu else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2(Backbone):
    """DINOv2 ViT; parameter names match Meta's checkpoints.

    Args:
        name: registry name.
        dim: token width.
        depth: number of blocks.
        heads: attention heads.
        hidden: feed-forward width (of each SwiGLU half for ViT-g).
        swiglu: SwiGLU feed-forward instead of GELU MLP.
        registers: number of register tokens (4 for the _reg models, else 0).
        patch: patch size in pixels, the stride of every level.
        grid: side, in patches, of the learned position embedding grid.
    """

    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    default_levels = ("last",)

    def __init__(
        self,
        name: str,
        dim: int,
        depth: int,
        heads: int,
        hidden: int,
        swiglu: bool,
        registers: int,
        patch: int,
        grid: int,
    ):
        super().__init__()
        self.name = name
        self.size_multiple = patch
        self.block_of_level = {"last": depth - 1} | {f"block{i}": i for i in range(depth)}
        self.strides = dict.fromkeys(self.block_of_level, patch)
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim)) if registers else None
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, swiglu) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """Position embeddings (1, 1 + rows * cols, dim), resized bicubically like Meta's hub
        models: scale factor (size + 0.1) / grid without registers, exact size with
        antialiasing for the _reg models."""
        grid = math.isqrt(self.pos_embed.shape[1] - 1)
        if rows == cols == grid:
            return self.pos_embed
        patches = self.pos_embed[:, 1:].float().reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        if self.register_tokens is None:
            scale = ((rows + 0.1) / grid, (cols + 0.1) / grid)
            patches = F.interpolate(patches, scale_factor=scale, mode="bicubic")
        else:
            patches = F.interpolate(patches, size=(rows, cols), mode="bicubic", antialias=True)
        patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([self.pos_embed[:, :1], patches.to(self.pos_embed.dtype)], dim=1)

    def forward(self, images: torch.Tensor, levels: tuple[str, ...]) -> dict[str, torch.Tensor]:
        self.check_levels(levels)
        batch = images.shape[0]
        rows, cols = (size // self.size_multiple for size in images.shape[2:])
        x = torch.cat([self.cls_token.expand(batch, -1, -1), self.patch_embed(images)], dim=1)
        x = x + self.position_embedding(rows, cols)
        if self.register_tokens is not None:
            registers = self.register_tokens.expand(batch, -1, -1)
            x = torch.cat([x[:, :1], registers, x[:, 1:]], dim=1)
        first_patch = x.shape[1] - rows * cols
        wanted = {level: self.block_of_level[level] for level in levels}
        features = {}
        for index, block in enumerate(self.blocks[: max(wanted.values()) + 1]):
            x = block(x)
            for level, block_index in wanted.items():
                if block_index == index:
                    tokens = self.norm(x[:, first_patch:])
                    features[level] = tokens.transpose(1, 2).reshape(batch, -1, rows, cols)
        return features


def build_dinov2(
    name: str, state: dict[str, torch.Tensor], heads: int | None, path: Path
) -> DinoV2:
    """DinoV2 shaped after, and loaded with, the Meta-layout `state` read from `path`.

    Args:
        name: registry name.
        state: Meta-layout state dict.
        heads: attention heads; None means width / 64, as in every released DINOv2.
        path: the weights file or folder, for messages.
    """
    dim = state["cls_token"].shape[-1]
    swiglu = "blocks.0.mlp.w12.weight" in state
    model = DinoV2(
        name,
        dim=dim,
        depth=len({key.split(".")[1] for key in state if key.startswith("blocks.")}),
        heads=heads or dim // _HEAD_DIM,
        hidden=(
            state["blocks.0.mlp.w3.weight"].shape[1]
            if swiglu
            else state["blocks.0.mlp.fc1.weight"].shape[0]
        ),
        swiglu=swiglu,
        registers=state["register_tokens"].shape[1] if "register_tokens" in state else 0,
        patch=state["patch_embed.proj.weight"].shape[-1],
        grid=math.isqrt(state["pos_embed"].shape[1] - 1),
    )
    load_weights(model, {key: v for key, v in state.items() if key != "mask_token"}, path)
    return model


def meta_state_from_huggingface(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face Dinov2Model state dict to Meta's layout, fusing query/key/value."""
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in _HF_RENAMES:
            key, count = re.subn(pattern, replacement, key)
            if count:
                break
        renamed[key] = value
    for key in [key for key in renamed if re.fullmatch(r"blocks\.\d+\.attn\.query\.\w+", key)]:
        prefix, kind = key.rsplit(".query.", 1)
        parts = [renamed.pop(f"{prefix}.{part}.{kind}") for part in ("query", "key", "value")]
        renamed[f"{prefix}.qkv.{kind}"] = torch.cat(parts)
    return renamed


def load_dinov2(name: str, path: Path) -> DinoV2:
    """DinoV2 from a Meta checkpoint file or a Hugging Face folder (config.json + safetensors)."""
    heads = None
    try:
        if path.is_dir():
            heads = json.loads((path / "config.json").read_text())["num_attention_heads"]
            state: dict[str, torch.Tensor] = {}
            for file in sorted(path.glob("*.safetensors")):
                state |= read_state_dict(file)
            state = meta_state_from_huggingface(state)
        else:
            state = read_state_dict(path)
        return build_dinov2(name, state, heads, path)
    except (OSError, KeyError, ValueError) as error:
        raise WeightsFileError(f"{path}: not DINOv2 weights ({error!r})") from error


def _entry(name: str) -> BackboneEntry:
    arch = name.removesuffix("_reg")
    size = _SIZES[arch[len("dinov2_vit")]]
    filename = f"{arch}_reg4_pretrain.pth" if name.endswith("_reg") else f"{arch}_pretrain.pth"
    repo = f"facebook/dinov2-{'with-registers-' if name.endswith('_reg') else ''}{size}"
    url = f"{_URL}/{arch}/{filename}"

    def locate(weights: str | Path | None) -> Path:
        return locate_weights(name, [filename, repo.split("/")[1]], weights, url, repo)

    source = f"Meta DINOv2 ({filename} or Hugging Face {repo}; Apache-2.0)"
    return BackboneEntry(name, source, locate, lambda path: load_dinov2(name, path))


for _size in _SIZES:
    for _suffix in ("", "_reg"):
        register(_entry(f"dinov2_vit{_size}14{_suffix}"))
