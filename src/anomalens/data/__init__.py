"""Evaluation datasets: find the layout under a folder and list its references and test samples.

Two layouts are read (see `mvtec` and `folders`); a root holding several MVTec-AD categories
gives one dataset per category. Box ground truth is read where a category has it (see `boxes`).
"""

from pathlib import Path

from anomalens.data.boxes import with_boxes
from anomalens.data.dataset import GOOD, Dataset, DatasetError, Sample
from anomalens.data.folders import is_folders_layout, load_folders
from anomalens.data.mvtec import is_mvtec_category, load_mvtec_category, mvtec_categories


def discover(root: str | Path, boxes: str | Path | None = None) -> list[Dataset]:
    """The datasets under `root`; DatasetError explains the expected layouts if none is found.

    Args:
        root: a dataset folder in one of the layouts.
        boxes: a COCO file of box ground truth for every dataset, in place of each category's
            own boxes/ folder or annotations.json; DatasetError if it is not a file.
    """
    boxes_file = Path(boxes) if boxes is not None else None
    if boxes_file is not None and not boxes_file.is_file():
        raise DatasetError(f"{boxes_file}: boxes file not found")
    return [with_boxes(dataset, boxes_file) for dataset in load_datasets(Path(root))]


def load_datasets(root: Path) -> list[Dataset]:
    """The datasets under `root` without box ground truth (see `discover`)."""
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found")
    if is_mvtec_category(root):
        return [load_mvtec_category(root)]
    if is_folders_layout(root):
        return [load_folders(root)]
    categories = mvtec_categories(root)
    if not categories:
        raise DatasetError(
            f"{root}: no dataset found; expected the MVTec-AD layout (train/good, test/good, "
            "test/<defect_type>, optional ground_truth/<defect_type>), a folder of such "
            "categories, or good/ and defective/ folders (optional masks/)"
        )
    return [load_mvtec_category(category) for category in categories]


__all__ = ["GOOD", "Dataset", "DatasetError", "Sample", "discover"]
