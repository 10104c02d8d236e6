"""The zoo's datasets: source photos, determinism, layouts, held-out photos, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from batch_support import ZOO_REPO

from artforge.training.damage import damage
from artforge.training.data import image_folder, read_rgb
from artforge.zoo import datasets
from artforge.zoo.photos import (
    CLASSIFIER_PHOTOS,
    CONTENT_PHOTOS,
    GREY_PHOTOS,
    SOURCE_PHOTOS,
    classifier_photos,
    source_photos,
)
from artforge.zoo.stylized_dataset import PHOTO, render_stylized_dataset


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_source_photos_are_colour_rgb_uint8() -> None:
    photos = source_photos()
    assert set(photos) == set(SOURCE_PHOTOS)
    for name, img in photos.items():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        # A real colour photo, not grey stored in three channels.
        assert np.abs(img[..., 0].astype(int) - img[..., 2]).mean() > 3, name
    assert set(CONTENT_PHOTOS) <= set(photos)


def test_classifier_photos_add_grey_ones() -> None:
    photos = classifier_photos()
    assert list(photos) == list(CLASSIFIER_PHOTOS) and set(GREY_PHOTOS) <= set(photos)
    for name in GREY_PHOTOS:
        img = photos[name]
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        assert (img[..., 0] == img[..., 2]).all() and img.std() > 10, name


def test_damage_keeps_size_is_seeded_and_smears_texture() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    outs = [damage(image, np.random.default_rng(s)) for s in range(20)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    np.testing.assert_array_equal(damage(image, np.random.default_rng(3)), outs[3])
    changed = [np.abs(o.astype(int) - image).mean() > 5 for o in outs]
    assert any(changed) and not all(changed)  # some images are damaged, some are left as they were


def test_stylized_dataset_layout_holdout_and_determinism(tmp_path: Path) -> None:
    repo = ZOO_REPO
    kwargs = {"seed": 7, "crops_per_photo": 2, "size": 40, "holdout": ["chelsea", "flower"],
              "validation": ["coffee"], "backend": "onnxruntime", "progress": False}
    summary = render_stylized_dataset(tmp_path / "a", repo, ["mosaic", "swirl"], **kwargs)

    assert summary["classes"] == [PHOTO, "mosaic", "swirl"]
    assert summary["held_out_photos"] == ["chelsea", "flower"]
    train_samples, train_classes = image_folder(tmp_path / "a" / "train")
    test_samples, test_classes = image_folder(tmp_path / "a" / "test")
    val_samples, val_classes = image_folder(tmp_path / "a" / "val")
    assert train_classes == test_classes == val_classes == sorted(summary["classes"])
    assert len(val_samples) == 2 * 3
    n_train = len(CLASSIFIER_PHOTOS) - 3
    assert len(train_samples) == n_train * 2 * 3
    assert len(test_samples) == 2 * 2 * 3
    assert summary["counts"]["train"] == {c: n_train * 2 for c in summary["classes"]}

    def photos_of(samples: list[tuple[Path, int]]) -> set[str]:
        return {p.stem.rsplit("_", 1)[0] for p, _ in samples}

    assert photos_of(test_samples) == {"chelsea", "flower"}
    assert photos_of(val_samples) == {"coffee"}
    assert photos_of(train_samples).isdisjoint(photos_of(test_samples) | photos_of(val_samples))
    assert set(GREY_PHOTOS) <= photos_of(train_samples)
    # Grey photos are toned some of the time, never in the source's exact grey only.
    grey = [read_rgb(tmp_path / "a" / "train" / PHOTO / f"{n}_{i:03d}.jpg").astype(int)
            for n in GREY_PHOTOS for i in range(2)]
    assert any(np.abs(g[..., 0] - g[..., 2]).mean() > 4 for g in grey)
    assert any(np.abs(g[..., 0] - g[..., 2]).mean() < 2 for g in grey)
    # Each crop is rendered at a random side in 1-3x the size, the same for the photo and its stylizations.
    first = {c: read_rgb(tmp_path / "a" / "train" / c / "astronaut_000.jpg").shape for c in summary["classes"]}
    assert len(set(first.values())) == 1 and 40 <= first[PHOTO][0] <= 120
    sides = {read_rgb(p).shape[0] for p, _ in train_samples}
    assert len(sides) > 3
    # Stylized images are not the photo.
    photo = read_rgb(tmp_path / "a" / "train" / PHOTO / "astronaut_000.jpg").astype(int)
    assert np.abs(read_rgb(tmp_path / "a" / "train" / "mosaic" / "astronaut_000.jpg") - photo).mean() > 20

    render_stylized_dataset(tmp_path / "b", repo, ["mosaic", "swirl"], **kwargs)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")


def test_stylized_dataset_resumes_and_refuses_other_settings(tmp_path: Path, zoo_copy) -> None:
    repo = zoo_copy("mosaic")
    kwargs = {"crops_per_photo": 1, "size": 40, "holdout": ["rocket"], "backend": "onnxruntime", "progress": False}
    render_stylized_dataset(tmp_path / "d", repo, ["mosaic"], seed=1, **kwargs)
    victim = next((tmp_path / "d" / "train" / "mosaic").glob("*.jpg"))
    before = victim.read_bytes()
    victim.unlink()  # as if interrupted before this file was written
    render_stylized_dataset(tmp_path / "d", repo, ["mosaic"], seed=1, **kwargs)
    assert victim.read_bytes() == before
    with pytest.raises(ValueError, match="other settings"):
        render_stylized_dataset(tmp_path / "d", repo, ["mosaic"], seed=2, **kwargs)
    # Other weights under the same name are another dataset.
    path = next((repo / "mosaic").glob("*/model.onnx"))
    graph = onnx.load(str(path))
    graph.doc_string = "retrained"
    onnx.save(graph, str(path))
    with pytest.raises(ValueError, match="other settings"):
        render_stylized_dataset(tmp_path / "d", repo, ["mosaic"], seed=1, **kwargs)
    with pytest.raises(ValueError, match="unknown"):
        render_stylized_dataset(tmp_path / "x", repo, ["mosaic"], seed=1, holdout=["no_such_photo"], progress=False)
    with pytest.raises(ValueError, match="both held out and for validation"):
        render_stylized_dataset(tmp_path / "x", repo, ["mosaic"], seed=1, holdout=["rocket"], validation=["rocket"],
                                progress=False)
    with pytest.raises(ValueError, match="photo"):
        render_stylized_dataset(tmp_path / "y", repo, [PHOTO], seed=1, progress=False)


def test_content_images_deterministic(tmp_path: Path) -> None:
    a = datasets.content_images(tmp_path / "a", seed=3, count=6, size=40, progress=False)
    b = datasets.content_images(tmp_path / "b", seed=3, count=6, size=40, progress=False)
    assert len(a) == 6 and all(read_rgb(p).shape == (40, 40, 3) for p in a)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert len({p.stem.rsplit("_", 1)[0] for p in a}) == 6  # round robin over photos


def test_art_tiles(tmp_path: Path) -> None:
    def invert(image: np.ndarray) -> np.ndarray:  # stands in for a style network
        return 255 - image

    kw = dict(seed=0, count=8, test_count=4, paintings_per_style=1, photo_crops=1, holdout=["chelsea"],
              stylizers={"invert": invert}, progress=False)
    summary = datasets.art_tiles(tmp_path / "a", **kw)
    datasets.art_tiles(tmp_path / "b", **kw)
    a = sorted((tmp_path / "a").rglob("*.png"))
    b = sorted((tmp_path / "b").rglob("*.png"))
    tiles = [read_rgb(p) for p in a]
    assert all(t.shape == (64, 64, 3) for t in tiles)
    assert len({t.tobytes() for t in tiles}) == 12
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert len(list((tmp_path / "a" / "train").glob("tile_*.png"))) == 8
    assert len(list((tmp_path / "a" / "test").glob("tile_*.png"))) == 4
    # Sources: 4 paintings, and per photo crop 5 renderings + 1 stylization; the test split has only chelsea.
    assert summary["train"]["sources"] == {"painted": 4, "rendered": 5 * 8, "stylized": 8}
    assert summary["test"]["sources"] == {"painted": 4, "rendered": 5, "stylized": 1}
    assert summary["test"]["photos"] == ["chelsea"] and "chelsea" not in summary["train"]["photos"]
    assert summary["stylizers"] == ["invert"]
    with pytest.raises(ValueError, match="made with other settings"):
        datasets.art_tiles(tmp_path / "a", **{**kw, "stylizers": {}})
    with pytest.raises(ValueError, match="holdout photo"):
        datasets.art_tiles(tmp_path / "c", **{**kw, "holdout": ["moon"]})


def test_sample_photos(tmp_path: Path) -> None:
    paths = datasets.sample_photos(tmp_path, max_side=512)
    assert 4 <= len(paths) <= 6
    for p in paths:
        img = read_rgb(p)
        assert max(img.shape[:2]) <= 512
        assert p.stat().st_size < 100_000
