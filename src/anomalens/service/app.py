"""The inspection server: a JSON API over stored models, and the web page that uses it."""

import base64
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, BinaryIO

import numpy as np
from fastapi import APIRouter, FastAPI, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from anomalens import __version__
from anomalens.backbones import backbone_names, get_entry
from anomalens.defect_types.registry import DefectTypeError
from anomalens.detector import Detector
from anomalens.errors import AnomalensError, ImageError, MissingWeightsError
from anomalens.methods import METHODS
from anomalens.results import Result
from anomalens.service.errors import Conflict, NotFound, ServiceError
from anomalens.service.jobs import FitJobs
from anomalens.service.limits import BodySizeLimit, Limits
from anomalens.service.origin import SameOriginOnly
from anomalens.service.schemas import (
    Health,
    ImageInspection,
    Inspection,
    JobInfo,
    LogEntry,
    ModelInfo,
    Options,
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
    app.include_router(_inspection_routes(store, limits))
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
        """Every stored model."""
        return store.describe_all()

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
        if store.exists(check_name(name)):
            raise Conflict(f"a model named {name!r} already exists")
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

    @router.post("/models/{name}/defect-types", response_model=ModelInfo)
    def add_defect_type(
        name: str,
        defect_type: Annotated[str, Form(description="the type's name")],
        files: Annotated[list[UploadFile], File(description="images showing the defect")],
        masks: Annotated[
            list[UploadFile] | None,
            File(description="optional defect masks, one per image in the same order"),
        ] = None,
    ) -> dict:
        """Teach a model to name a defect from example images of it (added to the type's
        examples when it exists). Without masks, each example's strongest anomalous region is
        taken as its defect."""
        check_name(defect_type, "defect type name")
        store.require(name)
        # One read, so that the request's limits bound the examples and masks together.
        uploads = read_images([*_opened(files), *_opened(masks or [])], limits, "images and masks")
        examples, regions = uploads[: len(files)], uploads[len(files) :]
        with store.use(name) as detector:
            try:
                detector.add_defect_type(
                    defect_type,
                    [example.image for example in examples],
                    masks=[region.image for region in regions] if regions else None,
                    names=[example.filename for example in examples],
                )
            except (ValueError, DefectTypeError) as error:
                raise ServiceError(str(error)) from None
            return store.update(name, detector)

    @router.delete("/models/{name}/defect-types/{defect_type}", response_model=ModelInfo)
    def remove_defect_type(name: str, defect_type: str) -> dict:
        """Forget one of a model's defect types."""
        with store.use(name) as detector:
            if defect_type not in detector.defect_types.names:
                raise NotFound(f"model {name!r} has no defect type {defect_type!r}")
            detector.remove_defect_type(defect_type)
            return store.update(name, detector)

    return router


def _inspection_routes(store: ModelStore, limits: Limits) -> APIRouter:
    router = APIRouter(prefix="/api")

    @router.post("/models/{name}/inspect", response_model=Inspection)
    def inspect(
        name: str,
        files: Annotated[list[UploadFile], File(description="images to inspect")],
        pictures: Annotated[bool, Query(description="include overlay and mask PNGs")] = True,
    ) -> dict:
        """Score images: verdict, boxes with defect types, and overlay and mask pictures."""
        store.require(name)
        uploads = read_images(_opened(files), limits)
        with store.use(name) as detector:
            results = detector.predict([upload.image for upload in uploads])
            pixel_threshold = detector.thresholds["pixel"].value
        store.log(name, [(u.filename, u.sha256, r) for u, r in zip(uploads, results, strict=True)])
        return {
            "model": name,
            "results": [
                _inspection(upload, result, pixel_threshold, pictures)
                for upload, result in zip(uploads, results, strict=True)
            ],
        }

    @router.get("/inspections", response_model=list[LogEntry])
    def inspections(
        model: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> list[dict]:
        """The most recent inspections, newest first, of one model or all."""
        return store.inspections(limit, model)

    return router


def _inspection(
    upload: UploadedImage, result: Result, pixel_threshold: float, pictures: bool
) -> ImageInspection:
    """One image's answer; `pictures` adds the overlay (coloured relative to `pixel_threshold`)
    and the mask."""
    height, width = upload.image.shape[:2]
    overlay_png = mask_png = None
    if pictures:
        overlay_png = _base64_png(overlay(upload.image, result, pixel_threshold))
        mask_png = _base64_png(mask_image(result))
    return ImageInspection(
        filename=upload.filename,
        sha256=upload.sha256,
        width=width,
        height=height,
        score=result.score,
        verdict=result.verdict,
        boxes=result.boxes,
        overlay_png=overlay_png,
        mask_png=mask_png,
    )


def _opened(files: list[UploadFile]) -> list[tuple[str | None, BinaryIO]]:
    return [(upload.filename, upload.file) for upload in files]


def _base64_png(array: np.ndarray) -> str:
    return base64.b64encode(png_bytes(array)).decode("ascii")


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
