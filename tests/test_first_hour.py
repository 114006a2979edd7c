"""A new user's first hour through the real entry point: threads, progress that shows and never
swallows an error, and messages that match the CLI (weights, serve, small ones)."""

import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import faiss
import pytest
import torch
from images import texture
from offline_weights import isolate_weights
from PIL import Image
from test_backbones_dinov2 import meta_state
from test_backbones_wide_resnet import torchvision_state
from tqdm import tqdm

from anomalens import backbones
from anomalens.backbones import get_entry
from anomalens.cli import COMPUTING, _leaf_parsers, build_parser, main
from anomalens.cli.options import report_error
from anomalens.detector import Detector
from anomalens.errors import ImageError
from anomalens.methods import METHODS
from anomalens.progress import SHOW_AFTER, spinner
from anomalens.threads import CHILD_ENV, current_threads, set_threads

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    for seed in range(4):
        Image.fromarray(texture(seed)).save(folder / f"{seed}.png")
    return folder


@pytest.fixture
def weights_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate_weights(monkeypatch, tmp_path)


@pytest.fixture
def restore_threads():
    yield
    set_threads(1)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-c", "import sys; from anomalens.cli import main; sys.exit(main())"]
    command += args
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


# Threads


def test_every_computing_command_takes_threads():
    leaves = _leaf_parsers(build_parser())
    assert {leaf.prog.split()[1] for leaf in leaves} >= {*COMPUTING, "info", "weights"}
    for leaf in leaves:
        computes = leaf.prog.split()[1] in COMPUTING
        assert ("--threads" in leaf._option_string_actions) == computes, leaf.prog


def test_one_setting_reaches_torch_faiss_and_child_processes(restore_threads):
    set_threads(2)
    assert torch.get_num_threads() == 2 and faiss.omp_get_max_threads() == 2
    assert all(os.environ[variable] == "2" for variable in CHILD_ENV)
    assert set_threads(None) == current_threads() == 2  # None keeps what was set
    Detector(method="anomalydino", threads=1)
    assert torch.get_num_threads() == faiss.omp_get_max_threads() == current_threads() == 1


def test_threads_on_the_command_line_are_set_before_the_work(tmp_path, restore_threads):
    args = ["fit", str(tmp_path / "absent"), "-o", str(tmp_path / "model")]
    assert main([*args, "--threads", "2"]) == 1  # the folder is missing: set, then stopped
    assert current_threads() == torch.get_num_threads() == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args([*args, "--threads", "0"])


# Progress


def test_an_error_is_written_on_its_own_line_above_a_progress_bar(capsys):
    with tqdm(total=3, desc="predicting", file=sys.stderr) as bar:
        bar.update()
        report_error("a.png", ImageError("a.png", "not an image"))
        bar.update()
    err = capsys.readouterr().err
    line = next(line for line in err.split("\n") if "not an image" in line)
    assert line.split("\r")[-1] == "error: a.png: not an image"


def test_the_quadrant_hold_out_of_a_small_fit_has_a_progress_bar(good, tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["fit", str(good), "-o", str(model), "--resolution", "64"]) == 0
    err = capsys.readouterr().err
    # 4 references, 16 quadrants held out one by one (the fit on the 4 counts 4)
    assert re.search(r"held-out: 100%.*16/16", err)


def test_evaluate_shows_the_progress_of_its_fits(tmp_path, capsys):
    from synthetic_data import make_mvtec

    data = make_mvtec(tmp_path / "tile")
    fast = ["--method", "anomalydino", "--resolution", "64", "--param", "rotation=false"]
    args = ["evaluate", str(data), *fast, "--shots", "2", "--seeds", "0"]
    assert main([*args, "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    for step in ("runs", "features", "held-out"):  # the fit's bars, silent before
        assert step in err, step


def test_a_step_longer_than_a_second_shows_a_spinner_with_its_time(capsys):
    with spinner("quick step"):
        time.sleep(0.2)
    with spinner("slow step"):
        time.sleep(SHOW_AFTER + 0.8)
    err = capsys.readouterr().err
    assert "quick step" not in err
    assert re.search(r"slow step: 00:0[12], done\n$", err)


# Messages


def test_small_fits_say_reference_in_the_singular_and_that_outliers_are_not_checked(
    good, tmp_path, capsys
):
    args = ["fit", str(good), "-o", str(tmp_path / "m"), "--shots", "1", "--resolution", "64"]
    assert main([*args, "--exclude-outliers"]) == 0
    captured = capsys.readouterr()
    assert "fitted on 1 reference;" in captured.out
    assert "--exclude-outliers does nothing with 1 reference" in captured.err


def test_help_lists_the_methods_and_the_defaults(capsys):
    for command in (["fit", "--help"], ["serve", "--help"]):
        with pytest.raises(SystemExit):
            main(command)
    text = " ".join(capsys.readouterr().out.split())
    assert ", ".join(sorted(METHODS)) in text
    for default in ("(default: ensemble)", "(default: 8000)", "(default: models)"):
        assert default in text
    assert "(default: 25)" in text and "(default: 40000000)" in text


def test_serve_on_a_folder_it_cannot_use_is_one_line():
    done = run_cli("serve", "--models", "/proc/nonexistent")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --models /proc/nonexistent: cannot use this folder (No such file or directory)"
    ]


def test_weights_is_a_real_option_that_reaches_the_loader(good, tmp_path, weights_dir, capsys):
    file = weights_dir.parent / "mine.pth"
    torch.save(torchvision_state(), file)
    args = ["fit", str(good), "-o", str(tmp_path / "m"), "--backbone", "wide_resnet50_2"]
    single = ["--method", "anomalydino", "--resolution", "64", "--param", "rotation=false"]
    assert main([*args, *single, "--weights", str(file)]) == 0
    assert Detector.load(tmp_path / "m").method.config()["weights"] == str(file)
    assert main([*args, "--weights", str(tmp_path / "absent.pth")]) == 1  # via the ensemble
    assert f"not found at {tmp_path / 'absent.pth'}" in capsys.readouterr().err


def test_missing_weights_advise_only_commands_that_exist(good, tmp_path, weights_dir, capsys):
    args = ["fit", str(good), "-o", str(tmp_path / "m"), "--backbone", "dinov2_vits14"]
    assert main(args) == 1
    advice = capsys.readouterr().err
    assert "`anomalens weights import dinov2_vits14 FILE`" in advice
    assert "`anomalens weights fetch dinov2_vits14`" in advice and "--weights PATH" in advice
    assert "--weights download" not in advice
    parser = build_parser()
    parser.parse_args(["weights", "import", "dinov2_vits14", "FILE"])
    parser.parse_args(["weights", "fetch", "dinov2_vits14"])
    parser.parse_args([*args, "--weights", "PATH"])


def test_weights_list_says_where_each_missing_file_goes(weights_dir, capsys):
    assert main(["weights", "list"]) == 0
    printed = capsys.readouterr().out
    target = weights_dir / "dinov2_vits14_pretrain.pth"
    assert f"goes to {target}" in printed
    assert "`anomalens weights import dinov2_vits14 FILE` or `weights fetch dinov2_vits14`" in (
        printed
    )


def test_weights_import_checks_the_file_and_copies_it_where_the_loader_looks(
    weights_dir, tmp_path, capsys
):
    source = tmp_path / "downloaded.pth"
    torch.save(meta_state(), source)
    assert main(["weights", "import", "dinov2_vits14", str(source)]) == 0
    target = weights_dir / "dinov2_vits14_pretrain.pth"
    assert target.read_bytes() == source.read_bytes()
    assert get_entry("dinov2_vits14").locate(None) == target
    assert str(target) in capsys.readouterr().out
    assert main(["weights", "list"]) == 0
    assert re.search(r"^dinov2_vits14 +available", capsys.readouterr().out, re.MULTILINE)


def test_weights_import_refuses_a_file_whose_sha256_is_not_the_registered_one(
    weights_dir, tmp_path, capsys
):
    source = tmp_path / "wide_resnet50_2-95faca4b.pth"
    torch.save(torchvision_state(), source)  # the right architecture, not torchvision's file
    assert main(["weights", "import", "wide_resnet50_2", str(source)]) == 1
    assert "does not match wide_resnet50_2-95faca4b.pth's 95faca4b" in capsys.readouterr().err
    assert list(weights_dir.iterdir()) == []


def test_weights_import_refuses_a_file_of_another_backbone(weights_dir, tmp_path, capsys):
    source = tmp_path / "other.pth"
    torch.save(torchvision_state(), source)
    assert main(["weights", "import", "dinov2_vits14", str(source)]) == 1
    assert "not DINOv2 weights" in capsys.readouterr().err
    assert list(weights_dir.iterdir()) == []


def test_weights_fetch_downloads_checks_and_installs(weights_dir, tmp_path, monkeypatch, capsys):
    published = tmp_path / "published.pth"
    torch.save(meta_state(), published)
    entry = dataclasses.replace(get_entry("dinov2_vits14"), url=published.as_uri())
    monkeypatch.setitem(backbones._REGISTRY, "dinov2_vits14", entry)  # file://: no network
    assert main(["weights", "fetch", "dinov2_vits14"]) == 0
    target = weights_dir / "dinov2_vits14_pretrain.pth"
    assert target.read_bytes() == published.read_bytes()
    assert f"to {target}" in capsys.readouterr().out


def test_weights_fetch_keeps_nothing_that_fails_its_check(
    weights_dir, tmp_path, monkeypatch, capsys
):
    published = tmp_path / "published.pth"
    torch.save(torchvision_state(), published)
    entry = dataclasses.replace(get_entry("wide_resnet50_2"), url=published.as_uri())
    monkeypatch.setitem(backbones._REGISTRY, "wide_resnet50_2", entry)
    assert main(["weights", "fetch", "wide_resnet50_2"]) == 1
    assert f"downloaded from {published.as_uri()}" in capsys.readouterr().err
    assert list(weights_dir.iterdir()) == []
    assert main(["weights", "fetch", "dinov3_vits16"]) == 1
    assert "no public download" in capsys.readouterr().err
