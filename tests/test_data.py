"""Dataset discovery, masks and k-shot reference selection."""

from pathlib import Path

import numpy as np
import pytest
from synthetic_data import SIZE, make_folders, make_mvtec, write_image, write_mask

from anomalens.data import DatasetError, discover
from anomalens.data.dataset import relative_name
from anomalens.data.masks import load_mask
from anomalens.data.shots import (
    FULL,
    parse_shots,
    read_reference_list,
    seeded_order,
    shot_count,
    write_reference_list,
)
from anomalens.errors import ImageError


def test_mvtec_category_lists_pool_and_labelled_test_samples_with_masks(tmp_path):
    [dataset] = discover(make_mvtec(tmp_path / "tile"))
    assert (dataset.name, dataset.layout, dataset.has_masks) == ("tile", "mvtec", True)
    assert len(dataset.pool) == 6
    assert [(s.label, s.defect_type) for s in dataset.test] == [(0, "good")] * 3 + [
        (1, "hole")
    ] * 2 + [(1, "scratch")] * 2
    assert all(s.mask_path is None for s in dataset.test if s.label == 0)
    assert all(s.mask_path.name == f"{s.path.stem}_mask.png" for s in dataset.test if s.label)
    assert dataset.problems == []


def test_root_of_several_categories_gives_one_dataset_each(tmp_path):
    make_mvtec(tmp_path / "b")
    make_mvtec(tmp_path / "a")
    (tmp_path / "notes").mkdir()
    assert [dataset.name for dataset in discover(tmp_path)] == ["a", "b"]


def test_missing_and_orphan_masks_are_reported_not_fatal(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    (root / "ground_truth" / "hole" / "000_mask.png").rename(
        root / "ground_truth" / "hole" / "zzz_mask.png"
    )
    [dataset] = discover(root)
    hole = [s for s in dataset.test if s.defect_type == "hole"]
    assert hole[0].mask_path is None and hole[1].mask_path is not None
    assert any("000.png: no mask" in problem for problem in dataset.problems)
    assert any("zzz_mask.png: mask without an image" in problem for problem in dataset.problems)


def test_mask_suffixes_may_be_upper_case(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    mask = root / "ground_truth" / "hole" / "000_mask.png"
    mask.rename(mask.with_suffix(".PNG"))
    [dataset] = discover(root)
    assert dataset.problems == []
    hole = [s.mask_path.name for s in dataset.test if s.defect_type == "hole"]
    assert hole == ["000_mask.PNG", "001_mask.png"]


def test_hidden_folders_are_not_defect_types(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    write_image(root / "test" / ".ipynb_checkpoints" / "000.png", seed=1)
    [dataset] = discover(root)
    assert {s.defect_type for s in dataset.test} == {"good", "hole", "scratch"}


def test_missing_mask_folder_of_one_defect_type_is_reported(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    for mask in (root / "ground_truth" / "hole").iterdir():
        mask.unlink()
    (root / "ground_truth" / "hole").rmdir()
    [dataset] = discover(root)
    assert dataset.has_masks
    assert any("hole: mask folder not found" in problem for problem in dataset.problems)


def test_dataset_without_ground_truth_has_no_masks(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    for mask in root.glob("ground_truth/*/*"):
        mask.unlink()
    for folder in root.glob("ground_truth/*"):
        folder.rmdir()
    (root / "ground_truth").rmdir()
    [dataset] = discover(root)
    assert not dataset.has_masks
    assert all(sample.mask_path is None for sample in dataset.test)


@pytest.mark.parametrize("folder", ["train/good", "test/good", "test/hole"])
def test_empty_folder_is_an_error_naming_it(tmp_path, folder):
    root = make_mvtec(tmp_path / "tile")
    for image in (root / folder).iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match=f"{folder}: folder has no images"):
        discover(root)


def test_unknown_layout_error_describes_the_expected_layouts(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="no dataset found; expected the MVTec-AD layout"):
        discover(tmp_path)


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        discover(tmp_path / "absent")


def test_folders_layout_uses_good_images_as_pool_and_test(tmp_path):
    [dataset] = discover(make_folders(tmp_path / "parts"))
    assert dataset.layout == "folders" and dataset.has_masks
    assert dataset.pool == [s.path for s in dataset.test if s.label == 0]
    defective = [s for s in dataset.test if s.label == 1]
    assert [s.defect_type for s in defective] == ["defective"] * 3
    assert all(s.mask_path == tmp_path / "parts" / "masks" / s.path.name for s in defective)


def test_folders_layout_reads_defect_types_from_subfolders(tmp_path):
    root = tmp_path / "parts"
    write_image(root / "good" / "g.png", 0)
    write_image(root / "defective" / "dent" / "d.png", 1, True)
    write_image(root / "defective" / "stain" / "s.png", 2, True)
    [dataset] = discover(root)
    assert not dataset.has_masks
    assert [s.defect_type for s in dataset.test] == ["good", "dent", "stain"]


def test_mask_of_another_size_is_an_image_error_naming_the_mask(tmp_path):
    write_mask(tmp_path / "m.png", size=32)
    with pytest.raises(ImageError, match=r"m.png: mask is 32x32 px but its image is 48x48 px"):
        load_mask(tmp_path / "m.png", (SIZE, SIZE))


def test_mask_is_boolean_defect_region(tmp_path):
    write_mask(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", (SIZE, SIZE))
    assert mask.dtype == np.bool_ and mask.sum() == 12 * 12


def test_seeded_order_is_deterministic_and_independent_of_input_order():
    pool = [Path(f"{index}.png") for index in range(10)]
    assert seeded_order(pool, 3) == seeded_order(pool[::-1], 3)
    assert seeded_order(pool, 3) != seeded_order(pool, 4)
    assert sorted(seeded_order(pool, 3)) == pool


def test_shots_parse_counts_and_full():
    assert parse_shots("4") == 4 and parse_shots("full") == FULL
    with pytest.raises(ValueError):
        parse_shots("0")


def test_shot_count_refuses_more_shots_than_the_pool_has():
    pool = [Path("train/good/a.png"), Path("train/good/b.png")]
    assert shot_count(FULL, pool) == 2
    with pytest.raises(DatasetError, match="3 shots asked but it has only 2 images"):
        shot_count(3, pool)


def test_a_dataset_of_symbolic_links_keeps_its_own_names(tmp_path):
    store = make_mvtec(tmp_path / "store")
    linked = tmp_path / "linked"
    linked.mkdir()
    for folder in ("train", "test", "ground_truth"):
        (linked / folder).symlink_to(store / folder, target_is_directory=True)
    path = linked / "test" / "hole" / "000.png"
    assert relative_name(path, linked) == "test/hole/000.png"
    assert relative_name(tmp_path / "x" / ".." / "linked" / "a.png", linked) == "a.png"


def test_reference_list_round_trips_relative_to_root(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    references = sorted((root / "train" / "good").iterdir())[:2]
    list_file = write_reference_list(tmp_path / "refs.txt", references, root)
    assert list_file.read_text().splitlines() == ["train/good/000.png", "train/good/001.png"]
    list_file.write_text("# chosen by hand\n\n" + list_file.read_text())
    assert read_reference_list(list_file, root) == references


def test_reference_list_names_the_line_of_a_missing_file(tmp_path):
    list_file = tmp_path / "refs.txt"
    list_file.write_text("# header\nmissing.png\n")
    with pytest.raises(DatasetError, match=r"refs.txt, line 2: .*missing.png is not a file"):
        read_reference_list(list_file, tmp_path)
