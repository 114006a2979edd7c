"""Every kind of awkward or broken image file: read correctly, or refused with a clear error."""

import io
from pathlib import Path

import numpy as np
import pytest
from images import texture, with_defect
from PIL import Image

from anomalens.calibration import CalibrationError, CalibrationWarning
from anomalens.cli import main
from anomalens.detector import Detector
from anomalens.errors import ConfigError, ImageError
from anomalens.io.images import load_image


def save(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


def test_grayscale_is_read_as_rgb(tmp_path):
    path = save(tmp_path / "gray.png", Image.fromarray(texture(0)[:, :, 0]))
    image = load_image(path)
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[:, :, 0], image[:, :, 2])


def test_sixteen_bit_is_scaled_to_eight_bits(tmp_path):
    values = np.full((32, 32), 65535, np.uint16)
    values[:16] = 0
    path = save(tmp_path / "deep.png", Image.fromarray(values))
    image = load_image(path)
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255


def test_rgba_drops_alpha(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    image = load_image(save(tmp_path / "alpha.png", Image.fromarray(rgba)))
    assert image.shape == (32, 32, 3) and image[0, 0, 0] == 200


def test_palette_images_are_expanded(tmp_path):
    palette = Image.fromarray(texture(0)).convert("P")
    image = load_image(save(tmp_path / "palette.png", palette))
    assert image.shape == (64, 96, 3)


def test_cmyk_is_converted(tmp_path):
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red ink
    image = load_image(save(tmp_path / "cmyk.jpg", cmyk))
    assert image[0, 0, 0] > 200 and image[0, 0, 1] < 60


def test_exif_rotation_is_applied(tmp_path):
    picture = Image.fromarray(texture(0))  # 96 wide, 64 high
    exif = picture.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = save(tmp_path / "rotated.jpg", picture, exif=exif)
    assert load_image(path).shape == (96, 64, 3)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("notes.png", b"this is not an image", "not an image"),
        ("empty.jpg", b"", "not an image"),
    ],
)
def test_non_images_are_refused_with_the_file_name(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=problem) as error:
        load_image(path)
    assert str(path) in str(error.value)


def test_truncated_files_are_refused(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(texture(0)).save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[:200])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(path)


def test_images_smaller_than_a_patch_are_refused(tmp_path):
    path = save(tmp_path / "tiny.png", Image.new("RGB", (8, 40)))
    with pytest.raises(ImageError, match="smaller than one patch"):
        load_image(path)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("anomalens.io.images.MAX_PIXELS", 1000)
    path = save(tmp_path / "bomb.png", Image.new("L", (100, 100)))
    with pytest.raises(ImageError, match=r"over 1000 pixels|larger than"):
        load_image(path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "gone.png")


def test_arrays_of_the_wrong_shape_are_refused():
    with pytest.raises(ImageError, match="shape"):
        Detector(resolution=64).fit([np.zeros((4, 32, 32, 3), np.uint8)])


def test_one_bad_file_does_not_stop_the_batch(tmp_path, capsys):
    good = tmp_path / "good"
    good.mkdir()
    for seed in range(3):
        save(good / f"{seed}.png", Image.fromarray(texture(seed)))
    model = tmp_path / "model"
    assert main(["fit", str(good), "-o", str(model), "--resolution", "64"]) == 0
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    save(inputs / "a.png", Image.fromarray(texture(10)))
    (inputs / "broken.png").write_bytes(b"garbage")
    save(inputs / "b.png", Image.fromarray(texture(11)))
    output = tmp_path / "out"
    assert main(["predict", str(model), str(inputs), "-o", str(output)]) == 1
    assert "broken.png" in capsys.readouterr().err
    import json

    results = json.loads((output / "results.json").read_text())
    assert [Path(entry["path"]).name for entry in results["images"]] == ["a.png", "b.png"]
    assert Path(results["errors"][0]["path"]).name == "broken.png"
    assert sorted(p.name for p in (output / "overlays").iterdir()) == ["a.png", "b.png"]


def test_sixteen_bit_values_under_256_read_like_eight_bit_ones(tmp_path):
    values = (np.arange(32 * 32).reshape(32, 32) % 128).astype(np.uint16)
    image = load_image(save(tmp_path / "dim16.png", Image.fromarray(values)))
    np.testing.assert_array_equal(image[:, :, 0], values)  # not 127 / 65535 -> black


def test_twelve_bit_values_in_sixteen_bit_files_are_scaled_by_twelve_bits(tmp_path):
    values = np.full((32, 32), 4095, np.uint16)
    values[:16] = 2048
    image = load_image(save(tmp_path / "camera12.png", Image.fromarray(values)))
    assert image[-1, -1, 0] == 255 and image[0, 0, 0] == round(2048 / 4095 * 255)


def test_a_sixteen_bit_array_reads_like_the_same_sixteen_bit_file(tmp_path):
    from anomalens.io.images import as_rgb_array

    values = (np.arange(64 * 64).reshape(64, 64) * 7 % 3000).astype(np.uint16)
    path = save(tmp_path / "deep.png", Image.fromarray(values))
    np.testing.assert_array_equal(as_rgb_array(values), load_image(path))


def test_non_finite_pixels_are_an_error_in_files_and_arrays(tmp_path):
    from anomalens.io.images import as_rgb_array

    values = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    values[:8, :8] = np.nan
    path = save(tmp_path / "nan.tif", Image.fromarray(values))
    with pytest.raises(ImageError, match="64 pixel values are NaN or infinite") as error:
        load_image(path)
    assert str(path) in str(error.value)
    values[:8, :8] = np.inf
    with pytest.raises(ImageError, match="NaN or infinite"):
        as_rgb_array(values, "frame")


def test_float_images_in_the_unit_range_are_scaled_by_255(tmp_path):
    values = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    image = load_image(save(tmp_path / "unit.tif", Image.fromarray(values)))
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255


def test_an_animated_gif_is_read_by_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), (40 * i, 0, 0)) for i in range(1, 4)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], loop=0)
    assert tuple(load_image(path)[0, 0]) == (40, 0, 0)


@pytest.mark.parametrize("size", [(16, 3000), (3000, 16), (40, 1300)])
def test_extreme_aspect_ratios_are_refused_before_decoding(tmp_path, size):
    path = save(tmp_path / "strip.png", Image.new("L", size))
    with pytest.raises(ImageError, match=r"times longer than wide; at most 32:1") as error:
        load_image(path)
    assert str(path) in str(error.value)
    with pytest.raises(ImageError, match="longer than wide"):
        Detector(resolution=64).fit([np.zeros((size[1], size[0], 3), np.uint8)])


def test_a_fifo_or_folder_given_as_a_file_is_named_truly(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path / "pipe.png")
    (tmp_path / "broken.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(ImageError, match="broken link"):
        load_image(tmp_path / "broken.png")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"method": "anomalydino", "resolution": 0}, "resolution"),
        ({"method": "anomalydino", "resolution": -5}, "resolution"),
        ({"method": "anomalydino", "resolution": 100000}, "resolution"),
        ({"method": "ensemble", "resolution": -5}, "resolution"),
        ({"method": "autoencoder", "resolution": 0}, "resolution"),
        ({"method": "anomalydino", "top_fraction": 5}, "top_fraction"),
        ({"method": "anomalydino", "batch_size": 0}, "batch_size"),
        ({"method": "patchcore", "coreset_ratio": 0}, "coreset_ratio"),
        ({"method": "padim", "channels": 0}, "channels"),
        ({"method": "discriminator", "steps": 0}, "steps"),
        ({"method": "autoencoder", "epochs": 0}, "epochs"),
        ({"smoothing_sigma": 1e9}, "smoothing_sigma"),
        ({"min_region_area": 2.5}, "min_region_area"),
        ({"hysteresis": 0}, "hysteresis"),
        ({"hysteresis": 1.5}, "hysteresis"),
        ({"max_false_alarm": float("nan")}, "max_false_alarm"),
    ],
)
def test_settings_out_of_range_are_refused_naming_the_setting(settings, named):
    with pytest.raises(ConfigError, match=named):
        Detector(**settings)


@pytest.mark.parametrize(
    "array",
    [np.array([["a", "b"]] * 32 * 16).reshape(32, 32), np.full((32, 32, 3), None, dtype=object)],
    ids=["strings", "objects"],
)
def test_arrays_of_strings_or_objects_are_refused_as_images(array):
    with pytest.raises(ImageError, match="numbers"):
        Detector(resolution=64).fit([array])


def test_a_generator_of_images_is_read_like_a_list():
    detector = Detector(method="anomalydino", resolution=64, rotation=False)
    detector.fit(texture(seed) for seed in range(4))
    assert len(detector.references) == 4
    assert [r.verdict for r in detector.predict(texture(seed) for seed in (10, 11))] == ["OK"] * 2


def test_one_bad_path_in_a_predict_batch_gives_an_error_result_for_it_alone(tmp_path):
    detector = Detector(method="anomalydino", resolution=64, rotation=False)
    detector.fit([texture(seed) for seed in range(4)])
    good = save(tmp_path / "good.png", Image.fromarray(texture(10)))
    (tmp_path / "broken.png").write_bytes(b"garbage")
    results = detector.predict([good, tmp_path / "broken.png", tmp_path / "gone.png", texture(11)])
    assert [r.verdict for r in results] == ["OK", "ERROR", "ERROR", "OK"]
    assert "broken.png" in results[1].error and "no such file" in results[2].error
    assert results[1].to_dict()["score"] is None and results[0].error is None


def gradient(height: int = 256, width: int = 384) -> np.ndarray:
    rows, cols = np.mgrid[:height, :width]
    values = np.hypot(cols - 100, rows - 60) / 400 * 255
    return np.repeat(values.astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.mark.parametrize(
    "references",
    [
        [texture(0)] * 8,
        [np.zeros((64, 96, 3), np.uint8)] * 8,
        [np.full((64, 96, 3), 128, np.uint8)] * 3,
    ],
    ids=["eight identical", "black", "grey"],
)
@pytest.mark.parametrize("method", ["anomalydino", "ensemble"])
def test_references_without_spread_fail_the_fit_with_a_message(references, method):
    with pytest.raises(CalibrationError, match="no spread"):
        Detector(method=method, resolution=64).fit(references)


def test_a_copied_reference_is_fitted_once_with_a_warning_naming_both(tmp_path):
    references = [texture(seed) for seed in range(8)]
    paths = []
    for index, image in enumerate([*references, references[2]]):
        Image.fromarray(image).save(tmp_path / f"good{index}.png")
        paths.append(tmp_path / f"good{index}.png")
    with pytest.warns(UserWarning, match="good8.png is a copy of .*good2.png"):
        copied = Detector(method="anomalydino", resolution=64).fit(paths)
    plain = Detector(method="anomalydino", resolution=64).fit(paths[:8])
    assert copied.references == plain.references
    assert copied.thresholds["image"].value == plain.thresholds["image"].value


@pytest.mark.parametrize("method", ["anomalydino", "ensemble"])
def test_a_threshold_no_score_can_reach_is_warned_about_and_kept_in_the_model(method, tmp_path):
    with pytest.warns(CalibrationWarning, match="above the highest score"):
        detector = Detector(method=method, resolution=64).fit([gradient()])
    assert "no image will ever be NG" in detector.calibration_warnings["image"]
    loaded = Detector.load(detector.save(tmp_path / "model"))
    assert loaded.calibration_warnings == detector.calibration_warnings
    assert main(["info", str(tmp_path / "model")]) == 0
    loaded.calibrate([gradient(), with_defect(gradient())], [False, True])
    assert "image" not in loaded.calibration_warnings
