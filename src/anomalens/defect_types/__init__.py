"""Naming defects: a few examples register a type; detected regions get the nearest one."""

from anomalens.defect_types.embedding import RegionEmbedder
from anomalens.defect_types.registry import UNKNOWN, DefectTypeError, DefectTypes

__all__ = ["UNKNOWN", "DefectTypeError", "DefectTypes", "RegionEmbedder"]
