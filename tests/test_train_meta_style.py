"""Meta-learned style initialisation (MAML) and adaptation: the real EfficientNet-Lite0 loss network, real image
files, procedurally painted styles, tiny networks and a few steps."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from training_support import interrupt_training

from artforge.cli import build_parser, main
from artforge.errors import ArtforgeError, InvalidInputError, NotFoundError, WrongKindError
from artforge.export import export_run
from artforge.models.style_net import TransformerNet
from artforge.training import adapt_style, common, meta_style
from artforge.training.configs import META_STYLE_KIND, AdaptStyleConfig, MetaStyleConfig, StyleConfig
from artforge.training.losses import PerceptualLoss, build_loss_network
from artforge.training.style import ContentSampler, _to_tensor
from artforge.zoo.painting import paint_style_image


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Content photos (training and held out), a style folder with one corrupt file, style images for adaptation."""
    root = tmp_path_factory.mktemp("meta")
    rng = np.random.default_rng(0)
    out = {}
    for name, count in (("content", 6), ("held_out", 2)):
        folder = root / name
        folder.mkdir()
        for i in range(count):
            image = cv2.resize(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8), (48, 40), interpolation=cv2.INTER_CUBIC)
            cv2.rectangle(image, (6, 6), (30, 26), (255, 255, 255), 2)
            cv2.imwrite(str(folder / f"c{i}.jpg"), image)
        out[name] = folder
    styles = root / "styles"
    styles.mkdir()
    for name in ("swirl", "kandinsky"):
        cv2.imwrite(str(styles / f"{name}.png"), paint_style_image(name, 64, seed=5)[..., ::-1])
    (styles / "broken.jpg").write_bytes(b"not a JPEG")
    out["styles"] = styles
    # The held-out family, never in the meta-training pool.
    out["new_style"] = root / "pointillism.png"
    cv2.imwrite(str(out["new_style"]), paint_style_image("pointillism:chelsea", 64, seed=0)[..., ::-1])
    out["tiny_style"] = root / "tiny.png"
    cv2.imwrite(str(out["tiny_style"]), np.zeros((20, 20, 3), np.uint8))
    out["corrupt_style"] = root / "corrupt.png"
    out["corrupt_style"].write_bytes(b"\x89PNG but not really")
    return out


def tiny(images: dict[str, Path], out: Path, **kw) -> MetaStyleConfig:
    settings = dict(styles=str(images["styles"]), procedural_styles=6, width=0.125, image_size=32, style_size=32,
                    batch_size=2, steps=4, inner_steps=1, adapt_steps=3, sample_every=2, checkpoint_every=2,
                    log_every=1, progress=False)
    settings.update(kw)
    return MetaStyleConfig(data=str(images["content"]), out=str(out), **settings)


@pytest.fixture(scope="module")
def meta_run(images: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return meta_style.train(tiny(images, tmp_path_factory.mktemp("meta_run") / "run", steps=3))


def _post_adaptation_loss(state: dict[str, torch.Tensor], images: dict[str, Path], steps: int) -> float:
    """Held-out loss of the held-out style after `steps` Adam steps from `state` (fixed batches)."""
    torch.manual_seed(0)
    net = TransformerNet(width=0.125)
    net.load_state_dict(state)
    style = _to_tensor(cv2.imread(str(images["new_style"]))[None, ..., ::-1].copy(), torch.device("cpu"))
    weights = StyleConfig(style="", data="", out="").loss_weight_values()  # meta-training's defaults too
    criterion = PerceptualLoss(build_loss_network("efficientnet_lite0"), style, weights)
    sampler = ContentSampler(sorted(images["content"].glob("*.jpg")), 32, seed=1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for step in range(steps):
        content = _to_tensor(sampler.batch(step, 2), torch.device("cpu"))
        loss = criterion(net(content), criterion.content_target(content))["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held = _to_tensor(ContentSampler(sorted(images["held_out"].glob("*.jpg")), 32, seed=2).batch(0, 2),
                      torch.device("cpu"))
    with torch.no_grad():
        return float(criterion(net(held), criterion.content_target(held))["total"])


def test_outer_loop_lowers_the_post_adaptation_loss_of_a_held_out_style(images, tmp_path):
    cfg = tiny(images, tmp_path / "run", steps=6, outer_lr=1e-2)
    before = meta_style.initial_network(cfg).state_dict()
    run = meta_style.train(cfg)

    artifact = common.load_artifact(run)
    assert artifact["kind"] == META_STYLE_KIND
    assert artifact["arch"] == {"name": "transformer_net", "width": 0.125, "residual_blocks": 5}
    provenance = artifact["provenance"]
    assert provenance["steps"] == 6 and provenance["adapt"] == {"steps": 3, "lr": 1e-3}
    assert provenance["style_settings"]["width"] == 0.125 and provenance["style_files"] == 3
    metrics = json.loads((run / common.METRICS).read_text())
    assert [h["step"] for h in metrics["history"]] == list(range(1, 7))
    assert metrics["styles"] == 9 and metrics["skipped_style_files"] in (0, 1)
    assert all(np.isfinite(h["query"]) and np.isfinite(h["support"]) for h in metrics["history"])
    assert (run / "samples" / "step_000006.png").is_file()

    # The initialisation moved so that a few steps on a style it never saw end lower than from where it began.
    assert _post_adaptation_loss(artifact["state_dict"], images, 3) < _post_adaptation_loss(before, images, 3)


def test_inner_loop_adapts_only_the_instance_norms_when_asked() -> None:
    net = TransformerNet(width=0.125)
    names = meta_style.adapted_names(net, "norm")
    assert names and all(".weight" in n or ".bias" in n for n in names)
    modules = dict(net.named_modules())
    assert all(isinstance(modules[n.rsplit(".", 1)[0]], torch.nn.InstanceNorm2d) for n in names)
    assert len(meta_style.adapted_names(net, "all")) == len(list(net.parameters()))


def test_second_order_gradients_differ_from_first_order_ones(images) -> None:
    torch.manual_seed(0)
    net = TransformerNet(width=0.125)
    style = _to_tensor(cv2.imread(str(images["new_style"]))[None, ..., ::-1].copy(), torch.device("cpu"))
    criterion = PerceptualLoss(build_loss_network("efficientnet_lite0"), style,
                               StyleConfig(style="", data="", out="").loss_weight_values())
    batches = [torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(i)) * 255 for i in range(2)]
    gradients = {}
    for second_order in (False, True):
        net.zero_grad()
        params, _ = meta_style.inner_loop(net, criterion, batches[:1], meta_style.adapted_names(net, "norm"), 0.3,
                                          second_order)
        criterion(torch.func.functional_call(net, params, (batches[1],)),
                  criterion.content_target(batches[1]))["total"].backward()
        gradients[second_order] = torch.cat([p.grad.flatten() for p in net.parameters()])
    # The same query gradient plus the term through the inner step's gradient: different, same direction.
    assert not torch.allclose(gradients[False], gradients[True])
    assert float(torch.nn.functional.cosine_similarity(gradients[False], gradients[True], dim=0)) > 0


def test_resumed_meta_training_matches_an_uninterrupted_one(images, tmp_path):
    settings = dict(inner_params="norm", steps=3, procedural_styles=2)  # the norm-only branch too
    straight = meta_style.train(tiny(images, tmp_path / "straight", **settings))
    stopped = tiny(images, tmp_path / "resumed", max_steps=1, **settings)
    meta_style.train(stopped)
    assert torch.load(tmp_path / "resumed" / common.STATE, weights_only=False)["step"] == 1
    resumed = meta_style.train(replace(stopped, max_steps=None))
    a, b = common.load_artifact(straight)["state_dict"], common.load_artifact(resumed)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history = json.loads((resumed / common.METRICS).read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3]


def test_ctrl_c_saves_state_and_the_same_command_resumes(images, tmp_path):
    out = tmp_path / "run"
    cfg = tiny(images, out, steps=100000, checkpoint_every=1, sample_every=1000)
    returncode, stderr = interrupt_training("meta_style", "MetaStyleConfig", cfg, out)
    assert returncode != 0 and "interrupted at step" in stderr
    saved = torch.load(out / common.STATE, weights_only=False)["step"]
    meta_style.train(replace(cfg, max_steps=saved + 1))
    metrics = json.loads((out / common.METRICS).read_text())
    assert metrics["step"] == saved + 1
    assert common.load_artifact(out)["provenance"]["steps"] == saved + 1


def test_adapt_style_one_shot_exports_a_verified_stylizer_with_a_card(images, meta_run, tmp_path, capsys):
    run, repo = tmp_path / "adapted", tmp_path / "repo"
    code = main(["adapt-style", str(images["new_style"]), "--init", str(meta_run), "--out", str(run), "--repo",
                 str(repo), "--name", "pointillism", "--data", str(images["content"]), "--steps", "2",
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "adapting to" in printed and "s per step measured" in printed and "largest difference" in printed
    assert (repo / "pointillism" / "1" / "model.onnx").is_file()

    artifact = common.load_artifact(run)
    assert artifact["kind"] == "stylizer" and artifact["arch"]["width"] == 0.125
    provenance = artifact["provenance"]
    assert provenance["init"] == str(meta_run) and provenance["steps"] == 2
    assert provenance["image_size"] == 32 and provenance["style_size"] == 32  # the initialisation's settings
    adaptation = provenance["adaptation"]
    assert adaptation["steps"] == 2 and adaptation["wall_time_s"] >= 0 and "cores" in adaptation["machine"]
    card = (repo / "pointillism" / "README.md").read_text()
    assert "adaptation" in card and "wall_time_s" in card and "passed" in card

    # The adapted run is an ordinary style run: `artforge export` takes it again.
    assert export_run(run, repo, name="again", log=None).is_file()


def test_adapt_style_starts_from_the_initialisation(images, meta_run, tmp_path):
    run = adapt_style.adapt(AdaptStyleConfig(style=str(images["new_style"]), out=str(tmp_path / "run"),
                                             init=str(meta_run), data=str(images["content"]), steps=1,
                                             progress=False))
    adapted = common.load_artifact(run)["state_dict"]
    init = common.load_artifact(meta_run)["state_dict"]
    # One Adam step at lr 1e-3 moves every weight by at most about 1e-3 from the initialisation.
    assert max(float((adapted[k] - init[k]).abs().max()) for k in init) < 2e-3


def test_export_refuses_a_meta_initialisation_with_one_sentence(meta_run, tmp_path, capsys):
    with pytest.raises(WrongKindError, match="adapt-style"):
        export_run(meta_run, tmp_path / "repo", log=None)
    assert main(["export", str(meta_run), "--repo", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "meta-learned style initialisation, not a stylizer" in err


def test_bad_inputs_give_one_clear_error_each(images, meta_run, tmp_path, capsys):
    style_run = tmp_path / "style_run"
    common.save_artifact(style_run, "stylizer", {"name": "transformer_net", "width": 0.125, "residual_blocks": 5},
                         TransformerNet(width=0.125), provenance={})
    base = dict(out=str(tmp_path / "out"), init=str(meta_run), data=str(images["content"]), steps=1,
                progress=False)
    cases = [
        (dict(base, style=str(tmp_path / "missing.jpg")), NotFoundError, "style image not found"),
        (dict(base, style=str(images["corrupt_style"])), InvalidInputError, "cannot decode the style image"),
        (dict(base, style=str(images["tiny_style"])), InvalidInputError, "20x20 pixels"),
        (dict(base, style=str(images["new_style"]), steps=0), InvalidInputError, "--steps must be at least 1"),
        (dict(base, style=str(images["new_style"]), init=str(style_run)), WrongKindError, "holds a stylizer"),
        (dict(base, style=str(images["new_style"]), init=str(tmp_path / "nope")), NotFoundError,
         "no meta-learned initialisation"),
    ]
    for settings, error, text in cases:
        with pytest.raises(error, match=text):
            adapt_style.adapt(AdaptStyleConfig(**settings))
        assert issubclass(error, ArtforgeError)
    assert not (tmp_path / "out").exists()  # refused before any run folder was made

    argv = ["adapt-style", str(images["tiny_style"]), "--init", str(meta_run), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("artforge: error: the style image") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--steps", "0"])
    assert exit_info.value.code == 2 and "--steps: must be at least 1" in capsys.readouterr().err
    assert main(["adapt-style", str(images["new_style"])]) == 2  # neither --out nor --repo
    assert "needs --out RUN" in capsys.readouterr().err


def test_meta_style_command_line_defaults_are_the_config_defaults(tmp_path):
    args = build_parser().parse_args(["train", "meta-style", "--data", "d", "--out", "o"])
    defaults = MetaStyleConfig(data="d", out="o")
    for name in ("steps", "inner_steps", "inner_lr", "outer_lr", "inner_params", "second_order", "width",
                 "image_size", "procedural_styles", "adapt_steps", "tasks_per_step"):
        assert getattr(args, name) == getattr(defaults, name), name
    with pytest.raises(FileNotFoundError, match="content image folder not found"):
        meta_style.train(MetaStyleConfig(data=str(tmp_path / "none"), out=str(tmp_path / "o")))
    with pytest.raises(ValueError, match="--inner-params must be one of all, norm"):
        meta_style.train(MetaStyleConfig(data=str(tmp_path), out=str(tmp_path / "o"), inner_params="conv"))
