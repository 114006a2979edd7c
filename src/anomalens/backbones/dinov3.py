"""DINOv3 vision transformers (Meta, DINOv3 License): a compact port of Meta's model.

Loads Meta's checkpoints (`dinov3_vits16_pretrain_lvd1689m-08c60483.pth`, ...) or a Hugging
Face folder (`facebook/dinov3-vits16-pretrain-lvd1689m`: config.json + model.safetensors);
both give identical features. The weights are licence-gated, so nothing is downloaded: request
them from Meta or on Hugging Face and copy them into a weights folder. ViT-7B is not offered.

Differences from DINOv2: rotary position embeddings (patch centres normalised to [-1, 1] per
axis, base 100) instead of learned ones, 4 storage (register) tokens, no key bias, layer-norm
epsilon 1e-5, SwiGLU for the "plus" models. Feature levels "last" and "block{i}" (see
`vit.VisionTransformer`), stride 16.
"""

import math
from pathlib import Path

import torch
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
    Rope,
    VisionTransformer,
    fuse_qkv,
    rename_keys,
    vit_shape,
)

_CHECKPOINTS = {
    "dinov3_vits16": "dinov3_vits16_pretrain_lvd1689m-08c60483.pth",
    "dinov3_vits16plus": "dinov3_vits16plus_pretrain_lvd1689m-4057cbaa.pth",
    "dinov3_vitb16": "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth",
    "dinov3_vitl16": "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth",
    "dinov3_vith16plus": "dinov3_vith16plus_pretrain_lvd1689m-7c1da9a5.pth",
}
# Hugging Face key patterns -> Meta's names (query/key/value are fused into qkv afterwards).
_HF_RENAMES = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.register_tokens$", "storage_tokens"),
    (r"^embeddings\.patch_embeddings\.", "patch_embed.proj."),
    (r"^layer\.(\d+)\.attention\.q_proj\.", r"blocks.\1.attn.query."),
    (r"^layer\.(\d+)\.attention\.k_proj\.", r"blocks.\1.attn.key."),
    (r"^layer\.(\d+)\.attention\.v_proj\.", r"blocks.\1.attn.value."),
    (r"^layer\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"^layer\.(\d+)\.layer_scale(\d)\.lambda1$", r"blocks.\1.ls\2.gamma"),
)
_HF_MLP_RENAMES = {  # by config "use_gated_mlp"
    True: (
        (r"^layer\.(\d+)\.mlp\.gate_proj\.", r"blocks.\1.mlp.w1."),
        (r"^layer\.(\d+)\.mlp\.up_proj\.", r"blocks.\1.mlp.w2."),
        (r"^layer\.(\d+)\.mlp\.down_proj\.", r"blocks.\1.mlp.w3."),
    ),
    False: (
        (r"^layer\.(\d+)\.mlp\.up_proj\.", r"blocks.\1.mlp.fc1."),
        (r"^layer\.(\d+)\.mlp\.down_proj\.", r"blocks.\1.mlp.fc2."),
    ),
}
_HF_LAYER_RENAME = ((r"^layer\.(\d+)\.", r"blocks.\1."),)


class RopeEmbed(nn.Module):
    """Rotary embeddings of a rows x cols patch grid, from Meta's per-frequency periods.

    Args:
        head_dim: attention head width.
        base: period base (100 in DINOv3).
    """

    def __init__(self, head_dim: int, base: float = 100.0):
        super().__init__()
        exponents = 2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2)
        self.register_buffer("periods", base**exponents)

    def forward(self, rows: int, cols: int) -> Rope:
        device = self.periods.device
        centre_rows = torch.arange(0.5, rows, device=device) / rows
        centre_cols = torch.arange(0.5, cols, device=device) / cols
        grid = torch.stack(torch.meshgrid(centre_rows, centre_cols, indexing="ij"), dim=-1)
        coords = 2 * grid.flatten(0, 1) - 1  # (patches, 2), in [-1, 1]
        angles = 2 * math.pi * coords[:, :, None] / self.periods  # (patches, 2, head_dim / 4)
        angles = angles.flatten(1).tile(2)  # (patches, head_dim)
        return torch.cos(angles), torch.sin(angles)


class DinoV3(VisionTransformer):
    """DINOv3 ViT; parameter names match Meta's checkpoints (fused SwiGLU w12 = [w1, w2]).

    Args:
        name, dim, depth, heads, hidden, swiglu, patch: as for VisionTransformer.
        storage: number of storage (register) tokens.
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
        storage: int,
    ):
        super().__init__(name, dim, depth, heads, hidden, swiglu, patch, eps=1e-5)
        self.storage_tokens = nn.Parameter(torch.zeros(1, storage, dim))
        self.rope_embed = RopeEmbed(dim // heads)

    def embed(self, images: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, Rope]:
        batch = images.shape[0]
        prefix = [self.cls_token.expand(batch, -1, -1), self.storage_tokens.expand(batch, -1, -1)]
        tokens = torch.cat([*prefix, self.patch_embed(images)], dim=1)
        return tokens, self.rope_embed(rows, cols)


def meta_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Meta DINOv3 checkpoint ready for DinoV3: masked key biases zeroed, SwiGLU w1 and w2
    fused into w12, the unused mask token dropped."""
    state = {key: value for key, value in state.items() if key != "mask_token"}
    for mask_key in [key for key in state if key.endswith(".attn.qkv.bias_mask")]:
        bias_key = mask_key.removesuffix("_mask")
        mask = state.pop(mask_key).bool()
        state[bias_key] = torch.where(mask, state[bias_key], torch.zeros_like(state[bias_key]))
    for w1 in [key for key in state if key.endswith((".mlp.w1.weight", ".mlp.w1.bias"))]:
        w2 = w1.replace(".w1.", ".w2.")
        state[w1.replace(".w1.", ".w12.")] = torch.cat([state.pop(w1), state.pop(w2)])
    return state


def meta_state_from_huggingface(
    state: dict[str, torch.Tensor], config: dict
) -> dict[str, torch.Tensor]:
    """A Hugging Face DINOv3ViTModel state dict and config in Meta's layout."""
    renames = _HF_RENAMES + _HF_MLP_RENAMES[config.get("use_gated_mlp", False)]
    state = fuse_qkv(rename_keys(state, renames + _HF_LAYER_RENAME))
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    state["rope_embed.periods"] = RopeEmbed(head_dim, config.get("rope_theta", 100.0)).periods
    return state


def load_dinov3(name: str, path: Path) -> DinoV3:
    """DinoV3 shaped after, and loaded with, a Meta checkpoint file or a Hugging Face folder
    (config.json + safetensors); attention heads are width / 64 unless the config says."""
    heads = None
    try:
        if path.is_dir():
            config, state = read_huggingface_folder(path)
            state, heads = meta_state_from_huggingface(state, config), config["num_attention_heads"]
        else:
            state = read_state_dict(path)
        state = meta_state(state)
        shape = vit_shape(state)
        model = DinoV3(
            name,
            heads=heads or shape["dim"] // HEAD_DIM,
            storage=state["storage_tokens"].shape[1],
            **shape,
        )
    except KeyError as error:
        raise WeightsFileError(f"{path}: not DINOv3 weights (no {error})") from error
    load_weights(model, state, path)
    return model


def _entry(name: str, filename: str) -> BackboneEntry:
    repo = f"facebook/{name.replace('_', '-')}-pretrain-lvd1689m"

    def locate(weights: str | Path | None) -> Path:
        return locate_weights(name, [filename, repo.split("/")[1]], weights, None, repo)

    source = f"Meta DINOv3 ({filename} or Hugging Face {repo}; DINOv3 License, gated)"
    return BackboneEntry(name, source, locate, lambda path: load_dinov3(name, path), filename)


for _name, _filename in _CHECKPOINTS.items():
    register(_entry(_name, _filename))
