"""anomalens: find, outline, box and name defects from a handful of good photos."""

from anomalens.detector import Detector
from anomalens.results import Box, Result

__all__ = ["Box", "Detector", "Result"]
__version__ = "0.1.0"
