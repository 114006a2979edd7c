"""DINOv3 loads offline from Meta's and Hugging Face's layouts (tiny random checkpoints)."""

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
from offline_weights import isolate_weights, random_tensors

from anomalens.backbones import get_entry, load_backbone
from anomalens.backbones.checkpoints import fetch_weights
from anomalens.backbones.dinov3 import RopeEmbed
from anomalens.errors import MissingWeightsError

DIM, DEPTH, HIDDEN, PATCH, STORAGE = 128, 2, 256, 16, 4  # 2 heads of 64


def meta_state(swiglu: bool) -> dict[str, torch.Tensor]:
    """Random weights named as in Meta's dinov3_*_pretrain_lvd1689m-*.pth files; the masked
    key part of each qkv bias holds garbage, as the mask must hide it."""
    shapes = {
        "cls_token": (1, 1, DIM),
        "storage_tokens": (1, STORAGE, DIM),
        "mask_token": (1, DIM),
        "patch_embed.proj.weight": (DIM, 3, PATCH, PATCH),
        "patch_embed.proj.bias": (DIM,),
        "norm.weight": (DIM,),
        "norm.bias": (DIM,),
    }
    mlp = ("w1", "w2") if swiglu else ("fc1",)
    out = "w3" if swiglu else "fc2"
    for i in range(DEPTH):
        block = {
            "norm1.weight": (DIM,),
            "norm1.bias": (DIM,),
            "attn.qkv.weight": (3 * DIM, DIM),
            "attn.qkv.bias": (3 * DIM,),
            "attn.proj.weight": (DIM, DIM),
            "attn.proj.bias": (DIM,),
            "ls1.gamma": (DIM,),
            "norm2.weight": (DIM,),
            "norm2.bias": (DIM,),
            "ls2.gamma": (DIM,),
            f"mlp.{out}.weight": (DIM, HIDDEN),
            f"mlp.{out}.bias": (DIM,),
        }
        for name in mlp:
            block |= {f"mlp.{name}.weight": (HIDDEN, DIM), f"mlp.{name}.bias": (HIDDEN,)}
        shapes |= {f"blocks.{i}.{key}": shape for key, shape in block.items()}
    state = random_tensors(shapes)
    for i in range(DEPTH):
        mask = torch.ones(3 * DIM)
        mask[DIM : 2 * DIM] = 0
        state[f"blocks.{i}.attn.qkv.bias_mask"] = mask
        state[f"blocks.{i}.attn.qkv.bias"][DIM : 2 * DIM] = 1e3
    state["rope_embed.periods"] = 100.0 ** (torch.arange(16) / 16)  # head dim 64 -> 16 periods
    return state


def write_huggingface_folder(state: dict[str, torch.Tensor], folder: Path, swiglu: bool) -> Path:
    """The same weights as a Hugging Face DINOv3ViTModel folder (config.json + safetensors)."""
    hf = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.register_tokens": state["storage_tokens"],
        "embeddings.mask_token": state["mask_token"][None],
        "embeddings.patch_embeddings.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.bias": state["patch_embed.proj.bias"],
        "norm.weight": state["norm.weight"],
        "norm.bias": state["norm.bias"],
    }
    mlp = (
        {"gate_proj": "w1", "up_proj": "w2", "down_proj": "w3"}
        if swiglu
        else {"up_proj": "fc1", "down_proj": "fc2"}
    )
    for i in range(DEPTH):
        meta, layer = f"blocks.{i}.", f"layer.{i}."
        query, key, value = state[f"{meta}attn.qkv.weight"].chunk(3)
        query_bias, _, value_bias = state[f"{meta}attn.qkv.bias"].chunk(3)
        hf |= {
            f"{layer}attention.q_proj.weight": query,
            f"{layer}attention.q_proj.bias": query_bias,
            f"{layer}attention.k_proj.weight": key,
            f"{layer}attention.v_proj.weight": value,
            f"{layer}attention.v_proj.bias": value_bias,
            f"{layer}layer_scale1.lambda1": state[f"{meta}ls1.gamma"],
            f"{layer}layer_scale2.lambda1": state[f"{meta}ls2.gamma"],
        }
        for kind in ("weight", "bias"):
            hf[f"{layer}attention.o_proj.{kind}"] = state[f"{meta}attn.proj.{kind}"]
            hf[f"{layer}norm1.{kind}"] = state[f"{meta}norm1.{kind}"]
            hf[f"{layer}norm2.{kind}"] = state[f"{meta}norm2.{kind}"]
            hf |= {f"{layer}mlp.{h}.{kind}": state[f"{meta}mlp.{m}.{kind}"] for h, m in mlp.items()}
    config = {
        "model_type": "dinov3_vit",
        "hidden_size": DIM,
        "intermediate_size": HIDDEN,
        "num_hidden_layers": DEPTH,
        "num_attention_heads": 2,
        "patch_size": PATCH,
        "num_register_tokens": STORAGE,
        "use_gated_mlp": swiglu,
        "rope_theta": 100.0,
        "layer_norm_eps": 1e-5,
    }
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in hf.items()}, folder / "model.safetensors"
    )
    return folder


@pytest.fixture
def weights_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate_weights(monkeypatch, tmp_path)


@pytest.mark.parametrize(
    ("name", "swiglu"), [("dinov3_vits16", False), ("dinov3_vith16plus", True)]
)
@pytest.mark.parametrize("size", [(64, 64), (80, 48)])
def test_meta_and_huggingface_layouts_give_identical_features(
    weights_dir: Path, name: str, swiglu: bool, size: tuple[int, int]
):
    state = meta_state(swiglu)
    torch.save(state, weights_dir / "meta.pth")
    hf_folder = write_huggingface_folder(state, weights_dir / "hf", swiglu)
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    levels = ("last", "block0")

    with torch.no_grad():
        from_meta = load_backbone(name, str(weights_dir / "meta.pth"))(images, levels)
        from_hf = load_backbone(name, str(hf_folder))(images, levels)

    for level in levels:
        assert from_meta[level].shape == (2, DIM, size[0] // PATCH, size[1] // PATCH)
        assert bool(from_meta[level].isfinite().all())
        torch.testing.assert_close(from_meta[level], from_hf[level], rtol=1e-5, atol=1e-5)


def test_swiglu_feed_forward_gates_w2_with_silu_of_w1_as_meta_does(weights_dir: Path):
    state = meta_state(swiglu=True)
    torch.save(state, weights_dir / "meta.pth")
    mlp = load_backbone("dinov3_vith16plus", str(weights_dir / "meta.pth")).blocks[0].mlp
    x = torch.randn(5, DIM)

    def linear(name: str, inputs: torch.Tensor) -> torch.Tensor:
        prefix = f"blocks.0.mlp.{name}"
        return inputs @ state[f"{prefix}.weight"].T + state[f"{prefix}.bias"]

    expected = linear("w3", torch.nn.functional.silu(linear("w1", x)) * linear("w2", x))
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), expected)


def test_rotary_angles_follow_patch_rows_and_columns_normalised_to_plus_minus_one():
    cos, sin = RopeEmbed(head_dim=64)(rows=2, cols=3)
    cos, sin = cos.reshape(2, 3, 64), sin.reshape(2, 3, 64)
    row_part, col_part = slice(0, 16), slice(16, 32)  # then both repeat

    torch.testing.assert_close(cos[:, :, :32], cos[:, :, 32:])
    torch.testing.assert_close(cos[:, 0, row_part], cos[:, 2, row_part])  # rows: same per row
    torch.testing.assert_close(cos[0, :, col_part], cos[1, :, col_part])  # cols: same per col
    torch.testing.assert_close(sin[0, :, row_part], -sin[1, :, row_part])  # rows at -0.5, +0.5
    torch.testing.assert_close(sin[:, 1, col_part], torch.zeros(2, 16))  # middle column at 0
    torch.testing.assert_close(sin[0, 0, 0], torch.sin(torch.tensor(-torch.pi)))  # period 1


def test_missing_weights_error_names_the_gated_files_and_offers_no_download(weights_dir: Path):
    entry = get_entry("dinov3_vits16")

    with pytest.raises(MissingWeightsError) as caught:
        entry.locate(None)
    with pytest.raises(MissingWeightsError, match="no public download"):
        fetch_weights(entry)

    message = str(caught.value)
    assert str(weights_dir / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth") in message
    assert "facebook/dinov3-vits16-pretrain-lvd1689m" in message
    assert "weights fetch" not in message
