"""The MVTec-AD layout: train/good, test/<defect_type>, ground_truth/<defect_type>/<stem>_mask.png.

Good test images (test/good) have no mask. A root holding several such category folders is
read as one dataset per category.
"""

from pathlib import Path

from anomalens.data.dataset import (
    GOOD,
    Dataset,
    DatasetError,
    defective_samples,
    good_samples,
    is_hidden,
    require_images,
)


def is_mvtec_category(folder: Path) -> bool:
    """Whether `folder` has the train/ and test/ folders of an MVTec-AD category."""
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def mvtec_categories(root: Path) -> list[Path]:
    """The MVTec-AD category folders directly under `root`, sorted."""
    return sorted(path for path in root.iterdir() if path.is_dir() and is_mvtec_category(path))


def load_mvtec_category(folder: Path) -> Dataset:
    """Read one MVTec-AD category folder; DatasetError names a missing or empty folder."""
    pool = require_images(folder / "train" / GOOD)
    test_root = folder / "test"
    defect_folders = sorted(
        p for p in test_root.iterdir() if p.is_dir() and p.name != GOOD and not is_hidden(p)
    )
    if not defect_folders:
        raise DatasetError(f"{test_root}: no defect folders next to test/{GOOD}")
    truth = folder / "ground_truth"
    has_masks = truth.is_dir()
    problems: list[str] = []
    test = good_samples(require_images(test_root / GOOD))
    for defect_folder in defect_folders:
        mask_folder = truth / defect_folder.name if has_masks else None
        test += defective_samples(defect_folder, defect_folder.name, mask_folder, problems)
    if not has_masks:
        problems.append(f"{truth}: folder not found; pixel metrics are not computed")
    return Dataset(folder.name, folder, "mvtec", pool, test, has_masks, problems)
