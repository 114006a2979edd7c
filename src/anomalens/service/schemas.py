"""The shapes of the API's answers, as they appear in the OpenAPI schema."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from anomalens.results import Box


class Health(BaseModel):
    """The server is up."""

    status: Literal["ok"]
    models: int = Field(description="models stored")
    active_jobs: int = Field(description="fitting jobs queued or running")


class BackboneOption(BaseModel):
    """A backbone a model can be fitted with."""

    name: str
    available: bool = Field(description="whether its weights are on the server")


class Options(BaseModel):
    """What a new model can be made of, and the server's limits."""

    methods: list[str]
    backbones: list[BackboneOption]
    limits: dict[str, int]


class ModelInfo(BaseModel):
    """A stored model."""

    name: str
    created: str = Field(description="ISO 8601 UTC time")
    updated: str = Field(description="ISO 8601 UTC time of the last change")
    method: str
    backbone: str | None
    resolution: int | str | None
    references: int = Field(description="good images it was fitted on")
    reference_outliers: list[str] = Field(description="references that scored like defects")
    defect_types: list[str]
    defect_examples: dict[str, list[str]] = Field(
        default_factory=dict, description="each defect type's example names, in order"
    )
    thresholds: dict[str, dict[str, Any]] = Field(description="image and pixel thresholds")
    retargetable: bool = Field(
        default=False, description="whether the false-alarm target can change without a new fit"
    )
    config: dict[str, Any] = Field(description="the detector's full configuration")
    relabelled: int | None = Field(
        default=None, description="logged inspections whose boxes this change relabelled"
    )
    skipped: list[str] | None = Field(
        default=None, description="examples left out of a defect type, each 'name: problem'"
    )


class SkippedFolder(BaseModel):
    """A folder in the models folder that looks like a model but cannot be used."""

    folder: str
    problem: str


class Target(BaseModel):
    """A new false-alarm target for a model's thresholds."""

    max_false_alarm: float = Field(gt=0, lt=1, description="rate of good images flagged NG")


class JobInfo(BaseModel):
    """A model being fitted in the background."""

    id: str
    model: str
    references: int
    state: Literal["queued", "fitting", "saving", "done", "failed"]
    error: str | None
    created: float = Field(description="Unix time")
    started: float | None
    finished: float | None
    elapsed: float = Field(description="seconds since it started")


class ImageInspection(BaseModel):
    """The inspection of one uploaded image."""

    id: int = Field(description="its entry in the inspection log")
    filename: str = Field(description="as uploaded, with its relative folders")
    sha256: str = Field(description="hex SHA-256 of the uploaded bytes")
    width: int
    height: int
    score: float
    threshold: float = Field(description="the image threshold the score was judged against")
    verdict: Literal["OK", "NG"]
    boxes: list[Box] = Field(description="anomalous regions in pixels, strongest first")
    overlay_png: str | None = Field(description="base64 PNG: heatmap, boxes and labels")
    mask_png: str | None = Field(description="base64 PNG: anomalous pixels white")


class Inspection(BaseModel):
    """The inspection of the images of one request, in upload order."""

    model: str
    batch: str = Field(description="the batch id these results are logged under")
    results: list[ImageInspection]


class LogEntry(BaseModel):
    """One logged inspection."""

    id: int
    time: str = Field(description="ISO 8601 UTC time")
    model: str
    batch: str = Field(description="the request it came in; empty for entries before batches")
    filename: str
    sha256: str
    width: int | None
    height: int | None
    score: float
    threshold: float | None = Field(description="the image threshold it was judged against")
    verdict: Literal["OK", "NG"]
    boxes: list[Box]
    has_overlay: bool = Field(description="whether its overlay PNG is still kept")
    has_mask: bool = Field(description="whether its mask PNG is kept")
