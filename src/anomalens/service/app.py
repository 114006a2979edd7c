"""The inspection server: a JSON API over stored models, and the web page that uses it."""

import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

import numpy as np
from fastapi import APIRouter, FastAPI, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from anomalens import __version__
from anomalens.backbones import backbone_names, get_entry
from anomalens.defect_types.registry import DefectTypeError
from anomalens.detector import Detector
from anomalens.errors import AnomalensError, ImageError, MissingWeightsError
from anomalens.methods import METHODS
from anomalens.results import Result
from anomalens.service import exports
from anomalens.service.errors import Conflict, NotFound, ServiceError
from anomalens.service.jobs import FitJobs
from anomalens.service.limits import BodySizeLimit, Limits
from anomalens.service.log import Inspected, InspectionLog
from anomalens.service.origin import SameOriginOnly
from anomalens.service.schemas import (
    Health,
    ImageInspection,
    Inspection,
    JobInfo,
    LogEntry,
    ModelInfo,
    Options,
    SkippedFolder,
    Target,
)
from anomalens.service.store import ModelStore, check_name
from anomalens.service.uploads import UploadedImage, read_images
from anomalens.visualize import mask_image, overlay, png_bytes

STATIC = Path(__file__).parent / "static"


def create_app(
    models_dir: str | Path, limits: Limits | None = None, hosts: Collection[str] | None = None
) -> FastAPI:
    """The application serving the models stored in `models_dir` within `limits`.

    Cross-site requests that would change something are refused; `hosts` (for example
    LOOPBACK_NAMES) limits the host names the server answers to, None answers to any.
    """
    limits = limits or Limits()
    store = ModelStore(Path(models_dir))
    log = InspectionLog(store.database)
    jobs = FitJobs(store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()

    app = FastAPI(
        title="anomalens",
        version=__version__,
        description="Fit anomaly detectors from good images and inspect new images with them.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=limits.max_request_bytes,
        timeout=limits.body_timeout,
        min_rate=limits.min_body_rate,
    )
    app.state.jobs = jobs  # for `anomalens serve`, which stops them on a second SIGTERM
    app.add_middleware(SameOriginOnly, hosts=hosts)
    app.add_exception_handler(AnomalensError, _error_response)
    app.include_router(_model_routes(store, jobs, limits))
    app.include_router(_defect_type_routes(store, log, limits))
    app.include_router(_inspection_routes(store, log, limits))

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        """The API's documentation, rendered in the page from /openapi.json (works offline)."""
        return FileResponse(STATIC / "docs.html")

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app


def _model_routes(store: ModelStore, jobs: FitJobs, limits: Limits) -> APIRouter:
    router = APIRouter(prefix="/api")

    @router.get("/health", response_model=Health)
    def health() -> dict:
        """The server is up; how many models it holds and how many fits are under way."""
        return {"status": "ok", "models": store.count(), "active_jobs": jobs.active()}

    @router.get("/options", response_model=Options)
    def options() -> dict:
        """Methods and backbones a model can be fitted with, and the server's limits."""
        return {
            "methods": sorted(METHODS),
            "backbones": [{"name": n, "available": _has_weights(n)} for n in backbone_names()],
            "limits": limits.to_dict(),
        }

    @router.get("/models", response_model=list[ModelInfo])
    def list_models() -> list[dict]:
        """Every stored model, including model folders copied into the models folder since."""
        return store.describe_all()

    @router.get("/skipped-folders", response_model=list[SkippedFolder])
    def skipped_folders() -> list[dict]:
        """Folders in the models folder that look like models but cannot be loaded, and why."""
        store.discover()
        return store.skipped()

    @router.post("/models", response_model=JobInfo, status_code=202)
    def create_model(
        name: Annotated[str, Form(description="new model's name")],
        files: Annotated[list[UploadFile], File(description="good images")],
        method: Annotated[str, Form()] = "ensemble",
        backbone: Annotated[str | None, Form(description="default: the method's")] = None,
        resolution: Annotated[
            int | None, Form(ge=32, description="pixels (default: the method's)")
        ] = None,
        max_false_alarm: Annotated[float, Form(gt=0, lt=1)] = 0.01,
    ) -> dict:
        """Start fitting a model on good images; poll the returned job for its state."""
        if store.exists(check_name(name)) or (store.root / name).exists():
            raise Conflict(f"a model named {name!r} already exists (or a folder of that name)")
        if resolution is not None and resolution > limits.max_resolution:
            raise ServiceError(f"resolution {resolution} is over the limit {limits.max_resolution}")
        uploads = read_images(_opened(files), limits, "good images")
        try:
            detector = Detector(
                method=method,
                backbone=backbone,
                resolution=resolution,
                max_false_alarm=max_false_alarm,
            )
        except (ValueError, MissingWeightsError) as error:
            raise ServiceError(str(error)) from None
        images, names = [u.image for u in uploads], [u.filename for u in uploads]
        return jobs.submit(name, detector, images, names).to_dict()

    @router.get("/jobs/{job_id}", response_model=JobInfo)
    def job(job_id: str) -> dict:
        """A fitting job's state: queued, fitting, saving, done or failed (with the error)."""
        return jobs.get(job_id).to_dict()

    @router.get("/models/{name}", response_model=ModelInfo)
    def describe_model(name: str) -> dict:
        """One model: configuration, thresholds, references and defect types."""
        return store.describe(name)

    @router.delete("/models/{name}", status_code=204)
    def delete_model(name: str) -> Response:
        """Delete a model and its files; its inspections stay in the log."""
        store.delete(name)
        return Response(status_code=204)

    @router.post("/models/{name}/thresholds", response_model=ModelInfo)
    def retarget(name: str, target: Target) -> dict:
        """Set a model's thresholds for a new false-alarm target from the held-out scores it
        was fitted with, without fitting it again."""
        with store.use(name) as detector:
            try:
                detector.retarget(target.max_false_alarm)
            except ValueError as error:
                raise ServiceError(str(error)) from None
            return store.update(name, detector)

    return router


def _defect_type_routes(store: ModelStore, log: InspectionLog, limits: Limits) -> APIRouter:
    router = APIRouter(prefix="/api/models/{name}/defect-types")

    @router.post("", response_model=ModelInfo)
    def add_defect_type(
        name: str,
        defect_type: Annotated[str, Form(description="the type's name")],
        files: Annotated[list[UploadFile], File(description="images showing the defect")],
        masks: Annotated[
            list[UploadFile] | None,
            File(description="defect masks (nonzero = defect), by default one per image"),
        ] = None,
        mask_of: Annotated[
            str | None,
            Form(description="JSON list: the example index of each mask, when not all have one"),
        ] = None,
        boxes: Annotated[
            str | None,
            Form(
                description="JSON list, one per image: [x0, y0, x1, y1] around its defect, or "
                "null (x1, y1 exclusive)"
            ),
        ] = None,
    ) -> dict:
        """Teach a model to name a defect from example images of it (added to the type's
        examples when it exists). Each example's defect is its mask, else its box, else its
        strongest anomalous region. Boxes logged earlier are relabelled with the new types."""
        check_name(defect_type, "defect type name")
        store.require(name)
        # One read, so that the request's limits bound the examples and masks together.
        uploads = read_images([*_opened(files), *_opened(masks or [])], limits, "images and masks")
        examples, regions = uploads[: len(files)], uploads[len(files) :]
        per_example = _masks_per_example(len(examples), [r.image for r in regions], mask_of)
        with store.use(name) as detector:
            before = len(detector.defect_types.sources.get(defect_type, []))
            skipped: list[str] = []
            try:
                detector.add_defect_type(
                    defect_type,
                    [example.image for example in examples],
                    masks=per_example,
                    boxes=_boxes_per_example(len(examples), boxes),
                    names=[example.filename for example in examples],
                    skipped=skipped,
                )
            except (ValueError, DefectTypeError) as error:
                raise ServiceError(str(error)) from None
            described = store.update(name, detector)
            relabelled = log.relabel(name, detector.defect_types)
        store.add_thumbnails(name, defect_type, before, [(e.filename, e.image) for e in examples])
        return {**described, "relabelled": relabelled, "skipped": skipped}

    @router.delete("/{defect_type}", response_model=ModelInfo)
    def remove_defect_type(name: str, defect_type: str) -> dict:
        """Forget one of a model's defect types; boxes logged earlier are relabelled."""
        with store.use(name) as detector:
            if defect_type not in detector.defect_types.names:
                raise NotFound(f"model {name!r} has no defect type {defect_type!r}")
            detector.remove_defect_type(defect_type)
            described = store.update(name, detector)
            relabelled = log.relabel(name, detector.defect_types)
        store.remove_thumbnails(name, defect_type)
        return {**described, "relabelled": relabelled}

    @router.get(
        "/{defect_type}/examples/{position}.png",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def example_thumbnail(name: str, defect_type: str, position: int) -> Response:
        """A thumbnail of one example of a defect type (examples added on the server only)."""
        store.require(name)
        return _png(store.thumbnail(name, defect_type, position))

    return router


def _inspection_routes(store: ModelStore, log: InspectionLog, limits: Limits) -> APIRouter:
    router = APIRouter(prefix="/api")

    @router.post("/models/{name}/inspect", response_model=Inspection)
    def inspect(
        name: str,
        files: Annotated[list[UploadFile], File(description="images to inspect")],
        pictures: Annotated[
            bool,
            Query(description="include overlay and mask PNGs; false makes no overlay to log"),
        ] = True,
    ) -> dict:
        """Score images: verdict against the image threshold, boxes with defect types, and
        overlay and mask pictures. The results are logged as one batch."""
        store.require(name)
        uploads = read_images(_opened(files), limits)
        images = [upload.image for upload in uploads]
        with store.use(name) as detector:
            results = detector.predict(images, label=False)
            embeddings = detector.defect_types.box_embeddings(images, results)
            detector.defect_types.label(images, results, embeddings)
            threshold = detector.thresholds["image"].value
            pixel_threshold = detector.thresholds["pixel"].value
        inspected = [
            _inspected(upload, result, threshold, pixel_threshold if pictures else None, rows)
            for upload, result, rows in zip(uploads, results, embeddings, strict=True)
        ]
        batch, ids = log.record(name, inspected)
        return {
            "model": name,
            "batch": batch,
            "results": [
                _answer(number, upload, item, pictures)
                for number, upload, item in zip(ids, uploads, inspected, strict=True)
            ],
        }

    @router.get("/inspections", response_model=list[LogEntry])
    def inspections(
        model: str | None = None,
        batch: Annotated[str | None, Query(description="one batch, in upload order")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[dict]:
        """The most recent inspections, newest first, of one model or all; or one batch."""
        return log.entries(limit, model, batch)

    @router.get(
        "/inspections/{inspection}/{kind}.png",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def picture(inspection: int, kind: Literal["mask", "overlay"]) -> Response:
        """A logged inspection's mask or overlay (overlays are kept for the newest only)."""
        return _png(log.picture(inspection, kind))

    @router.get(
        "/export",
        response_class=Response,
        responses={200: {"content": {t: {} for t, _ in exports.FORMATS.values()}}},
    )
    def export(
        format: Annotated[
            Literal["json", "csv", "coco", "zip"],
            Query(description="zip: JSON, CSV and COCO with the masks and overlays"),
        ] = "json",
        batch: Annotated[str | None, Query(description="one inspection batch")] = None,
        model: Annotated[str | None, Query(description="the history of one model")] = None,
        limit: Annotated[int, Query(ge=1, le=100_000, description="most recent entries")] = 1000,
    ) -> Response:
        """Download logged inspections: one batch, or the most recent of a model or of all."""
        entries = log.entries(limit, model, batch)
        media_type, ending = exports.FORMATS[format]
        stem = f"batch-{batch}" if batch else f"history-{model}" if model else "history"

        def kept(inspection: int, kind: str) -> bytes | None:
            try:
                return log.picture(inspection, kind)
            except NotFound:
                return None

        return Response(
            exports.export(entries, format, kept),
            media_type=media_type,
            headers={"Content-Disposition": f'attachment; filename="{stem}.{ending}"'},
        )

    return router


def _inspected(
    upload: UploadedImage,
    result: Result,
    threshold: float,
    pixel_threshold: float | None,
    embeddings: np.ndarray | None,
) -> Inspected:
    """What the log keeps of one image's result; without `pixel_threshold`, no overlay. The
    overlay is coloured relative to `pixel_threshold` and draws the boxes without their
    types, which change when types are added or removed (the page and the downloads name
    them)."""
    overlay_png = None
    if pixel_threshold is not None:
        untyped = [dataclasses.replace(box, defect_type=None) for box in result.boxes]
        untyped_result = dataclasses.replace(result, boxes=untyped)
        overlay_png = png_bytes(overlay(upload.image, untyped_result, pixel_threshold))
    return Inspected(
        filename=upload.filename,
        sha256=upload.sha256,
        result=result,
        threshold=threshold,
        mask_png=png_bytes(mask_image(result)),
        overlay_png=overlay_png,
        embeddings=embeddings,
    )


def _answer(number: int, upload: UploadedImage, item: Inspected, pictures: bool) -> dict:
    """One image's answer; `pictures` adds the overlay and mask PNGs in base64."""
    height, width = upload.image.shape[:2]
    encoded = {"overlay_png": None, "mask_png": None}
    if pictures:
        encoded = {
            "overlay_png": base64.b64encode(item.overlay_png).decode("ascii"),
            "mask_png": base64.b64encode(item.mask_png).decode("ascii"),
        }
    return ImageInspection(
        id=number,
        filename=upload.filename,
        sha256=upload.sha256,
        width=width,
        height=height,
        score=item.result.score,
        threshold=item.threshold,
        verdict=item.result.verdict,
        boxes=item.result.boxes,
        **encoded,
    ).model_dump()


def _masks_per_example(
    examples: int, masks: list[np.ndarray], mask_of: str | None
) -> list[np.ndarray | None] | None:
    """Each example's mask, or None: masks in example order, or placed by `mask_of`."""
    if mask_of is None:
        if masks and len(masks) != examples:
            raise ServiceError(f"{len(masks)} masks given for {examples} example images")
        return masks or None
    indices = _json_list(mask_of, "mask_of")
    if len(indices) != len(masks) or not all(
        isinstance(i, int) and 0 <= i < examples for i in indices
    ):
        raise ServiceError(
            f"mask_of must give one example index (0 to {examples - 1}) per mask; "
            f"got {mask_of!r} for {len(masks)} masks"
        )
    placed: list[np.ndarray | None] = [None] * examples
    for index, mask in zip(indices, masks, strict=True):
        placed[index] = mask
    return placed


def _boxes_per_example(
    examples: int, boxes: str | None
) -> list[tuple[int, int, int, int] | None] | None:
    """Each example's box from the JSON form field, or None."""
    if boxes is None:
        return None
    given = _json_list(boxes, "boxes")
    if len(given) != examples or not all(box is None or _is_box(box) for box in given):
        raise ServiceError(
            f"boxes must give [x0, y0, x1, y1] in whole pixels or null for each of the "
            f"{examples} example images; got {boxes!r}"
        )
    return [None if box is None else tuple(box) for box in given]


def _is_box(value: object) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(type(v) is int for v in value)


def _json_list(text: str, field: str) -> list:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list):
        raise ServiceError(f"{field} must be a JSON list, got {text!r}")
    return value


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png")


def _opened(files: list[UploadFile]) -> list[tuple[str | None, BinaryIO]]:
    return [(upload.filename, upload.file) for upload in files]


def _has_weights(backbone: str) -> bool:
    try:
        get_entry(backbone).locate(None)
    except MissingWeightsError:
        return False
    return True


async def _error_response(_: Request, error: Exception) -> JSONResponse:
    """The error's message with its status: a ServiceError's own, 400 for a bad image, and 500
    for a server-side problem (an unreadable model file)."""
    if isinstance(error, ServiceError):
        status = error.status
    else:
        status = 400 if isinstance(error, ImageError) else 500
    return JSONResponse({"detail": str(error)}, status_code=status)
