"""The plain folder layout: good/, defective/ and an optional masks/ folder.

DATA/good/*.png                   good images; the references are drawn from them and the
                                  rest are the good test images
DATA/defective/*.png              defective images of one unnamed type ("defective"), or
DATA/defective/<type>/*.png       defective images grouped by defect type
DATA/masks/[<type>/]<stem>.png    optional pixel ground truth (or <stem>_mask.png), mirroring
                                  the defective folder
"""

from pathlib import Path

from anomalens.data.dataset import (
    GOOD,
    Dataset,
    defective_samples,
    good_samples,
    is_hidden,
    list_images,
    require_images,
)

DEFECTIVE_FOLDER = "defective"
MASK_FOLDER = "masks"


def is_folders_layout(folder: Path) -> bool:
    """Whether `folder` has the good/ and defective/ folders of the plain layout."""
    return (folder / GOOD).is_dir() and (folder / DEFECTIVE_FOLDER).is_dir()


def load_folders(folder: Path) -> Dataset:
    """Read a plain-layout folder; DatasetError names a missing or empty folder.

    The good images are both the reference pool and, minus the references of a run, the good
    test images.
    """
    pool = require_images(folder / GOOD)
    defective = folder / DEFECTIVE_FOLDER
    masks = folder / MASK_FOLDER
    has_masks = masks.is_dir()
    problems: list[str] = []
    type_folders = sorted(p for p in defective.iterdir() if p.is_dir() and not is_hidden(p))
    groups = [(path, path.name, masks / path.name) for path in type_folders]
    if list_images(defective) or not type_folders:
        groups.insert(0, (defective, DEFECTIVE_FOLDER, masks))
    test = good_samples(pool)
    for images, defect_type, mask_folder in groups:
        test += defective_samples(images, defect_type, mask_folder if has_masks else None, problems)
    return Dataset(folder.name, folder, "folders", pool, test, has_masks, problems)
