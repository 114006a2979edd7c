"""What one image costs: the backbone sees a bounded number of pixels, and each full-resolution
intermediate a few bytes per pixel, so that peak memory per image is known beforehand."""

import subprocess
import sys
import textwrap

from anomalens.features import MAX_NATIVE_PIXELS, FeatureExtractor

MEGABYTE = 1 << 20


def peak_growth(setup: str, work: str) -> float:
    """Peak resident memory, in bytes, that `work` adds after `setup` in a fresh interpreter."""
    script = textwrap.dedent(f"""
        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        {setup}
        open("/proc/self/clear_refs", "w").write("5")  # restart the peak from here
        before = status("VmRSS")
        {work}
        print(status("VmHWM") - before)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


def test_a_thin_image_at_a_fixed_resolution_is_capped_to_a_bounded_pixel_count():
    extractor = FeatureExtractor("efficientnet_lite0", resolution=320)
    height, width = extractor.target_size(16, 500)  # 320 x 10000 before the cap
    assert height * width <= MAX_NATIVE_PIXELS * 1.01
    assert abs(width / height - 500 / 16) < 0.5


def test_a_resolution_above_the_cap_keeps_its_square():
    extractor = FeatureExtractor("efficientnet_lite0", resolution=2048)
    assert extractor.target_size(1000, 1000) == (2048, 2048)
    height, width = extractor.target_size(1000, 4000)
    assert height * width <= 2048**2 * 1.01


def test_a_full_resolution_map_costs_little_beside_itself():
    setup = """
        import numpy as np
        from anomalens.localization.maps import anomaly_map
        grid = np.random.default_rng(0).random((128, 128)).astype(np.float32)
        anomaly_map(grid, (64, 64), (64, 64))
    """
    growth = peak_growth(setup, "result = anomaly_map(grid, (4000, 4000), (4003, 4001))")
    assert growth < 1.5 * 4003 * 4001 * 4, growth / MEGABYTE  # the float32 map and little more


def test_predicting_a_large_image_costs_a_few_bytes_per_pixel():
    setup = """
        import numpy as np
        from anomalens import Detector
        rng = np.random.default_rng(0)
        references = [rng.integers(100, 140, (64, 96, 3), np.uint8) for _ in range(3)]
        detector = Detector(method="anomalydino", resolution=64, rotation=False).fit(references)
        image = np.full((4000, 4000, 3), 128, np.uint8)
        image[1000:1100, 1000:1100] = 255
        detector.predict([image[:400, :400]])
    """
    growth = peak_growth(setup, "result = detector.predict([image])[0]")
    # the result's map and mask (5 bytes per pixel), the regions' labels (4) and one region's
    # pixels (1) while boxing
    assert growth < 12 * 4000 * 4000, growth / (4000 * 4000)


def test_the_heatmap_overlay_blends_a_band_at_a_time():
    setup = """
        import numpy as np
        from anomalens.results import Result
        from anomalens.visualize import overlay
        image = np.full((4000, 4000, 3), 128, np.uint8)
        heat = np.zeros((4000, 4000), np.float32)
        result = Result(1.0, heat, heat > 0, [], False)
    """
    growth = peak_growth(setup, "picture = overlay(image, result, 1.0)")
    # the picture as an array (3 bytes per pixel) twice and Pillow's copy to draw on (4)
    assert growth < 12 * 4000 * 4000, growth / (4000 * 4000)
