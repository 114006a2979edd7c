"""The inspection server's API: every endpoint, every refusal, persistence and concurrency."""

import base64
import dataclasses
import hashlib
import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from images import HEIGHT, WIDTH, texture, with_defect
from PIL import Image

from anomalens.cli import main, serve
from anomalens.detector import Detector
from anomalens.service import Limits, create_app, jobs
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


def test_defect_types_are_added_from_examples_named_in_boxes_and_removed(client, model):
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
    removed = client.delete(f"/api/models/{model}/defect-types/spot")
    assert removed.status_code == 200 and removed.json()["defect_types"] == []
    again = client.delete(f"/api/models/{model}/defect-types/spot")
    assert again.status_code == 404 and "no defect type 'spot'" in again.json()["detail"]


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
    assert not (models_dir / "models" / "doomed").exists()
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
        "/api/jobs/{job_id}",
        "/api/inspections",
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
