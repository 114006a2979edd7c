"""The inspection server's API: every endpoint, every refusal, persistence and concurrency."""

import base64
import dataclasses
import hashlib
import io
import json
import shutil
import sqlite3
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from defect_shapes import PLACES, scratch, spot
from fastapi.testclient import TestClient
from images import HEIGHT, WIDTH, texture, with_defect
from PIL import Image

from anomalens.cli import main, serve
from anomalens.defect_types.supervised import CropClassifier
from anomalens.detector import Detector
from anomalens.results import Result
from anomalens.service import Limits, create_app, jobs
from anomalens.service.database import Database
from anomalens.service.log import Inspected, InspectionLog
from anomalens.visualize import png_bytes

DEFECT_CENTRE = (31, 47)
"""(row, column) of the middle of `with_defect`'s square."""
LIMITS = Limits(
    max_file_bytes=100_000,
    max_request_bytes=1_000_000,
    max_pixels=300 * 300,
    max_files=8,
    max_resolution=256,
)


def png(seed: int, defective: bool = False) -> bytes:
    """A PNG of a noisy texture; a defective one has a bright square."""
    image = texture(seed)
    return png_bytes(with_defect(image) if defective else image)


def uploads(*named: tuple[str, bytes]) -> list:
    return [("files", (name, data, "image/png")) for name, data in named]


def good_images(count: int = 3) -> list:
    return uploads(*((f"good{i}.png", png(i)) for i in range(count)))


def start_fit(client: TestClient, name: str, **fields: str):
    return client.post(
        "/api/models", data={"name": name, "resolution": "64", **fields}, files=good_images()
    )


def wait(client: TestClient, job: dict) -> dict:
    deadline = time.monotonic() + 120
    while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = client.get(f"/api/jobs/{job['id']}").json()
    return job


def fit(client: TestClient, name: str) -> dict:
    response = start_fit(client, name)
    assert response.status_code == 202, response.text
    return wait(client, response.json())


def decoded_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def decoded(base64_png: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(base64_png))))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("served") / "models"


@pytest.fixture(scope="module")
def client(models_dir) -> TestClient:
    with TestClient(create_app(models_dir, LIMITS)) as client:
        yield client


@pytest.fixture(scope="module")
def model(client) -> str:
    job = fit(client, "tile")
    assert job["state"] == "done", job
    return "tile"


def test_health_says_ok_and_counts_models(client, model):
    assert client.get("/api/health").json() == {"status": "ok", "models": 1, "active_jobs": 0}


def test_options_list_methods_backbones_with_their_weights_and_the_limits(client):
    options = client.get("/api/options").json()
    assert "anomalydino" in options["methods"]
    assert {"name": "efficientnet_lite0", "available": True} in options["backbones"]
    assert options["limits"] == LIMITS.to_dict()


def test_a_fitted_model_is_listed_and_described_with_its_settings(client, model):
    described = client.get(f"/api/models/{model}").json()
    assert described["name"] == model
    assert (described["method"], described["backbone"], described["resolution"]) == (
        "ensemble",
        "efficientnet_lite0",
        64,
    )
    assert described["references"] == 3
    assert set(described["thresholds"]) == {"image", "pixel"}
    assert described["defect_types"] == []
    assert [m["name"] for m in client.get("/api/models").json()] == [model]


def test_creating_answers_202_with_a_job_and_a_second_fit_of_the_same_name_is_a_conflict(client):
    first = start_fit(client, "twice")
    second = start_fit(client, "twice")
    assert first.status_code == 202 and first.json()["state"] in ("queued", "fitting")
    assert second.status_code == 409
    assert wait(client, first.json())["state"] == "done"
    third = start_fit(client, "twice")
    assert third.status_code == 409 and "already exists" in third.json()["detail"]


def test_a_fit_that_fails_reports_the_error_and_stores_no_model(client, monkeypatch):
    def broken_fit(self, *args, **kwargs):
        raise ValueError("references unusable")

    monkeypatch.setattr(Detector, "fit", broken_fit)
    job = wait(client, start_fit(client, "broken").json())
    assert job["state"] == "failed"
    assert "references unusable" in job["error"]
    assert client.get("/api/models/broken").status_code == 404


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"method": "nosuch"}, "unknown method"),
        ({"backbone": "nosuch"}, "unknown backbone"),
        ({"resolution": "512"}, "over the limit"),
    ],
)
def test_bad_model_settings_are_refused_with_the_reason(client, fields, problem):
    response = start_fit(client, "settings", **fields)
    assert response.status_code == 400
    assert problem in response.json()["detail"]


@pytest.mark.parametrize("name", ["..", "../outside", ".hidden", "a/b", "a\\b", "x" * 65, "a b"])
def test_model_names_that_could_leave_the_models_folder_are_refused(client, models_dir, name):
    before = sorted(models_dir.parent.rglob("*"))
    response = start_fit(client, name)
    assert response.status_code == 400
    assert "invalid model name" in response.json()["detail"]
    assert sorted(models_dir.parent.rglob("*")) == before


@pytest.mark.parametrize("path", ["/api/models/%2E%2E", "/api/models/.hidden"])
def test_traversal_names_in_urls_are_refused(client, path):
    assert client.get(path).status_code == 400
    assert client.delete(path).status_code == 400


def test_encoded_slashes_in_urls_reach_no_file_outside_the_page(client, models_dir):
    secret = models_dir.parent / "secret.txt"
    secret.write_text("private")
    for path in ["/api/models/..%2Fsecret.txt", "/..%2F..%2Fsecret.txt", "/%2E%2E/secret.txt"]:
        response = client.get(path)
        assert response.status_code == 404 and "private" not in response.text
    assert secret.read_text() == "private"


def test_an_unknown_model_is_404_on_every_endpoint(client):
    answers = [
        client.get("/api/models/ghost"),
        client.delete("/api/models/ghost"),
        client.post("/api/models/ghost/inspect", files=uploads(("a.png", png(1)))),
        client.post(
            "/api/models/ghost/defect-types",
            data={"defect_type": "spot"},
            files=uploads(("a.png", png(1))),
        ),
        client.delete("/api/models/ghost/defect-types/spot"),
    ]
    assert [answer.status_code for answer in answers] == [404] * 5
    assert all("no model named 'ghost'" in answer.json()["detail"] for answer in answers)


def test_an_unknown_job_is_404(client):
    assert client.get("/api/jobs/nosuch").status_code == 404


def test_inspection_gives_verdicts_boxes_over_the_defect_and_pictures(client, model):
    response = client.post(
        f"/api/models/{model}/inspect",
        files=uploads(("bad.png", png(50, defective=True)), ("fine.png", png(51))),
    )
    assert response.status_code == 200
    bad, fine = response.json()["results"]
    assert (bad["filename"], bad["verdict"], fine["filename"], fine["verdict"]) == (
        "bad.png",
        "NG",
        "fine.png",
        "OK",
    )
    assert bad["score"] > fine["score"] and fine["boxes"] == []
    centre_y, centre_x = DEFECT_CENTRE
    assert any(
        b["x0"] <= centre_x < b["x1"] and b["y0"] <= centre_y < b["y1"] for b in bad["boxes"]
    )
    overlay, mask = decoded(bad["overlay_png"]), decoded(bad["mask_png"])
    assert overlay.shape == (HEIGHT, WIDTH, 3) and mask.shape == (HEIGHT, WIDTH)
    assert mask[centre_y, centre_x] == 255
    assert (bad["width"], bad["height"]) == (WIDTH, HEIGHT)


def test_inspection_can_leave_the_pictures_out(client, model):
    response = client.post(
        f"/api/models/{model}/inspect?pictures=false", files=uploads(("a.png", png(52)))
    )
    (result,) = response.json()["results"]
    assert result["overlay_png"] is None and result["mask_png"] is None
    (entry,) = client.get(f"/api/inspections?batch={response.json()['batch']}").json()
    assert (entry["has_overlay"], entry["has_mask"]) == (False, True)  # none was made


def test_a_non_image_is_a_400_naming_the_file_and_the_server_keeps_serving(client, model):
    response = client.post(
        f"/api/models/{model}/inspect",
        files=uploads(("fine.png", png(53)), ("notes.png", b"this is text")),
    )
    assert response.status_code == 400
    assert (
        response.json()["detail"]
        == "notes.png: not an image file, or a format this tool cannot read"
    )
    assert client.get("/api/health").status_code == 200
    assert client.post(f"/api/models/{model}/inspect", files=uploads(("a.png", png(54)))).is_success


def test_a_truncated_image_is_a_400_naming_the_file(client, model):
    response = client.post(
        f"/api/models/{model}/inspect", files=uploads(("cut.png", png(55)[:300]))
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("cut.png: ")


def test_a_file_over_the_size_limit_is_refused_with_413(client, model):
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    response = client.post(
        f"/api/models/{model}/inspect", files=uploads(("huge.png", buffer.getvalue()))
    )
    assert response.status_code == 413
    assert response.json()["detail"] == "huge.png: file is larger than 97.6562 KiB"


def test_an_image_over_the_pixel_limit_is_refused_with_413(client, model):
    buffer = io.BytesIO()
    Image.new("L", (400, 300)).save(buffer, format="PNG")
    response = client.post(
        f"/api/models/{model}/inspect", files=uploads(("wide.png", buffer.getvalue()))
    )
    assert response.status_code == 413
    assert "wide.png: image is 400x300 px, over the limit of 90000" in response.json()["detail"]


def test_a_request_body_over_the_limit_is_refused_with_413_declared_or_streamed(client, model):
    body = b"x" * (LIMITS.max_request_bytes + 1)
    declared = client.post(f"/api/models/{model}/inspect", content=body)
    streamed = client.post(
        f"/api/models/{model}/inspect",
        content=iter([body[:500_000], body[500_000:]]),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "larger than the server's limit of 976.562 KiB" in response.json()["detail"]


def test_images_over_the_request_pixel_limit_together_are_refused(models_dir, model):
    limits = dataclasses.replace(LIMITS, max_request_pixels=2 * HEIGHT * WIDTH)
    with TestClient(create_app(models_dir, limits)) as small:
        files = uploads(*((f"{i}.png", png(i)) for i in range(3)))
        response = small.post(f"/api/models/{model}/inspect", files=files)
    assert response.status_code == 413
    assert f"over the server's limit of {2 * HEIGHT * WIDTH} per request" in response.text


def test_fits_beyond_the_waiting_limit_are_refused_with_503(client, monkeypatch):
    monkeypatch.setattr(jobs, "MAX_WAITING_FITS", 0)
    response = start_fit(client, "one-too-many")
    assert response.status_code == 503 and "fits are waiting" in response.json()["detail"]


def test_too_many_files_in_one_request_are_refused_with_413(client, model):
    files = uploads(*((f"{i}.png", png(i)) for i in range(LIMITS.max_files + 1)))
    response = client.post(f"/api/models/{model}/inspect", files=files)
    assert response.status_code == 413
    assert "at most 8" in response.json()["detail"]


def test_an_inspection_without_files_is_422(client, model):
    assert client.post(f"/api/models/{model}/inspect").status_code == 422


def test_inspections_are_logged_newest_first_with_hash_score_verdict_and_boxes(client, model):
    data = png(60, defective=True)
    result = client.post(f"/api/models/{model}/inspect", files=uploads(("logged.png", data)))
    (inspected,) = result.json()["results"]
    (entry,) = client.get(f"/api/inspections?model={model}&limit=1").json()
    assert entry["filename"] == "logged.png"
    assert entry["sha256"] == inspected["sha256"] == hashlib.sha256(data).hexdigest()
    assert (entry["score"], entry["verdict"], entry["boxes"]) == (
        inspected["score"],
        inspected["verdict"],
        inspected["boxes"],
    )
    assert entry["model"] == model and entry["time"].endswith("+00:00")
    assert client.get("/api/inspections?model=ghost").json() == []
    assert client.get("/api/inspections?limit=0").status_code == 422


def test_defect_types_are_added_from_examples_named_in_boxes_and_removed(client, model, models_dir):
    examples = uploads(*((f"spot{i}.png", png(70 + i, defective=True)) for i in range(5)))
    added = client.post(
        f"/api/models/{model}/defect-types", data={"defect_type": "spot"}, files=examples
    )
    assert added.status_code == 200, added.text
    assert added.json()["defect_types"] == ["spot"]
    assert client.get(f"/api/models/{model}").json()["defect_types"] == ["spot"]
    inspected = client.post(
        f"/api/models/{model}/inspect", files=uploads(("bad.png", png(80, defective=True)))
    )
    assert inspected.json()["results"][0]["boxes"][0]["defect_type"] == "spot"
    (predicted,) = Detector.load(models_dir / model).predict([decoded_png(png(80, True))])
    assert inspected.json()["results"][0]["boxes"] == [box.to_dict() for box in predicted.boxes]
    removed = client.delete(f"/api/models/{model}/defect-types/spot")
    assert removed.status_code == 200 and removed.json()["defect_types"] == []
    again = client.delete(f"/api/models/{model}/defect-types/spot")
    assert again.status_code == 404 and "no defect type 'spot'" in again.json()["detail"]


def test_boxes_are_named_by_the_models_trained_classifier(client, models_dir):
    detector = Detector(method="anomalydino", resolution=64, rotation=False)
    detector.fit([texture(seed) for seed in range(8)])
    detector.add_defect_type("spot", [spot(200 + i, *place) for i, place in enumerate(PLACES[:5])])
    detector.add_defect_type("scratch", [scratch(300 + i, *p) for i, p in enumerate(PLACES[:5])])
    head = detector.defect_types.train(CropClassifier()).model.head
    with torch.no_grad():  # a classifier that names every spot a scratch, unlike the similarity
        head.weight.copy_(head.weight.flip(0))
        head.bias.copy_(head.bias.flip(0))
    detector.save(models_dir / "named")
    image = spot(400, *PLACES[5])
    inspected = client.post("/api/models/named/inspect", files=uploads(("q.png", png_bytes(image))))
    assert inspected.status_code == 200, inspected.text
    (predicted,) = Detector.load(models_dir / "named").predict([image])
    assert [box["defect_type"] for box in inspected.json()["results"][0]["boxes"]] == ["scratch"]
    assert inspected.json()["results"][0]["boxes"] == [box.to_dict() for box in predicted.boxes]


def test_masks_can_mark_the_defects_and_more_examples_extend_a_type(client, model):
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[24:38, 40:54] = 255

    def add(*seeds: int, masks: int | None = None):
        files = uploads(*((f"sq{seed}.png", png(seed, defective=True)) for seed in seeds))
        count = len(seeds) if masks is None else masks
        files += [("masks", (f"m{i}.png", png_bytes(mask), "image/png")) for i in range(count)]
        return client.post(
            f"/api/models/{model}/defect-types", data={"defect_type": "square"}, files=files
        )

    first, second, mismatched = add(81, 82), add(83), add(84, 85, masks=1)
    client.delete(f"/api/models/{model}/defect-types/square")
    assert first.status_code == second.status_code == 200
    assert second.json()["defect_types"] == ["square"]
    assert mismatched.status_code == 400
    assert mismatched.json()["detail"] == "1 masks given for 2 example images"


def test_defect_type_names_are_checked_and_examples_must_be_images(client, model):
    bad_name = client.post(
        f"/api/models/{model}/defect-types",
        data={"defect_type": "../x"},
        files=uploads(("a.png", png(1))),
    )
    not_image = client.post(
        f"/api/models/{model}/defect-types",
        data={"defect_type": "spot"},
        files=uploads(("a.png", b"text")),
    )
    assert bad_name.status_code == 400 and "invalid defect type name" in bad_name.json()["detail"]
    assert not_image.status_code == 400 and not_image.json()["detail"].startswith("a.png: ")


def test_deleting_a_model_removes_its_folder_but_keeps_its_log(client, models_dir):
    assert fit(client, "doomed")["state"] == "done"
    client.post("/api/models/doomed/inspect", files=uploads(("a.png", png(90))))
    assert client.delete("/api/models/doomed").status_code == 204
    assert client.get("/api/models/doomed").status_code == 404
    assert not (models_dir / "doomed").exists()
    assert [e["filename"] for e in client.get("/api/inspections?model=doomed").json()] == ["a.png"]


def test_models_and_the_log_are_there_after_a_restart(client, model, models_dir):
    before = client.post(f"/api/models/{model}/inspect", files=uploads(("r.png", png(95))))
    with TestClient(create_app(models_dir, LIMITS)) as restarted:
        assert model in [m["name"] for m in restarted.get("/api/models").json()]
        after = restarted.post(f"/api/models/{model}/inspect", files=uploads(("r.png", png(95))))
        log = restarted.get(f"/api/inspections?model={model}&limit=2").json()
    assert after.json()["results"][0]["score"] == pytest.approx(
        before.json()["results"][0]["score"]
    )
    assert [entry["filename"] for entry in log] == ["r.png", "r.png"]


def test_concurrent_inspections_all_succeed_with_the_same_answer(client, model):
    def inspect(_: int) -> float:
        response = client.post(f"/api/models/{model}/inspect", files=uploads(("c.png", png(99))))
        assert response.status_code == 200
        return response.json()["results"][0]["score"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        scores = list(pool.map(inspect, range(16)))
    assert scores == pytest.approx([scores[0]] * 16)


def test_the_openapi_schema_documents_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {
        "/api/health",
        "/api/options",
        "/api/models",
        "/api/models/{name}",
        "/api/models/{name}/inspect",
        "/api/models/{name}/defect-types",
        "/api/models/{name}/defect-types/{defect_type}",
        "/api/models/{name}/defect-types/{defect_type}/examples/{position}.png",
        "/api/models/{name}/thresholds",
        "/api/skipped-folders",
        "/api/jobs/{job_id}",
        "/api/inspections",
        "/api/inspections/{inspection}/{kind}.png",
        "/api/export",
    }


def test_the_page_and_its_script_and_style_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="app.js"' in page.text
    assert client.get("/app.js").status_code == 200
    assert client.get("/style.css").status_code == 200


class NotServing:
    """Stands in for `anomalens serve`'s uvicorn server: records the config it would serve."""

    def __init__(self, config, seen: list):
        self.config, self.seen = config, seen

    def run(self):
        self.seen.append(self.config)


def test_serve_listens_on_loopback_by_default_and_warns_about_other_addresses(
    tmp_path, monkeypatch, capsys
):
    configs = []
    monkeypatch.setattr(serve, "stopping_server", lambda config, jobs: NotServing(config, configs))
    assert main(["serve", "--models", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""
    assert main(["serve", "--models", str(tmp_path), "--host", "0.0.0.0", "--port", "9000"]) == 0
    assert "no authentication" in capsys.readouterr().err
    assert [(c.host, c.port) for c in configs] == [("127.0.0.1", 8000), ("0.0.0.0", 9000)]


def test_another_site_can_change_nothing(client, model):
    foreign = {"Origin": "http://evil.example"}
    assert client.delete(f"/api/models/{model}", headers=foreign).status_code == 403
    sandboxed = client.delete(f"/api/models/{model}", headers={"Origin": "null"})
    assert sandboxed.status_code == 403
    response = client.post(
        "/api/models", data={"name": "forged"}, files=good_images(), headers=foreign
    )
    assert response.status_code == 403 and "evil.example" in response.json()["detail"]
    assert client.get(f"/api/models/{model}").status_code == 200  # still there
    own = {"Origin": "http://testserver"}
    assert client.delete("/api/models/absent", headers=own).status_code == 404  # let through


@pytest.mark.parametrize("bound", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_loopback_server_answers_only_to_loopback_names_and_its_own(tmp_path, monkeypatch, bound):
    apps = []
    monkeypatch.setattr(serve, "stopping_server", lambda config, jobs: NotServing(config, apps))
    assert main(["serve", "--models", str(tmp_path), "--host", bound]) == 0
    own = f"[{bound}]:8000" if ":" in bound else f"{bound}:8000"
    with TestClient(apps[0].app) as local:
        for host in ("localhost:8000", "LocalHost.:8000", "127.0.0.1:8000", "[::1]:8000", own):
            assert local.get("/api/health", headers={"Host": host}).status_code == 200
        rebound = local.get("/api/health", headers={"Host": "evil.example:8000"})
        assert rebound.status_code == 403 and "evil.example" in rebound.json()["detail"]


def test_the_docs_page_comes_from_the_package_and_loads_nothing_from_elsewhere(client):
    page = client.get("/docs")
    assert page.status_code == 200 and '<script src="docs.js"' in page.text
    assert "http" not in page.text.replace('http-equiv="Content-Security-Policy"', "")
    script = client.get("/docs.js")
    assert script.status_code == 200 and 'fetch("/openapi.json")' in script.text


def test_file_names_keep_their_folders_but_never_climb_out(client, model):
    files = uploads(("good/000.png", png(1)), ("broken/000.png", png(2)), ("../../x/a.png", png(3)))
    results = client.post(f"/api/models/{model}/inspect?pictures=false", files=files).json()
    assert [r["filename"] for r in results["results"]] == [
        "good/000.png",
        "broken/000.png",
        "x/a.png",
    ]


def test_an_inspection_is_logged_as_a_batch_that_reopens_with_its_pictures(client, model):
    files = uploads(("a/bad.png", png(56, defective=True)), ("a/fine.png", png(57)))
    answer = client.post(f"/api/models/{model}/inspect", files=files).json()
    threshold = client.get(f"/api/models/{model}").json()["thresholds"]["image"]["value"]
    assert all(r["threshold"] == threshold for r in answer["results"])
    entries = client.get(f"/api/inspections?batch={answer['batch']}").json()
    assert [e["filename"] for e in entries] == ["a/bad.png", "a/fine.png"]
    for entry, result in zip(entries, answer["results"], strict=True):
        assert entry["id"] == result["id"] and entry["batch"] == answer["batch"]
        assert (entry["score"], entry["threshold"], entry["boxes"]) == (
            result["score"],
            result["threshold"],
            result["boxes"],
        )
        assert (entry["width"], entry["height"]) == (WIDTH, HEIGHT)
        assert entry["has_overlay"] and entry["has_mask"]
        for kind in ("overlay", "mask"):
            picture = client.get(f"/api/inspections/{entry['id']}/{kind}.png")
            assert picture.headers["content-type"] == "image/png"
            assert picture.content == base64.b64decode(result[f"{kind}_png"])
    assert client.get("/api/inspections?batch=nosuch").status_code == 404
    assert client.get("/api/inspections/999999/mask.png").status_code == 404


def inspected_batch(client, model: str) -> dict:
    files = uploads(("x/broken.png", png(58, defective=True)), ("x/good.png", png(59)))
    return client.post(f"/api/models/{model}/inspect", files=files).json()


def test_a_batch_downloads_as_json_csv_coco_and_a_zip_of_masks_and_overlays(client, model):
    answer = inspected_batch(client, model)
    batch = answer["batch"]
    get = lambda format: client.get(f"/api/export?format={format}&batch={batch}")  # noqa: E731
    as_json = get("json")
    assert as_json.headers["content-disposition"] == f'attachment; filename="batch-{batch}.json"'
    logged = as_json.json()["inspections"]
    assert [e["filename"] for e in logged] == ["x/broken.png", "x/good.png"]
    assert [e["score"] for e in logged] == [r["score"] for r in answer["results"]]
    rows = get("csv").text.splitlines()
    assert rows[0].startswith("id,time,model,batch,filename,sha256,width,height,score,threshold")
    assert len(rows) == 3 and ",x/broken.png," in rows[1]
    coco = get("coco").json()
    assert [image["file_name"] for image in coco["images"]] == ["x/broken.png", "x/good.png"]
    boxes = answer["results"][0]["boxes"]
    assert len(coco["annotations"]) == len(boxes) > 0
    assert coco["annotations"][0]["area"] == boxes[0]["area"]
    archive = zipfile.ZipFile(io.BytesIO(get("zip").content))
    assert set(archive.namelist()) == {
        "results.json",
        "results.csv",
        "coco.json",
        "masks/x/broken.png",
        "masks/x/good.png",
        "overlays/x/broken.png",
        "overlays/x/good.png",
    }
    mask = np.asarray(Image.open(io.BytesIO(archive.read("masks/x/broken.png"))))
    assert mask[DEFECT_CENTRE] == 255


def test_the_history_downloads_whole_with_repeated_names_kept_apart(client, model):
    inspected_batch(client, model)
    inspected_batch(client, model)
    response = client.get(f"/api/export?format=zip&model={model}")
    assert response.headers["content-disposition"].endswith(f'filename="history-{model}.zip"')
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    history = json.loads(archive.read("results.json"))["inspections"]
    assert len(history) >= 4 and {e["model"] for e in history} == {model}
    masks = [name for name in archive.namelist() if name.startswith("masks/x/broken")]
    assert len(masks) == len({*masks}) >= 2
    everything = client.get("/api/export?format=csv").text.splitlines()
    assert len(everything) == 1 + len(client.get("/api/inspections?limit=1000").json())
    assert client.get("/api/export?format=pdf").status_code == 422


def test_old_overlays_are_dropped_beyond_their_budget_and_the_rest_is_kept(tmp_path):
    log = InspectionLog(Database(tmp_path / "log.sqlite3"), kept_overlay_bytes=250)
    result = Result(0.5, np.zeros((2, 2), np.float32), np.zeros((2, 2), bool))
    item = Inspected("a.png", "00", result, 1.0, b"mask", b"o" * 100, None)
    for _ in range(4):
        log.record("m", [item])
    entries = log.entries(10, "m")
    assert [e["has_overlay"] for e in entries] == [True, True, False, False]
    assert all(e["has_mask"] for e in entries)
    assert log.picture(entries[3]["id"], "mask") == b"mask"


def test_adding_and_removing_a_defect_type_relabels_earlier_results(client, model):
    answer = inspected_batch(client, model)
    before = answer["results"][0]["boxes"]
    assert before and all(box["defect_type"] is None for box in before)
    examples = uploads(*((f"dent{i}.png", png(100 + i, defective=True)) for i in range(3)))
    added = client.post(
        f"/api/models/{model}/defect-types", data={"defect_type": "dent"}, files=examples
    ).json()
    assert added["relabelled"] >= 1
    entry = client.get(f"/api/inspections?batch={answer['batch']}").json()[0]
    assert [box["defect_type"] for box in entry["boxes"]] == ["dent"] * len(before)
    assert all(box["similarity"] > 0 for box in entry["boxes"])
    assert {
        k: v for k, v in entry["boxes"][0].items() if k not in ("defect_type", "similarity")
    } == {k: v for k, v in before[0].items() if k not in ("defect_type", "similarity")}
    removed = client.delete(f"/api/models/{model}/defect-types/dent").json()
    assert removed["relabelled"] >= 1
    entry = client.get(f"/api/inspections?batch={answer['batch']}").json()[0]
    assert [box["defect_type"] for box in entry["boxes"]] == [None] * len(before)


def test_examples_take_a_box_or_a_mask_each_and_keep_thumbnails(client, model):
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[24:38, 40:54] = 255
    files = uploads(*((f"pit{i}.png", png(110 + i, defective=True)) for i in range(3)))
    files.append(("masks", ("pit-mask.png", png_bytes(mask), "image/png")))
    fields = {"defect_type": "pit", "boxes": "[[40, 24, 54, 38], null, null]", "mask_of": "[1]"}
    added = client.post(f"/api/models/{model}/defect-types", data=fields, files=files)
    assert added.status_code == 200, added.text
    assert added.json()["defect_examples"]["pit"] == ["pit0.png", "pit1.png", "pit2.png"]
    thumbnail = client.get(f"/api/models/{model}/defect-types/pit/examples/2.png")
    assert thumbnail.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(thumbnail.content)).size == (WIDTH, HEIGHT)  # under 160 px
    client.delete(f"/api/models/{model}/defect-types/pit")
    assert client.get(f"/api/models/{model}/defect-types/pit/examples/2.png").status_code == 404


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"boxes": "[[1, 2, 3]]"}, "boxes must give [x0, y0, x1, y1]"),
        ({"boxes": "[[1, 2, 3, 4], null]"}, "for each of the 1 example images"),
        ({"boxes": "not json"}, "boxes must be a JSON list"),
        ({"mask_of": "[3]"}, "mask_of must give one example index (0 to 0) per mask"),
    ],
)
def test_bad_boxes_or_mask_places_are_refused_with_the_reason(client, model, fields, problem):
    files = uploads(("e.png", png(120, defective=True)))
    if "mask_of" in fields:
        files.append(("masks", ("m.png", png(121), "image/png")))
    response = client.post(
        f"/api/models/{model}/defect-types", data={"defect_type": "bad", **fields}, files=files
    )
    assert response.status_code == 400
    assert problem in response.json()["detail"]


def test_the_false_alarm_target_moves_the_thresholds_without_a_fit(client, model, models_dir):
    before = client.get(f"/api/models/{model}").json()
    assert before["retargetable"]
    strict = client.post(f"/api/models/{model}/thresholds", json={"max_false_alarm": 0.001})
    assert strict.status_code == 200, strict.text
    thresholds = strict.json()["thresholds"]
    assert thresholds["image"]["value"] > before["thresholds"]["image"]["value"]
    assert thresholds["pixel"] == before["thresholds"]["pixel"]  # boxes keep box_false_alarm
    assert thresholds["image"]["max_false_alarm"] == 0.001
    assert (
        Detector.load(models_dir / model).thresholds["image"].value == thresholds["image"]["value"]
    )
    (answer,) = client.post(
        f"/api/models/{model}/inspect", files=uploads(("t.png", png(1)))
    ).json()["results"]
    assert answer["threshold"] == thresholds["image"]["value"]
    back = client.post(f"/api/models/{model}/thresholds", json={"max_false_alarm": 0.01}).json()
    assert back["thresholds"] == before["thresholds"]
    bad = client.post(f"/api/models/{model}/thresholds", json={"max_false_alarm": 1.5})
    assert bad.status_code == 422


def copy_model(models_dir: Path, source: str, name: str) -> Path:
    shutil.copytree(models_dir / source, models_dir / name)
    return models_dir / name


def test_models_live_in_the_folder_given_and_one_copied_in_is_listed_and_used(
    client, model, models_dir
):
    assert (models_dir / model / "detector.json").is_file()
    assert not (models_dir / "models").exists()
    copied = copy_model(models_dir, model, "copied")
    listed = {m["name"]: m for m in client.get("/api/models").json()}
    assert listed["copied"]["thresholds"] == listed[model]["thresholds"]
    inspected = client.post("/api/models/copied/inspect", files=uploads(("c.png", png(5))))
    assert inspected.status_code == 200
    shutil.rmtree(copied)
    assert "copied" not in [m["name"] for m in client.get("/api/models").json()]


def test_a_model_folder_that_cannot_load_is_listed_as_skipped_with_the_reason(
    client, model, models_dir
):
    broken = copy_model(models_dir, model, "broken-copy")
    (broken / "detector.json").write_text("{ not json")
    badly_named = copy_model(models_dir, model, "bad name")
    try:
        skipped = {s["folder"]: s["problem"] for s in client.get("/api/skipped-folders").json()}
        assert "not valid JSON" in skipped["broken-copy"]
        assert "invalid model folder name 'bad name'" in skipped["bad name"]
        assert "broken-copy" not in [m["name"] for m in client.get("/api/models").json()]
        taken = start_fit(client, "broken-copy")
        assert taken.status_code == 409 and "or a folder of that name" in taken.json()["detail"]
    finally:
        shutil.rmtree(broken), shutil.rmtree(badly_named)


def test_a_model_saved_without_its_database_row_is_recovered_on_start(client, model, models_dir):
    copy_model(models_dir, model, "orphan")
    client.get("/api/models")  # recorded...
    with sqlite3.connect(models_dir / "anomalens.sqlite3") as db:
        db.execute("DELETE FROM models WHERE name = 'orphan'")  # ...then lost, as by a kill
    with TestClient(create_app(models_dir, LIMITS)) as restarted:
        assert restarted.get("/api/models/orphan").status_code == 200
        assert restarted.delete("/api/models/orphan").status_code == 204


def test_models_of_the_older_layout_are_moved_into_the_folder_given(model, models_dir, tmp_path):
    root = tmp_path / "older"
    shutil.copytree(models_dir / model, root / "models" / "legacy")
    with TestClient(create_app(root, LIMITS)) as server:
        assert [m["name"] for m in server.get("/api/models").json()] == ["legacy"]
    assert (root / "legacy" / "detector.json").is_file() and not (root / "models").exists()


def test_a_model_without_held_out_scores_says_a_new_fit_is_needed(client, model, models_dir):
    older = copy_model(models_dir, model, "older")
    document = json.loads((older / "detector.json").read_text())
    del document["held_out_map_maxima"]
    (older / "detector.json").write_text(json.dumps(document))
    try:
        assert not client.get("/api/models/older").json()["retargetable"]
        response = client.post("/api/models/older/thresholds", json={"max_false_alarm": 0.05})
        assert response.status_code == 400 and "fit it again" in response.json()["detail"]
    finally:
        client.delete("/api/models/older")


def test_a_model_refitted_on_disk_by_hand_is_reloaded_on_its_next_use(client, model, models_dir):
    folder = copy_model(models_dir, model, "by-hand")
    try:
        client.post("/api/models/by-hand/inspect", files=uploads(("h.png", png(6))))  # loaded
        Detector.load(folder).retarget(0.2).save(folder)  # as `anomalens` on the command line
        strict = Detector.load(folder).thresholds["image"].value
        answer = client.post("/api/models/by-hand/inspect", files=uploads(("h.png", png(6))))
        assert answer.json()["results"][0]["threshold"] == strict
        assert client.get("/api/models/by-hand").json()["thresholds"]["image"]["value"] == strict
    finally:
        client.delete("/api/models/by-hand")


def test_an_unusable_example_is_left_out_and_the_rest_make_the_type(client, model):
    examples = uploads(*((f"dent{i}.png", png(110 + i, defective=True)) for i in range(3)))
    outside = f"[[{WIDTH + 10}, {HEIGHT + 10}, {WIDTH + 20}, {HEIGHT + 20}], null, null]"
    added = client.post(
        f"/api/models/{model}/defect-types",
        data={"defect_type": "dent", "boxes": outside},
        files=examples,
    )
    client.delete(f"/api/models/{model}/defect-types/dent")
    assert added.status_code == 200, added.text
    assert added.json()["defect_types"] == ["dent"]
    (left_out,) = added.json()["skipped"]
    assert left_out.startswith("dent0.png") and "holds no pixel" in left_out
