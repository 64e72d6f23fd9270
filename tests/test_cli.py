"""The CLI as a user drives it: help, listing, and one clear line for every bad input."""

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kit.cli import main

COMMANDS = [[], ["list"], ["run"], ["lr-find"], ["sample"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "kit")
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*command, "--help"])
    assert exit.value.code == 0
    assert "usage: kit" in capsys.readouterr().out


def test_run_help_lists_recipe_flags(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in [
        "--data",
        "--sample",
        "--arch",
        "--cycles",
        "--cycle-mult",
        "--lr",
        "--bs",
        "--tta, --no-tta",
        "--seed",
        "--device",
    ]:
        assert flag in out


def test_list_shows_every_recipe_with_a_description(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("mnist") and "Digit Recognizer" in line for line in lines)


def one_line_error(capsys, argv, tmp_path) -> str:
    """Run the CLI expecting failure; check the output is one line and nothing was written."""
    code = (
        main([*argv, "--out", str(tmp_path / "out")])
        if argv[0] in ("run", "lr-find")
        else main(argv)
    )
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "runs").exists() or not any(
        (tmp_path / "out" / "runs").rglob("*.csv")
    )
    assert not (tmp_path / "out" / "submissions").exists()
    return err


def test_unknown_recipe(capsys, tmp_path):
    err = one_line_error(capsys, ["run", "mnsit"], tmp_path)
    assert "unknown recipe 'mnsit'" in err and "did you mean 'mnist'" in err


def test_missing_data_names_the_download_command(capsys, tmp_path):
    err = one_line_error(capsys, ["run", "mnist", "--data", str(tmp_path / "nowhere")], tmp_path)
    assert "kit download mnist" in err and "--sample" in err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--arch", "resnet1000", "unknown architecture 'resnet1000'; close matches: resnet"),
        ("--precision", "fp8", "--precision must be one of"),
        ("--bs", "0", "--bs must be at least 1"),
        ("--valid-pct", "1.5", "--valid-pct must be between 0 and 1"),
        ("--label-smoothing", "1", "--label-smoothing must be between 0 and 1, e.g. 0.1 (got 1.0)"),
        ("--mixup", "-0.4", "--mixup must be 0 (off) or a positive alpha, e.g. 0.4 (got -0.4)"),
        ("--cutmix", "-1", "--cutmix must be 0 (off) or a positive alpha, e.g. 1.0 (got -1.0)"),
        ("--ema", "1", "--ema must be 0 (off) or a decay between 0 and 1, e.g. 0.999 (got 1.0)"),
        ("--device", "tpu", "--device 'tpu' is not a device"),
    ],
)
def test_bad_flag_values(capsys, tmp_path, mnist_sample, flag, value, message):
    err = one_line_error(
        capsys, ["run", "mnist", "--data", str(mnist_sample), flag, value], tmp_path
    )
    assert message in err


@pytest.mark.parametrize(
    "device, gpus, message",
    [
        ("mps", 0, "--device mps asked for, but torch sees no Apple GPU (MPS); use --device cpu"),
        ("cuda:7", 0, "--device cuda:7 asked for, but torch sees no CUDA GPU; use --device cpu"),
        ("cuda:7", 1, "--device cuda:7 asked for, but torch sees 1 CUDA GPU (cuda:0); use one"),
        ("cuda:7", 4, "torch sees 4 CUDA GPUs (cuda:0 to cuda:3); use one of them"),
        ("meta", 0, "--device 'meta' is not one kit trains on; use auto, cpu, cuda or mps"),
    ],
)
def test_a_device_this_machine_lacks_is_one_line(
    capsys, tmp_path, mnist_sample, monkeypatch, device, gpus, message
):
    """As a machine with `gpus` CUDA GPUs and no Apple GPU sees it (cached, as torch's own are:
    torch reads their __wrapped__)."""
    monkeypatch.setattr(torch.cuda, "is_available", functools.cache(lambda: gpus > 0))
    monkeypatch.setattr(torch.cuda, "device_count", functools.cache(lambda: gpus))
    monkeypatch.setattr(torch.backends.mps, "is_available", functools.cache(lambda: False))
    argv = ["run", "mnist", "--data", str(mnist_sample), "--device", device, "--cycles", "1"]
    assert message in one_line_error(capsys, argv, tmp_path)


def test_flag_of_the_wrong_type_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "kit.cli", "run", "mnist", "--bs", "many"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "kit run: error: argument --bs: invalid int value: 'many' (see `kit run --help`)"
    ]


def test_debug_shows_the_traceback(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kit.cli",
            "--debug",
            "run",
            "mnist",
            "--data",
            str(tmp_path / "nowhere"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "Traceback" in done.stderr and "KitError" in done.stderr


def test_sample_refuses_a_folder_with_files(capsys, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    err = one_line_error(capsys, ["sample", "mnist", str(tmp_path)], tmp_path)
    assert "is not empty" in err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_sample_writes_the_competition_layout(capsys, tmp_path):
    assert main(["sample", "mnist", str(tmp_path / "s")]) == 0
    names = sorted(p.name for p in Path(tmp_path / "s").iterdir())
    assert names == ["sample_submission.csv", "solution.csv", "test.csv", "train.csv"]
