"""Overlays: a heat ramp from dark blue to red, faded where scores are low, boxes on top."""

import numpy as np

from anomalens.results import Box, Result
from anomalens.visualize import BOX_COLOUR, heat_colours, overlay


def test_heat_ramp_runs_from_dark_blue_to_red_and_clips():
    colours = heat_colours(np.array([-1.0, 0.0, 0.5, 1.0, 2.0]))
    assert colours.dtype == np.uint8 and colours.shape == (5, 3)
    assert colours[0].tolist() == colours[1].tolist() == [0, 0, 128]
    assert colours[3].tolist() == colours[4].tolist() == [230, 0, 0]
    assert colours[2][1] > 200  # green in the middle


def test_heat_ramp_keeps_the_shape_of_a_map():
    assert heat_colours(np.zeros((7, 5), np.float32)).shape == (7, 5, 3)


def test_overlay_keeps_normal_pixels_and_boxes_the_anomaly():
    image = np.full((40, 60, 3), 100, np.uint8)
    anomaly_map = np.zeros((40, 60), np.float32)
    anomaly_map[10:20, 30:50] = 1.0
    box = Box(x0=30, y0=10, x1=50, y1=20, score=1.0, area=200)
    result = Result(score=1.0, anomaly_map=anomaly_map, mask=anomaly_map > 0.5, boxes=[box])
    picture = overlay(image, result, pixel_threshold=0.5)
    assert picture.shape == image.shape
    assert (picture[30:, :25] == 100).all()  # score 0: the image shows through unchanged
    assert picture[15, 30].tolist() == list(BOX_COLOUR)  # the box's left edge
    assert picture[15, 40, 0] > picture[15, 40, 2]  # inside: red heat over grey
