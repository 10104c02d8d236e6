"""`artforge zoo build --quick`: the whole slice (data, training, export, cards,
held-out evaluation, contact sheet) at toy sizes, then the runtime on the result."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from artforge.runtime import Repository, read_image
from artforge.zoo import ZOO, build_zoo
from artforge.zoo.catalog import TILE_SETTINGS


def test_quick_zoo_build_produces_a_servable_repository(tmp_path):
    out, sheet = tmp_path / "zoo", tmp_path / "sheet.png"
    build_zoo(out=out, work=tmp_path / "work", quick=True, sheet=sheet)

    repo = Repository(out / "repository")
    assert sorted(repo.names()) == sorted(m.name for m in ZOO if m.exported)
    for model in ZOO:
        assert (out / "checkpoints" / f"{model.name}.pt").is_file()
        if not model.exported:
            continue
        card = (out / "repository" / model.name / "README.md").read_text()
        assert "Training provenance" in card
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert 0.0 <= evaluation["accuracy"] <= 1.0 and evaluation["images"] > 0
    assert "Evaluation on held-out photos" in (out / "repository" / "art_style" / "README.md").read_text()
    assert sheet.is_file() and "| model |" in (out / "README.md").read_text()
    # Columns: the photo, every stylizer, and Gatys et al.'s optimisation in the adapted style (the reference).
    stylizers = [m for m in ZOO if m.kind in ("style", "adapt_style")]
    columns = 1 + len(stylizers) + sum(m.kind == "adapt_style" for m in stylizers)
    assert read_image(sheet).shape[1] == columns * (256 + 2) + 2
    assert list((tmp_path / "work" / "gatys").glob("*_*_256.png"))
    scores = json.loads((out / "evaluation_abstract_dcgan.json").read_text())
    assert scores["fd"] > 0 and scores["generated"] == 64 and scores["real"] == 16
    # The training tiles, scored the same way, give the FD its scale (what reproducing the data would score).
    trained_on = TILE_SETTINGS["quick"]["count"]
    assert scores["training_images"]["fd"] >= 0 and scores["training_images"]["generated"] == trained_on
    card = (out / "repository" / "abstract_dcgan" / "README.md").read_text()
    assert "Evaluation on held-out tiles" in card and "of its training tiles (real; for scale)" in card
    assert "abstract_dcgan against held-out tiles" in (out / "README.md").read_text()
    assert f"For scale, {trained_on} of its training tiles" in (out / "README.md").read_text()
    assert (out / "generated" / "abstract_dcgan.png").is_file()
    tiles = json.loads((out / "data_tiles.json").read_text())
    assert tiles["stylizers"] == ["mosaic", "swirl"]  # the style networks are trained before the DCGAN
    quality = json.loads((out / "style_quality.json").read_text())
    styles = [m.name for m in ZOO if m.kind in ("style", "adapt_style")]
    assert sorted(quality) == sorted(styles)
    for name in styles:
        assert set(quality[name]["mean"]) == {"colour", "texture", "edges"}
        assert quality[name]["mean"]["colour"] >= 0 and -1 <= quality[name]["mean"]["edges"] <= 1
        assert "Style quality on held-out photos" in (out / "repository" / name / "README.md").read_text()
    assert "edges ↑" in (out / "README.md").read_text()

    photo = np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    assert repo.load("mosaic").stylize(photo).shape == photo.shape
    assert repo.load("pointillism").stylize(photo).shape == photo.shape  # adapted from the meta init
    assert "adaptation" in (out / "repository" / "pointillism" / "README.md").read_text()
    assert len(repo.load("art_style").classify(photo, top_k=2)) == 2
    # The classifier recognises every stylizer of the zoo, and unstylized photos.
    assert sorted(repo.load("art_style").metadata.labels) == sorted([*styles, "photo"])
    assert repo.load("abstract_dcgan").generate(2, seed=1)[0].shape == (64, 64, 3)


def test_importing_the_zoo_package_does_not_import_torch() -> None:
    code = "import sys, artforge.zoo; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
