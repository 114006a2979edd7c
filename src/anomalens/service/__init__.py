"""The inspection server: `create_app(models_dir, limits)` builds the FastAPI application."""

from anomalens.service.app import create_app
from anomalens.service.limits import Limits

__all__ = ["Limits", "create_app"]
