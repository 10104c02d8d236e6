"""The `artforge` command on the shipped zoo, and the errors users meet first."""

from __future__ import annotations

import argparse
import subprocess
import sys

import cv2
import numpy as np
import pytest

from artforge import __version__
from artforge.cli import build_parser, main
from artforge.cli.args import DEFAULT_ZOO
from artforge.defaults import GENERATE_COUNT, QUALITY, TOP_K

ZOO_REPO = DEFAULT_ZOO / "repository"
SAMPLES = DEFAULT_ZOO / "samples"

pytestmark = pytest.mark.skipif(not (ZOO_REPO / "art_style").is_dir(), reason="the shipped zoo is not built")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_the_zoo(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    for name, kind in (("art_style", "classifier"), ("abstract_dcgan", "generator"), ("mosaic", "stylizer"),
                       ("swirl", "stylizer"), ("pointillism", "stylizer")):
        assert any(line.startswith(name) and kind in line for line in out.splitlines()), out
    # Every row ends in a filled last column: no trailing blanks.
    assert all(line == line.rstrip() and len(line.split()) >= 4 for line in out.splitlines()), out
    assert "4 labels: mosaic, photo, pointillism, swirl" in out


def test_classify_sample_photos_as_photos(capsys):
    photos = sorted(str(p) for p in SAMPLES.glob("*.jpg"))
    code, out, _ = run(capsys, "classify", *photos, "--top-k", "2")
    assert code == 0
    assert len(out.splitlines()) == len(photos)
    # Untouched photos should mostly be recognised as the "photo" style.
    top1 = [line.split(": ", 1)[1].split()[0] for line in out.splitlines()]
    assert top1.count("photo") >= len(photos) // 2, out


def test_generate_writes_images(tmp_path, capsys):
    code, out, _ = run(capsys, "generate", "--count", "3", "--seed", "7", "--out", str(tmp_path))
    assert code == 0
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 3
    assert cv2.imread(str(files[0])).shape == (64, 64, 3)


@pytest.mark.parametrize("content", [b"", b"GIF89a truncated", bytes(range(256))])
def test_classify_bad_image_gives_one_clear_error(tmp_path, capsys, content):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    code, _, err = run(capsys, "classify", str(bad))
    assert code == 1
    assert "bad.jpg" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_model_names_the_available_ones(capsys):
    code, _, err = run(capsys, "classify", str(sorted(SAMPLES.glob("*.jpg"))[0]), "--model", "nope")
    assert code == 2
    assert "nope" in err and "art_style" in err


def test_missing_repository_folder(tmp_path, capsys):
    code, _, err = run(capsys, "models", "--repo", str(tmp_path / "missing"))
    assert code == 2
    assert "missing" in err


def test_malformed_repository_reports_the_model(tmp_path, capsys):
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    code, out, _ = run(capsys, "models", "--repo", str(tmp_path))
    assert code == 0 and "broken" in out
    code, _, err = run(capsys, "classify", str(sorted(SAMPLES.glob("*.jpg"))[0]), "--repo", str(tmp_path),
                       "--model", "broken")
    assert code == 2 and "broken" in err and "Traceback" not in err


def test_demo_runs_every_kind_without_torch(tmp_path):
    code = (
        "import sys; from artforge.cli import main; "
        f"rc = main(['demo', '--out', {str(tmp_path)!r}]); "
        "assert 'torch' not in sys.modules, 'the runtime imported torch'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "results in" in result.stdout
    assert len(list((tmp_path / "stylized").rglob("*.jpg"))) >= 2 * len(list(SAMPLES.glob("*.jpg")))
    assert (tmp_path / "generated" / "abstract_dcgan.png").is_file()
    assert (tmp_path / "classification.txt").read_text().strip()
    image = cv2.imread(str(tmp_path / "generated" / "abstract_dcgan.png"))
    assert image is not None and np.std(image) > 5


# ------------------------------------------------------------------ the command line itself


def subcommand_parsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command that runs something ("classify", "train style", ...) and its parser."""
    found = {}
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            found.update(subcommand_parsers(sub, f"{prefix}{name} ") if sub._subparsers else {prefix + name: sub})
    return found


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"artforge {__version__}"


@pytest.mark.parametrize("argv", [["classify", "photo.jpg", "--top-kk", "2"],
                                  ["train", "style", "--style", "s.jpg", "--data", "d", "--out", "r", "--stpes", "9"],
                                  ["generate", "--count", "2", "--sed", "3"]])
def test_a_mistyped_flag_is_refused_by_its_command(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    command = "artforge " + " ".join(a for a in argv[:2] if not a.startswith("-") and "." not in a)
    usage, error = capsys.readouterr().err.splitlines()
    assert usage.startswith(f"usage: {command} [options]")
    assert error.startswith(f"{command}: error: unrecognized arguments: {argv[-2]}")


def test_model_version_is_a_positive_whole_number_for_every_command(capsys):
    parser = build_parser()
    for argv in (["export", "run"], ["quantize", "m", "--precision", "fp16"], ["build-engine", "m"]):
        assert parser.parse_args([*argv, "--version", "3"]).version == 3
        assert parser.parse_args(argv).repo is None  # --repo is optional everywhere
        for bad in ("0", "latest"):
            with pytest.raises(SystemExit):
                parser.parse_args([*argv, "--version", bad])
    assert "must be at least 1" in capsys.readouterr().err


def test_every_option_has_help_showing_its_default():
    for command, parser in subcommand_parsers(build_parser()).items():
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            assert action.help, f"artforge {command} {action.option_strings[0]} has no help text"
            default = action.default
            if default is not None and not isinstance(default, bool) and default != argparse.SUPPRESS:
                assert f"(default: {default})" in " ".join(text.split()), (command, action.option_strings)


def test_train_style_help_shows_what_the_defaults_cost(capsys):
    with pytest.raises(SystemExit):
        main(["train", "style", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--steps STEPS", 2000), ("--width WIDTH", 1.0), ("--image-size IMAGE_SIZE", 256)):
        assert f"{option} " in text and f"(default: {default})" in text
    assert "2000 steps" in text and "--max-steps" in text


def test_shared_defaults_are_the_api_defaults():
    parser = build_parser()
    assert parser.parse_args(["classify", "x.jpg"]).top_k == TOP_K
    generate = parser.parse_args(["generate"])
    assert (generate.count, generate.quality) == (GENERATE_COUNT, QUALITY)
    assert parser.parse_args(["stylize", "in", "out"]).quality == QUALITY


def test_classify_walks_a_folder(tmp_path, capsys):
    photos = sorted(SAMPLES.glob("*.jpg"))[:2]
    (tmp_path / "nested").mkdir()
    cv2.imwrite(str(tmp_path / "a.png"), cv2.imread(str(photos[0])))
    cv2.imwrite(str(tmp_path / "nested" / "b.jpg"), cv2.imread(str(photos[1])))
    (tmp_path / "notes.txt").write_text("not an image")
    code, out, err = run(capsys, "classify", str(tmp_path), "--top-k", "1")
    assert code == 0 and err == ""
    assert [line.split(": ")[0] for line in out.splitlines()] == [str(tmp_path / "a.png"),
                                                                 str(tmp_path / "nested" / "b.jpg")]
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "classify", str(tmp_path / "empty"))
    assert code == 2 and "holds no images" in err


def test_closed_stdout_ends_quietly():
    """`artforge models --json | head -1`: no BrokenPipeError traceback, the exit status of a SIGPIPE'd tool."""
    command = [sys.executable, "-m", "artforge", "models", "--json"]
    # The reader is gone before anything is written: the write fails with EPIPE every time.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == b""
    process.stderr.close()
    piped = subprocess.run(f"{subprocess.list2cmdline(command)} | head -1", shell=True, capture_output=True,
                           text=True, timeout=60)
    assert piped.stdout == "[\n" and piped.stderr == ""


def test_parsing_imports_nothing_heavy():
    code = ("import sys, artforge.cli; artforge.cli.build_parser().parse_args(['models']); "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'cv2', 'grpc', 'numpy', 'tensorrt') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
