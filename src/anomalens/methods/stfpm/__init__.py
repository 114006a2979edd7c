"""Teacher-student: STFPM's student regresses the frozen backbone's multi-level features."""

from anomalens.methods.stfpm.method import STFPM

__all__ = ["STFPM"]
