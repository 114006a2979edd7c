"""Overlays: a heat ramp from dark blue to red, faded where scores are low and absent below a floor
(grey parts stay grey), boxes labelled with type and score, the verdict and a colour legend."""

import numpy as np

from anomalens.results import Box, Result
from anomalens.visualize import (
    BOX_COLOUR,
    HEAT_FLOOR,
    PANEL_COLOUR,
    VERDICT_COLOURS,
    heat_colours,
    overlay,
)


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


def grey_picture(size: int = 400, anomalous: bool = True) -> tuple[np.ndarray, Result]:
    """A grey image with faint noise in its map everywhere and one strong square region."""
    image = np.full((size, size, 3), 120, np.uint8)
    anomaly_map = np.full((size, size), 0.1, np.float32)  # a fifth of the 0.5 threshold: low
    anomaly_map[150:250, 150:250] = 1.0
    box = Box(x0=150, y0=150, x1=250, y1=250, score=1.0, area=10_000, defect_type="crack")
    result = Result(
        score=2.5,
        anomaly_map=anomaly_map,
        mask=anomaly_map > 0.5,
        boxes=[box],
        is_anomalous=anomalous,
    )
    return image, result


def test_a_grey_image_keeps_its_own_tones_where_the_map_is_low():
    image, result = grey_picture()
    picture = overlay(image, result, pixel_threshold=0.5)
    middle_band = picture[40:120, 60:340]  # low map, away from the corner panels and the box
    assert (middle_band == 120).all()
    heat = picture[200, 200].astype(int)
    assert heat[0] - heat[2] > 60  # above the threshold: coloured (red over blue)


def test_heat_starts_at_the_floor_fraction_of_the_threshold():
    image = np.full((200, 200, 3), 120, np.uint8)
    anomaly_map = np.zeros((200, 200), np.float32)
    anomaly_map[:, 100:] = 0.5 * HEAT_FLOOR * 0.9  # just under the floor of threshold 0.5
    anomaly_map[:, :100] = 0.5 * HEAT_FLOOR * 3  # well over it
    picture = overlay(image, Result(score=0.1, anomaly_map=anomaly_map, mask=anomaly_map > 1), 0.5)
    assert (picture[60:120, 120:190] == 120).all()
    assert (picture[60:120, 20:90] != 120).any(axis=-1).all()


def test_the_legend_shows_the_colour_ramp_on_a_dark_panel_in_the_bottom_left_corner():
    image, result = grey_picture()
    picture = overlay(image, result, pixel_threshold=0.5)
    corner = picture[-60:, :200].reshape(-1, 3)
    colours = {tuple(pixel) for pixel in corner.tolist()}
    assert tuple(heat_colours(np.array(0.0)).tolist()) in colours  # the ramp's dark blue
    assert tuple(heat_colours(np.array(1.0)).tolist()) in colours  # and its red
    assert PANEL_COLOUR in colours


def test_the_verdict_and_score_sit_on_a_tab_of_the_verdict_colour():
    for anomalous, verdict in ((True, "NG"), (False, "OK")):
        image, result = grey_picture(anomalous=anomalous)
        corner = overlay(image, result, pixel_threshold=0.5)[:16, :40]
        assert tuple(corner[0, 0]) == VERDICT_COLOURS[verdict]
        assert whitish(corner) > 10  # the text


def label_tab_height(size: int) -> int:
    image, result = grey_picture(size)
    box = result.boxes[0]
    picture = overlay(image, result, pixel_threshold=0.5)
    column = picture[: box.y0, box.x0 + 1]
    return int((column == BOX_COLOUR).all(axis=-1).sum())


def test_box_labels_scale_with_the_image_and_carry_type_and_score():
    small, large = label_tab_height(400), label_tab_height(1600)
    assert small >= 10 and large >= 3 * small
    image, result = grey_picture()
    unlabelled = Result(**{**result.__dict__, "boxes": [Box(150, 150, 250, 250, 1.0, 10_000)]})
    with_type = overlay(image, result, 0.5)[120:150, 150:250]
    score_only = overlay(image, unlabelled, 0.5)[120:150, 150:250]
    assert whitish(with_type) > whitish(score_only) > 10  # "crack 1.00" is wider than "1.00"


def whitish(pixels: np.ndarray) -> int:
    """How many pixels are near the white of label text (text is antialiased)."""
    return int((pixels.min(axis=-1) > 200).sum())
