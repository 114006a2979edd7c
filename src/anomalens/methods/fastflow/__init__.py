"""Normalizing flow: FastFlow's 2D flows on the frozen backbone's feature maps."""

from anomalens.methods.fastflow.method import FastFlow

__all__ = ["FastFlow"]
