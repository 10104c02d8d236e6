"""Training as a user meets it: presets, the time estimate, log lines without the bar, the run record
in the provenance and the model card, and export's warning about an unfinished run. Real trainers on
tiny data; nothing is timed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_train_classifier import make_dataset, tiny_config

from artforge.cli import build_parser, main
from artforge.cli.train import train_config
from artforge.export import export_run
from artforge.training import classifier, common, dcgan, presets, style
from artforge.training.configs import ClassifierConfig, DCGANConfig, StyleConfig
from artforge.training.progress import StepProgress, format_duration
from artforge.training.run_record import SHORTFALL, shortfall, summary
from artforge.zoo.catalog import ZOO

CONFIGS = {"classifier": ClassifierConfig, "dcgan": DCGANConfig, "style": StyleConfig}


@pytest.fixture(scope="module")
def style_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("style")
    rng = np.random.default_rng(0)
    (root / "content").mkdir()
    for i in range(3):
        cv2.imwrite(str(root / "content" / f"c{i}.png"),
                    cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (48, 40)))
    stripes = np.zeros((40, 60, 3), np.uint8)
    stripes[:, ::5] = (255, 200, 0)
    cv2.imwrite(str(root / "style.png"), stripes)
    return root / "content", root / "style.png"


def tiny_style(data: Path, style_image: Path, out: Path, **kw) -> StyleConfig:
    settings = dict(width=0.125, image_size=32, style_size=32, batch_size=1, steps=6, sample_every=100,
                    checkpoint_every=100, log_every=2, progress=False)
    settings.update(kw)
    return StyleConfig(style=str(style_image), data=str(data), out=str(out), **settings)


# ------------------------------------------------------------------------------ presets
def test_every_preset_names_real_options_and_the_same_ones_per_kind() -> None:
    for kind, config in CONFIGS.items():
        names = {f.name for f in dataclasses.fields(config)}
        keys = {name: set(values) for name, values in presets.PRESETS[kind].items()}
        assert set(keys) == set(presets.PRESET_NAMES)
        assert len({frozenset(k) for k in keys.values()}) == 1, f"{kind} presets set different options"
        assert set(presets.preset_fields(kind)) <= names


def test_quality_is_the_documented_default_recipe_for_style_and_dcgan() -> None:
    for kind in ("style", "dcgan"):
        defaults = CONFIGS[kind](**{f.name: "x" for f in dataclasses.fields(CONFIGS[kind])
                                    if f.default is dataclasses.MISSING})
        assert {k: getattr(defaults, k) for k in presets.PRESETS[kind]["quality"]} == presets.PRESETS[kind]["quality"]


def test_the_zoo_trains_with_the_zoo_presets() -> None:
    for model in ZOO:
        if model.kind not in presets.PRESETS:  # meta_style and adapt_style train with their configs' defaults
            assert model.settings == {}
            continue
        # swirl alone trains with its own style loss (catalog.py: the Gram loss never paints its yellow).
        own = {"style_match", "style_weight"} if model.name == "swirl" else set()
        zoo = {k: v for k, v in presets.settings(model.kind, "zoo").items() if k not in own}
        assert {k: model.settings[k] for k in zoo} == zoo
        # Beyond the preset only how often the zoo measures the model, which does not change training.
        assert set(model.settings) - set(zoo) <= {"eval_every", "eval_samples"} | own


def test_explicit_options_win_over_the_preset_on_the_command_line_and_in_python() -> None:
    parse = build_parser().parse_args
    cfg = train_config(parse(["train", "style", "--style", "s", "--data", "d", "--out", "o", "--preset", "fast"]))
    assert cfg == StyleConfig(style="s", data="d", out="o", preset="fast", **presets.PRESETS["style"]["fast"])
    # Even an explicit value equal to the default beats the preset.
    cfg = train_config(parse(["train", "style", "--style", "s", "--data", "d", "--out", "o", "--preset", "fast",
                              "--steps", "2000", "--width", "0.5"]))
    assert (cfg.steps, cfg.width, cfg.image_size, cfg.preset) == (2000, 0.5, 128, "fast")
    cfg = train_config(parse(["train", "dcgan", "--data", "d", "--out", "o", "--preset", "zoo", "--epochs", "3"]))
    assert (cfg.ngf, cfg.epochs, cfg.batch_size) == (32, 3, 64)
    cfg = train_config(parse(["train", "classifier", "--data", "d", "--out", "o", "--preset", "quality"]))
    assert (cfg.unfreeze, cfg.epochs_unfrozen, cfg.preset) == ("all", 6, "quality")
    # No preset: the config's defaults, unchanged.
    assert train_config(parse(["train", "dcgan", "--data", "d", "--out", "o"])) == DCGANConfig(data="d", out="o")
    cfg = presets.configure("style", StyleConfig, "zoo", style="s", data="d", out="o", steps=10)
    assert (cfg.width, cfg.steps, cfg.preset) == (0.5, 10, "zoo")
    with pytest.raises(ValueError, match="unknown preset 'slow' for style; choose one of fast, zoo, quality"):
        presets.configure("style", StyleConfig, "slow", style="s", data="d", out="o")


def test_help_shows_each_preset_and_the_defaults_they_replace(capsys: pytest.CaptureFixture[str]) -> None:
    for kind in CONFIGS:
        with pytest.raises(SystemExit):
            main(["train", kind, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for name in presets.PRESET_NAMES:
            assert f"{name}: {presets.describe(kind, name)}" in " ".join(text.replace("- ", "-").split())
        assert "--preset {fast,zoo,quality}" in text and "time estimate" in text
    with pytest.raises(SystemExit):
        main(["train", "style", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.125)" not in text and "(default: 1.0) unless --preset sets it" in text


# --------------------------------------------------------------------- estimate and log lines
def test_estimate_is_printed_once_from_the_first_timed_steps(capsys: pytest.CaptureFixture[str]) -> None:
    bar = StepProgress(total=50, initial=10, desc="demo", enabled=False)
    for step in range(11, 21):
        bar.update(1)
        if step % 5 == 0:
            bar.set_postfix(loss="0.5")
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    estimates = [line for line in lines if "to go" in line]
    assert len(estimates) == 1
    assert re.fullmatch(r"demo: 36 steps to go at \S+ s/step \(measured on steps 12-14 of this run\) -> about .+, "
                        r"done around \d\d:\d\d", estimates[0])
    assert [line.split("  ")[0] for line in lines if "to go" not in line] == ["demo step 15/50", "demo step 20/50"]
    assert all("loss=0.5" in line and "elapsed, ~" in line for line in lines if "to go" not in line)
    assert [format_duration(s) for s in (4.2, 42, 200, 1900, 9300)] == ["4.2 s", "42 s", "3 min 20 s", "32 min",
                                                                       "2 h 35 min"]


def test_style_and_dcgan_without_the_bar_print_estimate_and_a_line_per_log_step(
        style_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, style_image = style_inputs
    style.train(tiny_style(data, style_image, tmp_path / "style"))
    err = capsys.readouterr().err
    assert "style: 2 steps to go at" in err
    assert [line.split("  ")[0] for line in err.splitlines() if line.startswith("style step")] == [
        "style step 2/6", "style step 4/6", "style step 6/6"]
    dcgan.train(DCGANConfig(data=str(data), out=str(tmp_path / "gan"), nz=4, ngf=4, ndf=4, batch_size=1, epochs=2,
                            log_every=3, sample_count=1, progress=False))
    err = capsys.readouterr().err
    assert "dcgan: 2 steps to go at" in err
    assert [line.split("  ")[0] for line in err.splitlines() if line.startswith("dcgan step")] == [
        "dcgan step 3/6", "dcgan step 6/6"]


def test_classifier_without_the_bar_prints_estimate_step_and_epoch_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_dataset(tmp_path / "data")
    run = classifier.train(tiny_config(data, tmp_path / "run", epochs_frozen=2, epochs_unfrozen=1, log_every=2))
    err = capsys.readouterr().err
    assert re.search(r"classifier phase 1: 2 steps to go at .* -> about .*; then phase 2, up to 3 steps", err)
    assert [line.split("  ")[0] for line in err.splitlines() if " step " in line and "to go" not in line] == [
        "classifier phase 1 step 2", "classifier phase 1 step 4", "classifier phase 1 step 6",
        "classifier phase 2 step 8"]
    assert len(re.findall(r"^phase \d epoch \d/\d: train loss", err, re.M)) == 3
    record = common.load_artifact(run)["provenance"]
    assert (record["planned_steps"], record["steps_done"], record["stopped_by"]) == (9, 9, "finished")
    assert record["settings"]["unfreeze"] == "2" and record["settings"]["epochs_frozen"] == 2


# ---------------------------------------------------------------- provenance, card, warning
def test_provenance_records_every_setting_and_the_plan(style_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    data, style_image = style_inputs
    cfg = presets.configure("style", StyleConfig, "fast", style=str(style_image), data=str(data),
                            out=str(tmp_path / "run"), width=0.125, image_size=32, style_size=32, batch_size=1,
                            steps=3, sample_every=100, checkpoint_every=100, progress=False)
    provenance = common.load_artifact(style.train(cfg))["provenance"]
    assert provenance["preset"] == "fast"
    assert provenance["architecture"] == {"name": "transformer_net", "width": 0.125, "residual_blocks": 5}
    settings = provenance["settings"]
    assert (settings["width"], settings["image_size"], settings["steps"], settings["lr"]) == (0.125, 32, 3, 1e-3)
    assert settings["style_weight"] == 0.5  # the resolved weight, not None
    assert not {"out", "progress", "resume", "max_steps", "preset"} & set(settings)
    assert (provenance["planned_steps"], provenance["steps_done"], provenance["stopped_by"]) == (3, 3, "finished")


def test_export_warns_about_a_run_stopped_far_short_of_its_plan(
        style_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, style_image = style_inputs
    run = style.train(tiny_style(data, style_image, tmp_path / "short", steps=8, max_steps=2))
    capsys.readouterr()
    assert main(["export", str(run), "--repo", str(tmp_path / "repo"), "--name", "short"]) == 0
    captured = capsys.readouterr()
    assert "trained 2 of 8 planned steps (stopped by --max-steps)" in captured.out
    warning = [line for line in captured.err.splitlines() if "warning" in line]
    assert warning == ["artforge: warning: this model is undertrained: its run stopped at step 2 of the 8 planned "
                       "(25%, by --max-steps); rerun the same training command without --max-steps to finish it, "
                       "then export again"]
    card = (tmp_path / "repo" / "short" / "README.md").read_text()
    assert "> **Warning:** this model is undertrained" in card
    assert "The run trained 2 of 8 planned steps (stopped by --max-steps)." in card
    assert "| width | 0.125 |" in card and "| image-size | 32 |" in card
    assert '**architecture**: `{"name": "transformer_net", "residual_blocks": 5, "width": 0.125}`' in card

    # Continued to the end, the same run exports without a warning.
    style.train(tiny_style(data, style_image, tmp_path / "short", steps=8))
    capsys.readouterr()
    export_run(run, tmp_path / "repo", name="short", version=2)
    assert "warning" not in capsys.readouterr().err
    assert "Warning" not in (tmp_path / "repo" / "short" / "README.md").read_text()


def test_shortfall_rule() -> None:
    record = {"planned_steps": 100, "stopped_by": "max_steps"}
    assert shortfall({**record, "steps_done": int(100 * SHORTFALL) - 1}) is not None
    assert shortfall({**record, "steps_done": int(100 * SHORTFALL)}) is None
    # Early stopping ends a plan early without a warning; an artifact without a record has none.
    assert shortfall({"planned_steps": 100, "steps_done": 10, "stopped_by": "finished"}) is None
    assert shortfall({"seed": 1}) is None and summary({"seed": 1}) is None
