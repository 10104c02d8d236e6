"""Tiling with the whole image's normalisation statistics (the stylizer's tile graph, contract.TILE_IO).

A real tiny stylizer is exported with the real exporter; every backend available here runs it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from artforge import contract
from artforge.cli.args import DEFAULT_ZOO
from artforge.errors import InvalidInputError
from artforge.export import export_run
from artforge.models.style_net import TransformerNet
from artforge.runtime import Repository
from artforge.runtime.backends import available_backends
from artforge.runtime.tiling import _shares, plan_tiles, stats_pixels, stylize_tiled
from artforge.training import common

BACKENDS = [name for name in ("onnxruntime", "openvino") if name in available_backends()]
TILE = 96
#: a quarter of the tile: this net's receptive field is wide next to 96 px tiles (measured: 1.4 levels with 24 px,
#: 5.7 with 8)
OVERLAP = 24


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shared_norm")
    torch.manual_seed(3)
    net = TransformerNet(width=0.25, residual_blocks=2)
    with torch.no_grad():  # trained-like affine norms (random ones make every tile look alike)
        for module in net.modules():
            if isinstance(module, torch.nn.InstanceNorm2d):
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.5, 0.5)
        last = net.decoder[-1].conv  # outputs spread over 0..255 rather than a few levels near 0
        last.weight.mul_(60.0)
        last.bias.fill_(128.0)
    common.save_artifact(root / "run", contract.STYLIZER, {"name": "transformer_net", "width": 0.25,
                                                          "residual_blocks": 2},
                         net, {"seed": 3}, size_multiple=4)
    export_run(root / "run", root / "repo", name="tiny", log=None)
    return root / "repo"


def _image() -> np.ndarray:
    """A photo with regions of different tone (what makes per-tile statistics drift), 192 x 256."""
    photo = cv2.cvtColor(cv2.imread(str(DEFAULT_ZOO / "samples" / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    return cv2.resize(photo, (256, 192), interpolation=cv2.INTER_AREA)


def _first_layer_channels() -> int:
    """C of the tiny net's first instance norm (the first block of norm_stats)."""
    net = TransformerNet(width=0.25, residual_blocks=2)
    return next(m.num_features for m in net.modules() if isinstance(m, torch.nn.InstanceNorm2d))


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_export_writes_the_tile_graph_and_names_it(repo: Path) -> None:
    folder = repo / "tiny" / "1"
    props = {p.key: p.value for p in onnx.load(str(folder / "model.onnx")).metadata_props}
    meta = contract.ModelMetadata.from_props(props)
    assert meta.tile_graph["file"] == contract.TILE_FILE and meta.tile_graph["channels"] > 0
    tile = onnx.load(str(folder / contract.TILE_FILE))
    assert tuple(i.name for i in tile.graph.input) == contract.TILE_IO[0]
    assert tuple(o.name for o in tile.graph.output) == contract.TILE_IO[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiles_with_shared_statistics_match_the_whole_image(repo: Path, backend: str) -> None:
    model = Repository(repo).stylizer("tiny", backend=backend, threads=2)
    norm = model.shared_norm()
    assert norm is not None
    image = _image()
    whole = model.stylize(image)

    def tiled(shared: bool, **kwargs: object) -> np.ndarray:
        return stylize_tiled(image, model.run_padded, tile=TILE, overlap=OVERLAP, multiple=model.size_multiple,
                             min_size=model.min_size, batch_size=2, norm=norm if shared else None, **kwargs)

    own = _difference(tiled(False), whole)
    # A stats pass that sees the whole image at full size: tones match.
    shared = _difference(tiled(True, norm_pixels=image.shape[0] * image.shape[1]), whole)
    assert shared <= 3.0 < own, (own, shared)
    # The default estimate, a stats pass on a downscale, still beats per-tile statistics (how much depends on
    # the scale: see benchmarks/bench_tiling.py) ...
    estimate = _difference(tiled(True), whole)
    assert estimate < own, (own, estimate)
    # ... and the exact statistics, measured through the tiles, match the whole image as closely as a stats pass
    # over the whole image at full size does (what is left is the overlap's, not the statistics').
    exact = _difference(tiled(True, tile_stats="exact"), whole)
    assert exact <= min(3.0, shared + 0.3), (estimate, shared, exact)


@pytest.mark.parametrize("starts,size", [((0,), 96), ((0, 72), 96), ((0, 60, 120, 180), 96), ((0, 8, 16), 12)])
def test_tile_shares_partition_the_axis(starts: tuple[int, ...], size: int) -> None:
    shares = _shares(starts, size)
    covered = [start + y for start, (y0, y1) in zip(starts, shares, strict=True) for y in range(y0, y1)]
    assert covered == list(range(starts[-1] + size))  # every padded row once, in order
    assert all(0 <= y0 < y1 <= size for y0, y1 in shares)


def test_one_pass_over_the_tiles_measures_the_first_layer_exactly(repo: Path) -> None:
    """The first instance norm sees only convolved pixels: its statistics need no other layer's."""
    model = Repository(repo).stylizer("tiny", backend="onnxruntime", threads=2)
    norm = model.shared_norm()
    assert norm is not None
    image = _image()
    layout = plan_tiles(*image.shape[:2], TILE, OVERLAP, model.size_multiple, model.min_size)
    exact = norm.statistics(image, image.shape[0] * image.shape[1], model.size_multiple, model.min_size)
    rough = norm.statistics(image, 32 * 32, model.size_multiple, model.min_size)
    refined = norm.moments(image, layout, rough, batch_size=2)
    first = slice(0, norm.layers[0])
    assert norm.layers[0] == _first_layer_channels() and sum(norm.layers) == norm.channels
    assert np.allclose(refined[:, first], exact[:, first], rtol=2e-3, atol=2e-3)
    assert not np.allclose(rough[:, first], exact[:, first], rtol=2e-3, atol=2e-3)


def test_the_stats_pass_never_runs_more_than_one_tile_of_pixels(repo: Path) -> None:
    model = Repository(repo).stylizer("tiny", backend="onnxruntime", threads=2)
    norm = model.shared_norm()
    assert norm is not None
    seen: list[tuple[int, ...]] = []

    def recording(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(feeds["image"].shape)
        return norm.run(feeds)

    image = np.ascontiguousarray(np.tile(_image(), (3, 3, 1)))  # 576 x 768: 9x the pixels of a 192 x 256 photo
    layout = plan_tiles(*image.shape[:2], TILE, OVERLAP, model.size_multiple, model.min_size)
    budget = layout.tile_h * layout.tile_w // 4  # a quarter of a tile
    stylize_tiled(image, model.run_padded, tile=TILE, overlap=OVERLAP, multiple=model.size_multiple,
                  min_size=model.min_size, norm=replace(norm, run=recording), norm_pixels=budget)
    assert len(seen) == 1 + layout.count  # the stats pass, then every tile once
    slack = (model.size_multiple - 1) * (image.shape[0] + image.shape[1])  # padding up to the multiple
    assert seen[0][1] * seen[0][2] <= budget + slack, seen[0]  # the stats pass
    assert all(shape[1:3] == (layout.tile_h, layout.tile_w) for shape in seen[1:]), seen
    # By default the budget is one tile: tiling with shared statistics needs no more memory than without.
    seen.clear()
    stylize_tiled(image, model.run_padded, tile=TILE, overlap=OVERLAP, multiple=model.size_multiple,
                  min_size=model.min_size, norm=replace(norm, run=recording))
    assert all(shape[1] * shape[2] <= stats_pixels(layout) + slack for shape in seen), seen
    assert stats_pixels(layout) == layout.tile_h * layout.tile_w
    # Exact statistics: one more pass over the tiles per layer, each run still one tile.
    seen.clear()
    stylize_tiled(image, model.run_padded, tile=TILE, overlap=OVERLAP, multiple=model.size_multiple,
                  min_size=model.min_size, norm=replace(norm, run=recording), tile_stats="exact")
    assert len(seen) == 1 + (len(norm.layers) + 1) * layout.count
    assert all(shape[1:3] == (layout.tile_h, layout.tile_w) for shape in seen[1:]), seen


def test_unknown_tile_statistics_mode_is_one_clear_error(repo: Path) -> None:
    model = Repository(repo).stylizer("tiny", backend="onnxruntime", threads=2)
    with pytest.raises(InvalidInputError, match="tile statistics must be one of estimate, exact"):
        stylize_tiled(_image(), model.run_padded, tile=TILE, overlap=OVERLAP, multiple=model.size_multiple,
                      min_size=model.min_size, norm=model.shared_norm(), tile_stats="precise")


def test_a_model_without_a_tile_graph_tiles_as_before_and_warns_once(repo: Path, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    old = tmp_path / "repo" / "old" / "1"
    old.mkdir(parents=True)
    model_proto = onnx.load(str(repo / "tiny" / "1" / "model.onnx"))
    kept = [p for p in model_proto.metadata_props if p.key != contract.KEY_TILE_GRAPH]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(kept)
    onnx.save(model_proto, str(old / "model.onnx"))
    model = Repository(tmp_path / "repo").stylizer("old", backend="onnxruntime", threads=2)
    with caplog.at_level(logging.WARNING, logger="artforge.runtime.models"):
        assert model.shared_norm() is None
        assert model.shared_norm() is None
    warnings = [r for r in caplog.records if "own statistics" in r.getMessage()]
    assert len(warnings) == 1 and "re-export" in warnings[0].getMessage()
    image = _image()
    calls: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return model.run_padded(batch)

    out = stylize_tiled(image, run, tile=TILE, overlap=OVERLAP, multiple=model.size_multiple,
                        min_size=model.min_size, norm=model.shared_norm())
    assert out.shape == image.shape and sum(calls) == plan_tiles(*image.shape[:2], TILE, OVERLAP, 4, 8).count


def test_a_tile_graph_from_another_export_is_refused(repo: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    folder = tmp_path / "repo" / "tiny" / "1"
    shutil.copytree(repo / "tiny" / "1", folder)
    tile = onnx.load(str(folder / contract.TILE_FILE))
    tile.doc_string = "changed"
    onnx.save(tile, str(folder / contract.TILE_FILE))
    model = Repository(tmp_path / "repo").stylizer("tiny", backend="onnxruntime", threads=2)
    with caplog.at_level(logging.WARNING, logger="artforge.runtime.models"):
        assert model.shared_norm() is None
    assert any("sha256" in r.getMessage() for r in caplog.records)
