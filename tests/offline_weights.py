"""An empty, private weights environment for the backbone tests: nothing real is found."""

from pathlib import Path

import pytest
import torch


def isolate_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point HOME and every weights location into `tmp_path`; return the (empty) folder that
    ANOMALENS_WEIGHTS_DIR names."""
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANOMALENS_WEIGHTS_DIR", str(weights_dir))
    for variable in ("TORCH_HOME", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    return weights_dir


def random_tensors(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict of small random tensors with the given names and shapes."""
    generator = torch.Generator().manual_seed(seed)
    return {name: 0.1 * torch.randn(shape, generator=generator) for name, shape in shapes.items()}
