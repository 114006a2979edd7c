"""DINOv2 loads offline from Meta's and Hugging Face's layouts (tiny random checkpoints)."""

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from offline_weights import isolate_weights, random_tensors

from anomalens.backbones import get_entry, load_backbone, weights_status
from anomalens.backbones.checkpoints import WeightsFileError, fetch_weights
from anomalens.backbones.weights import sha256
from anomalens.errors import MissingWeightsError
from anomalens.features import FeatureExtractor

DIM, DEPTH, HIDDEN, PATCH, GRID = 128, 2, 256, 14, 4  # 2 heads of 64, native input 56 px


def meta_state(swiglu: bool = False, registers: int = 0) -> dict[str, torch.Tensor]:
    """Random weights named as in Meta's dinov2_*_pretrain.pth files."""
    shapes = {
        "cls_token": (1, 1, DIM),
        "pos_embed": (1, GRID * GRID + 1, DIM),
        "mask_token": (1, DIM),
        "patch_embed.proj.weight": (DIM, 3, PATCH, PATCH),
        "patch_embed.proj.bias": (DIM,),
        "norm.weight": (DIM,),
        "norm.bias": (DIM,),
    }
    if registers:
        shapes["register_tokens"] = (1, registers, DIM)
    mlp = (
        {"w12.weight": (2 * HIDDEN, DIM), "w12.bias": (2 * HIDDEN,), "w3.weight": (DIM, HIDDEN)}
        if swiglu
        else {"fc1.weight": (HIDDEN, DIM), "fc1.bias": (HIDDEN,), "fc2.weight": (DIM, HIDDEN)}
    )
    mlp["w3.bias" if swiglu else "fc2.bias"] = (DIM,)
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
        } | {f"mlp.{key}": shape for key, shape in mlp.items()}
        shapes |= {f"blocks.{i}.{key}": shape for key, shape in block.items()}
    state = random_tensors(shapes)
    for key in state:
        if key.endswith(("norm.weight", "norm1.weight", "norm2.weight")):
            state[key] += 1.0
    return state


def write_huggingface_folder(
    state: dict[str, torch.Tensor], folder: Path, swiglu: bool = False, registers: int = 0
) -> Path:
    """The same weights as a Hugging Face Dinov2Model folder (config.json + model.safetensors)."""
    hf = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.mask_token": state["mask_token"],
        "embeddings.position_embeddings": state["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
    }
    if registers:
        hf["embeddings.register_tokens"] = state["register_tokens"]
    mlp = {"weights_in": "w12", "weights_out": "w3"} if swiglu else {"fc1": "fc1", "fc2": "fc2"}
    for i in range(DEPTH):
        meta, layer = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            query, key, value = state[f"{meta}attn.qkv.{kind}"].chunk(3)
            hf |= {
                f"{layer}attention.attention.query.{kind}": query,
                f"{layer}attention.attention.key.{kind}": key,
                f"{layer}attention.attention.value.{kind}": value,
                f"{layer}attention.output.dense.{kind}": state[f"{meta}attn.proj.{kind}"],
                f"{layer}norm1.{kind}": state[f"{meta}norm1.{kind}"],
                f"{layer}norm2.{kind}": state[f"{meta}norm2.{kind}"],
            }
            hf |= {f"{layer}mlp.{h}.{kind}": state[f"{meta}mlp.{m}.{kind}"] for h, m in mlp.items()}
        hf[f"{layer}layer_scale1.lambda1"] = state[f"{meta}ls1.gamma"]
        hf[f"{layer}layer_scale2.lambda1"] = state[f"{meta}ls2.gamma"]
    config = {
        "model_type": "dinov2_with_registers" if registers else "dinov2",
        "hidden_size": DIM,
        "num_hidden_layers": DEPTH,
        "num_attention_heads": 2,
        "patch_size": PATCH,
        "image_size": GRID * PATCH,
        "use_swiglu_ffn": swiglu,
        "num_register_tokens": registers,
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


def features(name: str, weights: Path, images: torch.Tensor, levels=("last",)) -> dict:
    with torch.no_grad():
        return load_backbone(name, str(weights))(images, levels)


@pytest.mark.parametrize(
    ("name", "swiglu", "registers"),
    [("dinov2_vits14", False, 0), ("dinov2_vitg14_reg", True, 4)],
)
@pytest.mark.parametrize("size", [(56, 56), (70, 42)])
def test_meta_and_huggingface_layouts_give_identical_features(
    weights_dir: Path, name: str, swiglu: bool, registers: int, size: tuple[int, int]
):
    state = meta_state(swiglu, registers)
    meta_file = weights_dir / "meta.pth"
    torch.save(state, meta_file)
    hf_folder = write_huggingface_folder(state, weights_dir / "hf", swiglu, registers)
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    levels = ("last", "block0")

    from_meta = features(name, meta_file, images, levels)
    from_hf = features(name, hf_folder, images, levels)

    for level in levels:
        assert from_meta[level].shape == (2, DIM, size[0] // PATCH, size[1] // PATCH)
        torch.testing.assert_close(from_meta[level], from_hf[level], rtol=1e-5, atol=1e-5)


def test_every_block_is_a_level_and_the_last_block_is_last(weights_dir: Path):
    torch.save(meta_state(), weights_dir / "meta.pth")
    model = load_backbone("dinov2_vits14", str(weights_dir / "meta.pth"))
    images = torch.randn(1, 3, 42, 56)

    maps = features("dinov2_vits14", weights_dir / "meta.pth", images, ("block0", "block1", "last"))

    assert sorted(model.strides) == ["block0", "block1", "last"]
    assert set(model.strides.values()) == {PATCH} and model.size_multiple == PATCH
    torch.testing.assert_close(maps["block1"], maps["last"])
    assert not torch.allclose(maps["block0"], maps["last"])
    with pytest.raises(ValueError, match="block2"):
        model(images, ("block2",))


@pytest.mark.parametrize("registers", [0, 4])
def test_position_embeddings_are_resized_to_the_input_grid_without_transposing(
    weights_dir: Path, registers: int
):
    state = meta_state(registers=registers)
    rows = torch.arange(GRID, dtype=torch.float32).repeat_interleave(GRID)  # value = row index
    state["pos_embed"][0, 1:] = rows[:, None].expand(-1, DIM)
    torch.save(state, weights_dir / "meta.pth")
    model = load_backbone("dinov2_vits14", str(weights_dir / "meta.pth"))

    resized = model.position_embedding(6, 3)[0, 1:, 0].reshape(6, 3)

    assert torch.equal(model.position_embedding(GRID, GRID), model.pos_embed)
    torch.testing.assert_close(resized, resized[:, :1].expand(-1, 3))  # constant along a row
    assert bool((resized[1:, 0] > resized[:-1, 0]).all())  # increasing down the rows


def test_levels_are_patch_tokens_after_the_final_layer_norm(weights_dir: Path):
    state = meta_state(registers=4)
    state["norm.weight"], state["norm.bias"] = torch.ones(DIM), torch.zeros(DIM)
    torch.save(state, weights_dir / "meta.pth")

    maps = features("dinov2_vits14_reg", weights_dir / "meta.pth", torch.randn(1, 3, 56, 42))

    tokens = maps["last"][0].flatten(1)  # (DIM, positions)
    assert tokens.shape[1] == 4 * 3
    torch.testing.assert_close(tokens.mean(0), torch.zeros(12), atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens.var(0, unbiased=False), torch.ones(12), atol=1e-3, rtol=0)


def test_feature_extractor_runs_dinov2_on_an_rgb_image(weights_dir: Path):
    torch.save(meta_state(registers=4), weights_dir / "dinov2_vits14_reg4_pretrain.pth")
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)

    extractor = FeatureExtractor("dinov2_vits14_reg", resolution=70)
    (maps,) = extractor.extract([image])

    assert extractor.levels == ("last",)
    assert maps.levels["last"].shape == (DIM, 5, 6)  # 70 x 93 px cropped to 70 x 84


def test_meta_file_in_the_weights_dir_is_found_and_listed_with_its_sha256(weights_dir: Path):
    path = weights_dir / "dinov2_vitb14_pretrain.pth"
    torch.save(meta_state(), path)

    row = next(row for row in weights_status() if row["name"] == "dinov2_vitb14")

    assert get_entry("dinov2_vitb14").locate(None) == path
    assert row["available"] is True and row["path"] == str(path)
    assert row["sha256"] == sha256(path) and "DINOv2" in str(row["source"])


def test_hugging_face_cache_snapshot_is_found(weights_dir: Path, tmp_path: Path):
    model_dir = tmp_path / "home/.cache/huggingface/hub/models--facebook--dinov2-small"
    snapshot = write_huggingface_folder(meta_state(), model_dir / "snapshots/abc123")
    (model_dir / "refs").mkdir()
    (model_dir / "refs/main").write_text("abc123")

    assert get_entry("dinov2_vits14").locate(None) == snapshot
    assert load_backbone("dinov2_vits14", str(snapshot)).strides["last"] == PATCH


def test_missing_weights_error_names_backbone_places_and_remedies(weights_dir: Path):
    with pytest.raises(MissingWeightsError) as caught:
        get_entry("dinov2_vitl14_reg").locate(None)

    message = str(caught.value)
    assert "dinov2_vitl14_reg" in message
    assert str(weights_dir / "dinov2_vitl14_reg4_pretrain.pth") in message
    assert "facebook/dinov2-with-registers-large" in message and "huggingface" in message
    assert "ANOMALENS_WEIGHTS_DIR" in message and "--weights PATH" in message
    assert "anomalens weights import dinov2_vitl14_reg FILE" in message
    assert "anomalens weights fetch dinov2_vitl14_reg" in message


def test_weights_are_downloaded_only_when_fetched(weights_dir: Path, monkeypatch):
    fetched = []

    def fake_download(url: str, destination: str) -> None:
        fetched.append(url)
        torch.save(meta_state(), destination)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    entry = get_entry("dinov2_vits14")

    for weights in (None, "download"):
        with pytest.raises(MissingWeightsError):
            entry.locate(weights)
    assert fetched == []
    path, _ = fetch_weights(entry, fake_download)
    assert entry.locate(None) == path == weights_dir / "dinov2_vits14_pretrain.pth"
    assert fetched == [
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"
    ]


def test_a_file_that_is_not_dinov2_is_reported_with_its_path(weights_dir: Path):
    path = weights_dir / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)

    with pytest.raises(WeightsFileError, match=r"other\.pth"):
        load_backbone("dinov2_vits14", str(path))
