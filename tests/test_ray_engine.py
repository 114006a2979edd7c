"""`predict --engine ray` on a local Ray cluster started once for this module: the same outputs
as local predict, bad images reported, a dead worker's batch retried, reruns resumed."""

import json
import os
from pathlib import Path

import pytest
from images import texture, with_defect
from PIL import Image

import anomalens
from anomalens.batch.local import LocalEngine
from anomalens.batch.ray_engine import RayEngine
from anomalens.batch.sources import Item
from anomalens.cli import main
from anomalens.detector import Detector

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    sources = Path(anomalens.__file__).parents[1]
    tests = Path(__file__).parent
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        runtime_env={"env_vars": {"PYTHONPATH": f"{sources}:{tests}", "OMP_NUM_THREADS": "1"}},
        logging_level="warning",
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    model = root / "model"
    settings = {"method": "anomalydino", "resolution": 64, "rotation": False}
    Detector(**settings).fit([texture(seed) for seed in range(6)]).save(model)
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    for index in range(9):
        Image.fromarray(texture(20 + index)).save(images / f"{index}.png")
    Image.fromarray(with_defect(texture(30))).save(images / "sub" / "bad.png")
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    return root, model, images


def predict(*argv: object) -> int:
    return main(["predict", *map(str, argv)])


def outputs(folder: Path) -> tuple[dict, dict]:
    """results.json's entries by path, and every mask and overlay's bytes by relative path."""
    document = json.loads((folder / "results.json").read_text())
    files = {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*.png")
        if p.parts[-2] != "model"
    }
    return {entry["path"]: entry for entry in document["images"]}, files


def test_ray_predicts_what_local_predict_does_and_a_rerun_resumes(cluster, setup, tmp_path, capsys):
    _, model, images = setup
    # broken.png fails. Batches of 3 as the workers': a convolution's last bits depend on its batch.
    assert predict(model, images, "-o", tmp_path / "local", "--batch-size", 3) == 1
    local_err = capsys.readouterr().err
    output = tmp_path / "ray"
    argv = [model, images, "-o", output, "--engine", "ray", "--workers", 2, "--batch-size", 3]
    assert predict(*argv) == 1
    ray_err = capsys.readouterr().err
    assert outputs(output) == outputs(tmp_path / "local")  # same scores, masks and overlays
    for err in (local_err, ray_err):
        assert f"{images / 'broken.png'}" in err and "Traceback" not in err
    errors = json.loads((output / "results.json").read_text())["errors"]
    assert [Path(error["path"]).name for error in errors] == ["broken.png"]
    lines = (output / "results.jsonl").read_text().splitlines()
    assert predict(*argv) == 1
    assert "10 images already inspected" in capsys.readouterr().out
    # Only the broken image was tried again.
    again = (output / "results.jsonl").read_text().splitlines()
    assert again[: len(lines)] == lines and len(again) == len(lines) + 1
    assert json.loads(again[-1])["path"] == str(images / "broken.png")


class CrashOnce:
    """Loads the model; the first actor to score a batch dies (the marker file says it did)."""

    def __init__(self, model: Path, marker: Path):
        self.model = model
        self.marker = marker

    def __call__(self) -> Detector:
        detector = Detector.load(self.model)
        predict = detector.predict

        def dying(images):
            if not self.marker.exists():
                self.marker.touch()
                os._exit(1)  # the worker process dies mid-batch
            return predict(images)

        detector.predict = dying
        return detector


def test_a_dead_worker_loses_only_its_batch_which_is_retried(cluster, setup, tmp_path):
    _, model, images = setup
    items = [Item(str(images / f"{index}.png"), str(index)) for index in range(9)]
    marker = tmp_path / "died"
    engine = RayEngine(CrashOnce(model, marker), workers=2, batch_size=3)
    crashed = {o.record["path"]: o.record["score"] for o in engine.outcomes(items)}
    assert marker.exists()  # a worker did die
    steady = LocalEngine(Detector.load(model), batch_size=3)
    expected = {o.record["path"]: o.record["score"] for o in steady.outcomes(items)}
    assert crashed == expected and len(expected) == 9
