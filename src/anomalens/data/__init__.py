"""Evaluation datasets: find the layout under a folder and list its references and test samples.

Two layouts are read (see `mvtec` and `folders`); a root holding several MVTec-AD categories
gives one dataset per category.
"""

from pathlib import Path

from anomalens.data.dataset import GOOD, Dataset, DatasetError, Sample
from anomalens.data.folders import is_folders_layout, load_folders
from anomalens.data.mvtec import is_mvtec_category, load_mvtec_category, mvtec_categories


def discover(root: str | Path) -> list[Dataset]:
    """The datasets under `root`; DatasetError explains the expected layouts if none is found."""
    root = Path(root)
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
