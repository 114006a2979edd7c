"""DINOv2 vision transformers (Meta, Apache-2.0): a compact port of Meta's model.

Loads Meta's checkpoints (`dinov2_vits14_pretrain.pth`, `dinov2_vits14_reg4_pretrain.pth`, ...)
or a Hugging Face folder (`facebook/dinov2-small`: config.json + model.safetensors, e.g. from
the Hugging Face cache); both give identical features. The architecture is read from the
weights, so any DINOv2 size loads under any of the registered names.

Feature levels "last" and "block{i}" (see `vit.VisionTransformer`), stride 14.
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anomalens.backbones import BackboneEntry, register
from anomalens.backbones.checkpoints import (
    WeightsFileError,
    load_weights,
    locate_weights,
    read_huggingface_folder,
    read_state_dict,
)
from anomalens.backbones.vit import (
    HEAD_DIM,
    VisionTransformer,
    fuse_qkv,
    rename_keys,
    vit_shape,
)

_URL = "https://dl.fbaipublicfiles.com/dinov2"
_SIZES = {"s": "small", "b": "base", "l": "large", "g": "giant"}
# Hugging Face key patterns -> Meta's names (query/key/value are fused into qkv afterwards).
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


class DinoV2(VisionTransformer):
    """DINOv2 ViT with learned position embeddings; parameter names match Meta's checkpoints.

    Args:
        name, dim, depth, heads, hidden, swiglu, patch: as for VisionTransformer.
        registers: number of register tokens (4 for the _reg models, else 0).
        grid: side, in patches, of the learned position embedding grid.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        depth: int,
        heads: int,
        hidden: int,
        swiglu: bool,
        patch: int,
        registers: int,
        grid: int,
    ):
        super().__init__(name, dim, depth, heads, hidden, swiglu, patch, eps=1e-6)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim)) if registers else None

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

    def embed(self, images: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, None]:
        batch = images.shape[0]
        x = torch.cat([self.cls_token.expand(batch, -1, -1), self.patch_embed(images)], dim=1)
        x = x + self.position_embedding(rows, cols)
        if self.register_tokens is not None:
            registers = self.register_tokens.expand(batch, -1, -1)
            x = torch.cat([x[:, :1], registers, x[:, 1:]], dim=1)
        return x, None


def meta_state_from_huggingface(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Hugging Face Dinov2Model state dict in Meta's layout."""
    return fuse_qkv(rename_keys(state, _HF_RENAMES))


def load_dinov2(name: str, path: Path) -> DinoV2:
    """DinoV2 shaped after, and loaded with, a Meta checkpoint file or a Hugging Face folder
    (config.json + safetensors); attention heads are width / 64 unless the config says."""
    heads = None
    if path.is_dir():
        config, state = read_huggingface_folder(path)
        state, heads = meta_state_from_huggingface(state), config.get("num_attention_heads")
    else:
        state = read_state_dict(path)
    try:
        shape = vit_shape(state)
        model = DinoV2(
            name,
            heads=heads or shape["dim"] // HEAD_DIM,
            registers=state["register_tokens"].shape[1] if "register_tokens" in state else 0,
            grid=math.isqrt(state["pos_embed"].shape[1] - 1),
            **shape,
        )
    except KeyError as error:
        raise WeightsFileError(f"{path}: not DINOv2 weights (no {error})") from error
    load_weights(model, {key: v for key, v in state.items() if key != "mask_token"}, path)
    return model


def _entry(name: str) -> BackboneEntry:
    arch = name.removesuffix("_reg")
    size = _SIZES[arch[len("dinov2_vit")]]
    filename = f"{arch}_reg4_pretrain.pth" if name.endswith("_reg") else f"{arch}_pretrain.pth"
    repo = f"facebook/dinov2-{'with-registers-' if name.endswith('_reg') else ''}{size}"
    url = f"{_URL}/{arch}/{filename}"

    def locate(weights: str | Path | None) -> Path:
        return locate_weights(name, [filename, repo.split("/")[1]], weights, url, repo)

    source = f"Meta DINOv2 ({filename} or Hugging Face {repo}; Apache-2.0)"
    return BackboneEntry(name, source, locate, lambda path: load_dinov2(name, path), filename, url)


for _size in _SIZES:
    for _suffix in ("", "_reg"):
        register(_entry(f"dinov2_vit{_size}14{_suffix}"))
